"""AWS IoT lifecycle events for the sandbox, made from the broker's own connect and disconnect records.

AWS IoT Core publishes `$aws/events/presence/connected/<clientId>` and
`$aws/events/presence/disconnected/<clientId>` for every client (Developer Guide, "Lifecycle events").
Mosquitto logs each connection and why it ended, and publishes its log on `$SYS/broker/log/<level>`
(`log_dest topic`, set by `sandbox.mosquitto`); this bridge (CN `pm500-lifecycle`) reads those lines and
publishes the events with AWS's fields: `clientId`, `timestamp` (ms), `eventType`, `sessionIdentifier`
(one per connection), `principalIdentifier` (here the certificate CN the broker authenticated),
`ipAddress` (connect), `clientInitiatedDisconnect` and `disconnectReason` (disconnect), and
`versionNumber`, counted per client id from each connection, which a disconnect repeats so a consumer
can order events that arrive out of order.

Mosquitto's words -> AWS's `disconnectReason`: DISCONNECT packet -> CLIENT_INITIATED_DISCONNECT; socket
closed or failed (a process killed, a cable pulled) -> CONNECTION_LOST; keepalive expired ->
MQTT_KEEP_ALIVE_TIMEOUT; the same client id connected again -> DUPLICATE_CLIENTID; not authorised ->
AUTH_ERROR; protocol error -> CLIENT_ERROR.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from sandbox.mosquitto import LIFECYCLE_CN, LOG_TOPICS, MosquittoBroker
from sandbox.mqtt import close_client, tls_client

PRESENCE = "$aws/events/presence"
_STAMP = re.compile(r"^\S+: ")  # the broker's log timestamp
_CONNECTED = re.compile(
    r"^New client connected from (?P<ip>\S+?):\d+ as (?P<client>\S+) \(.*u'(?P<user>[^']*)'\)\.$"
)
# (pattern, disconnectReason, clientInitiatedDisconnect)
_CLIENT = r"(?P<client>\S+)"
_DISCONNECTED = tuple(
    (re.compile(f"^{pattern}$"), reason, by_client)
    for pattern, reason, by_client in (
        (rf"Client {_CLIENT} disconnected\.", "CLIENT_INITIATED_DISCONNECT", True),
        (rf"Client {_CLIENT} closed its connection\.", "CONNECTION_LOST", False),
        (rf"Socket error on client {_CLIENT}, disconnecting\.", "CONNECTION_LOST", False),
        (rf"Client {_CLIENT} has exceeded timeout, disconnecting\.", "MQTT_KEEP_ALIVE_TIMEOUT", False),
        (rf"Client {_CLIENT} already connected, closing old connection\.", "DUPLICATE_CLIENTID", False),
        (rf"Client {_CLIENT} disconnected, not authori[sz]ed\.", "AUTH_ERROR", False),
        (rf"Client {_CLIENT} disconnected due to protocol error\.", "CLIENT_ERROR", False),
    )
)


@dataclass
class _Session:
    identifier: str
    principal: str
    version: int


class LifecycleEvents:
    """Start it with a started broker; `stop()` ends it. Holds one session per connected client id."""

    def __init__(self, broker: MosquittoBroker, workdir: Path) -> None:
        self._broker = broker
        self._workdir = workdir
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._versions: dict[str, int] = {}
        self._client: mqtt.Client | None = None

    def start(self) -> LifecycleEvents:
        cert, key = self._broker.ca.issue(LIFECYCLE_CN, self._workdir)
        b = self._broker
        client = tls_client(b.host, b.port, b.ca_file, cert, key, client_id=LIFECYCLE_CN)
        subscribed = threading.Event()
        client.on_message = self._on_log
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_connect = lambda c, *_: c.subscribe(LOG_TOPICS, qos=1)
        client.subscribe(LOG_TOPICS, qos=1)
        if not subscribed.wait(20):
            raise TimeoutError("lifecycle events: log subscription not granted")
        self._client = client
        return self

    def stop(self) -> None:
        if self._client is not None:
            close_client(self._client)

    def _on_log(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        event = self.event_for(_STAMP.sub("", bytes(message.payload).decode(errors="replace").strip()))
        if event is not None:
            client.publish(f"{PRESENCE}/{event['eventType']}/{event['clientId']}", json.dumps(event), qos=1)

    def event_for(self, line: str) -> dict[str, Any] | None:
        """The lifecycle event a broker log line stands for (None for every other line)."""
        now_ms = int(time.time() * 1000)
        match = _CONNECTED.match(line)
        with self._lock:
            if match is not None:
                client_id = match["client"]
                version = self._versions[client_id] = self._versions.get(client_id, -1) + 1
                session = self._sessions[client_id] = _Session(uuid.uuid4().hex, match["user"], version)
                return {
                    "clientId": client_id,
                    "timestamp": now_ms,
                    "eventType": "connected",
                    "sessionIdentifier": session.identifier,
                    "principalIdentifier": session.principal,
                    "ipAddress": match["ip"],
                    "versionNumber": session.version,
                }
            for pattern, reason, by_client in _DISCONNECTED:
                match = pattern.match(line)
                if match is None:
                    continue
                ended = self._sessions.pop(match["client"], None)
                if ended is None:
                    return None  # a connection that never completed CONNECT: AWS reports none either
                return {
                    "clientId": match["client"],
                    "timestamp": now_ms,
                    "eventType": "disconnected",
                    "sessionIdentifier": ended.identifier,
                    "principalIdentifier": ended.principal,
                    "clientInitiatedDisconnect": by_client,
                    "disconnectReason": reason,
                    "versionNumber": ended.version,
                }
        return None
