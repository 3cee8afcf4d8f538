"""Loss-free QoS 0 DDATA: no reading lost, none mislabeled, through what goes wrong in a plant.

Each run (tests/sparkplug/scenarios.py) ends with the meters stopped and the buffer drained, then
compares what a persistent subscriber got from the broker with what the collector says it took (its
buffer's per-asset reading counter, kept across restarts). DDATA are QoS 0 (the specification's) and the
collector deletes a row only after the broker confirmed, on the same connection, a packet written after
it (docs/collector.md): a connection that dies first leaves the row in the buffer, and it is sent again.
"""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.ca import DevCA
from tests.sparkplug import judge, scenarios
from tests.sparkplug.capture import metric
from tests.sparkplug.scenarios import ASSETS, REFUSED, Run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outage_run(tmp_path_factory: pytest.TempPathFactory, dev_ca: DevCA, payload_class: Any) -> Run:
    return scenarios.broker_outage(tmp_path_factory.mktemp("outage"), dev_ca, payload_class)


@pytest.fixture(scope="module")
def refused_run(tmp_path_factory: pytest.TempPathFactory, dev_ca: DevCA, payload_class: Any) -> Run:
    return scenarios.refused_reconnects(tmp_path_factory.mktemp("refused"), dev_ca, payload_class)


@pytest.fixture(scope="module")
def kill9_run(tmp_path_factory: pytest.TempPathFactory, dev_ca: DevCA, payload_class: Any) -> Run:
    return scenarios.kill9(tmp_path_factory.mktemp("kill9"), dev_ca, payload_class)


@pytest.fixture(scope="module")
def blackhole_run(tmp_path_factory: pytest.TempPathFactory, dev_ca: DevCA, payload_class: Any) -> Run:
    return scenarios.blackhole(tmp_path_factory.mktemp("blackhole"), dev_ca, payload_class)


RUNS = ["session_run", "host_run", "outage_run", "refused_run", "kill9_run", "blackhole_run"]


def received_readings(run: Run, payload_class: Any) -> dict[str, set[int]]:
    """(device -> reading timestamps) of the DDATA the broker delivered to the subscriber."""
    out: dict[str, set[int]] = {a: set() for a in ASSETS}
    for m in run.host_messages:
        levels = m.topic.split("/")
        if levels[2] == "DDATA":
            taken = {x.timestamp for x in payload_class.FromString(m.payload).metrics}
            assert len(taken) == 1, m.topic  # one reading per DDATA
            out[levels[4]] |= taken
    return out


@pytest.mark.parametrize("which", RUNS)
def test_every_reading_taken_reached_the_broker(which: str, request: pytest.FixtureRequest,
                                                payload_class: Any) -> None:
    run: Run = request.getfixturevalue(which)
    received = received_readings(run, payload_class)
    assert {a: len(ts) for a, ts in received.items()} == run.readings
    assert all(run.readings[a] >= 20 for a in ASSETS)


@pytest.mark.parametrize("which", RUNS)
def test_no_reading_is_mislabeled(which: str, request: pytest.FixtureRequest) -> None:
    """Each DDATA metric resolves (through its session's births, one alias table per edge node) to a
    metric of the device on whose topic it came; historical exactly when older than the values its
    device's DBIRTH announced as current."""
    run: Run = request.getfixturevalue(which)
    for session in run.capture.sessions():
        owners, clashes = judge.alias_owners(session)
        assert clashes == []
        current: dict[str, int] = {}
        for m in session.messages:
            if m.kind == "DBIRTH":
                assert m.device is not None
                current[m.device] = max(x.timestamp for x in m.payload.metrics if x.name == "voltageAN")
            elif m.kind == "DDATA":
                assert m.device is not None
                assert {owners[x.alias][0] for x in m.payload.metrics} == {m.device}, m.topic
                (taken,) = {x.timestamp for x in m.payload.metrics}
                historical = {x.is_historical for x in m.payload.metrics}
                assert historical == {taken < current[m.device]}, f"{m.topic} seq {m.payload.seq}"


