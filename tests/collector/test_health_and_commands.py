"""Health notices a dead meter thread; NCMD downlink through the real broker (ACL, mutual TLS).

The collector runs in-process (real Poller against the simulator, real buffer, real MQTT sink) so the
test can inject a poller factory: a driver that fails with an error the poller does not expect kills
that meter's thread, and a recording factory shows which interval polling was restarted with.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector import topics
from collector.buffer import Buffer
from collector.config import MeterConfig, load_config
from collector.consistency import Verdict
from collector.health import check
from collector.meter import MeterDriver, pycomm_driver
from collector.poller import Poller
from collector.reading import Reading
from collector.service import Collector, PollerLike
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from tests.collector.harness import THING, Simulator, wait_until, write_bundle

pytestmark = pytest.mark.slow

OPERATOR_CN = "pm500-test-operator"
NCMD_TOPIC = topics.NCMD.render(THING)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Simulator]:
    sim = Simulator(tmp_path, meters=2).start()
    yield sim
    sim.stop()


@pytest.fixture
def broker(tmp_path: Path, dev_ca: DevCA) -> Iterator[MosquittoBroker]:
    """The collector's own ACL (NCMD is read-only for it) plus an operator allowed to send it NCMD."""
    broker = MosquittoBroker(
        tmp_path / "mosquitto", dev_ca, acl_extra=[f"user {OPERATOR_CN}", f"topic write {NCMD_TOPIC}"]
    )
    broker.start()
    yield broker
    broker.stop()


def running_collector(config: Path, factory: Callable[..., PollerLike]) -> Collector:
    collector = Collector(load_config(config), poller_factory=factory)
    collector.start()
    return collector


