"""Sparkplug B payloads, decoded with Tahu's proto compiled here (tests/collector/sparkplug_reader.py)."""

from __future__ import annotations

import hashlib
import json
import math
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
    INT32,
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
BUFFER_ID = "3f6b1d2e-0000-4000-8000-00000000b0ff"


@pytest.fixture(scope="module")
def Payload(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return compile_payload_class(tmp_path_factory.mktemp("tahu"))


def config_data(tmp_path: Path, encoding: str = "sparkplug-b", **mqtt: Any) -> dict[str, Any]:
    return {
        "stack": "test", "site": "plant-a", "collector": "edge-01", "thing_name": THING,
        "meters": [{"asset": "meter-0", "breaker": "F0", "host": "127.0.0.1"},
                   {"asset": "meter-1", "breaker": "F1", "host": "127.0.0.1"}],
        "mqtt": {"endpoint": "127.0.0.1", "encoding": encoding, **mqtt},
        "buffer": {"path": str(tmp_path / "buffer.sqlite")},
    }


def config(tmp_path: Path, encoding: str = "sparkplug-b", **mqtt: Any) -> CollectorConfig:
    return parse_config(config_data(tmp_path, encoding, **mqtt), "test")


def reading(timestamp_ms: int = T0, asset: str = "meter-0", **values: float) -> Reading:
    return Reading("plant-a", asset, "F0", timestamp_ms, values or {"voltageAN": 480.25, "energy": 12.5})


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


@pytest.mark.parametrize(("mqtt", "error"), [
    ({"primary_host_id": "scada/primary"}, r"mqtt\.primary_host_id"),
    ({"primary_host_id": "host*"}, r"mqtt\.primary_host_id"),
    ({"primary_host_id": ""}, r"mqtt\.primary_host_id"),
    ({"ddata_qos": 2}, r"mqtt\.ddata_qos"),
])
def test_sparkplug_settings_are_validated_naming_the_field(
    tmp_path: Path, mqtt: dict[str, Any], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        config(tmp_path, **mqtt)
    host = "Ignition-Primary_1.a"
    assert config(tmp_path, primary_host_id=host).mqtt.primary_host_id == host


@pytest.mark.parametrize("mqtt", [{"primary_host_id": "scada"}, {"ddata_qos": 1}])
def test_sparkplug_settings_need_the_sparkplug_encoding(tmp_path: Path, mqtt: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="sparkplug-b"):
        config(tmp_path, "json", **mqtt)


def test_ddata_qos_defaults_to_the_specifications_0(tmp_path: Path) -> None:
    assert config(tmp_path).mqtt.ddata_qos == 0 and SparkplugWire(config(tmp_path)).ddata_qos == 0
    assert SparkplugWire(config(tmp_path, ddata_qos=1)).ddata_qos == 1
    assert JsonWire(config(tmp_path, "json")).ddata_qos == 1  # the JSON contract's QoS


def test_ddata_aliases_are_the_devices_slot_and_metric_with_their_own_timestamps(Payload: Any) -> None:
    body = sparkplug_b.ddata_body(reading(), THING, slot=2)
    stored = Payload.FromString(body)
    # Buffered: neither seq nor a payload timestamp (both are the publishing's).
    assert not stored.HasField("seq") and not stored.HasField("timestamp")
    sent = Payload.FromString(sparkplug_b.finish(body, 2, historical=False, timestamp_ms=T0 + 5000, seq=255))
    assert (sent.seq, sent.timestamp) == (255, T0 + 5000)  # published 5 s after the reading was taken
    assert sent.uuid == asset_uuid(THING, "meter-0")
    # voltageAN is the 1st metric of the table, energy the 30th; slot 2: 2 * 256 + n.
    assert [(m.alias, m.double_value, m.timestamp, m.HasField("name"), m.HasField("datatype"))
            for m in sent.metrics] == [(513, 480.25, T0, False, False), (542, 12.5, T0, False, False)]
    assert not any(m.is_historical for m in sent.metrics)
    # a live row in its own slot is not re-encoded: the buffered bytes, then timestamp and seq
    assert sparkplug_b.finish(body, 2, historical=False, timestamp_ms=T0, seq=0).startswith(body)


def test_a_row_goes_out_in_its_devices_current_slot_and_historical_when_told(Payload: Any) -> None:
    body = sparkplug_b.ddata_body(reading(), THING, slot=1)
    moved = Payload.FromString(sparkplug_b.finish(body, 3, historical=True, timestamp_ms=T0 + 1, seq=7))
    assert [(m.alias, m.is_historical, m.timestamp) for m in moved.metrics] == [
        (769, True, T0), (798, True, T0)]
    assert moved.seq == 7 and moved.timestamp == T0 + 1


def test_a_row_an_older_collector_buffered_is_sent_in_todays_shape(Payload: Any) -> None:
    """Before aliases had slots: aliases 1..36, the sampling time as payload timestamp, no metric
    timestamps, a null metric's reason in a String `quality` property."""
    old = Payload(timestamp=T0, uuid="u")
    old.metrics.add(alias=1, double_value=230.5)
    null = old.metrics.add(alias=3, is_null=True)
    null.properties.keys.append("quality")
    null.properties.values.add(type=STRING, string_value="not_finite")
    sent = Payload.FromString(sparkplug_b.finish(old.SerializeToString(), 1, historical=False,
                                                 timestamp_ms=T0 + 9, seq=4))
    assert sent.timestamp == T0 + 9 and sent.seq == 4
    assert [(m.alias, m.timestamp) for m in sent.metrics] == [(257, T0), (259, T0)]
    props = sent.metrics[1].properties
    assert list(props.keys) == ["qualityReason", "Quality"]
    assert (props.values[0].type, props.values[0].string_value) == (STRING, "not_finite")
    assert (props.values[1].type, props.values[1].int_value) == (INT32, 0)


@pytest.mark.parametrize(("value", "quality"), [(math.inf, "not_finite"), (math.nan, "not_finite"),
                                                (-3.0, "out_of_range"), (2.0e6, "out_of_range")])
def test_a_bad_value_is_a_null_metric_with_its_reason_and_quality_bad(
    Payload: Any, value: float, quality: str
) -> None:
    body = sparkplug_b.ddata_body(reading(currentA=value, energy=12.5, alarm1=1.0), THING, slot=1)
    metrics = Payload.FromString(body).metrics
    # currentA is the 3rd metric of the table, energy the 30th, alarm1 the 31st
    assert [(m.alias, m.is_null, m.double_value) for m in metrics] == [
        (259, True, 0.0), (286, False, 12.5), (287, False, 1.0)
    ]
    null = metrics[0]
    assert not null.HasField("double_value")  # no value at all, as the spec wants for is_null
    assert list(null.properties.keys) == ["qualityReason", "Quality"]
    reason, code = null.properties.values
    assert (reason.type, reason.string_value) == (STRING, quality)
    # The specification's quality property: type 3 (Int32), int_value 0 = BAD.
    assert (code.type, code.HasField("int_value"), code.int_value) == (INT32, True, 0)


def test_a_null_metric_keeps_its_reason_across_an_encoding_switch(tmp_path: Path, Payload: Any) -> None:
    json_wire, sparkplug_wire = JsonWire(config(tmp_path, "json")), SparkplugWire(config(tmp_path))
    as_json = json_wire.ddata_row(reading(voltageAN=math.inf, currentA=-1.0, energy=12.5), 7, BUFFER_ID)
    sent = sparkplug_wire.ddata(Entry(1, "meter-0", 7, T0, as_json), buffer_id=BUFFER_ID)
    converted = Payload.FromString(sent).metrics
    assert [(m.alias, m.is_null, m.properties.values[0].string_value if m.is_null else m.double_value)
            for m in converted] == [
        (257, True, "not_finite"), (259, True, "out_of_range"), (286, False, 12.5)]
    assert {m.timestamp for m in converted} == {T0}
    # back to JSON: a null metric has no value to give back and is left out, never sent as 0
    as_sparkplug = sparkplug_wire.ddata_row(reading(voltageAN=math.inf, energy=12.5), 8, BUFFER_ID)
    back = json.loads(json_wire.ddata(Entry(2, "meter-0", 8, T0, as_sparkplug), buffer_id=BUFFER_ID))
    assert [(m["name"], m["value"]) for m in back["metrics"]] == [("energy", 12.5)]


def test_births_and_death(Payload: Any) -> None:
    nbirth = Payload.FromString(sparkplug_b.nbirth(bdseq=7, seq=0, timestamp_ms=T0))
    assert nbirth.seq == 0 and nbirth.timestamp == T0
    bdseq = metric(nbirth, "bdSeq")
    assert (bdseq.datatype, bdseq.long_value, bdseq.alias, bdseq.timestamp) == (INT64, 7, 1, T0)
    rebirth = metric(nbirth, "Node Control/Rebirth")
    assert (rebirth.datatype, rebirth.boolean_value, rebirth.HasField("alias")) == (BOOLEAN, False, False)
    assert rebirth.timestamp == T0

    ndeath = Payload.FromString(sparkplug_b.ndeath(bdseq=7, timestamp_ms=T0))
    assert not ndeath.HasField("seq")
    assert [(m.name, m.datatype, m.long_value) for m in ndeath.metrics] == [("bdSeq", INT64, 7)]

    ddeath = Payload.FromString(sparkplug_b.ddeath(seq=9, timestamp_ms=T0))
    assert (ddeath.seq, ddeath.timestamp, len(ddeath.metrics)) == (9, T0, 0)


def test_dbirth_declares_every_metric_with_its_current_value(Payload: Any) -> None:
    current = reading(T0 - 700, voltageAN=480.25, currentA=math.inf, energy=12.5)
    dbirth = Payload.FromString(
        sparkplug_b.dbirth(1, "plant-a", "F0", seq=1, timestamp_ms=T0, current=current,
                           register_map={"verdict": "consistent", "checks": 3}))
    assert (dbirth.seq, dbirth.timestamp) == (1, T0)
    declared = {m.name: m for m in dbirth.metrics}
    assert set(declared) == {m.name for m in METRICS} | {
        "Properties/site", "Properties/breaker", "Properties/registerMap"}
    for m in METRICS:
        d = declared[m.name]
        assert d.datatype == DOUBLE and d.timestamp == T0 - 700  # when the value was taken
        assert d.properties.keys[0] == "unit"
        assert (d.properties.values[0].type, d.properties.values[0].string_value) == (STRING, m.unit)
    assert (declared["voltageAN"].alias, declared["voltageAN"].double_value) == (257, 480.25)
    assert (declared["energy"].alias, declared["energy"].double_value) == (286, 12.5)
    assert not declared["energy"].is_null
    # not fit to publish: null with its reason, as in DDATA; not in the reading at all: null, no reason
    assert declared["currentA"].is_null and not declared["currentA"].HasField("double_value")
    assert list(declared["currentA"].properties.keys) == ["unit", "qualityReason", "Quality"]
    assert declared["voltageBN"].is_null and list(declared["voltageBN"].properties.keys) == ["unit"]
    breaker = declared["Properties/breaker"]
    assert (breaker.datatype, breaker.string_value, breaker.timestamp) == (STRING, "F0", T0)
    assert declared["Properties/site"].string_value == "plant-a"
    # the verdict JSON with sorted keys: the same verdict gives the same birth, byte for byte
    assert declared["Properties/registerMap"].string_value == '{"checks": 3, "verdict": "consistent"}'

    unknown = Payload.FromString(sparkplug_b.dbirth(2, "plant-a", "F1", seq=2, timestamp_ms=T0, current=None))
    assert all(m.is_null and m.timestamp == T0 for m in unknown.metrics if m.datatype == DOUBLE)
    assert json.loads(metric(unknown, "Properties/registerMap").string_value) == {}


def test_aliases_are_unique_across_the_edge_nodes_births(Payload: Any) -> None:
    births = [Payload.FromString(sparkplug_b.nbirth(0, 0, T0))] + [
        Payload.FromString(sparkplug_b.dbirth(slot, "plant-a", "F", seq=slot, timestamp_ms=T0, current=None))
        for slot in (1, 2, 3)
    ]
    aliases = [m.alias for b in births for m in b.metrics if m.HasField("alias")]
    assert len(aliases) == 1 + 3 * (len(METRICS) + 3)
    assert len(set(aliases)) == len(aliases)


SETTINGS = [sparkplug_b.NodeSetting("poll_interval_s", "float", 1.0),
            sparkplug_b.NodeSetting("debug", "bool", False),
            sparkplug_b.NodeSetting("meters.meter-0.in_service", "bool", True)]


def test_nbirth_declares_the_writable_settings_with_their_values(Payload: Any) -> None:
    nbirth = Payload.FromString(sparkplug_b.nbirth(bdseq=3, seq=0, timestamp_ms=T0, settings=SETTINGS))
    declared = {m.name: m for m in nbirth.metrics}
    poll = declared["Settings/poll_interval_s"]
    assert (poll.alias, poll.datatype, poll.double_value, poll.timestamp) == (2, DOUBLE, 1.0, T0)
    debug = declared["Settings/debug"]
    assert (debug.alias, debug.datatype, debug.boolean_value) == (3, BOOLEAN, False)
    in_service = declared["Settings/meters/meter-0/in_service"]
    assert (in_service.alias, in_service.datatype, in_service.boolean_value) == (4, BOOLEAN, True)


def test_ndata_carries_changed_settings_by_alias_only(Payload: Any) -> None:
    ndata = Payload.FromString(sparkplug_b.ndata(seq=9, timestamp_ms=T0, changed=[
        (0, sparkplug_b.NodeSetting("poll_interval_s", "float", 5.0))]))
    assert (ndata.seq, ndata.timestamp) == (9, T0)
    assert [(m.alias, m.double_value, m.timestamp, m.HasField("name"), m.HasField("datatype"))
            for m in ndata.metrics] == [(2, 5.0, T0, False, False)]


def test_ncmd_rebirth_and_writes_by_name_or_alias(Payload: Any) -> None:
    request = Payload(timestamp=T0)
    request.metrics.add(name="Node Control/Rebirth", datatype=BOOLEAN, boolean_value=True)
    request.metrics.add(name="Settings/poll_interval_s", datatype=DOUBLE, double_value=5.0)
    request.metrics.add(alias=3, boolean_value=True)  # Settings/debug by its NBIRTH alias
    command = sparkplug_b.parse_ncmd(request.SerializeToString(), SETTINGS)
    assert command == sparkplug_b.NodeCommand(True, {"poll_interval_s": 5.0, "debug": True}, [])
    request.metrics[0].boolean_value = False
    assert not sparkplug_b.parse_ncmd(request.SerializeToString(), SETTINGS).rebirth


def test_ncmd_values_are_handed_on_as_sent_and_unknown_metrics_named(Payload: Any) -> None:
    request = Payload(timestamp=T0)
    request.metrics.add(name="Settings/poll_interval_s", datatype=INT64, long_value=7)
    request.metrics.add(name="Settings/debug", is_null=True)
    request.metrics.add(name="Node Control/Reboot", datatype=BOOLEAN, boolean_value=True)
    command = sparkplug_b.parse_ncmd(request.SerializeToString(), SETTINGS)
    assert command.writes == {"poll_interval_s": 7, "debug": None}  # collector.settings judges them
    assert command.problems == ["Node Control/Reboot: not a writable metric of this edge node (writable: "
                                "Node Control/Rebirth, Settings/debug, Settings/meters/meter-0/in_service, "
                                "Settings/poll_interval_s)"]


def test_a_json_ncmd_to_a_sparkplug_collector_is_refused_saying_why() -> None:
    command = sparkplug_b.parse_ncmd(json.dumps({"poll_interval_s": 5}).encode(), SETTINGS)
    assert not command.rebirth and not command.writes
    assert len(command.problems) == 1
    assert "not a Sparkplug B Payload" in command.problems[0] and "utf-8" not in command.problems[0]


def test_the_wire_tells_hosts_each_new_setting_value_once(tmp_path: Path, Payload: Any) -> None:
    class Values:
        def __init__(self) -> None:
            self.values_now: dict[str, object] = {"poll_interval_s": 1.0, "debug": False}

        def specs(self) -> list[Any]:
            from collector.settings import SettingSpec
            return [SettingSpec("poll_interval_s", "float", "", 0.1, 3600), SettingSpec("debug", "bool", "")]

        def values(self) -> dict[str, object]:
            return dict(self.values_now)

    wire = SparkplugWire(config(tmp_path))
    settings = Values()
    wire.settings = settings
    wire.connect_sent()
    nbirth = Payload.FromString(wire.nbirth())
    assert metric(nbirth, "Settings/poll_interval_s").double_value == 1.0
    assert wire.ndata() is None  # nothing new
    settings.values_now["poll_interval_s"] = 5.0
    ndata = Payload.FromString(wire.ndata() or b"")
    assert [(m.alias, m.double_value) for m in ndata.metrics] == [(2, 5.0)] and ndata.seq == 1
    assert wire.ndata() is None  # told once
    settings.values_now["debug"] = True
    again = Payload.FromString(wire.ndata() or b"")
    assert [(m.alias, m.boolean_value) for m in again.metrics] == [(3, True)] and again.seq == 2
    assert JsonWire(config(tmp_path, "json")).ndata() is None


def test_seq_and_bdseq_wrap_at_256() -> None:
    counter = sparkplug_b.SequenceCounter()
    assert counter.restart() == 0
    assert [counter.next() for _ in range(256)] == [*range(1, 256), 0]
    assert sparkplug_b.next_bdseq(None) == 0
    assert sparkplug_b.next_bdseq(254) == 255
    assert sparkplug_b.next_bdseq(255) == 0


def test_bdseq_advances_per_connect_packet_sent_and_survives_a_restart(tmp_path: Path, Payload: Any) -> None:
    cfg = config(tmp_path)
    wire = SparkplugWire(cfg)
    # Attempts that never sent a CONNECT (broker down, TLS refused) use no number.
    assert [metric(Payload.FromString(wire.will()), "bdSeq").long_value for _ in range(3)] == [0, 0, 0]
    wire.connect_sent()
    assert metric(Payload.FromString(wire.nbirth()), "bdSeq").long_value == 0  # the NBIRTH repeats the will's
    assert metric(Payload.FromString(wire.will()), "bdSeq").long_value == 1  # the next CONNECT
    wire.connect_sent()
    assert metric(Payload.FromString(wire.ndeath()), "bdSeq").long_value == 1
    restarted = SparkplugWire(cfg)  # a new process (e.g. after kill -9) continues the count
    assert metric(Payload.FromString(restarted.will()), "bdSeq").long_value == 2


def test_a_backlog_buffered_in_the_other_encoding_goes_out_in_the_configured_one(
    tmp_path: Path, Payload: Any
) -> None:
    json_wire, sparkplug_wire = JsonWire(config(tmp_path, "json")), SparkplugWire(config(tmp_path))
    as_json = json_wire.ddata_row(reading(asset="meter-1"), 41, BUFFER_ID)
    sent = sparkplug_wire.ddata(Entry(1, "meter-1", 41, T0, as_json), buffer_id=BUFFER_ID)
    converted = Payload.FromString(sent)
    assert [(m.alias, m.double_value, m.timestamp) for m in converted.metrics] == [
        (513, 480.25, T0), (542, 12.5, T0)]  # meter-1 is the second meter: slot 2
    as_sparkplug = sparkplug_wire.ddata_row(reading(), 42, BUFFER_ID)
    back = json.loads(json_wire.ddata(Entry(2, "meter-0", 42, T0, as_sparkplug), buffer_id=BUFFER_ID))
    assert back["seq"] == 42 and back["timestamp"] == T0 and back["asset"] == "meter-0"
    assert back["buffer_id"] == BUFFER_ID  # the buffer file the row was read from
    assert [(m["name"], m["value"], m["properties"]["unit"]) for m in back["metrics"]] == [
        ("voltageAN", 480.25, "V"), ("energy", 12.5, "kWh")
    ]


def test_a_meter_removed_from_the_config_gets_the_next_free_slot(tmp_path: Path) -> None:
    wire = SparkplugWire(config(tmp_path))
    assert [wire.slot(a) for a in ("meter-1", "meter-0", "gone", "meter-1", "gone-too", "gone")] == [
        2, 1, 3, 2, 4, 3]


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"online": true, "timestamp": 1713897600000}', sparkplug_b.HostState(True, 1713897600000)),
    (b'{"timestamp": 5, "online": false}', sparkplug_b.HostState(False, 5)),
    (b'{"online": true, "timestamp": 1713897600000.0}', sparkplug_b.HostState(True, 1713897600000)),
    (b'{"online": "true", "timestamp": 5}', None),
    (b'{"online": 1, "timestamp": 5}', None),
    (b'{"online": true}', None),
    (b'{"online": true, "timestamp": "5"}', None),
    (b'{"online": true, "timestamp": true}', None),
    (b'{"online": true, "timestamp": -1}', None),
    (b'{"online": true, "timestamp": 1.5}', None),
    (b'[true, 5]', None),
    (b"ONLINE", None),  # Sparkplug 2.2's STATE
    (b"\xff\xfe", None),
])
def test_state_payloads(payload: bytes, expected: sparkplug_b.HostState | None) -> None:
    assert sparkplug_b.parse_state(payload) == expected