@pytest.mark.parametrize("which", RUNS)
def test_ddata_stays_qos_0_and_seq_runs_on(which: str, request: pytest.FixtureRequest) -> None:
    run: Run = request.getfixturevalue(which)
    assert {m.packet.qos for m in run.capture.of("DDATA")} == {0}
    for session in run.capture.sessions():
        assert judge.seq_continuity(session) == []


def test_a_broker_outage_replays_what_it_missed_as_history(outage_run: Run) -> None:
    down = outage_run.marks["broker down"]
    sessions = outage_run.capture.sessions()
    assert len({s.connection for s in sessions}) >= 2
    after = [m for m in outage_run.capture.of("DDATA") if m.packet.at > outage_run.marks["broker up"]]
    replayed = [m for m in after if all(x.is_historical for x in m.payload.metrics)]
    assert len(replayed) >= 2 * 20  # 6 s of 0.1 s polls of two meters, a few already sent
    assert all(x.timestamp >= (down - 30) * 1000 for m in replayed for x in m.payload.metrics)


def test_bdseq_counts_connect_packets_refused_ones_included(refused_run: Run) -> None:
    """tck-id-topics-nbirth-bdseq-increment through refusals: the wills of the six CONNECT packets carry
    0..5, and the NBIRTH of the accepted one repeats 5 (the old collector showed 0, 1, 6 here)."""
    capture = refused_run.capture
    connects = capture.connects()
    assert [c.forwarded for c in connects] == [True] + [False] * REFUSED + [True]
    wills = [metric(capture.will(c.connection), "bdSeq").long_value for c in connects]
    assert wills == list(range(2 + REFUSED))
    assert [metric(n.payload, "bdSeq").long_value for n in capture.of("NBIRTH")] == [0, 1 + REFUSED]


def test_kill9_then_restart_continues_bdseq_and_the_broker_sends_the_will(
    kill9_run: Run, payload_class: Any
) -> None:
    capture = kill9_run.capture
    wills = [metric(capture.will(c.connection), "bdSeq").long_value for c in capture.connects()]
    assert wills == list(range(len(wills)))  # across the restart: the count lives beside the buffer
    killed = max(c.connection for c in capture.connects() if c.at < kill9_run.marks["kill -9"])
    killed_bdseq = metric(capture.will(killed), "bdSeq").long_value
    deaths = [payload_class.FromString(m.payload) for m in kill9_run.host_messages if "/NDEATH/" in m.topic]
    assert killed_bdseq in [metric(d, "bdSeq").long_value for d in deaths]


def test_rows_lost_in_a_silent_network_are_sent_again(blackhole_run: Run, payload_class: Any) -> None:
    """DDATA written into the silent path never reached the broker; each of those readings went out
    again on the next connection, and only once the broker confirmed them did they leave the buffer."""
    lost = [m for m in blackhole_run.capture.of("DDATA") if not m.packet.forwarded]
    assert len(lost) >= 10  # the keepalive takes a few seconds to give the path up
    resent = {(m.device, x.timestamp) for m in blackhole_run.capture.of("DDATA")
              if m.packet.forwarded for x in m.payload.metrics}
    assert all((m.device, x.timestamp) in resent for m in lost for x in m.payload.metrics)
    received = received_readings(blackhole_run, payload_class)
    assert all(x.timestamp in received[m.device or ""] for m in lost for x in m.payload.metrics)


def test_live_readings_share_their_confirmation(session_run: Run) -> None:
    """Live DDATA written within CONFIRM_DELAY_S (0.2 s) share one UNSUBSCRIBE: with two meters polled
    every 0.1 s that is about four readings per confirmation, never one each (what it costs:
    docs/BENCHMARKS.md). The confirmations are still there: each session's rows left the buffer."""
    packets = session_run.capture.packets
    ddata = sum(p.type == "PUBLISH" and "/DDATA/" in (p.topic or "") for p in packets)
    unsubscribes = sum(p.type == "UNSUBSCRIBE" for p in packets)
    assert 0 < 2 * unsubscribes <= ddata, (unsubscribes, ddata)  # before: 376 for 378 DDATA
