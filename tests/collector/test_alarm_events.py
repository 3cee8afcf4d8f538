"""Alarms end to end: simulator (instance 108) -> `python -m collector` -> Mosquitto and InfluxDB 1.x.

The simulator raises virtual alarm 2 on one meter: exactly one `raised` event reaches the broker on
that meter's EVENT topic and the alarm state lands in InfluxDB; clearing it gives exactly one `cleared`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collector.lineprotocol import MEASUREMENT
from collector.payload import asset_uuid
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Message, Recorder
from tests.collector.harness import (
    SITE,
    THING,
    CollectorProcess,
    PersistentObserver,
    Simulator,
    ddata_by_asset,
    wait_until,
    write_bundle,
)

pytestmark = pytest.mark.slow

EVENT_TOPIC = f"pm500/event/{THING}/meter-1"


def _alarm2(ddata: dict[str, object]) -> float | None:
    metrics = ddata["metrics"]
    assert isinstance(metrics, list)
    return next((m["value"] for m in metrics if m["name"] == "alarm2"), None)


def test_alarm_2_raised_and_cleared_gives_one_event_each_and_lands_in_influx(
    tmp_path: Path,
    mqtt_broker: MosquittoBroker,
    influx_server: InfluxServer,
    influx_db: str,
    simulator: Simulator,
    bundle_config: Path,
) -> None:
    assert simulator.control is not None
    cert, key = mqtt_broker.observer_credentials(tmp_path / "events-observer")
    with Recorder(
        mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, ["spBv1.0/#", "pm500/event/#"]
    ) as recorder:
        collector = CollectorProcess(bundle_config, tmp_path).start()
        try:

            def meter1(predicate_value: float) -> bool:
                return any(
                    _alarm2(d) == predicate_value
                    for d in ddata_by_asset(recorder.messages()).get("meter-1", [])
                )

            recorder.wait_for(lambda ms: meter1(0.0), timeout=60)
            simulator.control.set_status(1, alarms=[2])
            recorder.wait_for(lambda ms: meter1(1.0), timeout=60)
            raised_seen = len(ddata_by_asset(recorder.messages())["meter-1"])
            # several more polls with the alarm still active: still one event
            recorder.wait_for(lambda ms: len(ddata_by_asset(ms)["meter-1"]) >= raised_seen + 5, timeout=60)
            simulator.control.set_status(1, alarms=[])
            recorder.wait_for(lambda ms: len(recorder.messages(EVENT_TOPIC)) >= 2, timeout=60)
            cleared_seen = len(ddata_by_asset(recorder.messages())["meter-1"])
            recorder.wait_for(lambda ms: len(ddata_by_asset(ms)["meter-1"]) >= cleared_seen + 5, timeout=60)
            health = collector.health()
        finally:
            assert collector.stop() == 0
        messages = recorder.messages()

    events = [json.loads(m.payload) for m in messages if m.topic.startswith("pm500/event/")]
    assert [(e["asset"], e["metric"], e["state"]) for e in events] == [
        ("meter-1", "alarm2", "raised"),
        ("meter-1", "alarm2", "cleared"),
    ]
    raised = events[0]
    assert {k: raised[k] for k in ("event", "number", "active", "site", "breaker", "node", "uuid")} == {
        "event": "alarm",
        "number": 2,
        "active": True,
        "site": SITE,
        "breaker": "F1",
        "node": THING,
        "uuid": asset_uuid(THING, "meter-1"),
    }
    assert [m.topic for m in messages if m.topic.startswith("pm500/event/")] == [EVENT_TOPIC, EVENT_TOPIC]
    # the event carries the timestamp of the first reading that showed the alarm
    first_active = next(d for d in ddata_by_asset(messages)["meter-1"] if _alarm2(d) == 1.0)
    assert raised["timestamp"] == first_active["timestamp"]

    # The self-check verdict of the (consistent) simulator: in /health and in a re-announced DBIRTH.
    assert health is not None and health["meters"]["meter-1"]["register_map"]["verdict"] == "consistent"
    births = [json.loads(m.payload) for m in messages if m.topic == f"spBv1.0/pm500/DBIRTH/{THING}/meter-1"]
    assert births[-1]["registerMap"]["verdict"] == "consistent"
    assert births[-1]["registerMap"]["violations"] == []

    # InfluxDB: the alarm_2 field of meter-1's total row went 0 -> 1 -> 0.
    def alarm_history() -> list[float]:
        rows = influx_server.points(
            MEASUREMENT, influx_db, where="\"asset\" = 'meter-1' AND \"phase\" = 'total'"
        )
        values = [r["alarm_2"] for r in rows]
        collapsed = [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]
        return collapsed if collapsed[-1:] == [0.0] and 1.0 in collapsed else []

    assert wait_until(alarm_history, 30, "alarm_2 history in InfluxDB") == [0.0, 1.0, 0.0]


def events_of(messages: list[Message]) -> list[tuple[str, str, str]]:
    return [
        (e["asset"], e["metric"], e["state"])
        for e in (json.loads(m.payload) for m in messages if m.topic.startswith("pm500/event/"))
    ]


def test_an_alarm_cleared_while_the_collector_was_down_gives_its_cleared_event(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker, simulator: Simulator
) -> None:
    """The issue's case: an alarm that cleared while the collector was down never produced 'cleared'.
    The last states are kept in the buffer file, so the first reading after the restart is compared
    with the last one before it (and an alarm still active is not raised a second time)."""
    assert simulator.control is not None
    config = write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, simulator.ports, influx_url=None)
    cert, key = mqtt_broker.observer_credentials(tmp_path / "events-observer")
    broker = (mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file)
    with Recorder(*broker, cert, key, ["pm500/event/#"]) as rec:
        simulator.control.set_status(1, alarms=[2, 3])
        collector = CollectorProcess(config, tmp_path).start()
        try:
            rec.wait_for(lambda ms: len(events_of(ms)) >= 2, timeout=60)
        finally:
            assert collector.stop() == 0
        simulator.control.set_status(1, alarms=[3])  # alarm 2 clears while nothing watches
        collector = CollectorProcess(config, tmp_path).start()
        try:
            rec.wait_for(lambda ms: len(events_of(ms)) >= 3, timeout=60)
            wait_until(lambda: (h := collector.health()) and h["buffer"]["events"]["depth"] == 0, 30, "acked")
        finally:
            assert collector.stop() == 0
        messages = rec.messages()
    assert events_of(messages) == [
        ("meter-1", "alarm2", "raised"),
        ("meter-1", "alarm3", "raised"),
        ("meter-1", "alarm2", "cleared"),
    ]


def test_events_survive_a_broker_outage_and_a_kill_9(
    tmp_path: Path, dev_ca: DevCA, simulator: Simulator
) -> None:
    """Raised and cleared while the broker is down, then the collector is killed (-9) before it could
    publish either: both reach the subscriber, in order, after the broker and the collector are back."""
    assert simulator.control is not None
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca, persistence=True)
    broker.start()
    observer = PersistentObserver(broker, tmp_path, ("spBv1.0/#", "pm500/event/#"))
    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None)
    collector = CollectorProcess(config, tmp_path).start()
    try:
        wait_until(lambda: ddata_by_asset(observer.messages()).get("meter-1"), 30, "first DDATA")
        broker.stop()
        simulator.control.set_status(1, alarms=[1])
        wait_until(lambda: collector.health()["buffer"]["events"]["depth"] == 1, 30, "raised, buffered")  # type: ignore[index]
        simulator.control.set_status(1, alarms=[])
        wait_until(lambda: collector.health()["buffer"]["events"]["depth"] == 2, 30, "cleared, buffered")  # type: ignore[index]
        collector.kill9()
        broker.start()
        collector = CollectorProcess(config, tmp_path).start()
        wait_until(lambda: len(events_of(observer.messages())) >= 2, 60, "both events after the restart")
        wait_until(lambda: collector.health()["buffer"]["events"]["depth"] == 0, 30, "events acked")  # type: ignore[index]
    finally:
        collector.stop()
        observer.stop()
        broker.stop()
    expected = [("meter-1", "alarm1", "raised"), ("meter-1", "alarm1", "cleared")]
    assert events_of(observer.messages()) == expected
