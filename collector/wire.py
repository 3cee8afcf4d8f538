"""The one seam where `mqtt.encoding` is chosen: what each MQTT message of the collector looks like.

`json` (default): the design note's Sparkplug-style JSON (`collector.payload`), DDATA `seq` per asset,
given when the reading is buffered. `sparkplug-b`: Sparkplug B 3.0 protobuf (`collector.sparkplug_b`),
`seq` per edge node, given when a message is published, `bdSeq` per MQTT CONNECT.

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

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class Wire(Protocol):
    """Payloads of one collector. `lock` serializes (seq, publish) pairs when seq is per edge node."""

    encoding: Encoding
    birth_qos: int
    fresh_session_per_connect: bool  # drop unacknowledged publishes at reconnect, replay from the buffer
    lock: threading.Lock

    def ddata_row(self, reading: Reading, seq: int) -> bytes: ...
    def will(self) -> bytes: ...
    def nbirth(self) -> bytes: ...
    def ndeath(self) -> bytes: ...
    def dbirth(self, asset: str, breaker: str, last_seq: int,
               register_map: dict[str, Any] | None = None) -> bytes: ...
    def ddata(self, entry: Entry) -> bytes: ...
    def ddeath(self) -> bytes | None: ...
    def is_rebirth(self, ncmd: bytes) -> bool: ...


class JsonWire:
    """The design note's JSON on every topic (the behaviour before `encoding` existed)."""

    encoding: Encoding = "json"
    birth_qos = 1
    fresh_session_per_connect = False

    def __init__(self, cfg: CollectorConfig) -> None:
        self._thing, self._site = cfg.thing_name, cfg.site
        self.lock = threading.Lock()

    def ddata_row(self, reading: Reading, seq: int) -> bytes:
        return payload.encode(payload.ddata(reading, self._thing, seq))

    def will(self) -> bytes:
        return self._node_state(online=False)

    def nbirth(self) -> bytes:
        return self._node_state(online=True)

    def ndeath(self) -> bytes:
        return self._node_state(online=False)

    def dbirth(self, asset: str, breaker: str, last_seq: int,
               register_map: dict[str, Any] | None = None) -> bytes:
        return payload.encode(
            payload.dbirth(self._thing, self._site, asset, breaker, now_ms(), last_seq, register_map))

    def ddata(self, entry: Entry) -> bytes:
        if entry.payload[:1] == b"{" or not entry.payload:
            return entry.payload
        # A row buffered as Sparkplug B before the switch back to JSON.
        timestamp_ms, values = sparkplug_b.values_from_body(entry.payload)
        reading = Reading(self._site, entry.asset, "", timestamp_ms, values)
        return payload.encode(payload.ddata(reading, self._thing, entry.seq))

    def ddeath(self) -> bytes | None:
        return None  # the JSON contract has no DDEATH message

    def is_rebirth(self, ncmd: bytes) -> bool:
        return False

    def _node_state(self, online: bool) -> bytes:
        return payload.encode(payload.node_state(self._thing, self._site, online, now_ms()))


class SparkplugWire:
    """Sparkplug B 3.0: bdSeq per CONNECT (kept in a file next to the buffer), seq per edge node.

    bdSeq survives restarts: after a kill -9 the broker may deliver the old will after the new NBIRTH,
    and a host tells them apart by bdSeq; restarting at 0 every time could make both carry the same.
    """

    encoding: Encoding = "sparkplug-b"
    birth_qos = 0  # the specification's QoS for NBIRTH and DBIRTH
    fresh_session_per_connect = True

    def __init__(self, cfg: CollectorConfig) -> None:
        self._thing, self._site = cfg.thing_name, cfg.site
        self.lock = threading.Lock()
        self._seq = sparkplug_b.SequenceCounter()
        self._bdseq_file = Path(f"{cfg.buffer.path}.bdseq")
        self._bdseq = self._load_bdseq()
        self._session_start_ms = 0  # rows sampled before it are replayed as historical

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

    def ddata_row(self, reading: Reading, seq: int) -> bytes:
        return sparkplug_b.ddata_body(reading, self._thing)

    def will(self) -> bytes:
        """NDEATH for the next CONNECT: a new bdSeq, which the NBIRTH after this CONNECT repeats."""
        self._bdseq = sparkplug_b.next_bdseq(self._bdseq)
        self._store_bdseq(self._bdseq)
        self._session_start_ms = now_ms()
        return sparkplug_b.ndeath(self._bdseq, self._session_start_ms)

    def nbirth(self) -> bytes:
        """NBIRTH (after CONNECT or on a rebirth request): the current bdSeq, seq back to 0."""
        return sparkplug_b.nbirth(self._bdseq or 0, self._seq.restart(), now_ms())

    def ndeath(self) -> bytes:
        return sparkplug_b.ndeath(self._bdseq or 0, now_ms())

    def dbirth(self, asset: str, breaker: str, last_seq: int,
               register_map: dict[str, Any] | None = None) -> bytes:
        return sparkplug_b.dbirth(self._site, breaker, self._seq.next(), now_ms(), register_map)

    def ddata(self, entry: Entry) -> bytes:
        body = entry.payload
        if body[:1] == b"{":  # buffered as JSON before the switch to sparkplug-b
            body = sparkplug_b.body_from_json(body)
        if entry.timestamp_ms < self._session_start_ms:
            body = sparkplug_b.as_historical(body)
        return sparkplug_b.with_seq(body, self._seq.next())

    def ddeath(self) -> bytes | None:
        return sparkplug_b.ddeath(self._seq.next(), now_ms())

    def is_rebirth(self, ncmd: bytes) -> bool:
        return sparkplug_b.is_rebirth_request(ncmd)


def make_wire(cfg: CollectorConfig) -> Wire:
    wire: Wire = SparkplugWire(cfg) if cfg.mqtt.encoding == "sparkplug-b" else JsonWire(cfg)
    return wire
