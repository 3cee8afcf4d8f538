"""Edge Node session establishment (TCK `edge/SessionEstablishmentTest`), judged on a captured run.

The run (tests/sparkplug/scenarios.py `session`): a Primary Host online, the collector connects, is born,
publishes 300+ DDATA, answers a rebirth request, loses and regains a meter, announces a changed
register-map verdict, stops cleanly. One test per tck-id of the specification (the `[tck-testable ...]`
assertions of eclipse-sparkplug/sparkplug), named after it. Where the TCK checks more or less than the
specification says, the test follows the specification (docs/integration.md lists those places).
"""

from __future__ import annotations

import pytest

from collector.metrics import METRICS
from tests.collector.harness import THING
from tests.sparkplug import judge
from tests.sparkplug.capture import BOOLEAN, INT64, metric
from tests.sparkplug.scenarios import ASSETS, Run

pytestmark = pytest.mark.slow

NCMD = f"spBv1.0/pm500/NCMD/{THING}"


def nbirths(run: Run) -> list[judge.Published]:
    return run.capture.of("NBIRTH")


def dbirths(run: Run) -> list[judge.Published]:
    return run.capture.of("DBIRTH")


# -- CONNECT and the will ----------------------------------------------------------------------------


def test_tck_id_principles_persistence_clean_session_311(session_run: Run) -> None:
    connects = session_run.capture.connects()
    assert connects and all(c.protocol_level == 4 and c.clean_session for c in connects)


def test_tck_id_message_flow_edge_node_birth_publish_will_message(session_run: Run) -> None:
    assert all(c.will is not None for c in session_run.capture.connects())


def test_tck_id_payloads_ndeath_will_message(session_run: Run) -> None:
    wills = [c.will for c in session_run.capture.connects()]
    assert wills and all(w is not None and w.topic.split("/")[2] == "NDEATH" for w in wills)


def test_tck_id_message_flow_edge_node_birth_publish_will_message_topic(session_run: Run) -> None:
    topics = {c.will.topic for c in session_run.capture.connects() if c.will}
    assert topics == {f"spBv1.0/pm500/NDEATH/{THING}"}


def test_tck_id_message_flow_edge_node_birth_publish_will_message_payload(session_run: Run) -> None:
    for c in session_run.capture.connects():
        assert session_run.capture.will(c.connection).metrics  # decodes as a Sparkplug B Payload


def test_tck_id_message_flow_edge_node_birth_publish_will_message_payload_bdSeq(session_run: Run) -> None:
    capture = session_run.capture
    bdseqs = [metric(capture.will(c.connection), "bdSeq") for c in capture.connects()]
    assert all(m.datatype == INT64 for m in bdseqs)
    values = [m.long_value for m in bdseqs]
    assert values[0] == 0  # a new collector: its first CONNECT
    assert values == [(values[0] + i) % 256 for i in range(len(values))]


def test_tck_id_message_flow_edge_node_birth_publish_will_message_qos(session_run: Run) -> None:
    assert {c.will.qos for c in session_run.capture.connects() if c.will} == {1}


def test_tck_id_payloads_ndeath_will_message_qos(session_run: Run) -> None:
    assert {c.will.qos for c in session_run.capture.connects() if c.will} == {1}


def test_tck_id_message_flow_edge_node_birth_publish_will_message_will_retained(session_run: Run) -> None:
    assert {c.will.retain for c in session_run.capture.connects() if c.will} == {False}


def test_tck_id_payloads_ndeath_will_message_retain(session_run: Run) -> None:
    assert {c.will.retain for c in session_run.capture.connects() if c.will} == {False}


def test_tck_id_topics_ndeath_payload(session_run: Run) -> None:
    capture = session_run.capture
    deaths = [capture.will(c.connection) for c in capture.connects()]
    deaths += [m.payload for m in capture.of("NDEATH")]
    assert all([m.name for m in d.metrics] == ["bdSeq"] for d in deaths)


def test_tck_id_topics_ndeath_seq(session_run: Run) -> None:
    capture = session_run.capture
    deaths = [capture.will(c.connection) for c in capture.connects()]
    deaths += [m.payload for m in capture.of("NDEATH")]
    assert not any(d.HasField("seq") for d in deaths)


