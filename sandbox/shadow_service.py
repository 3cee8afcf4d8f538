"""The Device Shadow service's MQTT side for the sandbox: Mosquitto's named-shadow topics served by moto.

moto implements the shadow documents, their versions and deltas (IoT Data Plane: UpdateThingShadow,
GetThingShadow); it has no MQTT. This bridge is an MQTT client with its own identity (CN
`pm500-shadow-service`, allowed by the sandbox ACL to read and write every thing's shadow topics) that
wires the topics of AWS IoT's "Device Shadow MQTT topics" to that logic instead of re-implementing it:

- `$aws/things/<thing>/shadow/name/<shadow>/update` -> UpdateThingShadow; the answer on
  `.../update/accepted` (moto's response document) or `.../update/rejected` (`code`, `message`);
- `.../get` -> GetThingShadow; the answer on `.../get/accepted` (the document with its delta) or
  `.../get/rejected` (404 when there is no shadow yet);
- each new version, whoever wrote it (a device over MQTT, an operator over the HTTP API such as
  `cli.py collector set`), on `.../update/documents` (`previous` and `current` document: what the
  stack's report rule reads) and, when its desired state changed and still differs from the reported
  one, on `.../update/delta`. An HTTP update never passes through the broker, so the bridge also reads
  the shadows of moto's things every `poll_s`; versions written between two polls are documented as
  one step.

Each request's `clientToken` is echoed, as AWS IoT does. moto's delta keeps an empty object for a nested
object whose fields all match (`{"meters": {"m1": {}}}`) where AWS IoT's delta holds only the fields
that differ: the bridge leaves those out. moto is not thread-safe: one lock serializes the bridge's calls.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from botocore.exceptions import ClientError

from sandbox.mosquitto import SHADOW_SERVICE_CN, MosquittoBroker
from sandbox.mqtt import close_client, tls_client

log = logging.getLogger(__name__)

REQUESTS = ("$aws/things/+/shadow/name/+/update", "$aws/things/+/shadow/name/+/get")
_TOPIC = re.compile(r"^\$aws/things/(?P<thing>[^/]+)/shadow/name/(?P<shadow>[^/]+)/(?P<op>update|get)$")
_CODES = {"InvalidRequestException": 400, "ResourceNotFoundException": 404, "ConflictException": 409}


class ShadowService:
    """Start it with a broker (started) and moto's clients (`sandbox.plan_replay.moto_clients`);
    `stop()` ends both threads."""

    def __init__(
        self, broker: MosquittoBroker, client: Callable[[str], Any], workdir: Path, poll_s: float = 0.2
    ) -> None:
        self._broker = broker
        self._data = client("iot-data")
        self._iot = client("iot")
        self._workdir = workdir
        self._poll_s = poll_s
        self._moto = threading.Lock()
        self._checking = threading.Lock()  # one version check at a time (paho's thread and the poller)
        self._seen: dict[tuple[str, str], dict[str, Any]] = {}  # (thing, shadow) -> last document seen
        self._stopping = threading.Event()
        self._client: mqtt.Client | None = None
        self._poller = threading.Thread(target=self._poll_loop, name="shadow-service-poll", daemon=True)

    def start(self) -> ShadowService:
        self._poll_once(publish=False)  # what already exists is known, not news
        cert, key = self._broker.ca.issue(SHADOW_SERVICE_CN, self._workdir)
        client = tls_client(
            self._broker.host, self._broker.port, self._broker.ca_file, cert, key, client_id=SHADOW_SERVICE_CN
        )
        client.on_message = self._on_message
        client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in REQUESTS])
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.subscribe([(t, 1) for t in REQUESTS])
        if not subscribed.wait(20):
            raise TimeoutError("shadow service: subscription not granted")
        self._client = client
        self._poller.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._poller.is_alive():
            self._poller.join(10)
        if self._client is not None:
            close_client(self._client)

    # -- device requests (paho's thread) ----------------------------------------------------------

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        match = _TOPIC.match(message.topic)
        if match is None:
            return
        thing, shadow, operation = match["thing"], match["shadow"], match["op"]
        base = f"$aws/things/{thing}/shadow/name/{shadow}"
        token = _client_token(bytes(message.payload))
        try:
            with self._moto:
                if operation == "update":
                    answer = self._data.update_thing_shadow(
                        thingName=thing, shadowName=shadow, payload=message.payload
                    )
                else:
                    answer = self._data.get_thing_shadow(thingName=thing, shadowName=shadow)
            document = json.loads(answer["payload"].read())
        except ClientError as e:
            code = _CODES.get(e.response["Error"]["Code"], 500)
            rejected = {"code": code, "message": e.response["Error"].get("Message") or str(e)}
            client.publish(f"{base}/{operation}/rejected", json.dumps(_with(rejected, token)), qos=1)
            return
        if "delta" in document.get("state", {}):
            document["state"] = _pruned_delta(document["state"])
        client.publish(f"{base}/{operation}/accepted", json.dumps(_with(document, token)), qos=1)
        if operation == "update":
            self._check(thing, shadow, publish=True)

    # -- deltas ------------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self._poll_s):
            try:
                self._poll_once(publish=True)
            except Exception:  # moto busy or restarting: the next poll tries again
                log.warning("shadow service poll failed", exc_info=True)

    def _poll_once(self, publish: bool) -> None:
        with self._moto:
            pages = self._iot.get_paginator("list_things").paginate()
            things = [t["thingName"] for page in pages for t in page["things"]]
        for thing in things:
            with self._moto:
                names = self._data.list_named_shadows_for_thing(thingName=thing).get("results", [])
            for shadow in names:
                self._check(thing, shadow, publish)

    def _check(self, thing: str, shadow: str, publish: bool) -> None:
        """Publish the delta of a new version whose desired state changed (once per version)."""
        with self._checking:
            self._check_locked(thing, shadow, publish)

    def _check_locked(self, thing: str, shadow: str, publish: bool) -> None:
        try:
            with self._moto:
                answer = self._data.get_thing_shadow(thingName=thing, shadowName=shadow)
            document = json.loads(answer["payload"].read())
        except ClientError:
            return  # deleted meanwhile
        version, state = document["version"], _pruned_delta(document.get("state", {}))
        previous = self._seen.get((thing, shadow))
        if previous is not None and version <= previous["version"]:
            return
        current = {**document, "state": {k: v for k, v in state.items() if k != "delta"}}
        self._seen[(thing, shadow)] = current
        if not publish or self._client is None:
            return
        documents = {"current": current, "timestamp": document.get("timestamp", int(time.time()))}
        if previous is not None:
            documents["previous"] = previous
        base = f"$aws/things/{thing}/shadow/name/{shadow}/update"
        self._client.publish(f"{base}/documents", json.dumps(documents), qos=1)
        changed = state.get("desired") != (previous or {}).get("state", {}).get("desired")
        if changed and state.get("delta"):
            delta = {
                "version": version,
                "timestamp": document.get("timestamp", int(time.time())),
                "state": state["delta"],
                "metadata": document.get("metadata", {}).get("desired", {}),
            }
            self._client.publish(f"{base}/delta", json.dumps(delta), qos=1)


def pruned(document: dict[str, Any]) -> dict[str, Any]:
    """`document` without empty objects (what moto leaves in a delta and AWS IoT does not send)."""
    out = {}
    for key, value in document.items():
        if isinstance(value, dict):
            value = pruned(value)
            if not value:
                continue
        out[key] = value
    return out


def _pruned_delta(state: dict[str, Any]) -> dict[str, Any]:
    delta = pruned(state.get("delta") or {})
    return {**{k: v for k, v in state.items() if k != "delta"}, **({"delta": delta} if delta else {})}


def _client_token(payload: bytes) -> str | None:
    try:
        token = json.loads(payload).get("clientToken")
    except (ValueError, AttributeError):
        return None
    return token if isinstance(token, str) else None


def _with(document: dict[str, Any], token: str | None) -> dict[str, Any]:
    return {**document, "clientToken": token} if token is not None else document
