"""The one seam where `mqtt.encoding` is chosen: what each MQTT message of the collector looks like.

`json` (default): the design note's Sparkplug-style JSON (`collector.payload`), DDATA `seq` per asset,
given when the reading is buffered, counting within the buffer file named by `buffer_id` (which every
JSON DDATA and DBIRTH carries). `sparkplug-b`: Sparkplug B 3.0 protobuf (`collector.sparkplug_b`),
`seq` per edge node, given when a message is published, `bdSeq` per MQTT CONNECT (Sparkplug's own
session identity: `buffer_id` is not sent, the buffer's `seq` is not either).

The buffer stores `ddata_row(...)`; the MQTT sink turns a stored row into the bytes to send with
`ddata(entry)`. A row written under the other encoding (the setting changed while a backlog was
buffered) is converted, so a consumer never receives the encoding it did not ask for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from collector import payload, sparkplug_b
from collector.buffer import Entry
from collector.config import CollectorConfig, Encoding
from collector.reading import Reading
from collector.settings import SettingSpec

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class SettingsView(Protocol):
    """What the wire reads of `collector.settings.Settings`."""

    def specs(self) -> list[SettingSpec]: ...
    def values(self) -> dict[str, object]: ...


class Wire(Protocol):
    """Payloads of one collector. `lock` serializes (seq, publish) pairs when seq is per edge node."""

    encoding: Encoding
    birth_qos: int
    ddata_qos: int  # 1: each DDATA is confirmed by its PUBACK; 0: by a later acknowledged packet
    fresh_session_per_connect: bool  # drop unacknowledged publishes at reconnect, replay from the buffer
    device_sessions: bool  # DDEATH for a silent meter, DBIRTH when it answers again (Sparkplug B)
    lock: threading.Lock

    def ddata_row(self, reading: Reading, seq: int, buffer_id: str) -> bytes: ...
    def will(self) -> bytes: ...
    def connect_sent(self) -> None: ...
    def nbirth(self) -> bytes: ...
    def ndeath(self) -> bytes: ...
    def dbirth(self, asset: str, breaker: str, last_seq: int, *, buffer_id: str,
               register_map: dict[str, Any] | None = None, current: Reading | None = None) -> bytes: ...
    def ddata(self, entry: Entry, *, buffer_id: str, historical: bool = False) -> bytes: ...
    def ddeath(self) -> bytes | None: ...
    def command(self, ncmd: bytes) -> sparkplug_b.NodeCommand | None: ...
    def ndata(self) -> bytes | None: ...


class JsonWire:
    """The design note's JSON on every topic (the behaviour before `encoding` existed)."""

    encoding: Encoding = "json"
    birth_qos = 1
    ddata_qos = 1
    fresh_session_per_connect = False
    device_sessions = False

    def __init__(self, cfg: CollectorConfig) -> None:
        self._thing, self._site = cfg.thing_name, cfg.site
        self.lock = threading.Lock()

    def ddata_row(self, reading: Reading, seq: int, buffer_id: str) -> bytes:
        return payload.encode(payload.ddata(reading, self._thing, seq, buffer_id=buffer_id))

    def will(self) -> bytes:
        return self._node_state(online=False)

    def connect_sent(self) -> None:
        """Nothing counts CONNECT packets in the JSON contract."""

    def nbirth(self) -> bytes:
        return self._node_state(online=True)

    def ndeath(self) -> bytes:
        return self._node_state(online=False)

    def dbirth(self, asset: str, breaker: str, last_seq: int, *, buffer_id: str,
               register_map: dict[str, Any] | None = None, current: Reading | None = None) -> bytes:
        return payload.encode(payload.dbirth(
            self._thing, self._site, asset, breaker, now_ms(), last_seq, register_map, buffer_id=buffer_id))

    def ddata(self, entry: Entry, *, buffer_id: str, historical: bool = False) -> bytes:
        if entry.payload[:1] == b"{" or not entry.payload:
            return entry.payload
        # A row buffered as Sparkplug B before the switch back to JSON.
        values = sparkplug_b.values_from_body(entry.payload)
        reading = Reading(self._site, entry.asset, "", entry.timestamp_ms, values)
        return payload.encode(payload.ddata(reading, self._thing, entry.seq, buffer_id=buffer_id))

    def ddeath(self) -> bytes | None:
        return None  # the JSON contract has no DDEATH message

    def command(self, ncmd: bytes) -> sparkplug_b.NodeCommand | None:
        return None  # JSON commands: the collector's own reader (`Collector.handle_command`)

    def ndata(self) -> bytes | None:
        return None  # the JSON contract has no NDATA message

    def _node_state(self, online: bool) -> bytes:
        return payload.encode(payload.node_state(self._thing, self._site, online, now_ms()))


