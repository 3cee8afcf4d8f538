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
- The backoff starts over only after a connection that stayed up `stable_after_s`: a CONNACK alone
  proves nothing. A broker that accepts and then drops the client (AWS IoT when the policy denies the
  client id) would otherwise get a reconnect storm, which AWS IoT throttles per client id.
  Connections dropped within `early_drop_s` of their CONNACK are counted; `EARLY_DROPS_REPORTED` in a
  row are reported as what they most likely are: the broker rejects this identity (certificate /
  client id) or its policy.
- `publish` hands back the paho message id; `on_puback(mid)` fires when the broker acknowledged it.
  paho keeps unacknowledged QoS 1 messages and resends them (DUP) after a reconnect, so a message
  accepted by `publish` is eventually acknowledged or the process dies (and the buffer replays it).
- Every failure is classified (`collector.sink_errors`) into `last_error`: an expired certificate, a
  connection closed before CONNACK or right after it (AWS IoT's answer to a policy that does not allow
  the client), a CONNACK "not authorized", a refused connection, an untrusted broker certificate.
- Other owners may `add_route(topic, handler)` before `start()` (the named shadow does): the topic is
  subscribed after NCMD at every CONNACK, its messages go to the handler, and `on_routes_ready`
  callbacks run once the broker granted those subscriptions (SUBACK) in each session.
- What the births, the will and NDEATH contain is the `Wire`'s business (`collector.wire`). A Sparkplug B
  wire numbers messages per MQTT session, so stale publishes of the last session must not be resent
  into the next one: with `wire.fresh_session_per_connect` each CONNECT uses a new paho client (paho
  keeps no old publishes) and the owner replays what was not acknowledged from its buffer (`session`).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from collector import topics
from collector.backoff import Backoff
from collector.config import CollectorConfig
from collector.sink_errors import LastError, certificate_problem, network_kind
from collector.wire import JsonWire, Wire

log = logging.getLogger(__name__)

