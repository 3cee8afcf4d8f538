"""Alarm/output edges between consecutive readings, and the EVENT/DBIRTH payloads (no network)."""

from __future__ import annotations

from collector.alarms import StatusTracker
from collector.payload import dbirth, status_event
from collector.reading import Reading

THING = "prod:plant-a:edge-01"
QUIET = {"alarm1": 0.0, "alarm2": 0.0, "alarm3": 0.0, "alarm4": 0.0, "output1": 0.0, "output2": 0.0}


def _reading(asset: str, ts: int, **states: float) -> Reading:
    return Reading("plant-a", asset, "MCC-1", ts, {"realPower": 10.0, **QUIET, **states})


def test_only_changes_are_events_per_asset() -> None:
    tracker = StatusTracker()
    assert tracker.changes(_reading("m1", 1)) == []  # first reading, nothing active
    assert tracker.changes(_reading("m2", 1, alarm3=1.0)) == [("alarm3", True)]  # active at start
    assert tracker.changes(_reading("m1", 2, alarm2=1.0, output1=1.0)) == [
        ("alarm2", True),
        ("output1", True),
    ]
    assert tracker.changes(_reading("m1", 3, alarm2=1.0, output1=1.0)) == []  # still active: no repeat
    assert tracker.changes(_reading("m1", 4, output1=1.0)) == [("alarm2", False)]
    assert tracker.changes(_reading("m2", 2, alarm3=1.0)) == []  # the other asset kept its own state


def test_a_reading_without_status_metrics_changes_nothing() -> None:
    tracker = StatusTracker()
    tracker.changes(_reading("m1", 1, alarm1=1.0))
    assert tracker.changes(Reading("plant-a", "m1", "MCC-1", 2, {"realPower": 1.0})) == []
    assert tracker.changes(_reading("m1", 3, alarm1=1.0)) == []


def test_event_payload_for_an_output_port() -> None:
    event = status_event(THING, _reading("m1", 1795435200000, output2=0.0), "output2", False)
    assert event == {
        "timestamp": 1795435200000,
        "event": "output",
        "number": 2,
        "metric": "output2",
        "state": "off",
        "active": False,
        "site": "plant-a",
        "asset": "m1",
        "breaker": "MCC-1",
        "node": THING,
        "uuid": "e2a724cf-1c62-50b1-bede-2bf925aef419",
    }
    assert status_event(THING, _reading("m1", 1), "alarm4", True)["state"] == "raised"
    assert status_event(THING, _reading("m1", 1), "alarm4", False)["state"] == "cleared"
    assert status_event(THING, _reading("m1", 1), "output1", True)["state"] == "on"


def test_dbirth_carries_the_register_map_verdict_only_when_known() -> None:
    verdict = {"verdict": "inconsistent", "violations": [{"relation": "frequency_range", "detail": "0 Hz"}]}
    with_verdict = dbirth(THING, "plant-a", "m1", "MCC-1", 1, 0, verdict, buffer_id="b-1")
    assert (with_verdict["registerMap"], with_verdict["buffer_id"]) == (verdict, "b-1")
    assert "registerMap" not in dbirth(THING, "plant-a", "m1", "MCC-1", 1, 0, buffer_id="b-1")