def test_the_properties_follow_the_36_metrics_in_every_slot(Payload: Any) -> None:
    """docs/integration.md: `alias = slot * 256 + n`, the metrics 1..36, then the three properties."""
    dbirth = Payload.FromString(sparkplug_b.dbirth(2, "plant-a", "F0", seq=1, timestamp_ms=T0, current=None))
    assert len(METRICS) == 36
    assert {m.name: m.alias for m in dbirth.metrics if m.name.startswith("Properties/")} == {
        "Properties/site": 512 + 37, "Properties/breaker": 512 + 38, "Properties/registerMap": 512 + 39}


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**35 + 5])
def test_varints_round_trip_as_protobuf_writes_them(value: int, Payload: Any) -> None:
    encoded = sparkplug_b._varint(value)
    assert encoded == Payload(seq=value).SerializeToString()[1:]  # field 3's tag, then the varint
    assert sparkplug_b._read_varint(b"\x00" + encoded + b"\x01", 1) == (value, 1 + len(encoded))


def test_a_truncated_varint_is_an_index_error() -> None:
    with pytest.raises(IndexError):
        sparkplug_b._read_varint(b"\x80\x80", 0)


@pytest.mark.parametrize("slot", [1, 3, 200])  # alias 51,201 in slot 200: a three-byte varint
def test_the_send_fast_path_reads_the_slot_of_a_body_as_buffered(slot: int) -> None:
    body = sparkplug_b.ddata_body(reading(voltageAN=230.0), THING, slot)
    assert sparkplug_b._slot_if_plain(body) == slot
    # live and in its slot: sent as buffered, payload timestamp and seq appended (field 1, field 3)
    sent = sparkplug_b.finish(body, slot, historical=False, timestamp_ms=300, seq=5)
    assert sent == body + b"\x08" + sparkplug_b._varint(300) + b"\x18\x05"


