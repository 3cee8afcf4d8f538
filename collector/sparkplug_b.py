"""Sparkplug B 3.0 payloads (protobuf, Eclipse Tahu's `sparkplug_b.proto`) for `mqtt.encoding: sparkplug-b`.

What the specification asks and how this module meets it:
- every message is a protobuf `Payload`; `timestamp` is ms since the epoch (UTC);
- NBIRTH carries `bdSeq` (Int64) and `Node Control/Rebirth` (Boolean false, never aliased); the NDEATH
  registered as MQTT will carries only `bdSeq`, the same value as the NBIRTH after that CONNECT;
- DBIRTH declares every metric a DDATA of that device may carry: name, alias, datatype and a `unit`
  property; DDATA then carries aliases only (no names, no datatypes, as the spec recommends);
- `seq` is per edge node, 0..255 wrapping, NBIRTH first (seq 0): see `SequenceCounter`.

Readings are buffered as a `Payload` without `seq` (`ddata_body`): seq belongs to the moment of
publishing, not of sampling, so it is appended when the row goes out (`with_seq`). Protobuf lets a field
be appended to a serialized message, so a live row costs a few bytes of concatenation, no re-encoding.
Rows sampled before the current MQTT session started are replayed with `is_historical = true` on every
metric (`as_historical`): they get fresh seq numbers of the current session like any other message, and
hosts store them without taking them as the current value.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.message import DecodeError

from collector.metrics import METRICS
from collector.payload import asset_uuid
from collector.proto.sparkplug_b_pb2 import DataType, Payload
from collector.reading import Reading

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
SEQ_MODULUS = 256  # seq and bdSeq run 0..255 and wrap
# Device-level metrics only in DBIRTH: what the JSON DBIRTH carries as fields.
SITE_METRIC = "Properties/site"
BREAKER_METRIC = "Properties/breaker"
# The register-map self-check verdict (`collector.consistency.Verdict.as_dict`) as a JSON string, in
# DBIRTH only (the JSON encoding's `registerMap`).
REGISTER_MAP_METRIC = "Properties/registerMap"
UNIT_PROPERTY = "unit"

# Alias of each reading metric: its position in the canonical metric table, from 1 (0 is left unused so
# that a reader defaulting a missing alias to 0 can never resolve it to a real metric).
ALIASES: dict[str, int] = {m.name: i for i, m in enumerate(METRICS, start=1)}
NAMES_BY_ALIAS: dict[int, str] = {i: name for name, i in ALIASES.items()}
_SITE_ALIAS = len(METRICS) + 1
_BREAKER_ALIAS = len(METRICS) + 2
_REGISTER_MAP_ALIAS = len(METRICS) + 3

_SEQ_TAG = bytes([(Payload.SEQ_FIELD_NUMBER << 3) | 0])  # field 3, varint


def _serialized(payload: Payload) -> bytes:
    data: bytes = payload.SerializeToString()  # typed here once: protobuf ships no type stubs
    return data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class SequenceCounter:
    """`seq` of one edge node: 0 at each NBIRTH, +1 per message after it, 255 wraps to 0."""

    def __init__(self) -> None:
        self._next = 0

    def restart(self) -> int:
        """The NBIRTH's seq (0); the next message gets 1."""
        self._next = 1
        return 0

    def next(self) -> int:
        seq = self._next
        self._next = (seq + 1) % SEQ_MODULUS
        return seq


def next_bdseq(previous: int | None) -> int:
    """bdSeq of the next MQTT CONNECT: previous + 1, 255 wraps to 0, 0 when there was none."""
    return 0 if previous is None else (previous + 1) % SEQ_MODULUS


def ddata_body(reading: Reading, thing: str) -> bytes:
    """A reading as buffered: DDATA `Payload` with aliases and values, without `seq`.

    Values are Double (PM500 REALs widen exactly); `uuid` carries the asset uuid of the JSON payload, so
    the cloud rules can give consumers the same JSON shape.
    """
    payload = Payload(timestamp=reading.timestamp_ms, uuid=asset_uuid(thing, reading.asset))
    for m in METRICS:
        if m.name in reading.values:
            payload.metrics.add(alias=ALIASES[m.name], double_value=reading.values[m.name])
    return _serialized(payload)


