"""InfluxDB line protocol for measurement `powermonitor_500` (tags site, asset, phase, breaker).

Escaping follows the InfluxDB 1.x line-protocol spec for tag values: `,`, `=` and space are escaped
with a backslash; a backslash is not an escape character on its own and is written (and stored) as is,
so `MCC\\2` reads back as `MCC\\2`, the label DBIRTH announces. Two things cannot be carried at all and
are refused by the config (`collector.config.check_label`): control characters (a newline would start
a new line: another measurement) and a trailing backslash (it would escape the separator after it).
`lines` refuses them too, so no caller can inject a line.

A value that is not finite or not plausible (`collector.quality`) is left out of its row; the row's
other fields are still written, and a row with no field left is not written.
"""

from __future__ import annotations

import unicodedata

from collector.metrics import METRICS
from collector.quality import screen
from collector.reading import Reading

MEASUREMENT = "powermonitor_500"
TAGS = ("site", "asset", "phase", "breaker")
# Cc: C0/C1 controls incl. newline, tab, DEL; Zl/Zp: Unicode line and paragraph separators.
_CONTROL_CATEGORIES = ("Cc", "Zl", "Zp")
_TAG_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


def label_problem(value: str) -> str | None:
    """Why `value` cannot be an InfluxDB tag value that reads back unchanged, or None."""
    bad = [c for c in value if unicodedata.category(c) in _CONTROL_CATEGORIES]
    if bad:
        return f"control character U+{ord(bad[0]):04X} not allowed (InfluxDB line protocol cannot carry it)"
    if value.endswith("\\"):
        return "must not end with a backslash (InfluxDB line protocol cannot carry it)"
    return None


def _escape_tag(name: str, value: str) -> str:
    problem = label_problem(value)
    if problem is not None:
        raise ValueError(f"{name} {value!r}: {problem}")
    return value.translate(_TAG_ESCAPES)


def _fields_by_phase(reading: Reading) -> dict[str, dict[str, float]]:
    good, _ = screen(reading.values)
    rows: dict[str, dict[str, float]] = {}
    for m in METRICS:
        if m.phase is None or m.field is None or m.name not in good:
            continue
        rows.setdefault(m.phase, {})[m.field] = good[m.name]
    return rows


def lines(reading: Reading) -> list[str]:
    """One line per phase row (A, B, C, total) with millisecond timestamps (write with precision=ms)."""
    out = []
    for phase, fields in _fields_by_phase(reading).items():
        tags = ",".join(
            f"{k}={_escape_tag(k, v)}"
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