def test_the_send_fast_path_leaves_other_shapes_to_reshape(Payload: Any) -> None:
    legacy = Payload(timestamp=T0)  # what older collectors buffered: payload timestamp first
    legacy.metrics.add(alias=1, double_value=230.0)
    named = Payload()
    named.metrics.add(name="voltageAN", alias=257, double_value=230.0)
    for body in (legacy.SerializeToString(), named.SerializeToString(), b"", b"\x12", b"\x12\x05"):
        assert sparkplug_b._slot_if_plain(body) is None
    reshaped = Payload.FromString(sparkplug_b.reshape(legacy.SerializeToString(), 1, historical=False))
    assert not reshaped.HasField("timestamp")  # the publishing adds its own
    assert [(m.alias, m.timestamp) for m in reshaped.metrics] == [(257, T0)]


def test_a_json_row_keeps_what_a_sparkplug_body_can_carry(Payload: Any) -> None:
    row = {"timestamp": T0, "metrics": [
        {"name": "voltageAN", "value": 230.5},
        {"name": "notAMetric", "value": 1.0},
        {"name": "currentA", "value": None, "is_null": True},
    ]}
    body = Payload.FromString(sparkplug_b.body_from_json(json.dumps(row).encode(), 1))
    assert body.uuid == ""  # the row had none
    assert [(m.alias, m.is_null) for m in body.metrics] == [(257, False), (256 + 3, True)]
    assert list(body.metrics[1].properties.keys) == ["qualityReason", "Quality"]
    assert body.metrics[1].properties.values[0].string_value == ""  # no reason was recorded
    with_uuid = {**row, "uuid": "u-1"}
    assert Payload.FromString(sparkplug_b.body_from_json(json.dumps(with_uuid).encode(), 1)).uuid == "u-1"


