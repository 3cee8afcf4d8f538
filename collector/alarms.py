"""Alarm and output state changes (instance 108) of each meter, found by comparing consecutive readings.

The states themselves travel in every reading (metrics `alarm1..4`, `output1..2`, so DDATA and
InfluxDB keep their history); this turns the edges into events a consumer can act on without watching
the stream. The previous states are kept in the buffer file (`collector.event_queue`), so the first
reading after a restart is compared with the last one before it: an alarm that cleared while the
collector was down gives its `cleared` event, one still active is not raised again. Only a meter with
no known states yet (a new buffer, a new meter) announces the alarms and outputs already active.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.metrics import ALARMS, OUTPUTS
from collector.reading import Reading

STATUS_METRICS = tuple(f"alarm{n}" for n in ALARMS) + tuple(f"output{n}" for n in OUTPUTS)


def status_changes(
    previous: Mapping[str, bool] | None, reading: Reading
) -> tuple[dict[str, bool], list[tuple[str, bool]]]:
    """(the asset's states after `reading`, (metric, active) for each state that changed).

    `previous` is None when nothing is known about the asset: then the active ones are the changes.
    A reading without status metrics (instance 108 failed) changes nothing.
    """
    current = {m: reading.values[m] >= 0.5 for m in STATUS_METRICS if m in reading.values}
    states = {**(previous or {}), **current}
    if previous is None:
        return states, [(m, True) for m, active in current.items() if active]
    return states, [(m, active) for m, active in current.items() if previous.get(m, False) != active]
