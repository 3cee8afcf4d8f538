"""Primary Host Application awareness (TCK `edge/PrimaryHostTest`), judged on the captured `primary_host` run.

The run follows the TCK's steps: another host online; our host's STATE offline; online; an old offline
(timestamp 16671135, as the TCK sends); offline; an old online; then a new host session. The judges read
the STATE messages the broker delivered to the collector and what the collector published after each,
on each connection: so the verdicts do not depend on the run's timing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from sandbox.mqtt_tap import Packet
from tests.sparkplug import judge
from tests.sparkplug.capture import state_of
from tests.sparkplug.host import OLD_TIMESTAMP
from tests.sparkplug.scenarios import ASSETS, HOST_ID, Run

pytestmark = pytest.mark.slow

STATE = f"spBv1.0/STATE/{HOST_ID}"


@dataclass
class Delivered:
    packet: Packet
    online: bool
    timestamp: int
    valid: bool  # not older than every STATE delivered before it (the rule an edge node applies)


def states(run: Run) -> list[Delivered]:
    """The STATE messages delivered to the collector, in order, each judged by the timestamp rule."""
    out, newest = [], None
    for p in run.capture.delivered_to_edge(STATE):
        data = state_of(p)
        assert data is not None, p.payload
        valid = newest is None or data["timestamp"] >= newest
        if valid:
            newest = data["timestamp"]
        out.append(Delivered(p, data["online"], data["timestamp"], valid))
    return out


def published_between(run: Run, connection: int, start: float, end: float) -> list[judge.Published]:
    return [m for m in run.capture.published
            if m.packet.connection == connection and start < m.packet.at < end]


def after_each(run: Run, online: bool, valid: bool) -> Iterator[tuple[Delivered, float]]:
    """Each delivered STATE of that kind, with the time the next STATE reached that connection."""
    delivered = states(run)
    for i, d in enumerate(delivered):
        if d.online == online and d.valid == valid:
            later = [x.packet.at for x in delivered[i + 1:] if x.packet.connection == d.packet.connection]
            yield d, min(later, default=float("inf"))


def test_the_run_went_through_every_step(host_run: Run) -> None:
    delivered = [(d.online, d.timestamp == OLD_TIMESTAMP, d.valid) for d in states(host_run)]
    assert (False, False, True) in delivered and (True, False, True) in delivered
    assert (False, True, False) in delivered and (True, True, False) in delivered
    assert len(host_run.capture.connects()) == 2 and len(host_run.capture.of("NBIRTH")) == 2


def test_tck_id_message_flow_edge_node_birth_publish_phid_wait(host_run: Run) -> None:
    """Each NBIRTH and DBIRTH comes after a valid `online: true` STATE on its own connection."""
    for birth in host_run.capture.of("NBIRTH", "DBIRTH"):
        before = [d for d in states(host_run) if d.valid
                  and d.packet.connection == birth.packet.connection and d.packet.at < birth.packet.at]
        assert before and before[-1].online, birth.topic


def test_tck_id_operational_behavior_edge_node_birth_sequence_wait(host_run: Run) -> None:
    test_tck_id_message_flow_edge_node_birth_publish_phid_wait(host_run)


def test_tck_id_message_flow_edge_node_birth_publish_phid_wait_id(host_run: Run) -> None:
    """Only this host's STATE counts: the collector listens to spBv1.0/STATE/<its host id> alone, and
    another host online (from the start of the run) gives no births."""
    filters = {f for p in host_run.capture.packets if p.type == "SUBSCRIBE" for f, _ in p.filters}
    assert {f for f in filters if "/STATE/" in f} == {STATE}
    first_birth = host_run.capture.of("NBIRTH")[0].packet.at
    assert first_birth > host_run.marks["host online"] > host_run.marks["other host online"]


def test_tck_id_message_flow_edge_node_birth_publish_phid_wait_online(host_run: Run) -> None:
    """After a valid offline STATE, nothing is born until an online one."""
    for d, until in after_each(host_run, online=False, valid=True):
        births = [m for m in published_between(host_run, d.packet.connection, d.packet.at, until)
                  if m.kind in ("NBIRTH", "DBIRTH")]
        assert births == []


def test_tck_id_message_flow_edge_node_birth_publish_phid_wait_timestamp(host_run: Run) -> None:
    """An `online: true` STATE older than the last one seen is not taken as the host being online."""
    old = list(after_each(host_run, online=True, valid=False))
    assert old
    for d, until in old:
        births = [m for m in published_between(host_run, d.packet.connection, d.packet.at, until)
                  if m.kind in ("NBIRTH", "DBIRTH")]
        assert births == []


def _left_after(run: Run, d: Delivered) -> list[Packet]:
    """What the collector wrote on that connection after the STATE arrived."""
    return [p for p in run.capture.on_connection(d.packet.connection)
            if p.direction == "client->broker" and p.at > d.packet.at]


def _valid_offline_while_born(run: Run) -> list[Delivered]:
    born_connections = {m.packet.connection for m in run.capture.of("NBIRTH")}
    return [d for d, _ in after_each(run, online=False, valid=True)
            if d.packet.connection in born_connections
            and any(m.packet.at < d.packet.at for m in run.capture.of("NBIRTH")
                    if m.packet.connection == d.packet.connection)]


def test_tck_id_message_flow_edge_node_birth_publish_phid_offline(host_run: Run) -> None:
    """Online and born, a valid offline STATE: NDEATH at once, then DISCONNECT; nothing born after."""
    offline = _valid_offline_while_born(host_run)
    assert offline
    for d in offline:
        written = _left_after(host_run, d)
        kinds = [(p.type, (p.topic or "").split("/")[2] if p.topic else "") for p in written]
        assert ("PUBLISH", "NDEATH") in kinds and kinds[-1] == ("DISCONNECT", "")
        after_death = kinds[kinds.index(("PUBLISH", "NDEATH")) + 1:]
        assert after_death == [("DISCONNECT", "")]


def test_tck_id_operational_behavior_edge_node_termination_host_offline(host_run: Run) -> None:
    for d in _valid_offline_while_born(host_run):
        assert _left_after(host_run, d)[-1].type == "DISCONNECT"


def test_tck_id_operational_behavior_edge_node_termination_host_offline_reconnect(host_run: Run) -> None:
    """After leaving for the host, a new CONNECT (the only server again: there is one)."""
    for d in _valid_offline_while_born(host_run):
        disconnect = _left_after(host_run, d)[-1]
        assert any(c.at > disconnect.at for c in host_run.capture.connects())


def test_tck_id_operational_behavior_primary_application_state_with_multiple_servers_walk(
    host_run: Run,
) -> None:
    test_tck_id_operational_behavior_edge_node_termination_host_offline_reconnect(host_run)


def test_tck_id_operational_behavior_edge_node_termination_host_offline_timestamp(host_run: Run) -> None:
    """An offline STATE older than the online one: no disconnect, the session goes on publishing."""
    old = [d for d, _ in after_each(host_run, online=False, valid=False)]
    assert old
    for d, until in after_each(host_run, online=False, valid=False):
        published = published_between(host_run, d.packet.connection, d.packet.at, until)
        assert [m.kind for m in published if m.kind in ("NDEATH", "NBIRTH")] == []
        assert sum(m.kind == "DDATA" for m in published) >= 5


def test_tck_id_operational_behavior_primary_application_state_with_multiple_servers_state_subs(
    host_run: Run,
) -> None:
    """Every connection subscribes to the Primary Host's STATE (QoS 1) before anything is born."""
    for connection in host_run.capture.connections():
        packets = host_run.capture.on_connection(connection)
        subscribes = [p for p in packets if p.type == "SUBSCRIBE"]
        assert subscribes and (STATE, 1) in subscribes[0].filters
        births = [p for p in packets if p.type == "PUBLISH" and "/NBIRTH/" in (p.topic or "")]
        assert all(b.at > subscribes[0].at for b in births)


