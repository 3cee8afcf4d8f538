"""Session termination and commands (TCK `edge/SessionTerminationTest`, `edge/ReceiveCommandTest`).

On the captured `session` run: meter-1 stops answering and comes back, a host asks for a rebirth, the
collector stops cleanly (SIGTERM). A DDEATH is due after `collector.mqtt_sink.device_death_after_s`
(3 poll intervals, at least 5 s): the judge allows that plus 3 s.
"""

from __future__ import annotations

import pytest

from collector.mqtt_sink import device_death_after_s
from sandbox.mqtt_tap import Packet
from tests.collector.harness import THING
from tests.sparkplug import judge
from tests.sparkplug.capture import metric
from tests.sparkplug.scenarios import ASSETS, NEW_POLL_S, POLL_S, Run

pytestmark = pytest.mark.slow

NCMD = f"spBv1.0/pm500/NCMD/{THING}"
DEATH_MARGIN_S = 3.0


def ddeaths(run: Run) -> list[judge.Published]:
    return run.capture.of("DDEATH")


def last_connection(run: Run) -> list[Packet]:
    capture = run.capture
    return capture.on_connection(capture.connections()[-1])


def test_tck_id_operational_behavior_edge_node_intentional_disconnect_ndeath(session_run: Run) -> None:
    """The clean stop publishes NDEATH (with the session's bdSeq) before it closes the connection."""
    packets = [p for p in last_connection(session_run) if p.direction == "client->broker"]
    ndeath = next(
        i for i, p in enumerate(packets) if p.type == "PUBLISH" and "/NDEATH/" in (p.topic or ""))
    assert packets[-1].type == "DISCONNECT" and ndeath < len(packets) - 1
    (death,) = session_run.capture.of("NDEATH")
    births = session_run.capture.of("NBIRTH")
    birth = next(m for m in births if m.packet.connection == death.packet.connection)
    assert metric(death.payload, "bdSeq").long_value == metric(birth.payload, "bdSeq").long_value


def test_tck_id_operational_behavior_edge_node_intentional_disconnect_packet(session_run: Run) -> None:
    """MAY: the DISCONNECT packet right after the NDEATH, nothing in between."""
    packets = [p for p in last_connection(session_run) if p.direction == "client->broker"]
    assert [p.type for p in packets[-2:]] == ["PUBLISH", "DISCONNECT"]
    assert "/NDEATH/" in (packets[-2].topic or "")


def test_tck_id_payloads_ndeath_will_message_publisher(session_run: Run) -> None:
    assert [m.kind for m in session_run.capture.published][-1] == "NDEATH"


def test_tck_id_payloads_ndeath_will_message_publisher_disconnect_mqtt311(session_run: Run) -> None:
    packets = [p for p in last_connection(session_run) if p.direction == "client->broker"]
    assert packets[-1].type == "DISCONNECT" and "/NDEATH/" in (packets[-2].topic or "")
    assert {c.protocol_level for c in session_run.capture.connects()} == {4}  # MQTT 3.1.1


def test_tck_id_topics_ndeath_topic(session_run: Run) -> None:
    assert [m.topic for m in session_run.capture.of("NDEATH")] == [f"spBv1.0/pm500/NDEATH/{THING}"]


def test_tck_id_operational_behavior_device_ddeath(session_run: Run) -> None:
    """meter-1 stops answering: its DDEATH in time, no DDATA of it until a DBIRTH with a new reading."""
    silent, back = session_run.marks["meter-1 silent"], session_run.marks["meter-1 answers again"]
    capture = session_run.capture
    death = next(m for m in ddeaths(session_run) if m.device == "meter-1" and m.packet.at > silent)
    assert death.packet.at - silent <= device_death_after_s(POLL_S) + DEATH_MARGIN_S
    after = [m for m in capture.published if m.device == "meter-1" and m.packet.at > death.packet.at]
    assert after[0].kind == "DBIRTH" and after[0].packet.at > back
    readings = [x.timestamp for x in after[0].payload.metrics if x.name == "voltageAN"]
    assert readings and readings[0] / 1000 > back - 1  # the DBIRTH's values: a reading taken once back
    # meter-0 kept publishing throughout: only the silent device died
    assert not any(m.device == "meter-0" and silent < m.packet.at < back for m in ddeaths(session_run))


def test_tck_id_topics_ddeath_topic(session_run: Run) -> None:
    assert ddeaths(session_run) and judge.topic_form(ddeaths(session_run)) == []
    assert {m.device for m in ddeaths(session_run)} == set(ASSETS)  # the silent one, then both at the stop


def test_tck_id_topics_ddeath_mqtt(session_run: Run) -> None:
    assert judge.mqtt_flags(ddeaths(session_run)) == []


def _ddeath_seq_steps(run: Run) -> list[str]:
    out = []
    for session in run.capture.sessions():
        previous = session.nbirth.payload.seq
        for m in session.messages:
            if m.kind == "DDEATH" and m.payload.seq != (previous + 1) % 256:
                out.append(f"{m.topic}: {m.payload.seq} after {previous}")
            previous = m.payload.seq
    return out


