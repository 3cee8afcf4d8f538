"""The demo's own logic: work directory safety, MQTT/InfluxDB accounting, the verdict, signals."""

from __future__ import annotations

import os
import signal

import pytest

from collector.payload import ddata, encode, node_state
from collector.reading import Reading
from collector.topics import DDATA, NBIRTH
from demo import observe
from demo.signals import Shutdown, stop_signals
from demo.verdict import LEG_INFLUX, LEG_METERS, LEG_MQTT, judge
from demo.workdir import MARKER, WorkdirError, prepare, record_pids
from sandbox.influx import InfluxServer
from sandbox.procs import ManagedProcess

THING = "local:plant:edge-1"
BUFFER_ID = "3f2a6c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"


def _snapshot() -> observe.Snapshot:
    return observe.new_snapshot(THING, [("m1", "F1"), ("m2", "F2")])


def _ddata(asset: str, seq: int, kw: float) -> tuple[str, bytes]:
    reading = Reading("plant", asset, "F1", 1_700_000_000_000, {"realPower": kw, "frequency": 50.0})
    return DDATA.render(THING, asset), encode(ddata(reading, THING, seq, buffer_id=BUFFER_ID))


def test_workdir_is_recreated_from_scratch(tmp_path):
    folder, _ = prepare(tmp_path / "demo")
    (folder / "logs" / "old.log").write_text("previous run")
    again, leftovers = prepare(tmp_path / "demo")
    assert again == folder and leftovers == []
    assert (again / MARKER).exists()
    assert list((again / "logs").iterdir()) == []


def test_a_killed_runs_children_are_stopped_by_the_next_run_and_nothing_else(tmp_path):
    folder, _ = prepare(tmp_path / "demo")
    ours = ManagedProcess(["sleep", "300"], folder / "logs" / "sleep.log", cwd=folder).start()
    unrelated = ManagedProcess(["sleep", "300"], tmp_path / "other.log", cwd=tmp_path).start()
    try:
        record_pids(folder, {"collector": ours.pid, "recycled pid": unrelated.pid})
        _, leftovers = prepare(folder)
        assert leftovers == [f"collector ({ours.pid})"]
        assert ours.wait(timeout=30) == -signal.SIGKILL
        assert unrelated.running
    finally:
        ours.stop()
        unrelated.stop()


def test_workdir_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(WorkdirError, match="not a previous demo folder"):
        prepare(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_messages_are_counted_per_asset_and_births_aside():
    snap = _snapshot()
    birth = (NBIRTH.render(THING), encode(node_state(THING, "plant", True, 1)))
    observe.count_messages(snap, THING, [birth, _ddata("m1", 0, 1.5), _ddata("m1", 1, 2.5),
                                         _ddata("m2", 7, 3.0), ("spBv1.0/pm500/DDATA/other:x:y/m1", b"{}")])
    assert snap.assets["m1"].mqtt_messages == 2
    assert snap.assets["m1"].last_seq == 1
    assert snap.assets["m1"].last_values["realPower"] == 2.5
    assert snap.assets["m2"].mqtt_messages == 1
    assert snap.other_messages == 2  # the birth and another thing's DDATA are not this collector's data
    assert (snap.births, snap.deaths) == (1, 0)


def test_births_and_deaths_of_this_collector_are_counted_apart_from_other_traffic():
    snap = _snapshot()
    observe.count_messages(snap, THING, [
        (NBIRTH.render(THING), b"{}"),
        ("spBv1.0/pm500/DBIRTH/local:plant:edge-1/m1", b"{}"),
        ("spBv1.0/pm500/DBIRTH/local:plant:edge-1/m2", b"{}"),
        ("spBv1.0/pm500/NDEATH/local:plant:edge-1", b"{}"),
        ("spBv1.0/pm500/NBIRTH/other:x:y", b"{}"),
    ])
    assert (snap.births, snap.deaths, snap.other_messages) == (3, 1, 5)


def test_verdict_names_each_failed_leg():
    snap = _snapshot()
    assert judge(snap).failures[0].startswith(LEG_METERS)
    snap.assets["m1"].mqtt_messages = snap.assets["m2"].mqtt_messages = 5
    failures = judge(snap).failures
    assert len(failures) == 1 and failures[0].startswith(LEG_INFLUX) and "m1, m2" in failures[0]
    snap.assets["m1"].influx_points = snap.assets["m2"].influx_points = 4
    snap.assets["m2"].mqtt_messages = 0
    failures = judge(snap).failures
    assert len(failures) == 1 and failures[0].startswith(LEG_MQTT) and "m2" in failures[0]
    snap.assets["m2"].mqtt_messages = 1
    assert judge(snap).ok


def test_points_are_counted_per_asset_from_a_real_influxdb(tmp_path):
    with InfluxServer(tmp_path / "influx") as influx:
        influx.create_database("pm500")
        influx.write("pm500", "\n".join([
            "powermonitor_500,site=plant,asset=m1,phase=A,breaker=F1 kW=1.0 1000",
            "powermonitor_500,site=plant,asset=m1,phase=total,breaker=F1 kW=3.0 1000",
            "powermonitor_500,site=plant,asset=m2,phase=total,breaker=F2 kW=2.0 1000",
        ]), precision="ms")
        snap = _snapshot()
        observe.count_points(snap, influx.url, "pm500")
        assert (snap.assets["m1"].influx_points, snap.assets["m2"].influx_points) == (2, 1)
        observe.count_points(snap, influx.url, "no_such_db")
        assert snap.influx_error and "no_such_db" in snap.influx_error


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_first_stop_signal_raises_once_then_teardown_is_shielded(sig):
    before = signal.getsignal(sig)
    with stop_signals() as guard:
        with pytest.raises(Shutdown) as stopped:
            os.kill(os.getpid(), sig)
        assert stopped.value.signame == signal.Signals(sig).name
        with guard.shielded():
            os.kill(os.getpid(), sig)  # a second Ctrl-C during teardown is only noted
        assert guard.received == [signal.Signals(sig).name] * 2
    assert signal.getsignal(sig) is before