def test_ncmd_problems_say_what_was_sent(Payload: Any) -> None:
    empty = sparkplug_b.parse_ncmd(Payload(timestamp=T0).SerializeToString(), SETTINGS)
    assert (empty.rebirth, empty.writes, empty.problems) == (False, {}, ["NCMD without metrics"])
    request = Payload(timestamp=T0)
    request.metrics.add(alias=999, datatype=BOOLEAN, boolean_value=True)
    request.metrics.add(name="Settings/debug", datatype=BOOLEAN, boolean_value=True, is_null=True)
    command = sparkplug_b.parse_ncmd(request.SerializeToString(), SETTINGS)
    assert command.problems[0].startswith("alias 999: not a writable metric of this edge node")
    assert command.writes == {"debug": None}  # null wins over a value sent along with it
    garbage = b"\x12\xff"
    try:
        Payload.FromString(garbage)
    except Exception as e:  # the independent decoder's message is the same protobuf runtime's
        error = str(e)
    assert sparkplug_b.parse_ncmd(garbage, SETTINGS).problems == [
        f"NCMD payload is not a Sparkplug B Payload ({error}); this collector runs encoding: sparkplug-b "
        "(JSON commands work in json mode)"]


def test_a_host_state_at_the_epoch_is_a_state_and_values_are_frozen() -> None:
    assert sparkplug_b.parse_state(b'{"online": true, "timestamp": 0}') == sparkplug_b.HostState(True, 0)
    import dataclasses
    for value in (sparkplug_b.HostState(True, 0), sparkplug_b.NodeCommand(),
                  sparkplug_b.NodeSetting("debug", "bool", False)):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.__setattr__(dataclasses.fields(value)[0].name, None)