def with_seq(body: bytes, seq: int) -> bytes:
    """`body` (a serialized Payload without seq) with `seq` set: one varint field appended."""
    return body + _SEQ_TAG + _varint(seq)


def as_historical(body: bytes) -> bytes:
    """The same DDATA with every metric flagged `is_historical` (a replayed, stored-while-offline row)."""
    payload = Payload.FromString(body)
    for metric in payload.metrics:
        metric.is_historical = True
    return _serialized(payload)


def body_from_json(ddata_json: bytes) -> bytes:
    """A buffered JSON DDATA (written before the collector switched to sparkplug-b) as a Sparkplug body."""
    data: dict[str, Any] = json.loads(ddata_json)
    payload = Payload(timestamp=int(data["timestamp"]), uuid=str(data.get("uuid", "")))
    for metric in data["metrics"]:
        if metric["name"] in ALIASES and metric.get("value") is not None:
            payload.metrics.add(alias=ALIASES[metric["name"]], double_value=float(metric["value"]))
    return _serialized(payload)


def values_from_body(body: bytes) -> tuple[int, dict[str, float]]:
    """(timestamp ms, metric name -> value) of a buffered Sparkplug row (for a switch back to JSON)."""
    payload = Payload.FromString(body)
    values = {NAMES_BY_ALIAS[m.alias]: m.double_value for m in payload.metrics if m.alias in NAMES_BY_ALIAS}
    return payload.timestamp, values


def nbirth(bdseq: int, seq: int, timestamp_ms: int) -> bytes:
    payload = Payload(timestamp=timestamp_ms, seq=seq)
    payload.metrics.add(name=BDSEQ, datatype=DataType.Int64, long_value=bdseq, timestamp=timestamp_ms)
    payload.metrics.add(name=REBIRTH, datatype=DataType.Boolean, boolean_value=False, timestamp=timestamp_ms)
    return _serialized(payload)


def ndeath(bdseq: int, timestamp_ms: int) -> bytes:
    """NDEATH (MQTT will, or published before a clean disconnect): bdSeq only, no seq (the spec's rule)."""
    payload = Payload(timestamp=timestamp_ms)
    payload.metrics.add(name=BDSEQ, datatype=DataType.Int64, long_value=bdseq)
    return _serialized(payload)


def dbirth(site: str, breaker: str, seq: int, timestamp_ms: int,
           register_map: dict[str, Any] | None = None) -> bytes:
    """DBIRTH: every metric a DDATA may carry, with name, alias, datatype and unit.

    The current value of each reading metric is not known to the MQTT side at birth time, so it is
    sent as null (`is_null`, no value), which the specification allows for metrics without a value.
    """
    payload = Payload(timestamp=timestamp_ms, seq=seq)
    for m in METRICS:
        metric = payload.metrics.add(
            name=m.name, alias=ALIASES[m.name], datatype=DataType.Double, is_null=True, timestamp=timestamp_ms
        )
        metric.properties.keys.append(UNIT_PROPERTY)
        metric.properties.values.add(type=DataType.String, string_value=m.unit)
    strings = [(SITE_METRIC, _SITE_ALIAS, site), (BREAKER_METRIC, _BREAKER_ALIAS, breaker)]
    if register_map is not None:
        strings.append((REGISTER_MAP_METRIC, _REGISTER_MAP_ALIAS, json.dumps(register_map, sort_keys=True)))
    for name, alias, value in strings:
        payload.metrics.add(
            name=name, alias=alias, datatype=DataType.String, string_value=value, timestamp=timestamp_ms
        )
    return _serialized(payload)


def ddeath(seq: int, timestamp_ms: int) -> bytes:
    return _serialized(Payload(timestamp=timestamp_ms, seq=seq))


def is_rebirth_request(ncmd: bytes) -> bool:
    """True for an NCMD Payload with `Node Control/Rebirth` = true; False for anything else (e.g. JSON)."""
    try:
        payload = Payload.FromString(ncmd)
    except DecodeError:
        return False
    return any(m.name == REBIRTH and m.boolean_value for m in payload.metrics)


