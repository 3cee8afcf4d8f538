"""Which metric values are fit to publish: finite and inside a plausible range for their unit.

A meter element can decode as +/-Infinity or as a number no PowerMonitor 500 can measure (3e38 V, a
negative RMS current). Such a value must never reach a sink as a number: `Infinity` is not JSON (strict
parsers reject the whole DDATA message) and InfluxDB answers `voltage=inf` with HTTP 400 (the whole
phase row is lost). The payload and line-protocol builders both screen every value through `screen`,
so no caller can bypass it: in DDATA a bad metric is sent as `value: null` with `is_null: true` and
`properties.quality` naming the reason; in InfluxDB the field is left out of its row, the row's good
fields are still written.

The ranges are deliberately wide (a PM500 behind CTs/PTs on a medium-voltage feeder is still inside
them): they catch garbage, not unusual loads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from collector.alarms import STATUS_METRICS
from collector.metrics import METRICS_BY_NAME

NOT_FINITE = "not_finite"
OUT_OF_RANGE = "out_of_range"

# unit -> (lowest, highest) plausible value, both inclusive. RMS voltage, current and apparent power
# cannot be negative; real/reactive power and net energy are signed (export).
PLAUSIBLE_RANGE_BY_UNIT: dict[str, tuple[float, float]] = {
    "V": (0.0, 1e6),
    "A": (0.0, 1e6),
    "kW": (-1e7, 1e7),
    "kVAR": (-1e7, 1e7),
    "kVA": (0.0, 1e7),
    "": (-1.001, 1.001),  # power factor; float32 rounding may land a hair beyond +/-1
    "Hz": (0.0, 1000.0),
    "kWh": (-1e15, 1e15),
}
# The alarm/output states (instance 108 bits, `collector.alarms`) are unit-less like power factor but
# can only be 0 (inactive/off) or 1 (active/on): anything else is garbage, not a state.
STATE_VALUES = (0.0, 1.0)


def problem(metric: str, value: float) -> str | None:
    """Why `value` must not be published for `metric` (NOT_FINITE / OUT_OF_RANGE), or None if it is fine."""
    if not math.isfinite(value):
        return NOT_FINITE
    known = METRICS_BY_NAME.get(metric)
    if known is None:  # not a published metric: the builders leave it out anyway
        return None
    if metric in STATUS_METRICS:
        return None if value in STATE_VALUES else OUT_OF_RANGE
    low, high = PLAUSIBLE_RANGE_BY_UNIT[known.unit]
    return None if low <= value <= high else OUT_OF_RANGE


def screen(values: Mapping[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """Split a reading's values into (good values, {metric: reason} for the bad ones)."""
    good: dict[str, float] = {}
    bad: dict[str, str] = {}
    for metric, value in values.items():
        reason = problem(metric, value)
        if reason is None:
            good[metric] = value
        else:
            bad[metric] = reason
    return good, bad
