"""InfluxDB line protocol for measurement `powermonitor_500` (tags site, asset, phase, breaker)."""

from __future__ import annotations

from collector.metrics import METRICS
from collector.reading import Reading

MEASUREMENT = "powermonitor_500"
TAGS = ("site", "asset", "phase", "breaker")


def _escape_tag(value: str) -> str:
    """InfluxDB 1.x escapes only `,`, `=` and space in tag values; it keeps a backslash literally, so
    doubling it would store two (checked against a real InfluxDB in tests/contracts)."""
    return value.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _fields_by_phase(reading: Reading) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    for m in METRICS:
        if m.phase is None or m.field is None or m.name not in reading.values:
            continue
        rows.setdefault(m.phase, {})[m.field] = reading.values[m.name]
    return rows


def lines(reading: Reading) -> list[str]:
    """One line per phase row (A, B, C, total) with millisecond timestamps (write with precision=ms)."""
    out = []
    for phase, fields in _fields_by_phase(reading).items():
        tags = ",".join(
            f"{k}={_escape_tag(v)}"
            for k, v in (
                ("site", reading.site),
                ("asset", reading.asset),
                ("phase", phase),
                ("breaker", reading.breaker),
            )
        )
        field_text = ",".join(f"{k}={float(v)!r}" for k, v in fields.items())
        out.append(f"{MEASUREMENT},{tags} {field_text} {reading.timestamp_ms}")
    return out


def field_names() -> dict[str, set[str]]:
    """Fields written per phase row: what dashboards may query."""
    rows: dict[str, set[str]] = {}
    for m in METRICS:
        if m.phase is not None and m.field is not None:
            rows.setdefault(m.phase, set()).add(m.field)
    return rows
