"""Health notices a dead meter thread; NCMD downlink through the real broker (ACL, mutual TLS).

The collector runs in-process (real Poller against the simulator, real buffer, real MQTT sink) so the
test can inject a poller factory: a driver that fails with an error the poller does not expect kills
that meter's thread, and a recording factory shows which interval polling was restarted with.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from collector import topics
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


def test_ncmd_changes_interval_and_debug_and_rejects_malformed(
    tmp_path: Path,
    dev_ca: DevCA,
    broker: MosquittoBroker,
    simulator: Simulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    intervals: list[float] = []

    def factory(
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        on_verdict: Callable[[str, Verdict], None] | None = None,
    ) -> PollerLike:
        intervals.append(interval_s)
        return Poller(site, meters, interval_s, on_reading, on_verdict=on_verdict)

    config = write_bundle(tmp_path / "bundle", dev_ca, broker, simulator.ports, influx_url=None)
    collector = running_collector(config, factory)
    operator = Operator(broker, dev_ca, tmp_path / "operator")
    caplog.set_level(logging.INFO, logger="collector.service")
    link = collector.mqtt.link
    try:
        # NBIRTH and DBIRTHs precede the NCMD SUBSCRIBE, DDATA follows it: a DDATA PUBACK means the
        # broker has the subscription.
        wait_until(lambda: link.stats["acked"] >= 2 + len(simulator.ports) + 1, 30, "first DDATA acked")

        malformed = [
            b"{not json",
            b"[1]",
            b'{"reboot": true}',
            b'{"poll_interval_s": 0}',
            b'{"debug": "yes"}',
        ]
        for payload in malformed:
            operator.send(payload)
        wait_until(lambda: collector.counters["rejected_commands"] == len(malformed), 20, "rejections")
        rejected = [r for r in caplog.records if r.getMessage() == "NCMD rejected"]
        assert len(rejected) == len(malformed) and all(getattr(r, "reason", "") for r in rejected)
        snapshot = collector.snapshot()
        assert (snapshot["poll_interval_s"], snapshot["debug"]) == (0.2, False)
        assert collector.counters["commands"] == 0 and intervals == [0.2]  # nothing changed
        assert capsys.readouterr().out == ""  # debug still off: no readings printed

        operator.send(json.dumps({"poll_interval_s": 0.5, "debug": True}).encode())
        wait_until(lambda: intervals == [0.2, 0.5], 20, "poller restarted at 0.5 s")
        snapshot = collector.snapshot()
        assert (snapshot["poll_interval_s"], snapshot["debug"]) == (0.5, True)
        printed: list[str] = []
        wait_until(lambda: printed.extend(capsys.readouterr().out.splitlines()) or printed, 20, "debug line")
        assert json.loads(printed[0])["asset"] in ("meter-0", "meter-1")

        operator.send(b'{"debug": false}')
        wait_until(lambda: collector.counters["commands"] == 2, 20, "debug off applied")
        assert collector.debug is False and intervals == [0.2, 0.5]  # same interval: no restart
        assert link.stats["disconnects"] == 0  # bad commands never took the link down
    finally:
        operator.close()
        collector.stop()
