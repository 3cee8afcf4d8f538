"""Alarm and output state changes (instance 108) of each meter, found by comparing consecutive readings.

The states themselves travel in every reading (metrics `alarm1..4`, `output1..2`, so DDATA and
InfluxDB keep their history); this turns the edges into events a consumer can act on without watching
the stream. After a collector start the first reading of a meter announces the alarms and outputs
that are already active (a restart may repeat a `raised`, it never hides an active alarm); an alarm
that cleared while the collector was down is seen in the data, not as an event.
"""

from __future__ import annotations

import threading

from collector.metrics import ALARMS, OUTPUTS
from collector.reading import Reading

STATUS_METRICS = tuple(f"alarm{n}" for n in ALARMS) + tuple(f"output{n}" for n in OUTPUTS)


class StatusTracker:
    """Per-asset last known alarm/output states; `changes` is called once per reading (any thread)."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, bool]] = {}
        self._lock = threading.Lock()

    def changes(self, reading: Reading) -> list[tuple[str, bool]]:
        """(metric, active) for every alarm/output whose state differs from the previous reading."""
        current = {m: reading.values[m] >= 0.5 for m in STATUS_METRICS if m in reading.values}
        if not current:
            return []
        with self._lock:
            previous = self._last.get(reading.asset)
            self._last[reading.asset] = {**(previous or {}), **current}
        if previous is None:  # first reading since start: announce what is already active
            return [(m, True) for m, active in current.items() if active]
        return [(m, active) for m, active in current.items() if previous.get(m, False) != active]
