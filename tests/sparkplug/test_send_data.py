"""DDATA (TCK `edge/SendDataTest` and `edge/SendComplexDataTest`), judged on the captured `session` run.

Metric-level rules (name/alias, datatype, properties, timestamps) are checked on every message the edge
node published. Two places where the TCK's code is stricter than the specification, followed here as the
specification says: `checkPropertiesValidType` takes a PropertyValue's `type` for a protobuf oneof field
number, so it refuses the String type (12) the specification lists; `checkPayloadsNameRequirement` fails
any null metric, which the specification allows (`is_null`, tck-id-payloads-name-requirement is about names).
"""

from __future__ import annotations

import time

import pytest

from tests.collector.harness import THING
from tests.sparkplug import judge
from tests.sparkplug.capture import BASIC_TYPES, INT32, PROPERTY_TYPES, STRING
from tests.sparkplug.scenarios import ASSETS, NEW_POLL_S, Run

pytestmark = pytest.mark.slow


def ddata(run: Run) -> list[judge.Published]:
    return run.capture.of("DDATA")


def test_tck_id_topics_ddata_topic(session_run: Run) -> None:
    assert {m.topic for m in ddata(session_run)} == {f"spBv1.0/pm500/DDATA/{THING}/{a}" for a in ASSETS}


def test_tck_id_topics_ddata_mqtt(session_run: Run) -> None:
    """QoS 0 and retain false, as the specification requires (`mqtt.ddata_qos` defaults to 0)."""
    assert len(ddata(session_run)) >= 300 and judge.mqtt_flags(ddata(session_run)) == []


def test_tck_id_payloads_ddata_qos(session_run: Run) -> None:
    assert {m.packet.qos for m in ddata(session_run)} == {0}


def test_tck_id_payloads_ddata_retain(session_run: Run) -> None:
    assert {m.packet.retain for m in ddata(session_run)} == {False}


def test_tck_id_topics_ddata_seq_num(session_run: Run) -> None:
    for session in session_run.capture.sessions():
        assert judge.seq_continuity(session) == []


