"""The one class wrapping paho-mqtt: TLS session to AWS IoT (or Mosquitto), births, last will, acks.

- MQTT 3.1.1, TLS 1.2+, client certificate; the server certificate is verified against `mqtt.ca_file`
  with hostname checking on.
- NDEATH is the last will (QoS 1); on every CONNACK the link publishes NBIRTH, then lets the owner
  publish its DBIRTHs (`on_connected`), then subscribes to NCMD, then tells the owner it may publish
  data (`on_online`), so DDATA never precedes the births and a backlog drain starts at once.
- Reconnects itself with exponential backoff and full jitter (paho's own reconnect has no jitter):
  paho's network thread (`loop_start`) runs one connection; when it ends, our supervisor thread waits
  the jittered delay and starts the next. Every socket write then happens on paho's thread (its
  `loop_start` mode), never from two threads at once, which would corrupt the TLS stream.
- `publish` hands back the paho message id; `on_puback(mid)` fires when the broker acknowledged it.
  paho keeps unacknowledged QoS 1 messages and resends them (DUP) after a reconnect, so a message
  accepted by `publish` is eventually acknowledged or the process dies (and the buffer replays it).
- What the births, the will and NDEATH contain is the `Wire`'s business (`collector.wire`). A Sparkplug B
  wire numbers messages per MQTT session, so stale publishes of the last session must not be resent
  into the next one: with `wire.fresh_session_per_connect` each CONNECT uses a new paho client (paho
  keeps no old publishes) and the owner replays what was not acknowledged from its buffer (`session`).
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from collector import topics
from collector.backoff import Backoff
from collector.config import CollectorConfig
from collector.wire import JsonWire, Wire

log = logging.getLogger(__name__)

QOS = 1
_ACCEPTED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


def tls_context(cfg: CollectorConfig) -> ssl.SSLContext:
    """TLS 1.2+ client context: verify the broker against our CA (hostname too), present our cert."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.mqtt.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(cfg.mqtt.cert_file), str(cfg.mqtt.key_file))
    return ctx


class MqttLink:
    def __init__(
        self,
        cfg: CollectorConfig,
        on_puback: Callable[[int], None],
        on_connected: Callable[[], None] = lambda: None,
        on_command: Callable[[bytes], None] = lambda payload: None,
        on_online: Callable[[], None] = lambda: None,
        max_inflight: int = 256,
        backoff: Backoff | None = None,
        wire: Wire | None = None,
    ) -> None:
        self._cfg = cfg
        self._wire: Wire = wire or JsonWire(cfg)
        self._max_inflight = max_inflight
        self.session = 0  # +1 per accepted CONNECT
        self._thing = cfg.thing_name
        self._on_puback = on_puback
        self._on_connected = on_connected
        self._on_command = on_command
        self._on_online = on_online
        self._backoff = backoff or Backoff(base_s=0.5, cap_s=30.0)
        self.connected = threading.Event()
        self._stopping = threading.Event()
        self._lost = threading.Event()
        self._io_lock = threading.Lock()  # no publish while the supervisor (re)connects the socket
        self._thread: threading.Thread | None = None
        self._last_problem: str | None = None
        self.stats = {"connects": 0, "disconnects": 0, "published": 0, "acked": 0}
        self._client = self._new_client()

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._thing,
            protocol=mqtt.MQTTv311,
            clean_session=True,
            reconnect_on_failure=False,  # one connection per loop_start(); the supervisor reconnects
        )
        client.tls_set_context(tls_context(self._cfg))
        client.max_inflight_messages_set(self._max_inflight)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        return client

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Graceful stop: publish NDEATH ourselves (a clean DISCONNECT suppresses the will), then close."""
        if self.connected.is_set():
            info = self._client.publish(topics.NDEATH.render(self._thing), self._wire.ndeath(), qos=QOS)
            try:
                info.wait_for_publish(timeout=timeout_s)
            except (RuntimeError, ValueError):
                log.warning("NDEATH not confirmed before shutdown")
        self._stopping.set()
        self._client.disconnect()
        self._lost.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = QOS) -> int | None:
        """Queue a publish (QoS 1 unless told); the mid to expect in `on_puback`, or None if refused."""
        with self._io_lock:
            info = self._client.publish(topic, payload, qos=qos)
        if info.rc not in _ACCEPTED:
            log.warning("publish refused by client", extra={"topic": topic, "rc": int(info.rc)})
            return None
        self.stats["published"] += 1
        return info.mid

    # -- connection loop (own thread) ------------------------------------------------------------

    def _run(self) -> None:
        host, port = self._cfg.mqtt.endpoint, self._cfg.mqtt.port
        first = True
        while not self._stopping.is_set():
            self._lost.clear()
            try:
                with self._io_lock:
                    if self._wire.fresh_session_per_connect and not first:
                        self._client = self._new_client()
                    first = False
                    # The will is made per CONNECT: its timestamp (and a Sparkplug bdSeq) belong to it.
                    self._client.will_set(topics.NDEATH.render(self._thing), self._wire.will(), qos=QOS)
                    self._client.connect(host, port, keepalive=self._cfg.mqtt.keepalive_s)
                    self._client.loop_start()
            except (OSError, ssl.SSLError, ValueError) as e:
                self._problem(f"connect to {host}:{port} failed: {e}")
            else:
                self._lost.wait()  # set by on_disconnect (or stop)
                self._client.loop_stop()
                self.connected.clear()
            if not self._stopping.is_set():
                self._stopping.wait(self._backoff.next_delay())

    def _problem(self, text: str) -> None:
        """Log a link problem once per change, so a long outage does not flood the log."""
        if text != self._last_problem:
            log.warning("mqtt link down", extra={"reason": text})
            self._last_problem = text

    # -- paho callbacks (paho's thread) ----------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self._problem(f"broker refused the connection: {reason}")
            return
        self._backoff.reset()
        self._last_problem = None
        self.stats["connects"] += 1
        log.info("mqtt connected", extra={"endpoint": self._cfg.mqtt.endpoint, "client_id": self._thing})
        with self._wire.lock:  # no message numbered in between (Sparkplug seq)
            self.session += 1
            client.publish(topics.NBIRTH.render(self._thing), self._wire.nbirth(), qos=self._wire.birth_qos)
            self._on_connected()
        client.subscribe(topics.NCMD.render(self._thing), qos=QOS)
        self.connected.set()
        self._on_online()  # births are queued first: the owner may now publish data

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self._lost.set()
        if was_connected and not self._stopping.is_set():
            self.stats["disconnects"] += 1
            self._problem(f"disconnected: {reason}")

    def _handle_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: object, properties: object
    ) -> None:
        self.stats["acked"] += 1
        self._on_puback(mid)

    def _handle_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            self._on_command(bytes(message.payload))
        except Exception:  # a bad command must never take the link down
            log.exception("command handler failed", extra={"topic": message.topic})