def test_tck_id_payloads_ndeath_seq(session_run: Run) -> None:
    capture = session_run.capture
    assert capture.of("NDEATH") and not any(m.payload.HasField("seq") for m in capture.of("NDEATH"))
    assert not any(capture.will(c.connection).HasField("seq") for c in capture.connects())


# -- subscriptions, then births ------------------------------------------------------------------------


def test_tck_id_message_flow_edge_node_ncmd_subscribe(session_run: Run) -> None:
    """Subscribed to its NCMD topic at QoS 1, acknowledged by the broker, before its NBIRTH."""
    capture = session_run.capture
    for connection in {m.packet.connection for m in nbirths(session_run)}:
        packets = capture.on_connection(connection)
        first_birth = next(
            i for i, p in enumerate(packets) if p.type == "PUBLISH" and "/NBIRTH/" in (p.topic or ""))
        subscribe = next(i for i, p in enumerate(packets) if p.type == "SUBSCRIBE")
        suback = next(i for i, p in enumerate(packets) if p.type == "SUBACK")
        assert (NCMD, 1) in packets[subscribe].filters
        assert subscribe < suback < first_birth


def test_tck_id_message_flow_edge_node_birth_publish_connect(session_run: Run) -> None:
    """An MQTT session (CONNACK accepted) before any NBIRTH or DBIRTH on a connection."""
    capture = session_run.capture
    for birth in capture.of("NBIRTH", "DBIRTH"):
        packets = capture.on_connection(birth.packet.connection)
        connack = next(p for p in packets if p.type == "CONNACK")
        assert connack.return_codes == [0] and connack.at <= birth.packet.at


def test_tck_id_principles_birth_certificates_order(session_run: Run) -> None:
    """The first message the edge node publishes on each connection is its NBIRTH."""
    capture = session_run.capture
    for connection in capture.connections():
        published = [m for m in capture.published if m.packet.connection == connection]
        if published and published[0].kind != "NDEATH":
            assert published[0].kind == "NBIRTH"


def test_tck_id_topics_nbirth_topic(session_run: Run) -> None:
    assert judge.topic_form(nbirths(session_run)) == []


def test_tck_id_message_flow_edge_node_birth_publish_nbirth_topic(session_run: Run) -> None:
    assert {m.topic for m in nbirths(session_run)} == {f"spBv1.0/pm500/NBIRTH/{THING}"}