def test_tck_id_topics_ddeath_seq_num(session_run: Run) -> None:
    assert _ddeath_seq_steps(session_run) == []


def test_tck_id_payloads_ddeath_seq(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") for m in ddeaths(session_run))


def test_tck_id_payloads_ddeath_seq_inc(session_run: Run) -> None:
    assert _ddeath_seq_steps(session_run) == []


def test_tck_id_payloads_ddeath_seq_number(session_run: Run) -> None:
    assert all(m.payload.HasField("seq") and 0 <= m.payload.seq <= 255 for m in ddeaths(session_run))


def test_tck_id_payloads_ddeath_timestamp(session_run: Run) -> None:
    assert judge.publish_timestamps(ddeaths(session_run)) == []


# -- commands -----------------------------------------------------------------------------------------


def _rebirth(run: Run) -> tuple[Packet, judge.Published]:
    """The NCMD the host sent, as delivered to the collector, and the NBIRTH that answered it."""
    ncmd = run.capture.delivered_to_edge(NCMD)[0]  # the first: the later ones write settings
    answer = next(m for m in run.capture.of("NBIRTH") if m.packet.at > ncmd.at)
    return ncmd, answer


def test_tck_id_topics_ncmd_topic(session_run: Run) -> None:
    """The edge node takes commands on `spBv1.0/<group>/NCMD/<edge node>` (its subscription)."""
    filters = {f for p in session_run.capture.packets if p.type == "SUBSCRIBE" for f, _ in p.filters}
    assert NCMD in filters and not any("DCMD" in f for f in filters)


def test_tck_id_operational_behavior_data_commands_rebirth_action_1(session_run: Run) -> None:
    """No data once the rebirth request is in: a DDATA between the NCMD's delivery and the NBIRTH must
    have been published (its payload timestamp) before the NCMD could have been read."""
    ncmd, nbirth = _rebirth(session_run)
    between = [m for m in session_run.capture.of("DDATA") if ncmd.at < m.packet.at < nbirth.packet.at]
    assert all(m.payload.timestamp <= ncmd.at * 1000 for m in between)


def test_tck_id_operational_behavior_data_commands_rebirth_action_2(session_run: Run) -> None:
    """A complete birth sequence: NBIRTH, then a DBIRTH per device, then data."""
    _, nbirth = _rebirth(session_run)
    session = next(s for s in session_run.capture.sessions() if s.nbirth is nbirth)
    kinds = [(m.kind, m.device) for m in session.messages[: len(ASSETS)]]
    assert sorted(kinds) == [("DBIRTH", a) for a in ASSETS]


def test_tck_id_operational_behavior_data_commands_rebirth_action_3(session_run: Run) -> None:
    """The NBIRTH of a rebirth repeats the bdSeq of the connection's will: no new CONNECT."""
    ncmd, nbirth = _rebirth(session_run)
    assert nbirth.packet.connection == ncmd.connection
    will = session_run.capture.will(nbirth.packet.connection)
    assert metric(nbirth.payload, "bdSeq").long_value == metric(will, "bdSeq").long_value


# -- writes of node metrics (the settings NBIRTH declares) ------------------------------------------------


def _history(run: Run) -> list[dict[str, object]]:
    return run.health["settings"]["history"]  # type: ignore[no-any-return]


def test_tck_id_operational_behavior_data_commands_ncmd_verb(session_run: Run) -> None:
    """Node-level writes come as NCMD: the host's write of `Settings/poll_interval_s` was applied (the
    collector now polls at the new interval) and announced in NDATA."""
    assert session_run.health["poll_interval_s"] == NEW_POLL_S
    applied = [h for h in _history(session_run)
               if h["source"] == "sparkplug-ncmd" and h["outcome"] == "applied"]
    assert [h["changes"] for h in applied] == [{"poll_interval_s": NEW_POLL_S}]


def test_tck_id_operational_behavior_data_commands_ncmd_metric_name(session_run: Run) -> None:
    """A metric NBIRTH did not declare writable is refused, naming it; nothing changes."""
    refused = [h for h in _history(session_run) if h["outcome"] == "refused"]
    assert any("Node Control/Reboot: not a writable metric" in str(h["reasons"]) for h in refused)


def test_tck_id_operational_behavior_data_commands_ncmd_metric_value(session_run: Run) -> None:
    """A value incompatible with the metric (a Double for a Boolean, a poll interval below its limit)
    is refused whole, naming the setting; no NDATA follows and the values in force stay."""
    refused = [h["reasons"] for h in _history(session_run) if h["outcome"] == "refused"]
    assert any("0.1..3600" in str(r.get("poll_interval_s")) for r in refused)  # type: ignore[union-attr]
    assert any("debug" in r for r in refused)  # type: ignore[operator]
    after = session_run.marks["refused writes"]
    assert [m for m in session_run.capture.of("NDATA") if m.packet.at > after] == []
