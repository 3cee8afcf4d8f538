"""Forward buffered readings to MQTT as DDATA; a row leaves the buffer only once the broker has it.

Its own thread and its own buffer cursor, so a slow or dead broker never holds up InfluxDB. The buffer
holds each reading's DDATA payload ready to send (encoded when it was appended), so draining a backlog
is reading rows and handing bytes to paho. Up to `window` rows are in flight (written, not confirmed).

When a row counts as received by the broker (then it is acknowledged in the buffer):
- QoS 1 DDATA (`json`, and `sparkplug-b` with `mqtt.ddata_qos: 1`): its PUBACK (paho `on_publish`).
- QoS 0 DDATA (`sparkplug-b`, the specification's QoS): the UNSUBACK of a later UNSUBSCRIBE written on
  the same MQTT connection (`MqttLink.confirm`). TCP delivers in order and a broker reads a connection's
  packets in order, so the UNSUBACK proves every DDATA written before it was read by the broker; a row
  whose confirmation never came (connection lost, process killed) is still in the buffer and is sent
  again in the next session. Confirmations go out per quarter window while a backlog drains, and
  otherwise once the oldest unconfirmed row is CONFIRM_DELAY_S old and none is outstanding: at most one
  UNSUBSCRIBE per CONFIRM_DELAY_S of live data, whatever the number of meters. At a clean stop the
  NDEATH (QoS 1, the last packet) confirms what is left.
Acks are committed in batches, one transaction per burst: an ack lost to kill -9 only means the row is
sent again (a duplicate, not a gap).

Each in-flight message keeps the `perf_counter` of its publish and of its acknowledgement (two clock
reads per message), so `on_timed` can split delivery latency into append -> publish -> ack -> committed
(bench/drain.py reports that budget).

Alarm/output events live in the buffer too (`collector.event_queue`, derived with their reading):
published ahead of the data backlog so an alarm is not stuck behind hours of replay, at most
EVENT_WINDOW in flight, each deleted from the buffer only when its PUBACK arrived (QoS 1: events are
not Sparkplug messages).

The `Wire` (collector.wire) turns a row into the bytes to send. With Sparkplug B each message takes the
edge node's next `seq` as it is handed to paho, under `wire.lock`, so seq order is socket order; after a
reconnect every unacknowledged row is replayed from the buffer into the new session. An NCMD
`Node Control/Rebirth` re-sends NBIRTH and DBIRTHs. Sparkplug B devices (`wire.device_sessions`):
- DBIRTH carries the device's last reading as current values (`note_reading`), null only without one;
- a meter with no reading for `device_death_after_s` (3 poll intervals, at least 5 s) gets a DDEATH,
  once every row it left in the buffer has been sent; its next reading brings a DBIRTH first
  (`tck-id-operational-behavior-device-ddeath`). A row of a device not born in this session (a meter
  removed from the config with rows still buffered, a dead meter's backlog) brings its DBIRTH too;
- a row older than the values its device's DBIRTH announced is sent `is_historical`: a host keeps the
  current value, and the backlog lands in its history;
- a changed register-map verdict is announced by a new birth sequence (NBIRTH, then every DBIRTH),
  at most one per `VERDICT_REBIRTH_MIN_INTERVAL_S`: a DBIRTH after DDATA would break the birth order
  (`tck-id-payloads-dbirth-order`). The `json` encoding re-publishes the meter's DBIRTH instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from collector import topics
from collector.buffer import Buffer, Entry
from collector.config import CollectorConfig, MeterConfig
from collector.mqtt_link import MqttLink
from collector.reading import Reading
from collector.wire import JsonWire, Wire

log = logging.getLogger(__name__)

SINK = "mqtt"
_ACK_BATCH_WAIT_S = 0.005
# Live QoS 0 DDATA: rows written within this long share one confirmation (UNSUBSCRIBE + UNSUBACK), so its
# cost per reading falls as the fleet grows; a row then waits at most about this much longer for its ack
# in the buffer (its delivery is not delayed). docs/BENCHMARKS.md measures the cost.
CONFIRM_DELAY_S = 0.2
DEVICE_DEATH_POLLS = 3  # a meter silent for this many poll intervals is dead...
DEVICE_DEATH_MIN_S = 5.0  # ...and for at least this long (a reconnecting meter takes a few seconds)
VERDICT_REBIRTH_MIN_INTERVAL_S = 10.0
EVENT_WINDOW = 32  # alarm/output events awaiting PUBACK at once

# (entry, publish time, ack time), perf_counter seconds; with the commit time: `MqttSink.on_timed`.
Delivery = tuple[Entry, float, float]
_Sent = tuple[Entry, float]  # (row, published at)


def device_death_after_s(poll_interval_s: float) -> float:
    """How long a meter may stay silent before its DDEATH."""
    return max(DEVICE_DEATH_POLLS * poll_interval_s, DEVICE_DEATH_MIN_S)


def first_births_wait_s(poll_interval_s: float) -> float:
    """How long the first births after a start may wait for the first poll of every meter: the first
    poll is due at once and gives up after at most 5 s (`collector.poller.socket_timeout_for`)."""
    return min(poll_interval_s, 5.0) + 1.0


@dataclass
class _Device:
    """One meter as the Sparkplug session sees it. `born`/`values_at` change under `wire.lock` only."""

    breaker: str
    last_reading: Reading | None = None
    last_seen: float = float("-inf")  # monotonic time of the last reading
    born: bool = False  # announced by a DBIRTH in this Sparkplug session, no DDEATH since
    values_at: int = 0  # timestamp of the values its DBIRTH carried: rows older are historical
    in_service: bool = True  # false: taken out of service remotely (`collector.settings`), not polled


class MqttSink:
    def __init__(
        self,
        cfg: CollectorConfig,
        buffer: Buffer,
        window: int = 256,
        on_delivered: Callable[[Sequence[Entry], int], None] | None = None,
        wire: Wire | None = None,
    ) -> None:
        self._wire: Wire = wire or JsonWire(cfg)
        self._session = 0  # the link session whose publishes the sink tracks
        self._thing = cfg.thing_name
        self._meters: list[MeterConfig] = list(cfg.meters)
        started = time.monotonic()  # every meter gets a full death period to answer after a start
        self._devices = {m.asset: _Device(m.breaker, last_seen=started) for m in self._meters}
        self.poll_interval_s = cfg.poll_interval_s
        self._topics = {m.asset: topics.DDATA.render(self._thing, m.asset) for m in self._meters}
        self._buffer = buffer
        self._cursor = buffer.cursor(SINK)
        self._window = window
        self._chunk = max(1, window // 4)
        self.on_delivered = on_delivered  # (entries, ack time ms): latency measurement hook
        self.on_timed: Callable[[Sequence[Delivery], float], None] | None = None  # latency budget hook
        self._inflight: dict[int, _Sent] = {}  # QoS 1 DDATA: mid -> row; sink thread's
        self._unconfirmed: list[_Sent] = []  # QoS 0 DDATA written since the last confirm()
        self._confirms: dict[int, list[_Sent]] = {}  # confirm (or final NDEATH) mid -> rows it covers
        self._confirming = 0  # rows in `_confirms`
        self.last_delivered_ms: int | None = None  # sample time of the newest reading the broker has
        self._event_position = 0  # highest event id handed to paho in this session
        self._event_inflight: dict[int, int] = {}  # mid -> event id, sink thread's
        self._verdicts: dict[str, dict[str, Any]] = {}  # asset -> register-map verdict for DBIRTH
        self._announced: dict[str, dict[str, Any] | None] = {}  # asset -> verdict its last DBIRTH carried
        self._last_verdict_rebirth = float("-inf")
        self._acks: queue.SimpleQueue[tuple[str, int, float]] = queue.SimpleQueue()  # (kind, mid, at)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_command: Callable[[bytes], None] = lambda payload: None  # a JSON NCMD
        self.on_write: Callable[[dict[str, object]], None] = lambda writes: None  # Sparkplug settings writes
        self.on_refused: Callable[[str], None] = lambda reason: None  # a Sparkplug NCMD it cannot read
        self.link = MqttLink(
            cfg,
            on_puback=self._puback,
            on_connected=self._publish_births,
            on_command=self._command,
            on_online=self._wake.set,
            on_confirmed=self._confirmed,
            max_inflight=window + len(self._meters) + 2 + EVENT_WINDOW,
            wire=self._wire,
        )
        self._started = started
        if self._wire.device_sessions:
            self.link.births_gate = self._births_ready

    def start(self) -> None:
        self.link.start()
        self._thread = threading.Thread(target=self._run, name="mqtt-sink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._publish_device_deaths()
        self.link.stop(on_ndeath=self._confirm_with)
        self._commit_acks()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """New rows were appended: wake up instead of waiting for the poll tick."""
        self._wake.set()

    def note_reading(self, reading: Reading) -> None:
        """A meter answered (any thread; before its row is appended): its current values for DBIRTH."""
        device = self._devices.get(reading.asset)
        if device is not None:
            device.last_reading, device.last_seen = reading, time.monotonic()

    def in_flight(self) -> int:
        """Rows written and not yet confirmed by the broker."""
        return len(self._inflight) + len(self._unconfirmed) + self._confirming

    def status(self) -> dict[str, object]:
        link = self.link
        if link.connected.is_set():
            state = "online"
        elif link.primary_host_id is not None and link.mqtt_connected:
            state = "waiting_for_primary_host"
        else:
            state = "disconnected"
        host = link.host_state
        return {
            "connected": link.connected.is_set(),
            "state": state,
            "in_flight": self.in_flight(),
            "ddata_qos": self._wire.ddata_qos,
            "primary_host": None if link.primary_host_id is None else {
                "id": link.primary_host_id,
                "online": None if host is None else host.online,
                "timestamp": None if host is None else host.timestamp,
            },
            "dead_devices": sorted(a for a, d in self._devices.items() if self._is_dead(d)),
            "subscriptions_refused": list(link.subscriptions_refused),
            **link.stats,
            "last_error": link.last_error.as_dict(),
        }

    def _topic(self, asset: str) -> str:
        topic = self._topics.get(asset)
        if topic is None:  # a row buffered for a meter since removed from the config: still delivered
            topic = self._topics[asset] = topics.DDATA.render(self._thing, asset)
        return topic

    def _puback(self, mid: int) -> None:
        self._ack("puback", mid)

    def _confirmed(self, mid: int) -> None:
        self._ack("confirm", mid)

    def _ack(self, kind: str, mid: int) -> None:
        self._acks.put((kind, mid, time.perf_counter()))
        if not self._wake.is_set():  # a drain brings thousands of acks/s: notify once per wake-up
            self._wake.set()

    def set_verdict(self, asset: str, verdict: dict[str, Any]) -> None:
        """A meter's register-map verdict changed (any thread): announce it in a new DBIRTH."""
        self._verdicts[asset] = verdict
        if self._wire.device_sessions:  # Sparkplug B: a new birth sequence, from the sink thread
            self._wake.set()
            return
        meter = next((m for m in self._meters if m.asset == asset), None)
        if meter is not None and self.link.connected.is_set():
            with self._wire.lock:
                self._publish_birth(asset, meter.breaker)

    # -- births and deaths (under wire.lock) --------------------------------------------------------

    def _publish_births(self) -> None:
        """DBIRTHs of a new session, called by the link right after its NBIRTH, under `wire.lock`.

        Sparkplug B: the meters that answered lately; the others are born when a row of theirs goes out
        or they answer again. JSON: every configured meter, as the JSON contract has it.
        """
        for asset, device in self._devices.items():
            device.born = False
            if not self._wire.device_sessions or not self._is_dead(device):
                self._publish_birth(asset, device.breaker)

    def _publish_birth(self, asset: str, breaker: str, session: int | None = None) -> None:
        device = self._device(asset)
        current = device.last_reading if not self._is_dead(device) else None
        seq, buffer_id = self._buffer.last_seq(asset), self._buffer.buffer_id
        verdict = self._announced[asset] = self._verdicts.get(asset)
        body = self._wire.dbirth(
            asset, breaker, seq, buffer_id=buffer_id, register_map=verdict, current=current)
        self.link.publish(topics.DBIRTH.render(self._thing, asset), body, qos=self._wire.birth_qos,
                          session=session)
        device.born = True
        device.values_at = current.timestamp_ms if current is not None else int(time.time() * 1000)

    def _births_ready(self) -> bool:
        """Sparkplug B births wait, after a start, until every meter answered once (so DBIRTH carries its
        values and register-map verdict) or `first_births_wait_s` passed: never longer."""
        if time.monotonic() - self._started >= first_births_wait_s(self.poll_interval_s):
            return True
        return all(self._devices[m.asset].last_reading is not None for m in self._meters)

    def _device(self, asset: str) -> _Device:
        device = self._devices.get(asset)
        if device is None:  # rows of a meter since removed from the config: born only to carry them
            device = self._devices[asset] = _Device(breaker="")
        return device

    def _is_dead(self, device: _Device) -> bool:
        silent_s = time.monotonic() - device.last_seen
        return not device.in_service or silent_s > device_death_after_s(self.poll_interval_s)

    def _command(self, payload: bytes) -> None:
        """NCMD (paho's thread). Sparkplug B: a rebirth request is ours, writes of settings and what
        could not be read go to the collector. JSON: the collector reads it."""
        command = self._wire.command(payload)
        if command is None:
            self.on_command(payload)
            return
        if command.problems:
            self.on_refused("; ".join(command.problems))
        if command.writes:
            self.on_write(command.writes)
        if command.rebirth:
            self.rebirth()

    def publish_settings(self) -> None:
        """NDATA with the settings whose new values hosts have not been told yet (any thread)."""
        with self._wire.lock:
            if not self.link.connected.is_set():
                return  # the next NBIRTH carries the current values
            body = self._wire.ndata()
            if body is not None:
                self.link.publish(topics.NDATA.render(self._thing), body, qos=self._wire.birth_qos,
                                  session=self.link.session)

    def set_out_of_service(self, assets: Iterable[str]) -> None:
        """Meters taken out of service (any thread): dead at once, DDEATH once their rows are out."""
        out = set(assets)
        for asset, device in self._devices.items():
            device.in_service = asset not in out
        self._wake.set()

    def rebirth(self) -> None:
        """NBIRTH + DBIRTHs of the born devices again (same bdSeq, seq from 0); no DDATA in between."""
        with self._wire.lock:
            if not self.link.connected.is_set():
                return  # no session: the next one begins with births anyway
            session = self.link.session
            nbirth = self._wire.nbirth()
            self.link.publish(topics.NBIRTH.render(self._thing), nbirth, qos=self._wire.birth_qos,
                              session=session)
            for asset, device in self._devices.items():
                if device.born or not self._wire.device_sessions:
                    self._publish_birth(asset, device.breaker, session)
        log.info("rebirth published", extra={"thing": self._thing})

    def _rebirth_for_verdicts(self) -> None:
        """A new birth sequence when a born meter's verdict is not the one its DBIRTH announced."""
        changed = [
            a for a, d in self._devices.items() if d.born and self._verdicts.get(a) != self._announced.get(a)
        ]
        if not changed or time.monotonic() - self._last_verdict_rebirth < VERDICT_REBIRTH_MIN_INTERVAL_S:
            return
        self._last_verdict_rebirth = time.monotonic()
        log.info("register-map verdict changed: rebirth", extra={"assets": changed})
        self.rebirth()

    def _publish_device_deaths(self, only_dead: bool = False) -> None:
        """DDEATH per born meter (only the silent ones while running; all at a clean stop)."""
        if not self._wire.device_sessions:
            return
        with self._wire.lock:
            if not self.link.connected.is_set():
                return
            session = self.link.session
            for asset, device in self._devices.items():
                if not device.born or (only_dead and not self._is_dead(device)):
                    continue
                body = self._wire.ddeath()
                assert body is not None
                self.link.publish(topics.DDEATH.render(self._thing, asset), body, qos=self._wire.birth_qos,
                                  session=session)
                device.born = False
                if only_dead:
                    log.warning("meter silent: DDEATH published", extra={
                        "asset": asset, "silent_for_s": round(time.monotonic() - device.last_seen, 1)})

    # -- the sink thread ----------------------------------------------------------------------------

    def _publish_events(self) -> None:
        """Buffered alarm/output events, oldest first, before any DDATA of this pass."""
        room = EVENT_WINDOW - len(self._event_inflight)
        for event in self._buffer.next_events(self._event_position, room) if room > 0 else ():
            mid = self.link.publish(topics.EVENT.render(self._thing, event.asset), event.payload)
            if mid is None:  # not queued by paho: handed out again on the next pass
                return
            self._event_position = event.id
            self._event_inflight[mid] = event.id

    def _new_session(self) -> bool:
        """After a reconnect with a fresh session: what was not confirmed is replayed from the buffer."""
        if not self._wire.fresh_session_per_connect or self.link.session == self._session:
            return False
        self._commit_acks()
        self._inflight.clear()
        self._unconfirmed.clear()
        self._confirms.clear()
        self._confirming = 0
        self._cursor.rewind(0)
        self._event_inflight.clear()
        self._event_position = 0
        self._session = self.link.session
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(CONFIRM_DELAY_S if self._unconfirmed else 0.5)
            self._wake.clear()
            batch = self._chunk
            due = self._acks.qsize()
            if due < batch and self.in_flight() - due >= batch:
                # Many acks due (a backlog drain): let them accumulate a moment, one SQLite commit
                # per batch, not per message. Live traffic (a few in flight) is acked at once.
                self._stopping.wait(_ACK_BATCH_WAIT_S)
            self._commit_acks()
            if not self.link.connected.is_set():
                self.link.begin_when_ready()
            if self.link.connected.is_set():
                self._new_session()
                self._rebirth_for_verdicts()
                self._publish_events()
                if self._fill_window():
                    self._publish_device_deaths(only_dead=True)
                self._confirm_due()

    def _commit_acks(self) -> None:
        delivered: list[Delivery] = []
        events: list[int] = []
        while True:
            try:
                kind, mid, acked_at = self._acks.get_nowait()
            except queue.Empty:
                break
            sent = self._inflight.pop(mid, None) if kind == "puback" else None
            if sent is not None:
                delivered.append((sent[0], sent[1], acked_at))
                continue
            if kind == "puback" and mid in self._event_inflight:
                events.append(self._event_inflight.pop(mid))
                continue
            covered = self._confirms.pop(mid, None)  # UNSUBACK, or the final NDEATH's PUBACK
            if covered is not None:
                self._confirming -= len(covered)
                delivered.extend((entry, published, acked_at) for entry, published in covered)
        self._buffer.ack_events(events)
        if delivered:
            self._cursor.ack([d[0].id for d in delivered])
            newest = max(d[0].timestamp_ms for d in delivered)
            self.last_delivered_ms = max(self.last_delivered_ms or 0, newest)
            if self.on_timed is not None:
                self.on_timed(delivered, time.perf_counter())
            if self.on_delivered is not None:
                self.on_delivered([d[0] for d in delivered], int(time.time() * 1000))

    def _confirm_due(self) -> None:
        """Live QoS 0 rows: one confirmation for what CONFIRM_DELAY_S gathered, none while one is out."""
        if self._unconfirmed and not self._confirms and \
                time.perf_counter() - self._unconfirmed[0][1] >= CONFIRM_DELAY_S:
            self._confirm(self._session)

    def _confirm(self, session: int) -> None:
        """Ask the broker to confirm the QoS 0 rows written since the last request."""
        if not self._unconfirmed:
            return
        mid = self.link.confirm(session)
        if mid is not None:  # else the connection is gone: the rows are replayed in the next session
            self._confirm_with(mid)

    def _confirm_with(self, mid: int) -> None:
        self._confirms[mid] = self._unconfirmed
        self._confirming += len(self._unconfirmed)
        self._unconfirmed = []

    def _fill_window(self) -> bool:
        """Hand rows to paho while the window has room; True once every buffered row has been handed out."""
        room = self._window - self.in_flight()
        if room < self._chunk and self.in_flight():
            return False  # refill in chunks: fewer, larger buffer reads
        buffer_id, qos = self._buffer.buffer_id, self._wire.ddata_qos
        # Sparkplug B rows belong to one session (its seq): never written onto the next connection.
        session = self._session if self._wire.fresh_session_per_connect else None
        batch = self._cursor.next_batch(room)
        for entry in batch:
            with self._wire.lock:
                if self._wire.fresh_session_per_connect and (
                    not self.link.connected.is_set() or self.link.session != session
                ):
                    self._cursor.rewind(entry.id - 1)  # the session ended: the next one replays it
                    return False
                historical = False
                if self._wire.device_sessions:
                    device = self._device(entry.asset)
                    if not device.born:
                        self._publish_birth(entry.asset, device.breaker, self._session)
                    historical = entry.timestamp_ms < device.values_at
                body = self._wire.ddata(entry, buffer_id=buffer_id, historical=historical)
                mid = self.link.publish(self._topic(entry.asset), body, qos=qos, session=session)
            if mid is None:
                # Not queued by paho: hand this row (and those after it) out again on the next pass.
                self._cursor.rewind(entry.id - 1)
                return False
            if qos:
                self._inflight[mid] = (entry, time.perf_counter())
                continue
            self._unconfirmed.append((entry, time.perf_counter()))
            if len(self._unconfirmed) >= self._chunk:
                self._confirm(self._session)
        return len(batch) < room