def test_tck_id_message_flow_edge_node_birth_publish_nbirth_payload(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") and m.payload.metrics for m in nbirths(session_run))


def test_tck_id_topics_nbirth_mqtt(session_run: Run) -> None:
    assert judge.mqtt_flags(nbirths(session_run)) == []


def test_tck_id_payloads_nbirth_qos(session_run: Run) -> None:
    assert {m.packet.qos for m in nbirths(session_run)} == {0}


def test_tck_id_payloads_nbirth_retain(session_run: Run) -> None:
    assert {m.packet.retain for m in nbirths(session_run)} == {False}


def test_tck_id_message_flow_edge_node_birth_publish_nbirth_qos(session_run: Run) -> None:
    assert {m.packet.qos for m in nbirths(session_run)} == {0}


def test_tck_id_message_flow_edge_node_birth_publish_nbirth_retained(session_run: Run) -> None:
    assert {m.packet.retain for m in nbirths(session_run)} == {False}


def test_tck_id_topics_nbirth_seq_num(session_run: Run) -> None:
    assert [m.payload.seq for m in nbirths(session_run)] == [0] * len(nbirths(session_run))


def test_tck_id_payloads_nbirth_seq(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") and 0 <= m.payload.seq <= 255 for m in nbirths(session_run))


def test_tck_id_payloads_sequence_num_req_nbirth(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") and 0 <= m.payload.seq <= 255 for m in nbirths(session_run))


def test_tck_id_message_flow_edge_node_birth_publish_nbirth_payload_seq(session_run: Run) -> None:
    assert all(0 <= m.payload.seq <= 255 for m in nbirths(session_run))


def test_tck_id_topics_nbirth_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(nbirths(session_run)) == []


def test_tck_id_payloads_nbirth_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(nbirths(session_run)) == []


def test_tck_id_topics_nbirth_metric_reqs(session_run: Run) -> None:
    """Every node metric the edge node reports (NDATA) was in the NBIRTH before it."""
    for session in session_run.capture.sessions():
        declared = {m.alias for m in session.nbirth.payload.metrics if m.HasField("alias")}
        for ndata in (m for m in session.messages if m.kind == "NDATA"):
            assert {m.alias for m in ndata.payload.metrics} <= declared


def test_tck_id_operational_behavior_data_publish_nbirth(session_run: Run) -> None:
    test_tck_id_topics_nbirth_metric_reqs(session_run)


def test_tck_id_topics_nbirth_metrics(session_run: Run) -> None:
    assert judge.birth_metrics(nbirths(session_run)) == []


def test_tck_id_operational_behavior_data_publish_nbirth_values(session_run: Run) -> None:
    assert judge.birth_metrics(nbirths(session_run)) == []


def test_tck_id_topics_nbirth_bdseq_included(session_run: Run) -> None:
    assert all(metric(m.payload, "bdSeq").datatype == INT64 for m in nbirths(session_run))


def test_tck_id_payloads_nbirth_bdseq(session_run: Run) -> None:
    assert all(metric(m.payload, "bdSeq").HasField("long_value") for m in nbirths(session_run))


def test_tck_id_message_flow_edge_node_birth_publish_nbirth_payload_bdSeq(session_run: Run) -> None:
    capture = session_run.capture
    for m in nbirths(session_run):
        bdseq = metric(m.payload, "bdSeq")
        assert bdseq.datatype == INT64
        assert bdseq.long_value == metric(capture.will(m.packet.connection), "bdSeq").long_value


def test_tck_id_topics_nbirth_bdseq_matching(session_run: Run) -> None:
    capture = session_run.capture
    for m in nbirths(session_run):
        will = metric(capture.will(m.packet.connection), "bdSeq").long_value
        assert metric(m.payload, "bdSeq").long_value == will


def test_tck_id_payloads_nbirth_bdseq_repeat(session_run: Run) -> None:
    test_tck_id_topics_nbirth_bdseq_matching(session_run)


def test_tck_id_payloads_ndeath_bdseq(session_run: Run) -> None:
    """The NDEATH (will or published) carries the bdSeq its connection's NBIRTH used."""
    capture = session_run.capture
    births = {m.packet.connection: metric(m.payload, "bdSeq").long_value for m in nbirths(session_run)}
    for connection, bdseq in births.items():
        assert metric(capture.will(connection), "bdSeq").long_value == bdseq
    for death in capture.of("NDEATH"):
        assert metric(death.payload, "bdSeq").long_value == births[death.packet.connection]


def test_tck_id_topics_nbirth_bdseq_increment(session_run: Run) -> None:
    """bdSeq starts at 0 and goes up by one per CONNECT packet (the chaos runs add refused CONNECTs)."""
    values = [metric(session_run.capture.will(c.connection), "bdSeq").long_value
              for c in session_run.capture.connects()]
    assert values == list(range(len(values)))


def _rebirth_metrics(run: Run) -> list[object]:
    return [metric(m.payload, "Node Control/Rebirth") for m in nbirths(run)]


def test_tck_id_topics_nbirth_rebirth_metric(session_run: Run) -> None:
    assert all((m.datatype, m.boolean_value) == (BOOLEAN, False) for m in _rebirth_metrics(session_run))


def test_tck_id_payloads_nbirth_rebirth_req(session_run: Run) -> None:
    assert all(m.HasField("boolean_value") and not m.boolean_value for m in _rebirth_metrics(session_run))


def test_tck_id_operational_behavior_data_commands_rebirth_name(session_run: Run) -> None:
    assert len(_rebirth_metrics(session_run)) == len(nbirths(session_run)) >= 2


def test_tck_id_operational_behavior_data_commands_rebirth_name_aliases(session_run: Run) -> None:
    assert not any(m.HasField("alias") for m in _rebirth_metrics(session_run))


def test_tck_id_operational_behavior_data_commands_rebirth_datatype(session_run: Run) -> None:
    assert {m.datatype for m in _rebirth_metrics(session_run)} == {BOOLEAN}


def test_tck_id_operational_behavior_data_commands_rebirth_value(session_run: Run) -> None:
    assert {m.boolean_value for m in _rebirth_metrics(session_run)} == {False}


def test_tck_id_operational_behavior_data_publish_nbirth_order(session_run: Run) -> None:
    """Values of one metric in NBIRTH (and NDATA) are in chronological order (non-historical ones)."""
    for m in session_run.capture.of("NBIRTH", "NDATA"):
        by_name: dict[str, list[int]] = {}
        for x in m.payload.metrics:
            if not x.is_historical:
                by_name.setdefault(x.name or str(x.alias), []).append(x.timestamp)
        assert all(ts == sorted(ts) for ts in by_name.values())


# -- DBIRTH ----------------------------------------------------------------------------------------------


def test_tck_id_topics_dbirth_topic(session_run: Run) -> None:
    assert dbirths(session_run) and judge.topic_form(dbirths(session_run)) == []


def test_tck_id_message_flow_device_birth_publish_dbirth_topic(session_run: Run) -> None:
    assert {m.topic for m in dbirths(session_run)} == {f"spBv1.0/pm500/DBIRTH/{THING}/{a}" for a in ASSETS}


def test_tck_id_message_flow_device_birth_publish_dbirth_match_edge_node_topic(session_run: Run) -> None:
    for session in session_run.capture.sessions():
        node = session.nbirth.topic.split("/")[1:4:2]  # group id, edge node id
        assert all(m.topic.split("/")[1:4:2] == node for m in session.messages if m.kind == "DBIRTH")


def test_tck_id_message_flow_device_birth_publish_dbirth_payload(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") and m.payload.metrics for m in dbirths(session_run))


def test_tck_id_topics_dbirth_mqtt(session_run: Run) -> None:
    assert judge.mqtt_flags(dbirths(session_run)) == []


def test_tck_id_payloads_dbirth_qos(session_run: Run) -> None:
    assert {m.packet.qos for m in dbirths(session_run)} == {0}


def test_tck_id_payloads_dbirth_retain(session_run: Run) -> None:
    assert {m.packet.retain for m in dbirths(session_run)} == {False}


def test_tck_id_message_flow_device_birth_publish_dbirth_qos(session_run: Run) -> None:
    assert {m.packet.qos for m in dbirths(session_run)} == {0}


def test_tck_id_message_flow_device_birth_publish_dbirth_retained(session_run: Run) -> None:
    assert {m.packet.retain for m in dbirths(session_run)} == {False}


def _seq_steps(run: Run, kind: str) -> list[str]:
    out = []
    for session in run.capture.sessions():
        previous = session.nbirth.payload.seq
        for m in session.messages:
            if m.kind == kind and m.payload.seq != (previous + 1) % 256:
                out.append(f"{m.topic}: seq {m.payload.seq} after {previous}")
            previous = m.payload.seq
    return out


def test_tck_id_topics_dbirth_seq(session_run: Run) -> None:
    assert _seq_steps(session_run, "DBIRTH") == []


def test_tck_id_payloads_dbirth_seq(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") for m in dbirths(session_run))


def test_tck_id_payloads_dbirth_seq_inc(session_run: Run) -> None:
    assert _seq_steps(session_run, "DBIRTH") == []


def test_tck_id_message_flow_device_birth_publish_dbirth_payload_seq(session_run: Run) -> None:
    assert _seq_steps(session_run, "DBIRTH") == []
    assert all(0 <= m.payload.seq <= 255 for m in dbirths(session_run))


def test_tck_id_topics_dbirth_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(dbirths(session_run)) == []


def test_tck_id_payloads_dbirth_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(dbirths(session_run)) == []


def test_tck_id_message_flow_device_birth_publish_nbirth_wait(session_run: Run) -> None:
    """Every DBIRTH follows an NBIRTH of the same connection (capture.sessions() refuses otherwise)."""
    sessions = session_run.capture.sessions()
    assert sum(m.kind == "DBIRTH" for s in sessions for m in s.messages) == len(dbirths(session_run))


def test_tck_id_topics_dbirth_metric_reqs(session_run: Run) -> None:
    """Every metric a DDATA carries was declared by its device's DBIRTH in that session."""
    for session in session_run.capture.sessions():
        declared: dict[str, set[int]] = {}
        for m in session.messages:
            if m.kind == "DBIRTH":
                declared[m.device or ""] = {x.alias for x in m.payload.metrics}
            elif m.kind == "DDATA":
                assert {x.alias for x in m.payload.metrics} <= declared[m.device or ""], m.topic


def test_tck_id_operational_behavior_data_publish_dbirth(session_run: Run) -> None:
    test_tck_id_topics_dbirth_metric_reqs(session_run)


def test_tck_id_topics_dbirth_metrics(session_run: Run) -> None:
    assert judge.birth_metrics(dbirths(session_run)) == []
    names = {m.name for b in dbirths(session_run) for m in b.payload.metrics}
    assert {m.name for m in METRICS} <= names


def test_tck_id_operational_behavior_data_publish_dbirth_values(session_run: Run) -> None:
    """A DBIRTH's values are the device's current ones: a reading the meter really gave (its DDATA has
    the same values), and null only while there is none. Once a reading is 2 s old (a poll takes far
    less), the DBIRTH must carry it or a newer one."""
    readings = judge.values_by_reading(session_run.capture)
    assert judge.birth_metrics(dbirths(session_run)) == []
    names = {x.name for x in METRICS}
    for birth in dbirths(session_run):
        assert birth.device is not None
        values = {m.name: (m.timestamp, m.double_value) for m in birth.payload.metrics
                  if m.name in names and not m.is_null}
        settled = birth.payload.timestamp - 2000
        older = [ts for device, ts in readings if device == birth.device and ts < settled]
        if not values:
            assert not older, f"{birth.topic}: null although reading {max(older)} exists"
            continue
        (taken,) = {ts for ts, _ in values.values()}  # one reading
        assert readings[(birth.device, taken)] == {name: v for name, (_, v) in values.items()}
        assert taken >= max(older, default=0), f"{birth.topic}: reading {taken} not the latest"


def test_tck_id_payloads_dbirth_order(session_run: Run) -> None:
    """DBIRTHs come right after the NBIRTH, before any DDATA. Later in a session only a device that was
    not born in it (a meter answering again after its DDEATH) may be born: a DBIRTH for a device already
    born is a birth out of order (a changed verdict is announced by a whole new birth sequence)."""
    for session in session_run.capture.sessions():
        born: set[str] = set()
        data_seen = False
        for m in session.messages:
            if m.kind == "DBIRTH":
                assert m.device not in born or not data_seen, f"DBIRTH of born {m.device} after DDATA"
                born.add(m.device or "")
            elif m.kind == "DDEATH":
                born.discard(m.device or "")
            elif m.kind == "DDATA":
                data_seen = True
                assert m.device in born, f"DDATA of {m.device} not born in this session"


def test_tck_id_payloads_ddata_order(session_run: Run) -> None:
    """No DDATA before the NBIRTH and the DBIRTH(s) of the birth sequence."""
    for session in session_run.capture.sessions():
        first_data = next((i for i, m in enumerate(session.messages) if m.kind == "DDATA"), None)
        births = [m.device for m in session.messages[:first_data] if m.kind == "DBIRTH"]
        if first_data is not None:
            assert session.messages[first_data].device in births


def test_tck_id_payloads_ndata_order(session_run: Run) -> None:
    for session in session_run.capture.sessions():
        kinds = [m.kind for m in session.messages]
        if "NDATA" in kinds:  # no NDATA before the birth sequence's DBIRTHs
            assert "DBIRTH" not in kinds or kinds.index("DBIRTH") < kinds.index("NDATA")


def test_tck_id_case_sensitivity_metric_names(session_run: Run) -> None:
    for birth in session_run.capture.of("NBIRTH", "DBIRTH"):
        names = [m.name.lower() for m in birth.payload.metrics]
        assert len(names) == len(set(names)), birth.topic


def test_tck_id_payloads_alias_uniqueness(session_run: Run) -> None:
    """One meaning per alias across the edge node's NBIRTH and all its DBIRTHs: two meters' voltageAN
    under one alias is what would make a host file one meter's values under the other's names."""
    for session in session_run.capture.sessions():
        owners, clashes = judge.alias_owners(session)
        assert clashes == []
        assert len({device for device, _ in owners.values()}) == 1 + len(ASSETS)


def test_tck_id_payloads_alias_birth_requirement(session_run: Run) -> None:
    for birth in session_run.capture.of("NBIRTH", "DBIRTH"):
        for m in birth.payload.metrics:
            assert m.HasField("name")
            assert m.HasField("alias") or m.name == "Node Control/Rebirth"  # which must have none


def test_tck_id_operational_behavior_data_publish_dbirth_order(session_run: Run) -> None:
    for m in session_run.capture.of("DBIRTH", "DDATA"):
        by_alias: dict[int, list[int]] = {}
        for x in m.payload.metrics:
            if not x.is_historical:
                by_alias.setdefault(x.alias, []).append(x.timestamp)
        assert all(ts == sorted(ts) for ts in by_alias.values())
