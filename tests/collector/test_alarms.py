"""Alarm/output edges between consecutive readings, and the EVENT/DBIRTH payloads (no network)."""

from __future__ import annotations

from collector.alarms import status_changes
from collector.payload import dbirth, status_event
from collector.reading import Reading

THING = "prod:plant-a:edge-01"
QUIET = {"alarm1": 0.0, "alarm2": 0.0, "alarm3": 0.0, "alarm4": 0.0, "output1": 0.0, "output2": 0.0}


def _reading(asset: str, ts: int, **states: float) -> Reading:
    return Reading("plant-a", asset, "MCC-1", ts, {"realPower": 10.0, **QUIET, **states})


def test_only_changes_are_events() -> None:
    states, changes = status_changes(None, _reading("m1", 1))
    assert changes == []  # first reading, nothing active
    assert status_changes(None, _reading("m2", 1, alarm3=1.0))[1] == [("alarm3", True)]  # active at start
    states, changes = status_changes(states, _reading("m1", 2, alarm2=1.0, output1=1.0))
    assert changes == [("alarm2", True), ("output1", True)]
    states, changes = status_changes(states, _reading("m1", 3, alarm2=1.0, output1=1.0))
    assert changes == []  # still active: no repeat
    states, changes = status_changes(states, _reading("m1", 4, output1=1.0))
    assert changes == [("alarm2", False)]
    assert states == {**{m: False for m in QUIET}, "output1": True}


def test_known_states_are_compared_not_announced() -> None:
    """After a restart the kept states are the previous ones: an active alarm is no news, a cleared one is."""
    kept = {**{m: False for m in QUIET}, "alarm1": True, "alarm2": True}
    assert status_changes(kept, _reading("m1", 5, alarm1=1.0))[1] == [("alarm2", False)]


def test_a_reading_without_status_metrics_changes_nothing() -> None:
    states, _ = status_changes(None, _reading("m1", 1, alarm1=1.0))
    after, changes = status_changes(states, Reading("plant-a", "m1", "MCC-1", 2, {"realPower": 1.0}))
    assert changes == [] and after == states
    assert status_changes(after, _reading("m1", 3, alarm1=1.0))[1] == []


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


def test_an_alarm_active_after_a_reading_without_status_metrics_is_raised() -> None:
    """The first reading of a meter may lack instance 108 (it failed): nothing is known, so an alarm
    active in the next reading is news."""
    states, changes = status_changes(None, Reading("plant-a", "m1", "MCC-1", 1, {"realPower": 1.0}))
    assert (states, changes) == ({}, [])
    assert status_changes(states, _reading("m1", 2, alarm1=1.0))[1] == [("alarm1", True)]