QOS = 1
_ACCEPTED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
STABLE_AFTER_S = 30.0  # a connection up this long resets the backoff
EARLY_DROP_S = 5.0  # a drop this soon after CONNACK counts as "dropped right after CONNACK"
EARLY_DROPS_REPORTED = 3  # in a row: reported as an identity or policy problem
IDENTITY_PROBLEM = "broker drops the connection right after CONNACK: identity or policy"
CLOSED_BEFORE_CONNACK = (
    "broker closed the connection before CONNACK: the certificate is inactive or not attached to the "
    "thing, or the IoT policy does not allow iot:Connect for client id {client_id!r}"
)
_NOT_AUTHORIZED_CODES = (134, 135)  # MQTT 3.1.1 CONNACK 4 and 5, as paho's reason codes


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
        stable_after_s: float = STABLE_AFTER_S,
        early_drop_s: float = EARLY_DROP_S,
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
        self.last_error = LastError()
        self._connack_refused = False  # this connection's CONNACK said no: its close is not news
        self._stable_after_s = stable_after_s
        self._early_drop_s = early_drop_s
        self._connacked_at: float | None = None  # monotonic time of this connection's CONNACK
        self._early_drops_in_a_row = 0
        self.identity_suspected = False  # EARLY_DROPS_REPORTED drops in a row right after CONNACK
        self._routes: dict[str, Callable[[bytes], None]] = {}  # topic -> handler (paho's thread)
        self._routes_ready: list[Callable[[], None]] = []
        self._routes_mid: int | None = None  # the SUBSCRIBE of this session's routes
        self._stats_lock = threading.Lock()  # counted from the sink thread and paho's thread
        self.stats = {"connects": 0, "disconnects": 0, "early_drops": 0, "published": 0, "acked": 0}
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
        client.on_subscribe = self._handle_subscribe
        return client

    def add_route(self, topic: str, handler: Callable[[bytes], None]) -> None:
        """Before `start()`: subscribe to `topic` in every session and hand its messages to `handler`."""
        self._routes[topic] = handler

    def on_routes_ready(self, callback: Callable[[], None]) -> None:
        """Call `callback` (paho's thread) once the routes' subscriptions are granted, in each session."""
        self._routes_ready.append(callback)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Graceful stop: publish NDEATH ourselves (a clean DISCONNECT suppresses the will), then close."""
        if self.connected.is_set():
            info = self._send(self._client, topics.NDEATH.render(self._thing), self._wire.ndeath(), QOS)
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
            info = self._send(self._client, topic, payload, qos)
        if info.rc not in _ACCEPTED:
            log.warning("publish refused by client", extra={"topic": topic, "rc": int(info.rc)})
            return None
        return info.mid

    def _send(self, client: mqtt.Client, topic: str, payload: bytes, qos: int) -> mqtt.MQTTMessageInfo:
        """Every publish, births included, counted as published BEFORE it can be acknowledged: `acked`
        never runs ahead of `published`, even when the PUBACK beats this thread back. (paho reports a
        QoS 0 publish, a Sparkplug B birth, through the same `on_publish` once it is written.)"""
        self._count("published")
        info = client.publish(topic, payload, qos=qos)
        if info.rc not in _ACCEPTED:
            self._count("published", -1)
        return info

    def _count(self, name: str, delta: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] += delta

    # -- connection loop (own thread) ------------------------------------------------------------

    def _run(self) -> None:
        host, port = self._cfg.mqtt.endpoint, self._cfg.mqtt.port
        first = True
        while not self._stopping.is_set():
            self._lost.clear()
            self._connack_refused = False
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
                kind = network_kind(e)
                hint = f" (mqtt.ca_file {self._cfg.mqtt.ca_file})" if kind == "server_certificate" else ""
                self._problem(kind, f"connect to {host}:{port} failed: {e}{hint}")
            else:
                self._lost.wait()  # set by on_disconnect (or stop)
                self._client.loop_stop()
                self.connected.clear()
                self._judge_connection()
            if not self._stopping.is_set():
                self._stopping.wait(self._backoff.next_delay())

    def _judge_connection(self) -> None:
        """After a connection ended: reset the backoff if it was stable, count it if it died at birth."""
        connacked_at, self._connacked_at = self._connacked_at, None
        if connacked_at is None or self._stopping.is_set():
            return  # never accepted (refused, TLS failure): plain backoff
        up_s = time.monotonic() - connacked_at
        if up_s >= self._stable_after_s:
            self._backoff.reset()
        if up_s >= self._early_drop_s:
            self._early_drops_in_a_row = 0
            self.identity_suspected = False
            return
        self._early_drops_in_a_row += 1
        self._count("early_drops")
        if self._early_drops_in_a_row >= EARLY_DROPS_REPORTED:
            self._problem("policy", IDENTITY_PROBLEM)
        if self._early_drops_in_a_row == EARLY_DROPS_REPORTED:
            self.identity_suspected = True
            log.error(
                IDENTITY_PROBLEM,
                extra={
                    "client_id": self._thing,
                    "drops_in_a_row": self._early_drops_in_a_row,
                    "hint": (
                        "the broker accepts the TLS session, then closes it: check that the certificate "
                        f"is active and attached to thing {self._thing!r}, that its CN is the thing name, "
                        f"and that the IoT policy allows iot:Connect for client id {self._thing!r} and "
                        "iot:Publish/iot:Subscribe/iot:Receive on its topics"
                    ),
                },
            )

    def _problem(self, kind: str, text: str) -> None:
        """Record a link problem as `last_error` and log it once per change, so a long outage does not
        flood the log. A certificate outside its validity is the cause whatever the socket said."""
        expired = certificate_problem(self._cfg.mqtt.cert_file)
        if expired is not None:
            kind, text = expired
        self.last_error.set(kind, text)
        if text != self._last_problem:
            log.warning("mqtt link down", extra={"reason": text, "kind": kind})
            self._last_problem = text

    # -- paho callbacks (paho's thread) ----------------------------------------------------------

    def _handle_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self._connack_refused = True
            code = getattr(reason, "value", None)
            kind = "not_authorized" if code in _NOT_AUTHORIZED_CODES else "connection_refused"
            self._problem(kind, f"broker refused the connection in its CONNACK: {reason}")
            return
        self._connacked_at = time.monotonic()
        self._last_problem = None
        self._count("connects")
        if not self.identity_suspected:  # while suspected, one error line says it all, not one per retry
            log.info("mqtt connected", extra={"endpoint": self._cfg.mqtt.endpoint, "client_id": self._thing})
        with self._wire.lock:  # no message numbered in between (Sparkplug seq)
            self.session += 1
            self._send(client, topics.NBIRTH.render(self._thing), self._wire.nbirth(), self._wire.birth_qos)
            self._on_connected()
        client.subscribe(topics.NCMD.render(self._thing), qos=QOS)
        if self._routes:
            _, self._routes_mid = client.subscribe([(topic, QOS) for topic in self._routes])
        self.connected.set()
        self._on_online()  # births are queued first: the owner may now publish data

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        was_connected = self.connected.is_set()
        before_connack = self._connacked_at is None
        self.connected.clear()
        if was_connected and not self._stopping.is_set():
            self._count("disconnects")
            self._problem("connection_lost", f"disconnected: {reason}")
        elif before_connack and not self._connack_refused and not self._stopping.is_set():
            self._problem("policy", CLOSED_BEFORE_CONNACK.format(client_id=self._thing))
        self._lost.set()

    def _handle_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: object, properties: object
    ) -> None:
        self._count("acked")
        self._on_puback(mid)

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: object, properties: object
    ) -> None:
        if mid != self._routes_mid:
            return
        for callback in self._routes_ready:
            try:
                callback()
            except Exception:  # an owner's bug must never take the link down
                log.exception("routes-ready callback failed")

    def _handle_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            self._routes.get(message.topic, self._on_command)(bytes(message.payload))
        except Exception:  # a bad command must never take the link down
            log.exception("command handler failed", extra={"topic": message.topic})
