"""Forward buffered readings to MQTT as DDATA, keeping a window of QoS 1 publishes in flight.

Its own thread and its own buffer cursor, so a slow or dead broker never holds up InfluxDB. The buffer
holds each reading's DDATA payload ready to send (encoded when it was appended), so draining a backlog
is reading rows and handing bytes to paho. A row is acknowledged in the buffer only when its PUBACK
arrived (paho `on_publish` mid -> row id). Acks are committed in batches, one transaction per burst of
PUBACKs: an ack lost to kill -9 only means the row is sent again (a duplicate, not a gap).

Each in-flight message keeps the `perf_counter` of its publish and of its PUBACK (two clock reads per
message), so `on_timed` can split delivery latency into append -> publish -> PUBACK -> ack committed
(bench/drain.py reports that budget).

Alarm/output events live in the buffer too (`collector.event_queue`, derived with their reading):
published ahead of the data backlog so an alarm is not stuck behind hours of replay, at most
EVENT_WINDOW in flight, each deleted from the buffer only when its PUBACK arrived. DBIRTH carries
each meter's register-map verdict and is re-published when it changes.

The `Wire` (collector.wire) turns a row into the bytes to send. With Sparkplug B each message takes the
edge node's next `seq` as it is handed to paho, under `wire.lock`, so seq order is socket order; after a
reconnect every unacknowledged row is replayed from the buffer into the new session (new seq numbers,
`is_historical` when sampled before it). An NCMD `Node Control/Rebirth` re-sends NBIRTH and DBIRTHs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from collector import topics
from collector.buffer import Buffer, Entry
from collector.config import CollectorConfig, MeterConfig
from collector.mqtt_link import MqttLink
from collector.wire import JsonWire, Wire

log = logging.getLogger(__name__)

SINK = "mqtt"
_ACK_BATCH_WAIT_S = 0.005
EVENT_WINDOW = 32  # alarm/output events awaiting PUBACK at once

# (entry, publish time, PUBACK time), perf_counter seconds; with the commit time: `MqttSink.on_timed`.
Delivery = tuple[Entry, float, float]


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
        self._session = 0  # the link session whose publishes `_inflight` tracks
        self._thing = cfg.thing_name
        self._meters: list[MeterConfig] = list(cfg.meters)
        self._topics = {m.asset: topics.DDATA.render(self._thing, m.asset) for m in self._meters}
        self._buffer = buffer
        self._cursor = buffer.cursor(SINK)
        self._window = window
        self.on_delivered = on_delivered  # (entries, ack time ms): latency measurement hook
        self.on_timed: Callable[[Sequence[Delivery], float], None] | None = None  # latency budget hook
        self._inflight: dict[int, tuple[Entry, float]] = {}  # mid -> (row, published at), sink thread's
        self.last_delivered_ms: int | None = None  # sample time of the newest reading the broker has
        self._event_position = 0  # highest event id handed to paho in this session
        self._event_inflight: dict[int, int] = {}  # mid -> event id, sink thread's
        self._verdicts: dict[str, dict[str, Any]] = {}  # asset -> register-map verdict for DBIRTH
        self._acks: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()  # (mid, PUBACK at)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_command: Callable[[bytes], None] = lambda payload: None
        self.link = MqttLink(
            cfg,
            on_puback=self._puback,
            on_connected=self._publish_births,
            on_command=self._command,
            on_online=self._wake.set,
            max_inflight=window + len(self._meters) + 2 + EVENT_WINDOW,
            wire=self._wire,
        )

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
        self.link.stop()
        self._commit_acks()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """New rows were appended: wake up instead of waiting for the poll tick."""
        self._wake.set()

    def status(self) -> dict[str, object]:
        return {
            "connected": self.link.connected.is_set(),
            "in_flight": len(self._inflight),
            **self.link.stats,
            "last_error": self.link.last_error.as_dict(),
        }

    def _topic(self, asset: str) -> str:
        topic = self._topics.get(asset)
        if topic is None:  # a row buffered for a meter since removed from the config: still delivered
            topic = self._topics[asset] = topics.DDATA.render(self._thing, asset)
        return topic

    def _puback(self, mid: int) -> None:
        self._acks.put((mid, time.perf_counter()))
        if not self._wake.is_set():  # a drain brings thousands of PUBACKs/s: notify once per wake-up
            self._wake.set()

    def set_verdict(self, asset: str, verdict: dict[str, Any]) -> None:
        """A meter's register-map verdict changed (any thread): re-announce its DBIRTH with it."""
        self._verdicts[asset] = verdict
        meter = next((m for m in self._meters if m.asset == asset), None)
        if meter is not None and self.link.connected.is_set():
            with self._wire.lock:  # Sparkplug B: the DBIRTH takes the edge node's next seq
                self._publish_birth(meter)

    def _publish_births(self) -> None:
        """DBIRTHs, called by the link right after its NBIRTH, under `wire.lock`."""
        for m in self._meters:
            self._publish_birth(m)

    def _publish_birth(self, m: MeterConfig) -> None:
        verdict = self._verdicts.get(m.asset)
        seq, buffer_id = self._buffer.last_seq(m.asset), self._buffer.buffer_id
        body = self._wire.dbirth(m.asset, m.breaker, seq, buffer_id=buffer_id, register_map=verdict)
        self.link.publish(topics.DBIRTH.render(self._thing, m.asset), body, qos=self._wire.birth_qos)

    def _publish_events(self) -> None:
        """Buffered alarm/output events, oldest first, before any DDATA of this pass."""
        room = EVENT_WINDOW - len(self._event_inflight)
        for event in self._buffer.next_events(self._event_position, room) if room > 0 else ():
            mid = self.link.publish(topics.EVENT.render(self._thing, event.asset), event.payload)
            if mid is None:  # not queued by paho: handed out again on the next pass
                return
            self._event_position = event.id
            self._event_inflight[mid] = event.id

    def _command(self, payload: bytes) -> None:
        """NCMD (paho's thread): a Sparkplug rebirth request is ours, anything else the collector's."""
        if self._wire.is_rebirth(payload):
            self.rebirth()
        else:
            self.on_command(payload)

    def rebirth(self) -> None:
        """NBIRTH + DBIRTHs again (same bdSeq, seq from 0); no DDATA goes out in between."""
        with self._wire.lock:
            nbirth = self._wire.nbirth()
            self.link.publish(topics.NBIRTH.render(self._thing), nbirth, qos=self._wire.birth_qos)
            self._publish_births()
        log.info("rebirth published", extra={"thing": self._thing})

    def _publish_device_deaths(self) -> None:
        """DDEATH per meter before a clean shutdown, where the wire has them (Sparkplug B)."""
        if not self.link.connected.is_set():
            return
        with self._wire.lock:
            for m in self._meters:
                body = self._wire.ddeath()
                if body is None:
                    return
                self.link.publish(topics.DDEATH.render(self._thing, m.asset), body, qos=self._wire.birth_qos)

    def _new_session(self) -> bool:
        """After a reconnect with a fresh session: what was in flight is replayed from the buffer."""
        if not self._wire.fresh_session_per_connect or self.link.session == self._session:
            return False
        self._commit_acks()
        self._inflight.clear()
        self._cursor.rewind(0)
        self._event_inflight.clear()
        self._event_position = 0
        self._session = self.link.session
        return True

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            batch = self._window // 4
            if self._acks.qsize() < batch and len(self._inflight) - self._acks.qsize() >= batch:
                # Many PUBACKs due (a backlog drain): let them accumulate a moment, one SQLite commit
                # per batch, not per message. Live traffic (a few in flight) is acked at once.
                self._stopping.wait(_ACK_BATCH_WAIT_S)
            self._commit_acks()
            if self.link.connected.is_set():
                self._new_session()
                self._publish_events()
                self._fill_window()

    def _commit_acks(self) -> None:
        delivered: list[Delivery] = []
        events: list[int] = []
        while True:
            try:
                mid, acked_at = self._acks.get_nowait()
            except queue.Empty:
                break
            sent = self._inflight.pop(mid, None)
            if sent is not None:  # births and NDEATH have no row
                delivered.append((sent[0], sent[1], acked_at))
            elif mid in self._event_inflight:
                events.append(self._event_inflight.pop(mid))
        self._buffer.ack_events(events)
        if delivered:
            self._cursor.ack([d[0].id for d in delivered])
            newest = max(d[0].timestamp_ms for d in delivered)
            self.last_delivered_ms = max(self.last_delivered_ms or 0, newest)
            if self.on_timed is not None:
                self.on_timed(delivered, time.perf_counter())
            if self.on_delivered is not None:
                self.on_delivered([d[0] for d in delivered], int(time.time() * 1000))

    def _fill_window(self) -> None:
        room = self._window - len(self._inflight)
        if room < max(1, self._window // 4) and self._inflight:
            return  # refill in chunks: fewer, larger buffer reads
        buffer_id = self._buffer.buffer_id
        for entry in self._cursor.next_batch(room):
            with self._wire.lock:
                if self._wire.fresh_session_per_connect and (
                    not self.link.connected.is_set() or self.link.session != self._session
                ):
                    self._cursor.rewind(entry.id - 1)  # the session ended: the next one replays it
                    return
                body = self._wire.ddata(entry, buffer_id=buffer_id)
                mid = self.link.publish(self._topic(entry.asset), body)
            if mid is None:
                # Not queued by paho: hand this row (and those after it) out again on the next pass.
                self._cursor.rewind(entry.id - 1)
                return
            self._inflight[mid] = (entry, time.perf_counter())
