"""Defect: a non-finite or implausible meter value made invalid JSON and lost whole InfluxDB rows.

Expected forms are written out literally here (what docs/integration.md promises consumers).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import lineprotocol, payload
from collector.config import load_config
from collector.reading import Reading
from collector.service import Collector
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.net import free_port
from tests.collector.test_bundle_files import make_bundle

THING = "test:plant-a:edge-01"
BUFFER_ID = "8d5c3f0e-0000-4000-8000-000000000001"


def _strict_json(data: bytes) -> Any:
    """Parse like JavaScript's JSON.parse: NaN / Infinity tokens are an error."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(data, parse_constant=refuse)


def _reading(**values: float) -> Reading:
    return Reading("plant-a", "mcc-1", "F1", 1795435200000, dict(values))


@pytest.mark.parametrize(
    ("value", "quality"),
    [(math.inf, "not_finite"), (-math.inf, "not_finite"), (math.nan, "not_finite"), (3e38, "out_of_range"),
     (-0.5, "out_of_range")],
)
def test_a_bad_voltage_is_null_with_its_reason_and_the_other_metrics_keep_their_values(value, quality):
    reading = _reading(voltageAN=value, currentA=12.5)
    body = _strict_json(payload.encode(payload.ddata(reading, THING, 7, buffer_id=BUFFER_ID)))
    assert body["metrics"] == [
        {"name": "voltageAN", "alias": "PM500/voltage/AN", "value": None, "is_null": True,
         "properties": {"unit": "V", "quality": quality}},
        {"name": "currentA", "alias": "PM500/current/A", "value": 12.5, "properties": {"unit": "A"}},
    ]


@pytest.mark.parametrize(
    ("metric", "value"),
    [("currentA", -1.0), ("currentA", 2e6), ("powerFactorA", 1.5), ("frequency", -60.0),
     ("apparentPowerA", -3.0), ("energy", 1e20), ("realPowerA", -2e7)],
)
def test_plausibility_limits_per_metric(metric, value):
    body = payload.ddata(_reading(**{metric: value}), THING, 1, buffer_id=BUFFER_ID)
    (only,) = body["metrics"]
    assert (only["value"], only["is_null"], only["properties"]["quality"]) == (None, True, "out_of_range")


@pytest.mark.parametrize(
    ("metric", "value"),
    [("currentA", 0.0), ("realPowerA", -250.0), ("reactivePower", -40.0), ("powerFactorA", -0.8),
     ("energy", -1234.5), ("voltageAN", 34500.0), ("frequency", 400.0)],
)
def test_unusual_but_real_values_are_published_as_numbers(metric, value):
    (only,) = payload.ddata(_reading(**{metric: value}), THING, 1, buffer_id=BUFFER_ID)["metrics"]
    assert only["value"] == value and "is_null" not in only


@pytest.mark.parametrize("metric", ["alarm1", "alarm4", "output1", "output2"])
def test_alarm_and_output_states_0_and_1_are_published_as_numbers(metric):
    for state in (0.0, 1.0):
        (only,) = payload.ddata(_reading(**{metric: state}), THING, 1, buffer_id=BUFFER_ID)["metrics"]
        assert only["value"] == state and "is_null" not in only


@pytest.mark.parametrize(("metric", "value"), [("alarm2", 2.0), ("alarm3", -1.0), ("output1", 0.5)])
def test_an_alarm_or_output_state_other_than_0_or_1_is_out_of_range(metric, value):
    (only,) = payload.ddata(_reading(**{metric: value}), THING, 1, buffer_id=BUFFER_ID)["metrics"]
    assert (only["value"], only["properties"]["quality"]) == (None, "out_of_range")


def test_line_protocol_writes_alarm_states_into_the_total_row():
    reading = _reading(frequency=60.0, alarm1=1.0, alarm2=0.0, output1=1.0, alarm3=7.0)
    assert lineprotocol.lines(reading) == [
        "powermonitor_500,site=plant-a,asset=mcc-1,phase=total,breaker=F1 "
        "frequency=60.0,alarm_1=1.0,alarm_2=0.0,output_1=1.0 1795435200000",
    ]


def test_encode_refuses_to_produce_invalid_json():
    with pytest.raises(ValueError):
        payload.encode({"value": math.inf})


def test_line_protocol_leaves_out_bad_fields_and_keeps_the_good_ones_of_the_row():
    reading = _reading(voltageAN=math.inf, currentA=12.5, voltageBN=3e38, currentB=-2.0)
    assert lineprotocol.lines(reading) == [
        "powermonitor_500,site=plant-a,asset=mcc-1,phase=A,breaker=F1 current=12.5 1795435200000",
    ]


def test_influxdb_accepts_a_row_with_an_infinite_value_minus_that_field(
    influx_server: InfluxServer, influx_db: str
):
    reading = _reading(voltageAN=math.inf, currentA=12.5, realPowerA=3.25, frequency=60.0)
    influx_server.write(influx_db, "\n".join(lineprotocol.lines(reading)), precision="ms")
    rows = {p["phase"]: p for p in influx_server.points("powermonitor_500", influx_db, epoch="ms")}
    assert rows["A"]["current"] == 12.5 and rows["A"]["kW"] == 3.25
    assert rows["A"].get("voltage") is None  # no such field in the row (or the column)
    assert rows["total"]["frequency"] == 60.0


def test_the_collector_counts_bad_values_in_health_and_logs_each_change_once(
    tmp_path: Path, dev_ca: DevCA, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca)
    data = yaml.safe_load(config.read_text())
    data["health"] = {"port": 0}
    data["meters"][0]["port"] = free_port()  # nothing listens there: the poller just retries
    config.write_text(yaml.safe_dump(data))
    caplog.set_level(logging.INFO, logger="collector.service")
    collector = Collector(load_config(config))
    collector.start()
    try:
        for _ in range(3):
            collector.on_reading(_reading(voltageAN=math.inf, currentA=2.0))
        collector.on_reading(_reading(voltageAN=230.0))
        counters = collector.snapshot()["counters"]
    finally:
        collector.stop()
    assert counters["bad_values"] == 3 and counters["readings"] == 4
    changes = [
        (r.getMessage(), getattr(r, "bad", None)) for r in caplog.records if "meter values" in r.getMessage()
    ]
    assert changes == [
        ("meter values not fit to publish; sent as null", {"voltageAN": "not_finite"}),
        ("meter values plausible again", None),
    ]


# The documented limits (docs/integration.md), written out: (metric, lowest, highest), both inclusive.
_LIMITS = [
    ("voltageAN", 0.0, 1e6),
    ("currentA", 0.0, 1e6),
    ("realPowerA", -1e7, 1e7),
    ("reactivePowerA", -1e7, 1e7),
    ("apparentPowerA", 0.0, 1e7),
    ("powerFactorA", -1.001, 1.001),
    ("frequency", 0.0, 1000.0),
    ("energy", -1e15, 1e15),
]


@pytest.mark.parametrize(("metric", "low", "high"), _LIMITS)
def test_plausible_limits_are_inclusive_and_exact(metric: str, low: float, high: float) -> None:
    from collector.quality import OUT_OF_RANGE, problem

    assert problem(metric, low) is None and problem(metric, high) is None
    # the nearest floats beyond each limit
    assert problem(metric, math.nextafter(low, -math.inf)) == OUT_OF_RANGE
    assert problem(metric, math.nextafter(high, math.inf)) == OUT_OF_RANGE
    assert problem(metric, (low + high) / 2) is None


def test_a_value_for_no_published_metric_is_not_judged() -> None:
    from collector.quality import problem

    assert problem("notAMetric", 5e300) is None
