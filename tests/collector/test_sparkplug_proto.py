"""Sparkplug B payloads, decoded with Tahu's proto compiled here (tests/collector/sparkplug_reader.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from collector import sparkplug_b
from collector.buffer import Entry
from collector.config import CollectorConfig, parse_config
from collector.metrics import METRICS
from collector.payload import asset_uuid
from collector.reading import Reading
from collector.validation import ConfigError
from collector.wire import JsonWire, SparkplugWire, make_wire
from tests.collector.sparkplug_reader import (
    BOOLEAN,
    DOUBLE,
    INT64,
    STRING,
    TAHU_PROTO,
    TAHU_PROTO_SHA256,
    compile_payload_class,
    metric,
    protoc,
)

THING = "test:plant-a:edge-01"
T0 = 1_713_897_600_000


@pytest.fixture(scope="module")
def Payload(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return compile_payload_class(tmp_path_factory.mktemp("tahu"))


def config(tmp_path: Path, encoding: str = "sparkplug-b") -> CollectorConfig:
    return parse_config(
        {
            "stack": "test", "site": "plant-a", "collector": "edge-01", "thing_name": THING,
            "meters": [{"asset": "meter-0", "breaker": "F0", "host": "127.0.0.1"}],
            "mqtt": {"endpoint": "127.0.0.1", "encoding": encoding},
            "buffer": {"path": str(tmp_path / "buffer.sqlite")},
        },
        "test",
    )


def reading(timestamp_ms: int = T0, **values: float) -> Reading:
    return Reading("plant-a", "meter-0", "F0", timestamp_ms, values or {"voltageAN": 480.25, "energy": 12.5})


def test_vendored_proto_is_tahus_unchanged() -> None:
    assert hashlib.sha256(TAHU_PROTO.read_bytes()).hexdigest() == TAHU_PROTO_SHA256
    assert "SPDX-License-Identifier: EPL-2.0" in TAHU_PROTO.read_text()


def test_committed_protoc_outputs_match_the_pinned_protoc(tmp_path: Path) -> None:
    protoc([
        f"-I{TAHU_PROTO.parent}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
        f"--descriptor_set_out={tmp_path / 'sparkplug_b.desc'}", "--include_imports", str(TAHU_PROTO),
    ])
    for name in ("sparkplug_b_pb2.py", "sparkplug_b_pb2.pyi", "sparkplug_b.desc"):
        committed = TAHU_PROTO.parent / name
        assert committed.read_bytes() == (tmp_path / name).read_bytes(), f"{name} is stale: regenerate it"


def test_encoding_defaults_to_json_and_rejects_unknown(tmp_path: Path) -> None:
    assert isinstance(make_wire(config(tmp_path, "json")), JsonWire)
    assert isinstance(make_wire(config(tmp_path)), SparkplugWire)
    data = config(tmp_path).model_dump(mode="json")
    del data["mqtt"]["encoding"]
    assert parse_config(data, "f").mqtt.encoding == "json"
    data["mqtt"]["encoding"] = "protobuf"
    with pytest.raises(ConfigError, match=r"mqtt\.encoding.*'json' or 'sparkplug-b'"):
        parse_config(data, "f")


def test_ddata_carries_aliases_values_ms_timestamp_and_the_seq_appended_at_send(Payload: Any) -> None:
    body = sparkplug_b.ddata_body(reading(), THING)
    decoded = Payload.FromString(sparkplug_b.with_seq(body, 255))
    assert decoded.seq == 255 and decoded.timestamp == T0
    assert decoded.uuid == asset_uuid(THING, "meter-0")
    # voltageAN is the 1st metric of the table, energy the last (30th): aliases 1 and 30.
    assert [(m.alias, m.double_value, m.HasField("name")) for m in decoded.metrics] == [
        (1, 480.25, False), (30, 12.5, False)
    ]
    assert not Payload.FromString(body).HasField("seq")  # what the buffer stores
    assert Payload.FromString(sparkplug_b.with_seq(body, 0)).seq == 0
    historical = Payload.FromString(sparkplug_b.as_historical(body))
    assert [m.is_historical for m in historical.metrics] == [True, True]


def test_births_and_death(Payload: Any) -> None:
    nbirth = Payload.FromString(sparkplug_b.nbirth(bdseq=7, seq=0, timestamp_ms=T0))
    assert nbirth.seq == 0 and nbirth.timestamp == T0
    bdseq = metric(nbirth, "bdSeq")
    assert (bdseq.datatype, bdseq.long_value) == (INT64, 7)
    rebirth = metric(nbirth, "Node Control/Rebirth")
    assert (rebirth.datatype, rebirth.boolean_value, rebirth.HasField("alias")) == (BOOLEAN, False, False)

    ndeath = Payload.FromString(sparkplug_b.ndeath(bdseq=7, timestamp_ms=T0))
    assert not ndeath.HasField("seq")
    assert [(m.name, m.datatype, m.long_value) for m in ndeath.metrics] == [("bdSeq", INT64, 7)]

    dbirth = Payload.FromString(sparkplug_b.dbirth("plant-a", "F0", seq=1, timestamp_ms=T0))
    assert dbirth.seq == 1
    declared = {m.name: m for m in dbirth.metrics}
    for m in METRICS:
        d = declared[m.name]
        assert d.datatype == DOUBLE and d.is_null
        assert list(d.properties.keys) == ["unit"]
        assert (d.properties.values[0].type, d.properties.values[0].string_value) == (STRING, m.unit)
    assert declared["voltageAN"].alias == 1 and declared["energy"].alias == 30
    assert declared["realPowerA"].properties.values[0].string_value == "kW"
    breaker = declared["Properties/breaker"]
    assert (breaker.datatype, breaker.string_value) == (STRING, "F0")
    assert declared["Properties/site"].string_value == "plant-a"
    aliases = [m.alias for m in dbirth.metrics]
    assert len(set(aliases)) == len(aliases) == len(METRICS) + 2


def test_rebirth_request_is_recognised_and_json_commands_are_not(Payload: Any) -> None:
    request = Payload(timestamp=T0)
    request.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
    assert sparkplug_b.is_rebirth_request(request.SerializeToString())
    request.metrics[0].boolean_value = False
    assert not sparkplug_b.is_rebirth_request(request.SerializeToString())
    assert not sparkplug_b.is_rebirth_request(json.dumps({"poll_interval_s": 5}).encode())


def test_seq_and_bdseq_wrap_at_256() -> None:
    counter = sparkplug_b.SequenceCounter()
    assert counter.restart() == 0
    assert [counter.next() for _ in range(256)] == [*range(1, 256), 0]
    assert sparkplug_b.next_bdseq(None) == 0
    assert sparkplug_b.next_bdseq(254) == 255
    assert sparkplug_b.next_bdseq(255) == 0


def test_bdseq_pairs_will_and_nbirth_and_survives_a_restart(tmp_path: Path, Payload: Any) -> None:
    cfg = config(tmp_path)
    wire = SparkplugWire(cfg)
    will = Payload.FromString(wire.will())
    nbirth = Payload.FromString(wire.nbirth())
    assert metric(will, "bdSeq").long_value == metric(nbirth, "bdSeq").long_value == 0
    assert nbirth.seq == 0
    assert metric(Payload.FromString(wire.will()), "bdSeq").long_value == 1  # the next CONNECT
    restarted = SparkplugWire(cfg)  # a new process (e.g. after kill -9) continues the count
    assert metric(Payload.FromString(restarted.will()), "bdSeq").long_value == 2


def test_rows_sampled_before_the_session_are_replayed_as_historical(tmp_path: Path, Payload: Any) -> None:
    wire = SparkplugWire(config(tmp_path))
    old = wire.ddata_row(reading(timestamp_ms=T0), 1)
    wire.will()
    nbirth = Payload.FromString(wire.nbirth())
    live_ts = nbirth.timestamp + 1000
    live = wire.ddata_row(reading(timestamp_ms=live_ts), 2)
    replayed = Payload.FromString(wire.ddata(Entry(1, "meter-0", 1, T0, old)))
    current = Payload.FromString(wire.ddata(Entry(2, "meter-0", 2, live_ts, live)))
    assert (replayed.seq, current.seq) == (1, 2)
    assert all(m.is_historical for m in replayed.metrics)
    assert not any(m.is_historical for m in current.metrics)


def test_a_backlog_buffered_in_the_other_encoding_goes_out_in_the_configured_one(
    tmp_path: Path, Payload: Any
) -> None:
    json_wire, sparkplug_wire = JsonWire(config(tmp_path, "json")), SparkplugWire(config(tmp_path))
    as_json = json_wire.ddata_row(reading(), 41)
    converted = Payload.FromString(sparkplug_wire.ddata(Entry(1, "meter-0", 41, T0, as_json)))
    assert [(m.alias, m.double_value) for m in converted.metrics] == [(1, 480.25), (30, 12.5)]
    as_sparkplug = sparkplug_wire.ddata_row(reading(), 42)
    back = json.loads(json_wire.ddata(Entry(2, "meter-0", 42, T0, as_sparkplug)))
    assert back["seq"] == 42 and back["timestamp"] == T0 and back["asset"] == "meter-0"
    assert [(m["name"], m["value"], m["properties"]["unit"]) for m in back["metrics"]] == [
        ("voltageAN", 480.25, "V"), ("energy", 12.5, "kWh")
    ]
