"""Sparkplug-style JSON payloads against literal expectations: every field, not only metric names."""

from __future__ import annotations

import json

from collector.payload import asset_uuid, dbirth, ddata, encode, node_state
from collector.reading import Reading

THING = "prod:plant-a:edge-01"
# uuid5(6f1d3c1e-5a0b-4c55-9d2e-70d1f4a5c500, "prod:plant-a:edge-01/meter-1"): stable across releases,
# consumers key on it.
METER_1_UUID = "429bdb5e-c906-5922-887b-1f9b307048a4"
BUFFER_ID = "0b5e4b8e-1f0c-4c1e-9d7a-3c2f1e0a9b8c"  # a buffer file's identity (collector.buffer)


def test_asset_uuid_is_stable_and_per_thing_and_asset() -> None:
    assert asset_uuid(THING, "meter-1") == METER_1_UUID
    assert asset_uuid(THING, "meter-2") != METER_1_UUID
    assert asset_uuid("prod:plant-b:edge-01", "meter-1") != METER_1_UUID


def test_ddata_literal() -> None:
    reading = Reading("plant-a", "meter-1", "F1", 1_700_000_000_123,
                      {"frequency": 50.0, "voltageAN": 230.5, "powerFactorA": 0.98})
    assert ddata(reading, THING, 7, buffer_id=BUFFER_ID) == {
        "metrics": [  # canonical order (collector.metrics), not the order of the reading
            {"name": "voltageAN", "alias": "PM500/voltage/AN", "value": 230.5, "properties": {"unit": "V"}},
            {"name": "powerFactorA", "alias": "PM500/powerFactor/A", "value": 0.98,
             "properties": {"unit": ""}},
            {"name": "frequency", "alias": "PM500/frequency", "value": 50.0, "properties": {"unit": "Hz"}},
        ],
        "timestamp": 1_700_000_000_123,
        "seq": 7,
        "uuid": METER_1_UUID,
        "buffer_id": BUFFER_ID,
        "site": "plant-a",
        "asset": "meter-1",
    }


def test_ddata_sends_a_value_unfit_to_publish_as_null_with_its_reason() -> None:
    values = {"voltageAN": float("inf"), "currentA": -5.0, "frequency": 50.0}
    reading = Reading("plant-a", "meter-1", "F1", 1, values)
    assert ddata(reading, THING, 1, buffer_id=BUFFER_ID)["metrics"] == [
        {"name": "voltageAN", "alias": "PM500/voltage/AN", "value": None, "is_null": True,
         "properties": {"unit": "V", "quality": "not_finite"}},
        {"name": "currentA", "alias": "PM500/current/A", "value": None, "is_null": True,
         "properties": {"unit": "A", "quality": "out_of_range"}},
        {"name": "frequency", "alias": "PM500/frequency", "value": 50.0, "properties": {"unit": "Hz"}},
    ]


def test_dbirth_announces_every_metric_with_alias_and_unit() -> None:
    birth = dbirth(THING, "plant-a", "meter-1", "F1", 1_700_000_000_000, 3, buffer_id=BUFFER_ID)
    assert {k: v for k, v in birth.items() if k != "metrics"} == {
        "timestamp": 1_700_000_000_000,
        "seq": 3,
        "uuid": METER_1_UUID,
        "buffer_id": BUFFER_ID,
        "site": "plant-a",
        "asset": "meter-1",
        "breaker": "F1",
    }
    metrics = birth["metrics"]
    assert len(metrics) == 36  # 30 measurements + alarms 1-4 + outputs 1-2 (instance 108)
    assert metrics[0] == {"name": "voltageAN", "alias": "PM500/voltage/AN", "value": None,
                          "properties": {"unit": "V"}}
    assert metrics[29] == {"name": "energy", "alias": "PM500/energy/net", "value": None,
                           "properties": {"unit": "kWh"}}
    assert metrics[30] == {"name": "alarm1", "alias": "PM500/alarm/1", "value": None,
                           "properties": {"unit": ""}}
    assert metrics[-1] == {"name": "output2", "alias": "PM500/output/2", "value": None,
                           "properties": {"unit": ""}}
    assert {"name": "reactivePowerC", "alias": "PM500/reactivePower/C", "value": None,
            "properties": {"unit": "kVAR"}} in metrics
    assert all(m["value"] is None for m in metrics)


def test_nbirth_and_ndeath() -> None:
    assert node_state(THING, "plant-a", True, 1_700_000_000_000) == {
        "timestamp": 1_700_000_000_000, "site": "plant-a", "node": THING, "online": True,
    }
    assert node_state(THING, "plant-a", False, 1_700_000_000_999) == {
        "timestamp": 1_700_000_000_999, "site": "plant-a", "node": THING, "online": False,
    }


def test_encode_is_compact_json() -> None:
    payload = {"timestamp": 1, "site": "plant-a", "online": True}
    assert encode(payload) == b'{"timestamp":1,"site":"plant-a","online":true}'
    assert json.loads(encode(dbirth(THING, "s", "a", "b", 1, 0, buffer_id=BUFFER_ID)))["breaker"] == "b"
