"""Alarm/output events as durable as readings (issue 22) and bounded (issue 24): derived from each
reading in the reading's own transaction against the last states kept in the buffer file, acked only on
PUBACK, replayed after a restart, never growing past their bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector.buffer import Buffer
from collector.event_queue import MAX_EVENTS, Event
from collector.payload import encode, status_event
from collector.reading import Reading

THING = "test:plant-a:edge-01"
QUIET = {"alarm1": 0.0, "alarm2": 0.0, "alarm3": 0.0, "alarm4": 0.0, "output1": 0.0, "output2": 0.0}


def encoder(reading: Reading, metric: str, active: bool) -> bytes:
    return encode(status_event(THING, reading, metric, active))


def status(asset: str, ts: int, **states: float) -> Reading:
    return Reading("plant-a", asset, "F1", ts, {"voltageAN": 230.0, **QUIET, **states})


def open_buffer(
    path: Path, max_events: int = MAX_EVENTS, sinks: tuple[str, ...] = ("mqtt", "influx")
) -> Buffer:
    return Buffer(path, 16 * 1024 * 1024, THING, sinks, event_encoder=encoder, max_events=max_events)


def states_of(events: list[Event]) -> list[tuple[str, str, str, int]]:
    out = []
    for e in events:
        body = json.loads(e.payload)
        out.append((e.asset, body["metric"], body["state"], body["timestamp"]))
    return out


def test_changes_become_events_with_the_reading_that_showed_them(tmp_path: Path) -> None:
    buf = open_buffer(tmp_path / "b.sqlite")
    buf.append_many([status("m1", 1), status("m2", 1, alarm3=1.0)])  # m2 starts with alarm 3 active
    buf.append(status("m1", 2, alarm2=1.0, output1=1.0))
    buf.append(status("m1", 3, alarm2=1.0, output1=1.0))  # unchanged: nothing new
    buf.append(status("m1", 4, output1=1.0))
    buf.append(Reading("plant-a", "m1", "F1", 5, {"voltageAN": 1.0}))  # no status metrics: no change
    events = buf.next_events(0, 100)
    assert states_of(events) == [
        ("m2", "alarm3", "raised", 1),
        ("m1", "alarm2", "raised", 2),
        ("m1", "output1", "on", 2),
        ("m1", "alarm2", "cleared", 4),
    ]
    assert events[0].payload == encoder(status("m2", 1, alarm3=1.0), "alarm3", True)
    assert buf.stats()["events"] == {"depth": 4, "dropped": 0, "max": MAX_EVENTS}


def test_an_alarm_that_cleared_while_the_collector_was_down_gives_its_cleared_event(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = open_buffer(path)
    buf.append(status("m1", 1, alarm2=1.0))
    buf.ack_events([e.id for e in buf.next_events(0, 10)])
    buf.close()
    again = open_buffer(path)
    again.append(status("m1", 2))  # the first reading after the restart
    again.append(status("m1", 3, alarm4=1.0))
    assert states_of(again.next_events(0, 10)) == [
        ("m1", "alarm2", "cleared", 2),
        ("m1", "alarm4", "raised", 3),
    ]


def test_an_alarm_still_active_after_a_restart_is_not_raised_again(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = open_buffer(path)
    buf.append(status("m1", 1, alarm1=1.0))
    buf.ack_events([e.id for e in buf.next_events(0, 10)])
    buf.close()
    again = open_buffer(path)
    again.append(status("m1", 2, alarm1=1.0))
    assert again.next_events(0, 10) == []


def test_unacknowledged_events_are_handed_out_again_after_a_restart_in_order(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = open_buffer(path)
    for ts in range(1, 6):
        buf.append(status("m1", ts, alarm1=float(ts % 2)))
    first = buf.next_events(0, 2)
    assert buf.next_events(first[-1].id, 10) == buf.next_events(0, 10)[2:]  # a cursor reads on
    buf.ack_events([first[1].id])  # out of order is fine
    buf.close()
    replay = open_buffer(path).next_events(0, 10)
    assert [e.timestamp_ms for e in replay] == [1, 3, 4, 5]


def test_the_queue_is_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    buf = open_buffer(path, max_events=5)
    for ts in range(1, 9):  # 8 toggles of alarm 1: 8 events (the first raises it)
        buf.append(status("m1", ts, alarm1=float(ts % 2)))
    assert [e.timestamp_ms for e in buf.next_events(0, 100)] == [4, 5, 6, 7, 8]
    assert buf.stats()["events"] == {"depth": 5, "dropped": 3, "max": 5}
    buf.close()
    assert open_buffer(path, max_events=5).stats()["events"]["dropped"] == 3  # persisted


def test_a_failed_batch_records_no_event_and_keeps_the_previous_states(tmp_path: Path) -> None:
    def failing(reading: Reading, metric: str, active: bool) -> bytes:
        if reading.timestamp_ms == 3:
            raise ValueError("cannot encode")  # fails inside the batch's transaction, after its readings
        return encoder(reading, metric, active)

    buf = Buffer(tmp_path / "b.sqlite", 16 * 1024 * 1024, THING, event_encoder=failing)
    with pytest.raises(ValueError, match="cannot encode"):
        buf.append_many([status("m1", 2, alarm2=1.0), status("m1", 3, alarm3=1.0)])
    assert buf.next_events(0, 10) == [] and buf.depth("mqtt") == 0
    assert buf.stats()["events"]["depth"] == 0
    buf.append(status("m1", 4, alarm2=1.0))  # the state was not advanced by the failed batch
    assert states_of(buf.next_events(0, 10)) == [("m1", "alarm2", "raised", 4)]


def test_without_an_event_encoder_nothing_is_kept(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", 16 * 1024 * 1024, THING, sinks=("influx",))
    buf.append(status("m1", 1, alarm2=1.0))
    assert buf.next_events(0, 10) == [] and "events" not in buf.stats()
    buf.ack_events([1])  # an ack without a queue is a no-op, not an error


def test_kill_9_loses_no_committed_event(tmp_path: Path) -> None:
    """A writer toggles alarm 1 on every reading (one event each) and prints each seq after its commit;
    after SIGKILL there is one event per stored reading, the last one matching the last reading."""
    path = tmp_path / "b.sqlite"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from tests.collector.test_event_queue import open_buffer, status
        buf = open_buffer(Path({str(path)!r}))
        ts = 0
        while True:
            ts += 1
            print(buf.append(status("m1", ts, alarm1=float(ts % 2))), flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    printed = [int(proc.stdout.readline()) for _ in range(300)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    printed += [int(line) for line in proc.stdout.read().split()]
    buf = open_buffer(path)
    stored = buf.cursor("mqtt").next_batch(1_000_000)
    events = buf.next_events(0, 1_000_000)
    assert set(printed) <= {e.seq for e in stored}
    assert [e.timestamp_ms for e in events] == [e.timestamp_ms for e in stored]


def test_the_default_bound_is_ten_thousand_events(tmp_path: Path) -> None:
    """docs/collector.md: at most 10,000 events wait; the oldest go first."""
    assert MAX_EVENTS == 10_000
    buf = Buffer(tmp_path / "b.sqlite", 16 * 1024 * 1024, THING, event_encoder=encoder)
    assert buf.stats()["events"] == {"depth": 0, "dropped": 0, "max": 10_000}


def test_a_bound_of_one_event_works_and_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_events must be >= 1, got 0"):
        open_buffer(tmp_path / "zero.sqlite", max_events=0)
    buf = open_buffer(tmp_path / "one.sqlite", max_events=1)
    buf.append_many([status("m1", 1, alarm1=1.0), status("m1", 2)])
    assert states_of(buf.next_events(0, 10)) == [("m1", "alarm1", "cleared", 2)]


def test_acknowledged_events_leave_the_depth_several_at_a_time(tmp_path: Path) -> None:
    buf = open_buffer(tmp_path / "b.sqlite")
    for ts in range(1, 6):
        buf.append(status("m1", ts, alarm1=float(ts % 2)))
    events = buf.next_events(0, 10)
    buf.ack_events([e.id for e in events[:3]])
    assert buf.stats()["events"]["depth"] == 2
    assert [e.timestamp_ms for e in buf.next_events(0, 10)] == [4, 5]


def test_filling_exactly_to_the_bound_drops_nothing_and_overflow_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    buf = open_buffer(tmp_path / "b.sqlite", max_events=3)
    with caplog.at_level(logging.WARNING, logger="collector.event_queue"):
        for ts in range(1, 4):
            buf.append(status("m1", ts, alarm1=float(ts % 2)))
        assert buf.stats()["events"] == {"depth": 3, "dropped": 0, "max": 3}
        assert caplog.records == []
        buf.append(status("m1", 4, alarm1=0.0, alarm2=1.0))  # two more: the two oldest go
    assert buf.stats()["events"] == {"depth": 3, "dropped": 2, "max": 3}
    [record] = caplog.records
    assert (record.getMessage(), record.dropped, record.dropped_total, record.max_events) == (
        "event queue full: dropped the oldest events", 2, 2, 3)