class ThreadKiller(BaseException):
    """The poller survives every Exception; what can still end a meter thread is a BaseException or a
    bug in its loop. This stands in for either."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_dead_meter_thread_makes_the_collector_unhealthy(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker, simulator: Simulator
) -> None:
    def driver(meter: MeterConfig, timeout_s: float) -> MeterDriver:
        if meter.asset == "meter-0":
            raise ThreadKiller("meter-0's thread dies here")
        return pycomm_driver(meter, timeout_s)

    def factory(
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        on_verdict: Callable[[str, Verdict], None] | None = None,
    ) -> PollerLike:
        return Poller(site, meters, interval_s, on_reading, driver_factory=driver, on_verdict=on_verdict)

    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None)
    collector = running_collector(config, factory)
    try:
        health = wait_until(
            lambda: (h := collector.snapshot())["meters"]["meter-1"]["reads"] >= 3 and h, 30, "meter-1 reads"
        )
        assert health["meters"]["meter-1"]["state"] == "ok"
        assert health["status"] == "failing"
        assert health["problems"] == ["meter meter-0: polling thread died"]
        healthy, summary = check("127.0.0.1", collector.health.port)
        assert not healthy and "HTTP 503" in summary  # the image's HEALTHCHECK fails: a restart helps
    finally:
        collector.stop()


class Operator:
    """An operator identity publishing NCMD (QoS 1, mutual TLS) to the collector's own NCMD topic."""

    def __init__(self, broker: MosquittoBroker, ca: DevCA, directory: Path) -> None:
        cert, key = ca.issue(OPERATOR_CN, directory)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=OPERATOR_CN)
        self.client.tls_set(ca_certs=str(broker.ca_file), certfile=str(cert), keyfile=str(key))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def send(self, payload: bytes) -> None:
        self.client.publish(NCMD_TOPIC, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def recording_factory(intervals: list[float], polled: list[list[str]]) -> Callable[..., PollerLike]:
    """A real Poller factory that records each (re)start: its interval and the meters it polls."""

    def factory(
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        on_verdict: Callable[[str, Verdict], None] | None = None,
    ) -> PollerLike:
        intervals.append(interval_s)
        polled.append([m.asset for m in meters])
        return Poller(site, meters, interval_s, on_reading, on_verdict=on_verdict)

    return factory


def test_ncmd_changes_interval_and_debug_and_rejects_malformed(
    tmp_path: Path,
    dev_ca: DevCA,
    broker: MosquittoBroker,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    intervals: list[float] = []
    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None)
    collector = running_collector(config, recording_factory(intervals, []))
    operator = Operator(broker, dev_ca, tmp_path / "operator")
    caplog.set_level(logging.INFO, logger="collector.settings")
    link = collector.mqtt.link
    try:
        # NBIRTH and DBIRTHs precede the NCMD SUBSCRIBE, DDATA follows it: a DDATA PUBACK means the
        # broker has the subscription.
        wait_until(lambda: link.stats["acked"] >= 2 + len(simulator.ports) + 1, 30, "first DDATA acked")

        malformed = {
            b"{not json": "(request)",
            b"[1]": "(request)",
            b'{"reboot": true}': "reboot",
            b'{"poll_interval_s": 0}': "poll_interval_s",
            b'{"debug": "yes"}': "debug",
        }
        for payload in malformed:
            operator.send(payload)
        wait_until(lambda: collector.snapshot()["settings"]["counters"]["refused"] == 5, 20, "refusals")
        snapshot = collector.snapshot()
        history = snapshot["settings"]["history"]
        assert [(r["source"], r["outcome"]) for r in history] == [("ncmd", "refused")] * 5
        assert [list(r["reasons"]) for r in history] == [[key] for key in malformed.values()]
        refused = [r for r in caplog.records if r.getMessage() == "settings change refused"]
        assert len(refused) == len(malformed) and all(getattr(r, "reasons", None) for r in refused)
        assert (snapshot["poll_interval_s"], snapshot["debug"]) == (0.2, False)
        assert intervals == [0.2]  # nothing changed
        assert capsys.readouterr().out == ""  # debug still off: no readings printed

        operator.send(json.dumps({"poll_interval_s": 0.5, "debug": True}).encode())
        wait_until(lambda: intervals == [0.2, 0.5], 20, "poller restarted at 0.5 s")
        assert collector.settings.wait_applied(20)
        snapshot = collector.snapshot()
        assert (snapshot["poll_interval_s"], snapshot["debug"]) == (0.5, True)
        assert snapshot["settings"]["history"][-1]["changes"] == {"poll_interval_s": 0.5, "debug": True}
        printed: list[str] = []
        wait_until(lambda: printed.extend(capsys.readouterr().out.splitlines()) or printed, 20, "debug line")
        assert json.loads(printed[0])["asset"] in ("meter-0", "meter-1")

        operator.send(b'{"debug": false}')
        wait_until(lambda: collector.snapshot()["settings"]["counters"]["applied"] == 2, 20, "debug off")
        assert collector.settings.wait_applied(20)
        assert collector.debug is False and intervals == [0.2, 0.5]  # same interval: no restart
        assert link.stats["disconnects"] == 0  # bad commands never took the link down
    finally:
        operator.close()
        collector.stop()


def test_a_burst_of_commands_uses_one_worker_and_loses_no_reading(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker, simulator: Simulator
) -> None:
    """Issue 24: 500 poll-interval commands left 500 threads. And issue 22: a restart of polling
    neither loses nor repeats a reading: the buffer's seq per asset is 1..n with increasing sample times."""
    intervals: list[float] = []
    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None)
    readings: list[Reading] = []
    collector = Collector(load_config(config), poller_factory=recording_factory(intervals, []))
    commit = collector.on_reading

    def on_reading(reading: Reading) -> None:  # every reading the pollers hand over, after its commit
        commit(reading)
        readings.append(reading)

    collector.on_reading = on_reading  # type: ignore[method-assign]
    collector.start()
    operator = Operator(broker, dev_ca, tmp_path / "operator")
    link = collector.mqtt.link
    try:
        wait_until(lambda: link.stats["acked"] >= 2 + len(simulator.ports) + 1, 30, "first DDATA acked")
        threads_before = threading.active_count()
        for i in range(500):
            operator.send(json.dumps({"poll_interval_s": 0.1 + (i % 3) / 10}).encode())
            assert threading.active_count() <= threads_before
        wait_until(lambda: collector.snapshot()["settings"]["counters"]["applied"] == 500, 60, "commands")
        assert collector.settings.wait_applied(60)
        assert threading.active_count() <= threads_before
        assert intervals[-1] == collector.snapshot()["poll_interval_s"] == 0.1 + (499 % 3) / 10
        count = len(readings)
        wait_until(lambda: len(readings) >= count + 4, 30, "readings after the last restart")
    finally:
        operator.close()
        collector.stop()
    for asset in ("meter-0", "meter-1"):
        mine = [r for r in readings if r.asset == asset]
        times = [r.timestamp_ms for r in mine]
        assert times == sorted(set(times)), f"{asset}: a sample repeated or out of order"
    assert collector.counters["append_errors"] == 0
    buffer = Buffer(collector.cfg.buffer.path, collector.cfg.buffer.max_bytes, THING, ("mqtt",))
    try:  # every reading handed over got the next seq: none lost between poller and buffer
        for asset in ("meter-0", "meter-1"):
            assert buffer.last_seq(asset) == len([r for r in readings if r.asset == asset])
    finally:
        buffer.close()


def test_meter_out_of_service_and_settings_survive_a_restart(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker, simulator: Simulator
) -> None:
    intervals: list[float] = []
    polled: list[list[str]] = []
    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None)
    collector = running_collector(config, recording_factory(intervals, polled))
    operator = Operator(broker, dev_ca, tmp_path / "operator")
    try:
        wait_until(lambda: collector.mqtt.link.stats["acked"] >= 4, 30, "first DDATA acked")
        operator.send(b'{"meters": {"meter-1": {"in_service": false}}, "poll_interval_s": 0.3}')
        wait_until(lambda: polled[-1] == ["meter-0"], 20, "meter-1 taken out of service")
        assert collector.settings.wait_applied(20)
        health = collector.snapshot()
        assert health["meters"]["meter-1"]["state"] == "out_of_service"
        assert not [p for p in health["problems"] if "meter-1" in p]  # out of service is not a problem
        assert health["settings"]["remote"] == {"poll_interval_s": 0.3, "meters.meter-1.in_service": False}
    finally:
        operator.close()
        collector.stop()

    again = running_collector(config, recording_factory(intervals, polled))
    try:
        assert (intervals[-1], polled[-1]) == (0.3, ["meter-0"])  # started with the remote settings
        assert again.snapshot()["meters"]["meter-1"]["state"] == "out_of_service"
    finally:
        again.stop()
