"""Sparkplug-style JSON payloads (the seed schema plus `site` and `asset`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from collector.metrics import METRICS, METRICS_BY_NAME
from collector.reading import Reading

_ASSET_NAMESPACE = uuid.UUID("6f1d3c1e-5a0b-4c55-9d2e-70d1f4a5c500")


def asset_uuid(thing: str, asset: str) -> str:
    """Stable per-asset uuid: the same meter behind the same collector always gets the same one."""
    return str(uuid.uuid5(_ASSET_NAMESPACE, f"{thing}/{asset}"))


def _metric(name: str, value: float) -> dict[str, Any]:
    m = METRICS_BY_NAME[name]
    return {"name": m.name, "alias": m.alias, "value": value, "properties": {"unit": m.unit}}


def ddata(reading: Reading, thing: str, seq: int) -> dict[str, Any]:
    """DDATA payload for one reading; metrics in the canonical order of `collector.metrics.METRICS`."""
    metrics = [_metric(m.name, reading.values[m.name]) for m in METRICS if m.name in reading.values]
    return {
        "metrics": metrics,
        "timestamp": reading.timestamp_ms,
        "seq": seq,
        "uuid": asset_uuid(thing, reading.asset),
        "site": reading.site,
        "asset": reading.asset,
    }


def dbirth(
    thing: str,
    site: str,
    asset: str,
    breaker: str,
    timestamp_ms: int,
    seq: int,
    register_map: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """DBIRTH: announces an asset and the metrics (name, alias, unit) its DDATA will carry, plus the
    register map self-check verdict (`collector.consistency.Verdict.as_dict`) when there is one."""
    extra = {"registerMap": register_map} if register_map is not None else {}
    return {
        "metrics": [
            {"name": m.name, "alias": m.alias, "value": None, "properties": {"unit": m.unit}}
            for m in METRICS
        ],
        "timestamp": timestamp_ms,
        "seq": seq,
        "uuid": asset_uuid(thing, asset),
        "site": site,
        "asset": asset,
        "breaker": breaker,
        **extra,
    }


def status_event(thing: str, reading: Reading, metric: str, active: bool) -> dict[str, Any]:
    """EVENT payload: one alarm raised/cleared or one output port switched on/off, on one meter.

    `metric` is an alarm/output metric of `collector.metrics` (`alarm2`, `output1`); the event carries
    the reading's timestamp (when the poll saw the change) and the asset, so a consumer can act on it
    without the DDATA stream.
    """
    kind = "alarm" if metric.startswith("alarm") else "output"
    states = ("raised", "cleared") if kind == "alarm" else ("on", "off")
    return {
        "timestamp": reading.timestamp_ms,
        "event": kind,
        "number": int(metric.removeprefix(kind)),
        "metric": metric,
        "state": states[0] if active else states[1],
        "active": active,
        "site": reading.site,
        "asset": reading.asset,
        "breaker": reading.breaker,
        "node": thing,
        "uuid": asset_uuid(thing, reading.asset),
    }


def node_state(thing: str, site: str, online: bool, timestamp_ms: int) -> dict[str, Any]:
    """NBIRTH (online) / NDEATH (offline, sent as the MQTT last will) payload."""
    return {"timestamp": timestamp_ms, "site": site, "node": thing, "online": online}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
