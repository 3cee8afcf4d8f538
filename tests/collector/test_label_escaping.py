"""Defect: a `breaker` label could inject InfluxDB lines, 400 every write, or be stored altered.

InfluxDB 1.x line protocol (tag values): commas, equals signs and spaces are escaped with a backslash;
a backslash is NOT an escape character on its own and is stored as written. A line ends at a newline,
so control characters cannot be carried at all: the config refuses them, naming the field. A backslash
at the very end of a tag value would escape the separator after it, so that is refused too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import lineprotocol
from collector.config import load_config
from collector.reading import Reading
from collector.validation import ConfigError
from sandbox.influx import InfluxServer
from sandbox.mqtt import Recorder
from tests.collector.harness import THING, CollectorProcess, wait_until

# Labels an operator may really type, and the tag text the spec requires for each.
ESCAPED = {
    "MCC\\2": "MCC\\2",
    "Bay 3, east=1": "Bay\\ 3\\,\\ east\\=1",
    "C:\\feeders\\F1": "C:\\feeders\\F1",
    "a\\,b": "a\\\\,b",
    'quote "x"': 'quote\\ "x"',
    "Zähler–Süd #4": "Zähler–Süd\\ #4",
}


def _reading(breaker: str) -> Reading:
    return Reading("plant-a", "mcc-1", breaker, 1795435200000, {"currentA": 12.5})


@pytest.mark.parametrize(("label", "tag"), ESCAPED.items())
def test_tag_values_are_escaped_exactly_as_the_line_protocol_spec_says(label, tag):
    (line,) = lineprotocol.lines(_reading(label))
    expected = f"powermonitor_500,site=plant-a,asset=mcc-1,phase=A,breaker={tag} current=12.5 1795435200000"
    assert line == expected


def test_every_label_reads_back_from_influxdb_exactly_as_written(influx_server: InfluxServer, influx_db: str):
    body = "\n".join(line for label in ESCAPED for line in lineprotocol.lines(_reading(label)))
    influx_server.write(influx_db, body, precision="ms")
    result = influx_server.query('SHOW TAG VALUES FROM "powermonitor_500" WITH KEY = "breaker"', db=influx_db)
    stored = {value for _, value in result["results"][0]["series"][0]["values"]}
    assert stored == set(ESCAPED)
    measurements = influx_server.query("SHOW MEASUREMENTS", db=influx_db)["results"][0]["series"][0]["values"]
    assert measurements == [["powermonitor_500"]]


def _config_with_breaker(tmp_path: Path, breaker: str) -> Path:
    data: dict[str, Any] = {
        "stack": "test", "site": "plant-a", "collector": "edge-01", "thing_name": "test:plant-a:edge-01",
        "meters": [
            {"asset": "m0", "breaker": "F0", "host": "127.0.0.1"},
            {"asset": "m1", "breaker": breaker, "host": "127.0.0.1"},
        ],
        "mqtt": {"endpoint": "broker.example"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "breaker",
    ["F1\nevil_measurement,site=x v=1", "F1\r", "tab\there", "nul\x00", "bell\x07", "del\x7f",
     "next line\x85", "line\u2028separator", "MCC\\"],
)
def test_config_refuses_a_label_line_protocol_cannot_carry_naming_the_field(tmp_path: Path, breaker: str):
    path = _config_with_breaker(tmp_path, breaker)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    (line,) = str(error.value).splitlines()
    assert line.startswith(f"{path}: meters[1].breaker: ")
    assert "control character" in line or "backslash" in line


def test_lines_never_inject_even_if_a_label_bypassed_the_config():
    with pytest.raises(ValueError, match="breaker"):
        lineprotocol.lines(_reading("F1\nevil_measurement,site=x v=1"))


@pytest.mark.slow
def test_round_trip_label_written_equals_influxdb_tag_equals_dbirth(
    tmp_path: Path, mqtt_observer: Recorder, influx_server: InfluxServer, influx_db: str, bundle_config: Path
):
    labels = ["MCC\\2", "Bay 3, east=1"]
    data = yaml.safe_load(bundle_config.read_text())
    for meter, label in zip(data["meters"], labels, strict=True):
        meter["breaker"] = label
    bundle_config.write_text(yaml.safe_dump(data, sort_keys=False))
    collector = CollectorProcess(bundle_config, tmp_path).start()
    try:
        prefix = f"spBv1.0/pm500/DBIRTH/{THING}/"
        births = wait_until(lambda: len(ms := mqtt_observer.messages(prefix)) >= 2 and ms, 30, "DBIRTHs")

        def tags() -> set[str]:
            q = 'SHOW TAG VALUES FROM "powermonitor_500" WITH KEY = "breaker"'
            series = influx_server.query(q, db=influx_db)["results"][0].get("series")
            return {value for _, value in series[0]["values"]} if series else set()

        stored = wait_until(lambda: len(t := tags()) >= 2 and t, 30, "breaker tags in InfluxDB")
    finally:
        assert collector.stop() == 0
    announced = {json.loads(m.payload)["breaker"] for m in births}
    assert stored == announced == set(labels)
