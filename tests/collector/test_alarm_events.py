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
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Recorder
from tests.collector.harness import SITE, THING, CollectorProcess, Simulator, ddata_by_asset, wait_until

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
