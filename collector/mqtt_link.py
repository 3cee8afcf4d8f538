"""The one class wrapping paho-mqtt: TLS session to AWS IoT (or Mosquitto), births, last will, acks.

- MQTT 3.1.1, TLS 1.2+, client certificate; the server certificate is verified against `mqtt.ca_file`
  with hostname checking on.
- NDEATH is the last will (QoS 1). On every CONNACK the link subscribes to NCMD (and, with a Primary
  Host Application configured, to its STATE topic) and waits for the SUBACK, so a rebirth request sent
  in answer to the births cannot be missed (`tck-id-message-flow-edge-node-ncmd-subscribe`). Then it
  begins the Sparkplug session: NBIRTH, the owner's DBIRTHs (`on_connected`), and only then tells the
  owner it may publish data (`on_online`), so DDATA never precedes the births and a backlog drain
  starts at once. `connected` is set for exactly that span: births out, data may flow.
- Primary Host Application (`mqtt.primary_host_id`, Sparkplug B only): the session begins only once a
  valid STATE `{"online": true}` arrived on `spBv1.0/STATE/<id>` in this connection, valid meaning its
  `timestamp` is not older than the last STATE accepted (`tck-id-message-flow-edge-node-birth-publish-
  phid-wait*`). A valid `{"online": false}` during a session makes the link publish NDEATH and
  disconnect, then connect again at once and wait for the host (`...-phid-offline`,
  `tck-id-operational-behavior-edge-node-termination-host-offline*`); an older one is ignored. The
  last accepted timestamp is kept across connections (one MQTT server).
- `confirm()` sends an UNSUBSCRIBE of a topic filter nothing subscribes to; its UNSUBACK (`on_confirmed`
  with the same message id) proves the broker has read every packet written before it on this
  connection (TCP delivers in order, the broker reads a connection in order and must answer every
  UNSUBSCRIBE [MQTT-3.10.4-5]): the owner's acknowledgement for QoS 0 DDATA.
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
from paho.mqtt.reasoncodes import ReasonCode

from collector import sparkplug_b, topics
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
        on_confirmed: Callable[[int], None] = lambda mid: None,
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
        self._on_confirmed = on_confirmed
        # Primary Host Application: its STATE topic, the last accepted STATE (kept across connections)
        host = cfg.mqtt.primary_host_id if self._wire.encoding == "sparkplug-b" else None
        self.primary_host_id = host
        self._state_topic = topics.STATE.render(cfg.thing_name, host=host) if host else None
        self.host_state: sparkplug_b.HostState | None = None
        self._subscribe_mid: int | None = None
        self._subscribed = False  # SUBACK of this connection's subscriptions received
        self._born = False  # this connection's Sparkplug session began (births published)
        self._ready_client: mqtt.Client | None = None  # subscribed and host online, births not yet ready
        self.births_gate: Callable[[], bool] = lambda: True  # the owner: may the births go out now?
        self._reconnect_at_once = False  # the host went offline: connect again without backoff
        self.subscriptions_refused: list[str] = []  # topic filters the broker refused (last connection)
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
        self.stats = {
            "connects": 0, "disconnects": 0, "early_drops": 0, "published": 0, "acked": 0,
            "host_offline_disconnects": 0,
        }
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
        client.on_unsubscribe = self._handle_unsubscribe
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

    def stop(self, timeout_s: float = 3.0, on_ndeath: Callable[[int], None] = lambda mid: None) -> None:
        """Graceful stop: publish NDEATH ourselves (a clean DISCONNECT suppresses the will), then close.

        `on_ndeath(mid)` learns the NDEATH's message id before its PUBACK can arrive: being QoS 1 and the
        last packet before DISCONNECT, its PUBACK also confirms every QoS 0 DDATA written before it."""
        if self._client.is_connected():
            with self._wire.lock:  # nothing numbered after it
                self.connected.clear()
                info = self._send(self._client, topics.NDEATH.render(self._thing), self._wire.ndeath(), QOS)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                on_ndeath(info.mid)
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

    @property
    def mqtt_connected(self) -> bool:
        """CONNACK received and the connection not lost (the Sparkplug session may not have begun)."""
        return bool(self._client.is_connected())

    def publish(self, topic: str, payload: bytes, qos: int = QOS, session: int | None = None) -> int | None:
        """Queue a publish (QoS 1 unless told); the mid to expect in `on_puback`, or None if refused.

        With `session`, only into that Sparkplug session: None once it ended (its connection is gone),
        so nothing meant for one session is ever written onto the next connection."""
        with self._io_lock:
            if session is not None and not self._in_session(session):
                return None
            info = self._send(self._client, topic, payload, qos)
        if info.rc not in _ACCEPTED:
            log.warning("publish refused by client", extra={"topic": topic, "rc": int(info.rc)})
            return None
        return info.mid

    def confirm(self, session: int) -> int | None:
        """Ask the broker to confirm receipt of everything written so far in Sparkplug session
        `session`: the message id `on_confirmed` will report, or None when that session's connection
        is gone (its rows are then replayed in the next session)."""
        with self._io_lock:
            if not self._in_session(session):
                return None
            rc, mid = self._client.unsubscribe(topics.DELIVERY_CHECK.render(self._thing))
        return mid if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else None

    def _in_session(self, session: int) -> bool:
        """Session `session` is live; with `_io_lock` held `_client` is then its connection's client
        (a new client is made, under that lock, only after the connection ended, which clears
        `connected` before a new session can begin)."""
        return session == self.session and self.connected.is_set()

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
                    self._wire.connect_sent()  # connect() returns once the CONNECT packet is written
                    self._client.loop_start()
            except (OSError, ssl.SSLError, ValueError) as e:
                kind = network_kind(e)
                hint = f" (mqtt.ca_file {self._cfg.mqtt.ca_file})" if kind == "server_certificate" else ""
                self._problem(kind, f"connect to {host}:{port} failed: {e}{hint}")
            else:
                self._lost.wait()  # set by on_disconnect (or stop)
                self._client.loop_stop()
                self.connected.clear()
                if self._reconnect_at_once:  # left on purpose (host offline): no failure to back off from
                    self._reconnect_at_once, self._connacked_at = False, None
                    continue
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
        self._subscribed = self._born = False
        filters = [(topics.NCMD.render(self._thing), QOS)]
        if self._state_topic is not None:
            filters.append((self._state_topic, QOS))
        rc, self._subscribe_mid = client.subscribe(filters)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._problem("connection_lost", f"subscribe failed: {rc}")

    def _handle_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: list[ReasonCode], properties: object
    ) -> None:
        """SUBACK: NCMD (and STATE) are subscribed. Without a Primary Host the session begins now."""
        if mid == self._routes_mid:
            self._routes_granted()
            return
        if mid != self._subscribe_mid:
            return
        filters = [topics.NCMD.render(self._thing), *([self._state_topic] if self._state_topic else [])]
        self.subscriptions_refused = [f for f, rc in zip(filters, reasons, strict=False) if rc.is_failure]
        for refused in self.subscriptions_refused:
            log.error("broker refused the subscription", extra={
                "topic_filter": refused, "hint": "check the IoT policy's iot:Subscribe/iot:Receive for it"})
        self._subscribed = True
        if self._state_topic is not None:
            log.info("waiting for the primary host application", extra={"host_id": self.primary_host_id})
        self._try_begin(client)

    def _try_begin(self, client: mqtt.Client) -> None:
        """Begin the session now if the owner's `births_gate` agrees, else when `begin_when_ready` is
        called (from the owner's thread) and it does."""
        if self.births_gate():
            self._begin_session(client)
        else:
            self._ready_client = client
            self._on_online()  # wake the owner: it calls begin_when_ready once its births are ready

    def begin_when_ready(self) -> None:
        """Begin a session the broker side is ready for, once `births_gate()` (owner's thread)."""
        client = self._ready_client
        if client is not None and self.births_gate():
            self._begin_session(client)

    def _may_begin(self, client: mqtt.Client) -> bool:
        """This connection is subscribed, not yet born, and (with a Primary Host) the host is online."""
        host_online = self._state_topic is None or (self.host_state is not None and self.host_state.online)
        return (client is self._client and client.is_connected() and self._subscribed and not self._born
                and host_online)

    def _begin_session(self, client: mqtt.Client) -> None:
        """NBIRTH, the owner's DBIRTHs, then data: one Sparkplug session on this connection."""
        with self._wire.lock:  # no message numbered in between (Sparkplug seq); STATE decided under it
            if not self._may_begin(client):
                return
            self._ready_client = None
            self.session += 1
            self._born = True
            self._send(client, topics.NBIRTH.render(self._thing), self._wire.nbirth(), self._wire.birth_qos)
            self._on_connected()
            self.connected.set()
            if self._routes:  # non-Sparkplug subscriptions (the shadow) once the births are out
                _, self._routes_mid = client.subscribe([(topic, QOS) for topic in self._routes])
        self._on_online()  # births are queued first: the owner may now publish data

    def _on_state(self, client: mqtt.Client, payload: bytes) -> None:
        """A STATE message of the Primary Host Application (paho's thread)."""
        state = sparkplug_b.parse_state(payload)
        if state is None:
            shown = payload[:200].decode(errors="replace")
            log.warning("STATE message ignored: not {\"online\": <bool>, \"timestamp\": <ms>}",
                        extra={"host_id": self.primary_host_id, "payload": shown})
            return
        with self._wire.lock:  # a session begins or ends on one consistent view of the host
            last = self.host_state
            if last is not None and state.timestamp < last.timestamp:
                log.info("STATE message ignored: older than the last one", extra={
                    "host_id": self.primary_host_id, "timestamp": state.timestamp, "last": last.timestamp})
                return
            self.host_state = state
            leave = not state.online and self._born
            if not state.online:
                self._ready_client = None
        if state.online and self._subscribed and not self._born:
            log.info("primary host application online", extra={"host_id": self.primary_host_id})
            self._try_begin(client)
        elif leave:
            self._leave_for_host(client)

    def _leave_for_host(self, client: mqtt.Client) -> None:
        """The Primary Host went offline: NDEATH, DISCONNECT, and connect again at once to wait for it."""
        log.warning("primary host application offline: ending the Sparkplug session",
                    extra={"host_id": self.primary_host_id})
        with self._wire.lock:  # no DDATA after the NDEATH
            self.connected.clear()
            self._born = False
            self._send(client, topics.NDEATH.render(self._thing), self._wire.ndeath(), QOS)
        self._count("host_offline_disconnects")
        self._reconnect_at_once = True
        client.disconnect()

    def _handle_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        was_connected = self.connected.is_set()
        before_connack = self._connacked_at is None
        self.connected.clear()
        self._born = self._subscribed = False
        self._ready_client = None
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

    def _handle_unsubscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: object, properties: object
    ) -> None:
        self._on_confirmed(mid)

    def _routes_granted(self) -> None:
        for callback in self._routes_ready:
            try:
                callback()
            except Exception:  # an owner's bug must never take the link down
                log.exception("routes-ready callback failed")

    def _handle_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            if message.topic == self._state_topic:
                self._on_state(client, bytes(message.payload))
            else:
                self._routes.get(message.topic, self._on_command)(bytes(message.payload))
        except Exception:  # a bad message must never take the link down
            log.exception("message handler failed", extra={"topic": message.topic})