def test_tck_id_payloads_ddata_seq(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") for m in ddata(session_run))


def test_tck_id_payloads_ddata_seq_inc(session_run: Run) -> None:
    for session in session_run.capture.sessions():
        assert judge.seq_continuity(session) == []
    wrapped = [m.payload.seq for m in session_run.capture.sessions()[0].messages]
    assert 255 in wrapped and wrapped[wrapped.index(255) + 1] == 0  # past 255: 0


def test_tck_id_topics_ddata_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(ddata(session_run)) == []


def test_tck_id_payloads_ddata_timestamp(session_run: Run) -> None:
    """The payload timestamp is when the DDATA was published; when the reading was taken is each metric's
    timestamp (never later than the payload's)."""
    assert judge.publish_timestamps(ddata(session_run)) == []
    for m in ddata(session_run):
        assert all(x.timestamp <= m.payload.timestamp for x in m.payload.metrics)


def test_tck_id_topics_ddata_payload(session_run: Run) -> None:
    """Each DDATA carries the device's metrics that changed: every metric of the reading is there."""
    for m, _, values, _ in judge.resolved(session_run.capture):
        assert "voltageAN" in values and "energy" in values and len(m.payload.metrics) >= len(values)


def test_tck_id_payloads_name_birth_data_requirement(session_run: Run) -> None:
    """A timestamp on every metric of NBIRTH, DBIRTH and DDATA (the TCK: 0 of 19,476 before)."""
    for m in session_run.capture.of("NBIRTH", "DBIRTH", "DDATA", "NDATA"):
        assert all(x.HasField("timestamp") for x in m.payload.metrics), m.topic


def test_tck_id_payloads_metric_timestamp_in_UTC(session_run: Run) -> None:
    """ms since the Unix epoch (UTC by definition), taken on this machine: within the run, not in the
    future (a local-time offset would be hours off)."""
    start_ms = (session_run.marks["host online"] - 60) * 1000
    for m in session_run.capture.of("NBIRTH", "DBIRTH", "DDATA"):
        for x in m.payload.metrics:
            assert start_ms <= x.timestamp <= m.packet.at * 1000 + 1, m.topic


def test_tck_id_payloads_timestamp_in_UTC(session_run: Run) -> None:
    start_ms = (session_run.marks["host online"] - 60) * 1000
    assert all(start_ms <= m.payload.timestamp <= time.time() * 1000 for m in session_run.capture.published)


def test_tck_id_payloads_alias_data_cmd_requirement(session_run: Run) -> None:
    metrics = [x for m in ddata(session_run) for x in m.payload.metrics]
    assert all(x.HasField("alias") and not x.HasField("name") for x in metrics)


def test_tck_id_payloads_name_requirement(session_run: Run) -> None:
    """A name, or an alias declared with one (null metrics included: the TCK fails them, the spec not)."""
    for m in session_run.capture.published:
        assert all(x.HasField("name") or x.HasField("alias") for x in m.payload.metrics), m.topic


def test_tck_id_payloads_metric_datatype_value_type(session_run: Run) -> None:
    """The datatype is an unsigned 32-bit integer (protobuf uint32): every value fits."""
    for m in session_run.capture.of("NBIRTH", "DBIRTH"):
        assert all(0 <= x.datatype < 2**32 for x in m.payload.metrics)


def test_tck_id_payloads_metric_datatype_value(session_run: Run) -> None:
    for m in session_run.capture.of("NBIRTH", "DBIRTH"):
        assert {x.datatype for x in m.payload.metrics} <= BASIC_TYPES, m.topic


def test_tck_id_payloads_metric_datatype_req(session_run: Run) -> None:
    for m in session_run.capture.of("NBIRTH", "DBIRTH"):
        assert all(x.HasField("datatype") for x in m.payload.metrics), m.topic


def test_tck_id_payloads_metric_datatype_not_req(session_run: Run) -> None:
    assert not any(x.HasField("datatype") for m in ddata(session_run) for x in m.payload.metrics)


def _property_sets(run: Run) -> list[tuple[judge.Published, object]]:
    return [(m, x.properties) for m in run.capture.published for x in m.payload.metrics
            if x.HasField("properties")]


def test_tck_id_payloads_propertyset_keys_array_size(session_run: Run) -> None:
    sets = _property_sets(session_run)
    assert sets and all(len(p.keys) == len(p.values) for _, p in sets)  # type: ignore[attr-defined]


def test_tck_id_payloads_propertyset_values_array_size(session_run: Run) -> None:
    assert all(len(p.values) == len(p.keys) for _, p in _property_sets(session_run))  # type: ignore[attr-defined]


def test_tck_id_payloads_metric_propertyvalue_type_type(session_run: Run) -> None:
    values = [v for _, p in _property_sets(session_run) for v in p.values]  # type: ignore[attr-defined]
    assert values and all(0 <= v.type < 2**32 for v in values)


def test_tck_id_payloads_metric_propertyvalue_type_value(session_run: Run) -> None:
    """A basic or property-value data type: String (12) is one (the TCK refuses it, see the docstring)."""
    types = {v.type for _, p in _property_sets(session_run) for v in p.values}  # type: ignore[attr-defined]
    assert STRING in types and types <= PROPERTY_TYPES


def test_tck_id_payloads_metric_propertyvalue_type_req(session_run: Run) -> None:
    for m, p in _property_sets(session_run):
        if m.kind in ("NBIRTH", "DBIRTH"):
            assert all(v.HasField("type") for v in p.values)  # type: ignore[attr-defined]


def _quality_values(run: Run) -> list[object]:
    return [v for _, p in _property_sets(run)
            for k, v in zip(p.keys, p.values, strict=True) if k == "Quality"]  # type: ignore[attr-defined]


def test_tck_id_payloads_propertyset_quality_value_type(session_run: Run) -> None:
    """`Quality` is of type 3, Int32: on meter-0's frequency, which reads garbage the whole run."""
    qualities = _quality_values(session_run)
    assert len(qualities) >= 100 and all(v.type == INT32 for v in qualities)  # type: ignore[attr-defined]


def test_tck_id_payloads_propertyset_quality_value_value(session_run: Run) -> None:
    """An int_value of 0 (BAD), 192 (GOOD) or 500 (STALE): a garbage value is BAD, and null."""
    qualities = _quality_values(session_run)
    assert qualities and all(v.HasField("int_value") and v.int_value == 0  # type: ignore[attr-defined]
                             for v in qualities)
    for m in session_run.capture.of("DDATA", "DBIRTH"):
        for x in m.payload.metrics:
            if "Quality" in x.properties.keys:
                assert x.is_null and x.WhichOneof("value") is None


def test_tck_id_payloads_sequence_num_always_included(session_run: Run) -> None:
    for m in session_run.capture.published:
        assert m.payload.HasField("seq") == (m.kind != "NDEATH"), m.topic


def test_tck_id_payloads_sequence_num_incrementing(session_run: Run) -> None:
    sessions = session_run.capture.sessions()
    assert len(sessions) >= 3 and all(judge.seq_continuity(s) == [] for s in sessions)


# -- NDATA: the node's writable settings, after a host changed one -------------------------------------


def ndata(run: Run) -> list[judge.Published]:
    return run.capture.of("NDATA")


def test_tck_id_topics_ndata_topic(session_run: Run) -> None:
    assert ndata(session_run) and judge.topic_form(ndata(session_run)) == []


def test_tck_id_topics_ndata_mqtt(session_run: Run) -> None:
    assert ndata(session_run) and judge.mqtt_flags(ndata(session_run)) == []


def test_tck_id_payloads_ndata_qos(session_run: Run) -> None:
    assert {m.packet.qos for m in ndata(session_run)} == {0}


def test_tck_id_payloads_ndata_retain(session_run: Run) -> None:
    assert {m.packet.retain for m in ndata(session_run)} == {False}


def test_tck_id_topics_ndata_seq_num(session_run: Run) -> None:
    sessions = [s for s in session_run.capture.sessions() if any(m.kind == "NDATA" for m in s.messages)]
    assert sessions and all(judge.seq_continuity(s) == [] for s in sessions)


def test_tck_id_payloads_ndata_seq(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") for m in ndata(session_run))


def test_tck_id_payloads_ndata_seq_inc(session_run: Run) -> None:
    test_tck_id_topics_ndata_seq_num(session_run)


def test_tck_id_topics_ndata_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(ndata(session_run)) == []


def test_tck_id_payloads_ndata_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(ndata(session_run)) == []


def _announced(run: Run) -> list[tuple[judge.Published, dict[int, object]]]:
    """Each NBIRTH and NDATA with alias -> value of the node metrics it carries."""
    out = []
    for m in run.capture.of("NBIRTH", "NDATA"):
        out.append((m, {x.alias: getattr(x, x.WhichOneof("value") or "alias")
                        for x in m.payload.metrics if x.HasField("alias")}))
    return out


def test_tck_id_topics_ndata_payload(session_run: Run) -> None:
    """The NDATA carries the node metric that changed: the poll interval the host wrote."""
    births = session_run.capture.of("NBIRTH")
    alias = next(x.alias for x in births[0].payload.metrics if x.name == "Settings/poll_interval_s")
    (first, *_) = ndata(session_run)
    assert [(x.alias, x.double_value) for x in first.payload.metrics] == [(alias, NEW_POLL_S)]
    assert first.packet.at > session_run.marks["poll interval written"]


def test_tck_id_payloads_ndata_order(session_run: Run) -> None:
    """NDATA only after the NBIRTH and every DBIRTH of the birth sequence."""
    for session in session_run.capture.sessions():
        kinds = [m.kind for m in session.messages]
        if "NDATA" in kinds:
            first_data = min(i for i, k in enumerate(kinds) if k in ("NDATA", "DDATA"))
            assert kinds[:first_data] == ["DBIRTH"] * first_data and first_data >= 1


def test_tck_id_operational_behavior_data_publish_nbirth_change(session_run: Run) -> None:
    """NDATA only when a node metric changed: each value differs from the one last announced."""
    last: dict[int, object] = {}
    for m, values in _announced(session_run):
        if m.kind == "NDATA":
            assert all(last.get(a) != v for a, v in values.items()), m.topic
        last.update(values)
