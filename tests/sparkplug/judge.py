"""Rules shared by several tck-id judges, written from the specification's text (and the TCK's checks).

Each returns a list of violations (human-readable), so a test asserts `== []` and a failure says what.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.collector.harness import THING
from tests.sparkplug.capture import BASIC_TYPES, EdgeCapture, Published, Session, has_value

TOPIC_PREFIX = f"spBv1.0/pm500/{{kind}}/{THING}"
# A payload timestamp "denotes the time at which the message was published": the tap read it at `at`;
# the collector stamps it when it hands the message to its MQTT client, a moment earlier.
PUBLISH_LAG_MS = 5_000


def expected_topic(kind: str, device: str | None) -> str:
    base = TOPIC_PREFIX.format(kind=kind)
    return base if device is None else f"{base}/{device}"


def mqtt_flags(messages: Iterable[Published], qos: int = 0) -> list[str]:
    """QoS `qos` (0 for every edge message but NDEATH) and retain false."""
    return [f"{m.topic}: QoS {m.packet.qos} retain {m.packet.retain}" for m in messages
            if m.packet.qos != qos or m.packet.retain]


def topic_form(messages: Iterable[Published]) -> list[str]:
    return [m.topic for m in messages if m.topic != expected_topic(m.kind, m.device)]


def publish_timestamps(messages: Iterable[Published]) -> list[str]:
    """The payload timestamp is the time of publishing (UTC ms), not older than PUBLISH_LAG_MS."""
    out = []
    for m in messages:
        arrived_ms = m.packet.at * 1000
        if not m.payload.HasField("timestamp"):
            out.append(f"{m.topic} seq {m.payload.seq}: no timestamp")
        elif not arrived_ms - PUBLISH_LAG_MS <= m.payload.timestamp <= arrived_ms + 1:
            out.append(f"{m.topic}: timestamp {m.payload.timestamp} but read at {arrived_ms:.0f}")
    return out


def seq_continuity(session: Session) -> list[str]:
    """NBIRTH seq 0, then each message one more, 255 -> 0 (`tck-id-payloads-sequence-num-incrementing`)."""
    out = []
    previous = session.nbirth.payload.seq
    if previous != 0:
        out.append(f"NBIRTH seq {previous}")
    for m in session.messages:
        if not m.payload.HasField("seq"):
            out.append(f"{m.topic}: no seq")
            continue
        if m.payload.seq != (previous + 1) % 256:
            out.append(f"{m.topic}: seq {m.payload.seq} after {previous}")
        previous = m.payload.seq
    return out


def birth_metrics(births: Iterable[Published]) -> list[str]:
    """Name, datatype (a valid basic type) and value (or is_null without one) on every birth metric."""
    out = []
    for b in births:
        for m in b.payload.metrics:
            if not m.HasField("name"):
                out.append(f"{b.topic}: a metric without name")
            if not m.HasField("datatype") or m.datatype not in BASIC_TYPES:
                out.append(f"{b.topic}: {m.name}: datatype {m.datatype}")
            if not has_value(m):
                out.append(f"{b.topic}: {m.name}: no value of its datatype")
    return out


def alias_owners(session: Session) -> tuple[dict[int, tuple[str | None, str]], list[str]]:
    """alias -> (device, metric name) over the session's births, and every alias given two meanings."""
    owners: dict[int, tuple[str | None, str]] = {}
    clashes = []
    for b in [session.nbirth, *session.messages]:
        if b.kind not in ("NBIRTH", "DBIRTH"):
            continue
        for m in b.payload.metrics:
            if not m.HasField("alias"):
                continue
            meaning = (b.device, m.name)
            if owners.setdefault(m.alias, meaning) != meaning:
                clashes.append(f"alias {m.alias}: {owners[m.alias]} and {meaning}")
    return owners, clashes


def values_by_reading(capture: EdgeCapture) -> dict[tuple[str, int], dict[str, float]]:
    """(device, reading timestamp) -> {metric name: value} of every DDATA the edge node wrote."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for session in capture.sessions():
        owners, _ = alias_owners(session)
        for m in session.messages:
            if m.kind != "DDATA":
                continue
            assert m.device is not None
            for metric in m.payload.metrics:
                _, name = owners[metric.alias]
                if metric.is_null:
                    continue
                out.setdefault((m.device, metric.timestamp), {})[name] = metric.double_value
    return out


def resolved(capture: EdgeCapture) -> list[tuple[Published, str, dict[str, Any], bool]]:
    """Every DDATA with its device, {metric: value} via the session's aliases, and its historical flag."""
    out = []
    for session in capture.sessions():
        owners, _ = alias_owners(session)
        for m in session.messages:
            if m.kind == "DDATA":
                assert m.device is not None
                values = {owners[x.alias][1]: x.double_value for x in m.payload.metrics if not x.is_null}
                out.append((m, m.device, values, all(x.is_historical for x in m.payload.metrics)))
    return out
