"""A Sparkplug 3.0 Primary Host Application for the tests, written from the specification.

What a host does on the wire (spec chapter 5, "Sparkplug Host Application Session Establishment"): a
will on `spBv1.0/STATE/<host_id>` (`{"online": false, "timestamp": T}`, QoS 1, retained), subscribe
to `spBv1.0/#`, then publish `{"online": true, "timestamp": T}` (QoS 1, retained) with the same T,
the time of its CONNECT. The tests also make it misbehave the way the TCK's PrimaryHostTest does:
STATE messages with an old timestamp, offline while connected.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Message

DOUBLE, BOOLEAN = 10, 11  # Sparkplug B DataTypes (Tahu proto enum), written out
OLD_TIMESTAMP = 16671135  # the TCK HostApplication's "old" STATE timestamp (1970)


def state_payload(online: bool, timestamp: int) -> bytes:
    return json.dumps({"online": online, "timestamp": timestamp}).encode()


class HostApplication:
    """One MQTT session of a host application (`connect` ... `disconnect`), and what it received."""

    def __init__(self, broker: MosquittoBroker, ca: DevCA, host_id: str, workdir: Path) -> None:
        self.host_id = host_id
        self.state_topic = f"spBv1.0/STATE/{host_id}"
        self._broker = broker
        self._cert, self._key = ca.issue(host_id, workdir)
        self._client: mqtt.Client | None = None
        self.timestamp = 0  # of the current session's will and birth
        self._messages: list[Message] = []
        self._changed = threading.Condition()

    def connect(self, announce: bool = True) -> HostApplication:
        """CONNECT with the death certificate as will, subscribe, then (if `announce`) the birth."""
        self.timestamp = int(time.time() * 1000)
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.host_id, clean_session=True)
        client.tls_set(ca_certs=str(self._broker.ca_file), certfile=str(self._cert), keyfile=str(self._key))
        client.will_set(self.state_topic, state_payload(False, self.timestamp), qos=1, retain=True)
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = self._on_message
        client.connect(self._broker.host, self._broker.port, keepalive=30)
        client.loop_start()
        client.subscribe("spBv1.0/#", qos=1)
        if not subscribed.wait(20):
            raise TimeoutError("host application not subscribed")
        self._client = client
        if announce:
            self.send_state(True)
        return self

    def send_state(self, online: bool, timestamp: int | None = None) -> None:
        """A STATE message (QoS 1, retained) with this session's timestamp unless told otherwise."""
        assert self._client is not None
        payload = state_payload(online, self.timestamp if timestamp is None else timestamp)
        self._client.publish(self.state_topic, payload, qos=1, retain=True).wait_for_publish(10)

    def disconnect(self) -> None:
        """Intentional: the death certificate first (spec), then DISCONNECT."""
        if self._client is None:
            return
        self.send_state(False)
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None

    def request_rebirth(self, edge_node: str, payload_class: Any) -> None:
        """NCMD `Node Control/Rebirth` = true, as a host sends it (QoS 0, not retained)."""
        request = payload_class(timestamp=int(time.time() * 1000))
        request.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
        self.send_ncmd(edge_node, request.SerializeToString())

    def write(self, edge_node: str, payload_class: Any, name: str, **value: Any) -> None:
        """NCMD writing one metric by name (`double_value=...`, `boolean_value=...`), datatype given."""
        request = payload_class(timestamp=int(time.time() * 1000))
        datatype = {"double_value": DOUBLE, "boolean_value": BOOLEAN}[next(iter(value))]
        request.metrics.add(name=name, datatype=datatype, **value)
        self.send_ncmd(edge_node, request.SerializeToString())

    def send_ncmd(self, edge_node: str, payload: bytes) -> None:
        assert self._client is not None
        self._client.publish(f"spBv1.0/pm500/NCMD/{edge_node}", payload, qos=0).wait_for_publish(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self._messages.append(Message(msg.topic, bytes(msg.payload), time.time()))
            self._changed.notify_all()

    def messages(self) -> list[Message]:
        with self._changed:
            return list(self._messages)

    def wait_for(self, predicate: Callable[[Sequence[Message]], bool], timeout: float = 30.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self._messages), timeout):
                raise TimeoutError(f"host: condition not met within {timeout:g}s")
