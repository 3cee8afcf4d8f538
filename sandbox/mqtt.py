"""MQTT over mutual TLS against the sandbox broker: connected clients and a message `Recorder`.

paho-mqtt 2.x with `CallbackAPIVersion.VERSION2`; the network loop runs in paho's background thread.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

CONNECT_TIMEOUT = 20.0


class MqttError(RuntimeError):
    """The broker refused a connection or a subscription, or did not answer in time."""


class Message(NamedTuple):
    """One message as received: topic, raw payload and local arrival time (`time.time()`)."""

    topic: str
    payload: bytes
    received_at: float


def tls_client(
    host: str,
    port: int,
    ca_file: Path,
    cert_file: Path | None,
    key_file: Path | None,
    *,
    client_id: str | None = None,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    timeout: float = CONNECT_TIMEOUT,
) -> mqtt.Client:
    """A paho client connected over TLS (CONNACK received, loop thread running).

    The broker's certificate is verified against `ca_file` including its hostname. Pass
    `cert_file=key_file=None` to connect without a client certificate (the broker must refuse that:
    `MqttError`, or `ssl.SSLError`/`OSError` if the handshake itself fails). Call `close_client()`.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"sandbox-{uuid.uuid4().hex[:12]}",
        protocol=protocol,
        reconnect_on_failure=True,
    )
    client.tls_set(
        ca_certs=str(ca_file),
        certfile=str(cert_file) if cert_file else None,
        keyfile=str(key_file) if key_file else None,
        cert_reqs=ssl.CERT_REQUIRED,
        tls_version=ssl.PROTOCOL_TLS_CLIENT,
    )
    answered = threading.Event()
    connack: list[ReasonCode] = []
    dropped: list[ReasonCode] = []

    def on_connect(
        c: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Properties | None
    ) -> None:
        connack.append(rc)
        answered.set()

    def on_disconnect(
        c: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Properties | None
    ) -> None:
        dropped.append(rc)
        answered.set()

    client.reconnect_delay_set(min_delay=1, max_delay=5)  # local broker: chaos tests restart it
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    # TCP and the TLS handshake happen here. With TLS 1.3 the broker checks the client certificate
    # after the client considers the handshake done, so a refused certificate shows up as a
    # disconnect before CONNACK instead of an exception.
    client.connect(host, port, keepalive=30)
    client.loop_start()
    answered.wait(timeout)
    client.on_connect = client.on_disconnect = None
    if not connack or connack[0].is_failure:
        close_client(client)
        if connack:
            reason = f"CONNACK {connack[0]}"
        elif dropped:
            reason = f"connection closed before CONNACK ({dropped[0]}; client certificate refused?)"
        else:
            reason = f"no CONNACK within {timeout:g}s"
        raise MqttError(f"MQTT connect to {host}:{port} refused: {reason}")
    return client


def close_client(client: mqtt.Client) -> None:
    """Disconnect cleanly and stop the loop thread."""
    client.disconnect()
    client.loop_stop()


class Recorder:
    """Subscribes to `topic_filter` (one filter or several) and records every message, in arrival order.

    Use as a context manager: entering returns once the broker granted the subscription, so nothing
    published after `with Recorder(...)` is missed. Resubscribes after a broker restart.
    """

    def __init__(
        self,
        broker_host: str,
        port: int,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        topic_filter: str | Sequence[str] = "spBv1.0/#",
        qos: int = 1,
    ) -> None:
        self.broker_host = broker_host
        self.port = port
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.topic_filters = [topic_filter] if isinstance(topic_filter, str) else list(topic_filter)
        self.qos = qos
        self._messages: list[Message] = []
        self._changed = threading.Condition()
        self._refused: list[ReasonCode] = []
        self._live = False  # connected and subscription granted; guarded by _changed
        self._client: mqtt.Client | None = None

    def start(self, timeout: float = CONNECT_TIMEOUT) -> Self:
        client = tls_client(self.broker_host, self.port, self.ca_file, self.cert_file, self.key_file)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_connect = self._on_reconnect
        client.on_disconnect = self._on_disconnect
        self._client = client
        client.subscribe(self._subscriptions())
        if not self.wait_live(timeout) or self._refused:
            self.stop()
            reason = str(self._refused[0]) if self._refused else f"no SUBACK within {timeout:g}s"
            raise MqttError(f"subscription to {self.topic_filters} refused: {reason}")
        return self

    def stop(self) -> None:
        if self._client is not None:
            close_client(self._client)
            self._client = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def live(self) -> bool:
        """Connected with the subscription granted (False while the broker is down or restarting)."""
        with self._changed:
            return self._live

    def wait_live(self, timeout: float = 30.0) -> bool:
        """Wait until `live` (e.g. resubscribed after a broker restart); return whether it is."""
        with self._changed:
            return self._changed.wait_for(lambda: self._live or bool(self._refused), timeout) and self._live

    def messages(self, topic_prefix: str | None = None) -> list[Message]:
        """A snapshot of the messages received so far, optionally only those under `topic_prefix`."""
        with self._changed:
            return [m for m in self._messages if topic_prefix is None or m.topic.startswith(topic_prefix)]

    def wait_for(
        self, predicate: Callable[[Sequence[Message]], bool], timeout: float = 30.0
    ) -> list[Message]:
        """Block until `predicate(messages so far)` is true; return a snapshot of the messages.

        The predicate is re-checked on every arrival and sees the live list (read-only, lock held).
        Raises `TimeoutError` (listing what did arrive) if it is still false after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = sorted({m.topic for m in self._messages})
                    raise TimeoutError(
                        f"condition not met within {timeout:g}s; {len(self._messages)} messages "
                        f"received on {topics}"
                    )
                self._changed.wait(remaining)
            return list(self._messages)

    def wait_for_topic(self, topic_prefix: str, count: int = 1, timeout: float = 30.0) -> list[Message]:
        """Block until `count` messages arrived under `topic_prefix`; return those messages."""
        seen = {"scanned": 0, "matched": 0}  # only new arrivals are scanned: linear in a long burst

        def enough(messages: Sequence[Message]) -> bool:
            for m in messages[seen["scanned"] :]:
                seen["matched"] += m.topic.startswith(topic_prefix)
            seen["scanned"] = len(messages)
            return seen["matched"] >= count

        self.wait_for(enough, timeout)
        return self.messages(topic_prefix)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self._messages.append(Message(msg.topic, bytes(msg.payload), time.time()))
            self._changed.notify_all()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Properties
    ) -> None:
        with self._changed:
            self._refused.extend(rc for rc in codes if rc.is_failure)
            self._live = not self._refused
            self._changed.notify_all()

    def _on_reconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Properties | None
    ) -> None:
        if not rc.is_failure:
            client.subscribe(self._subscriptions())

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Properties | None
    ) -> None:
        with self._changed:
            self._live = False
            self._changed.notify_all()

    def _subscriptions(self) -> list[tuple[str, int]]:
        return [(f, self.qos) for f in self.topic_filters]