def test_tck_id_operational_behavior_primary_application_state_with_multiple_servers_single_server(
    host_run: Run,
) -> None:
    """One connection at a time: each CONNECT after the previous connection's last packet."""
    capture = host_run.capture
    spans = [(min(p.at for p in capture.on_connection(c)), max(p.at for p in capture.on_connection(c)))
             for c in capture.connections()]
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_readings_taken_while_the_host_was_away_reach_it_as_history(host_run: Run) -> None:
    """No reading lost or mislabeled: every reading the collector took reached the host application, once
    it was back; a reading older than the values its device's DBIRTH announced came flagged historical,
    and only those (a host keeps the DBIRTH's value as current and files the rest in its history)."""
    host_got = {(m.topic, m.payload) for m in host_run.host_messages}
    delivered: dict[str, set[int]] = {a: set() for a in ASSETS}
    historical_count = 0
    for m, device, _, historical in judge.resolved(host_run.capture):
        assert (m.topic, m.packet.payload) in host_got  # the host did receive it
        (taken,) = {x.timestamp for x in m.payload.metrics}
        delivered[device].add(taken)
        births = host_run.capture.of("DBIRTH")
        birth = [b for b in births if b.device == device and b.packet.at < m.packet.at][-1]
        announced = max(x.timestamp for x in birth.payload.metrics if x.name == "voltageAN")
        assert historical == (taken < announced), f"{m.topic} seq {m.payload.seq}"
        historical_count += historical
    assert {a: len(ts) for a, ts in delivered.items()} == host_run.readings
    assert historical_count >= 20  # ~2 s of both meters held while the host was offline, then sent