class SparkplugWire:
    """Sparkplug B 3.0: bdSeq per CONNECT packet (kept in a file next to the buffer), seq per edge node.

    bdSeq survives restarts: after a kill -9 the broker may deliver the old will after the new NBIRTH,
    and a host tells them apart by bdSeq; restarting at 0 every time could make both carry the same.
    It advances only once a CONNECT packet went out (`connect_sent`): an attempt that failed before
    (broker down, TLS refused) sent no CONNECT and uses no number (`tck-id-topics-nbirth-bdseq-increment`).

    Devices get alias slots (`collector.sparkplug_b.alias`) in config order from 1; a meter no longer in
    the config whose rows are still buffered gets the next free slot when its first row goes out.
    """

    encoding: Encoding = "sparkplug-b"
    birth_qos = 0  # the specification's QoS for NBIRTH and DBIRTH (and DDEATH)
    fresh_session_per_connect = True
    device_sessions = True

    def __init__(self, cfg: CollectorConfig) -> None:
        self._thing, self._site = cfg.thing_name, cfg.site
        self.ddata_qos: int = cfg.mqtt.ddata_qos
        self.lock = threading.Lock()
        self._seq = sparkplug_b.SequenceCounter()
        self._slots = {m.asset: slot for slot, m in enumerate(cfg.meters, start=1)}
        self._bdseq_file = Path(f"{cfg.buffer.path}.bdseq")
        self._bdseq = self._load_bdseq()
        self._will_bdseq = sparkplug_b.next_bdseq(self._bdseq)  # in the will of the next CONNECT
        self.settings: SettingsView | None = None  # the collector's remote settings: writable node metrics
        self._announced: dict[str, object] = {}  # setting -> the value hosts were last told (NBIRTH, NDATA)

    def _load_bdseq(self) -> int | None:
        try:
            return int(self._bdseq_file.read_text()) % sparkplug_b.SEQ_MODULUS
        except (OSError, ValueError):
            return None

    def _store_bdseq(self, value: int) -> None:
        tmp = self._bdseq_file.with_name(self._bdseq_file.name + ".tmp")
        try:
            tmp.write_text(str(value))
            os.replace(tmp, self._bdseq_file)
        except OSError as e:  # the will still carries the right bdSeq; only restarts lose the count
            log.warning("cannot store bdSeq", extra={"path": str(self._bdseq_file), "error": str(e)})

    @property
    def bdseq(self) -> int | None:
        return self._bdseq

    def slot(self, asset: str) -> int:
        """The alias slot of `asset` (stable for this process)."""
        slot = self._slots.get(asset)
        if slot is None:
            slot = self._slots[asset] = max(self._slots.values(), default=0) + 1
        return slot

    def ddata_row(self, reading: Reading, seq: int, buffer_id: str) -> bytes:
        return sparkplug_b.ddata_body(reading, self._thing, self.slot(reading.asset))

    def will(self) -> bytes:
        """NDEATH for the next CONNECT: the bdSeq after the last CONNECT sent, repeated by its NBIRTH."""
        return sparkplug_b.ndeath(self._will_bdseq, now_ms())

    def connect_sent(self) -> None:
        """A CONNECT packet carrying `will()` went out: its bdSeq is now the session's, the next one +1."""
        self._bdseq = self._will_bdseq
        self._store_bdseq(self._bdseq)
        self._will_bdseq = sparkplug_b.next_bdseq(self._bdseq)

    def nbirth(self) -> bytes:
        """NBIRTH (after CONNECT or on a rebirth request): the current bdSeq, seq back to 0, and the
        writable settings with their current values."""
        settings = self._settings()
        self._announced = {s.key: s.value for s in settings}
        return sparkplug_b.nbirth(self._bdseq or 0, self._seq.restart(), now_ms(), settings)

    def ndeath(self) -> bytes:
        return sparkplug_b.ndeath(self._bdseq or 0, now_ms())

    def dbirth(self, asset: str, breaker: str, last_seq: int, *, buffer_id: str,
               register_map: dict[str, Any] | None = None, current: Reading | None = None) -> bytes:
        return sparkplug_b.dbirth(
            self.slot(asset), self._site, breaker, self._seq.next(), now_ms(), current, register_map)

    def ddata(self, entry: Entry, *, buffer_id: str, historical: bool = False) -> bytes:
        slot = self.slot(entry.asset)
        body = entry.payload
        if body[:1] == b"{":  # buffered as JSON before the switch to sparkplug-b
            body = sparkplug_b.body_from_json(body, slot)
        seq = self._seq.next()
        return sparkplug_b.finish(body, slot, historical=historical, timestamp_ms=now_ms(), seq=seq)

    def ddeath(self) -> bytes | None:
        return sparkplug_b.ddeath(self._seq.next(), now_ms())

    def _settings(self) -> list[sparkplug_b.NodeSetting]:
        if self.settings is None:
            return []
        values = self.settings.values()
        return [sparkplug_b.NodeSetting(s.key, s.kind, values[s.key]) for s in self.settings.specs()]

    def command(self, ncmd: bytes) -> sparkplug_b.NodeCommand | None:
        return sparkplug_b.parse_ncmd(ncmd, self._settings())

    def ndata(self) -> bytes | None:
        """NDATA of the settings whose value hosts have not been told; None when there is nothing new
        (NDATA only when a node metric changes, `tck-id-operational-behavior-data-publish-nbirth-change`)."""
        settings = self._settings()
        changed = [(i, s) for i, s in enumerate(settings) if self._announced.get(s.key) != s.value]
        if not changed:
            return None
        self._announced.update({s.key: s.value for _, s in changed})
        return sparkplug_b.ndata(self._seq.next(), now_ms(), changed)


def make_wire(cfg: CollectorConfig) -> Wire:
    wire: Wire = SparkplugWire(cfg) if cfg.mqtt.encoding == "sparkplug-b" else JsonWire(cfg)
    return wire
