"""The Poller over real simulated meters: concurrency, fault handling and recovery.

No wall-clock thresholds: progress is measured in reading counts, and deadlines only bound a
failing test.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator

import pytest

from collector.config import MeterConfig
from collector.meter import MeterDriver, pycomm_driver
from collector.metrics import METRICS
from collector.poller import Poller
from collector.reading import Reading
from collector.simulator.process import SimulatorProcess
from tests.meter.conftest import ONE_BY_ONE, ONE_ROUND_TRIP, wait_for

INTERVAL_S = 0.25
TIMEOUT_S = 1.0  # longer than the period: a slow meter (below) overruns instead of timing out


def f32(x: float) -> float:
    """`x` as the meter sends it: a float32."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


class Collected:
    """Thread-safe on_reading sink, counting readings per asset."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.readings: list[Reading] = []

    def __call__(self, reading: Reading) -> None:
        with self.lock:
            self.readings.append(reading)

    def count(self, asset: str) -> int:
        with self.lock:
            return sum(1 for r in self.readings if r.asset == asset)

    def last(self, asset: str) -> Reading:
        with self.lock:
            return [r for r in self.readings if r.asset == asset][-1]


class CountingFactory:
    def __init__(self) -> None:
        self.built: dict[str, int] = {}

    def __call__(self, meter: MeterConfig, timeout_s: float) -> MeterDriver:
        driver = pycomm_driver(meter, timeout_s)  # raises CommError while the meter is unreachable
        self.built[meter.asset] = self.built.get(meter.asset, 0) + 1
        return driver


@pytest.fixture
def meters(sim: SimulatorProcess) -> list[MeterConfig]:
    return [
        MeterConfig(asset=f"m{i}", breaker=f"MCC-{i}", host="127.0.0.1", port=port)
        for i, port in enumerate(sim.ports)
    ]


@pytest.fixture
def collected() -> Collected:
    return Collected()


@pytest.fixture
def factory() -> CountingFactory:
    return CountingFactory()


@pytest.fixture
def poller(meters: list[MeterConfig], collected: Collected, factory: CountingFactory) -> Iterator[Poller]:
    p = Poller("plant-a", meters[:2], INTERVAL_S, collected, driver_factory=factory, timeout_s=TIMEOUT_S)
    p.start()
    yield p
    p.stop()


def test_readings_carry_site_asset_breaker_and_every_metric(poller: Poller, collected: Collected) -> None:
    wait_for(lambda: collected.count("m0") >= 2 and collected.count("m1") >= 2, "readings from both meters")
    reading = collected.last("m1")
    assert (reading.site, reading.asset, reading.breaker) == ("plant-a", "m1", "MCC-1")
    assert set(reading.values) == {m.name for m in METRICS} and 59.9 < reading.values["frequency"] < 60.1
    status = poller.status()
    assert status["m0"].state == "ok" and status["m0"].last_success_ms is not None
    assert status["m1"].consecutive_failures == 0


def test_energy_only_increases_between_readings(poller: Poller, collected: Collected) -> None:
    wait_for(lambda: collected.count("m0") >= 6, "six readings")
    with collected.lock:
        energy = [r.values["energy"] for r in collected.readings if r.asset == "m0"]
    assert energy == sorted(energy) and energy[-1] > energy[0]


def test_slow_meter_does_not_slow_the_others(
    sim: SimulatorProcess, poller: Poller, meters: list[MeterConfig], collected: Collected
) -> None:
    # m2 runs in a Poller of its own: a reference clock that cannot be slowed by m0.
    reference = Poller("plant-a", meters[2:], INTERVAL_S, collected)
    reference.start()
    try:
        wait_for(lambda: all(collected.count(a) >= 1 for a in ("m0", "m1", "m2")), "all meters up")
        # m0 now takes 400 ms per poll (within its timeout, beyond its period): it falls behind.
        sim.control.set_faults(0, delay_ms=400)
        wait_for(lambda: poller.status()["m0"].overruns >= 2, "m0 overrunning its period")
        start = {a: collected.count(a) for a in ("m0", "m1", "m2")}
        wait_for(lambda: collected.count("m2") >= start["m2"] + 12, "12 reference readings")
        made = {a: collected.count(a) - start[a] for a in start}
        assert made["m0"] <= 8  # the slow meter really was slow...
        assert made["m1"] >= 10  # ...and its neighbour in the same Poller kept the reference pace
    finally:
        reference.stop()


def test_meter_slower_than_the_timeout_delivers_nothing_and_others_continue(
    sim: SimulatorProcess, poller: Poller, collected: Collected
) -> None:
    wait_for(lambda: collected.count("m0") >= 1 and collected.count("m1") >= 1, "both meters up")
    sim.control.set_faults(0, delay_ms=2000)
    wait_for(lambda: poller.status()["m0"].errors["comm"] >= 1, "m0 timing out")
    start0, start1 = collected.count("m0"), collected.count("m1")
    wait_for(lambda: collected.count("m1") >= start1 + 12, "12 readings from m1 while m0 is delayed")
    assert collected.count("m0") == start0
    assert poller.status()["m0"].state == "comm_error"
    assert poller.status()["m1"].errors["comm"] == 0


def test_cip_error_status_is_counted_not_fatal(
    sim: SimulatorProcess, poller: Poller, collected: Collected, factory: CountingFactory
) -> None:
    wait_for(lambda: collected.count("m0") >= 1, "m0 up")
    sim.control.set_faults(0, cip_status=0x08)
    wait_for(lambda: poller.status()["m0"].errors["cip_status"] >= 3, "three CIP error replies")
    assert poller.status()["m0"].state == "cip_error"
    sim.control.reset(0)
    after = collected.count("m0")
    wait_for(lambda: collected.count("m0") >= after + 2, "m0 readings after the error cleared")
    status = poller.status()["m0"]
    assert status.state == "ok" and status.consecutive_failures == 0
    assert factory.built["m0"] == 1  # the meter answered: no reconnect needed
    assert status.errors["comm"] == 0


def test_dropped_connection_recovers_with_a_new_driver(
    sim: SimulatorProcess, poller: Poller, collected: Collected, factory: CountingFactory
) -> None:
    wait_for(lambda: collected.count("m0") >= 1, "m0 up")
    assert factory.built["m0"] == 1
    sim.control.set_faults(0, drop=True)
    wait_for(lambda: poller.status()["m0"].errors["comm"] >= 2, "m0 connection failures")
    assert poller.status()["m0"].state == "comm_error"
    sim.control.reset(0)
    after = collected.count("m0")
    wait_for(lambda: collected.count("m0") >= after + 2, "m0 readings after reconnecting")
    assert factory.built["m0"] >= 2
    assert poller.status()["m0"].reconnects == factory.built["m0"] - 1
    assert poller.status()["m0"].state == "ok"


def test_size_mismatch_blocks_decoding_until_fixed(
    sim: SimulatorProcess, meters: list[MeterConfig], collected: Collected
) -> None:
    sim.control.set_faults(2, size={"101": 40})
    p = Poller("plant-a", meters[2:], INTERVAL_S, collected)
    p.start()
    try:
        wait_for(lambda: p.status()["m2"].errors["size_mismatch"] >= 2, "size check failures")
        status = p.status()["m2"]
        assert status.state == "size_mismatch" and collected.count("m2") == 0
        assert (
            status.last_error is not None
            and "instance 101" in status.last_error
            and "40 bytes" in status.last_error
        )
        sim.control.reset(2)
        wait_for(lambda: collected.count("m2") >= 1, "readings once the meter reports the right size")
    finally:
        p.stop()


def test_nan_element_drops_only_its_metric(
    sim: SimulatorProcess, poller: Poller, collected: Collected
) -> None:
    sim.control.set_faults(1, nan=["v_l1_n", "frequency"])
    wait_for(lambda: poller.status()["m1"].errors["nan"] >= 2, "NaN polls")
    after = collected.count("m1")
    wait_for(lambda: collected.count("m1") >= after + 1, "a reading after the NaN started")
    values = collected.last("m1").values
    assert "voltageAN" not in values and "frequency" not in values
    assert len(values) == len(METRICS) - 2 and values["voltageBN"] > 0
    assert poller.status()["m1"].state == "degraded"


def test_short_payload_drops_the_poll_and_is_counted(
    sim: SimulatorProcess, poller: Poller, collected: Collected
) -> None:
    wait_for(lambda: collected.count("m1") >= 1, "m1 up")
    sim.control.set_faults(1, short=True)
    wait_for(lambda: poller.status()["m1"].errors["short_payload"] >= 1, "a short payload")
    before = collected.count("m1")
    wait_for(lambda: poller.status()["m1"].errors["short_payload"] >= 3, "more short payloads")
    assert collected.count("m1") == before
    assert poller.status()["m1"].state == "bad_payload"


def test_stop_ends_every_meter_thread(meters: list[MeterConfig], collected: Collected) -> None:
    p = Poller("plant-a", meters, INTERVAL_S, collected)
    p.start()
    wait_for(lambda: all(s.reads >= 1 for s in p.status().values()), "all meters polled")
    p.stop()
    assert {s.state for s in p.status().values()} == {"stopped"}
    assert not [t for t in threading.enumerate() if t.name.startswith("poll-m")]


def test_meter_refusing_the_multiple_service_packet_is_polled_without_a_gap(
    sim: SimulatorProcess, poller: Poller, collected: Collected, factory: CountingFactory
) -> None:
    wait_for(lambda: collected.count("m0") >= 2, "m0 up")
    assert poller.status()["m0"].request_mode == ONE_ROUND_TRIP
    sim.control.set_faults(0, multiple_service="refuse")
    wait_for(lambda: poller.status()["m0"].request_mode == ONE_BY_ONE, "m0 falling back")
    refused = sim.control.meters()[0]["multiple_requests"]
    after = collected.count("m0")
    wait_for(lambda: collected.count("m0") >= after + 4, "four readings with single requests")
    status = poller.status()["m0"]
    # no poll failed on the way (the refused poll was re-read at once), nor was the 0x0A retried
    assert sum(status.errors.values()) == 0 and status.state == "ok"
    assert status.request_mode_reason is not None and "CIP status 0x08" in status.request_mode_reason
    assert sim.control.meters()[0]["multiple_requests"] == refused
    assert factory.built["m0"] == 1
    assert poller.status()["m1"].request_mode == ONE_ROUND_TRIP  # a per-meter capability


def test_a_new_connection_probes_the_multiple_service_packet_again(
    sim: SimulatorProcess, poller: Poller, collected: Collected, factory: CountingFactory
) -> None:
    sim.control.set_faults(0, multiple_service="malformed")
    wait_for(lambda: poller.status()["m0"].request_mode == ONE_BY_ONE, "m0 reading one by one")
    assert "malformed" in (poller.status()["m0"].request_mode_reason or "")
    sim.control.reset(0)  # the meter now accepts 0x0A, but this connection no longer asks
    sim.control.set_faults(0, drop=True)
    wait_for(lambda: poller.status()["m0"].errors["comm"] >= 1, "m0 connection lost")
    sim.control.reset(0)
    wait_for(lambda: factory.built["m0"] >= 2 and collected.count("m0") >= 1, "m0 reconnected")
    wait_for(lambda: poller.status()["m0"].request_mode == ONE_ROUND_TRIP, "m0 probing again")
    assert poller.status()["m0"].request_mode_reason is None


def test_one_failed_instance_leaves_out_only_its_metrics(
    sim: SimulatorProcess, poller: Poller, collected: Collected
) -> None:
    wait_for(lambda: collected.count("m1") >= 1, "m1 up")
    sim.control.set_faults(1, instance_status={"102": 0x05})
    wait_for(lambda: poller.status()["m1"].errors["cip_status"] >= 2, "instance 102 failing")
    after = collected.count("m1")
    wait_for(lambda: collected.count("m1") >= after + 1, "a reading while 102 fails")
    values = collected.last("m1").values
    assert "realPower" not in values and "frequency" not in values  # instance 102
    assert values["voltageAN"] > 0 and values["energy"] > 0  # instances 101 and 107
    status = poller.status()["m1"]
    assert status.state == "degraded" and status.request_mode == ONE_ROUND_TRIP
    assert status.last_error is not None and "instance 102" in status.last_error


def test_meter_silently_dropping_the_multiple_service_packet_is_read_one_by_one_after_a_reconnect(
    sim: SimulatorProcess, meters: list[MeterConfig], collected: Collected
) -> None:
    sim.control.set_faults(2, multiple_service="silent")  # never answers 0x0A in time
    p = Poller("plant-a", meters[2:], INTERVAL_S, collected, timeout_s=0.5)
    p.start()
    try:
        wait_for(lambda: collected.count("m2") >= 3, "readings from a meter that ignores 0x0A")
        status = p.status()["m2"]
    finally:
        p.stop()
    assert status.errors["comm"] == 1 and status.reconnects == 1  # the one unanswered probe
    assert status.request_mode == ONE_BY_ONE
    assert status.request_mode_reason is not None and "no answer" in status.request_mode_reason


def test_both_request_modes_decode_the_same_values_and_self_check_them(
    sim: SimulatorProcess, meters: list[MeterConfig], collected: Collected
) -> None:
    """A healthy meter's poll is decoded in one piece, a meter read one request at a time instance by
    instance: both must give the meter's true values, and both feed the register-map self-check."""
    sim.control.freeze(0)
    sim.control.freeze(1)
    sim.control.set_faults(1, multiple_service="refuse")
    truth = {"m0": sim.control.registers(0), "m1": sim.control.registers(1)}
    sim.control.set_status(0, alarms=[2], outputs=[1])
    sim.control.set_status(1, alarms=[2], outputs=[1])
    p = Poller("plant-a", meters[:2], INTERVAL_S, collected, timeout_s=TIMEOUT_S)
    p.start()
    try:
        wait_for(lambda: collected.count("m0") >= 1 and collected.count("m1") >= 1, "readings from both")
        wait_for(lambda: all(s.register_map["checks"] for s in p.status().values()), "both self-checked")
        status = p.status()
    finally:
        p.stop()
    assert status["m0"].request_mode == ONE_ROUND_TRIP
    assert status["m1"].request_mode == ONE_BY_ONE
    for asset in ("m0", "m1"):
        values = collected.last(asset).values
        assert set(values) == {m.name for m in METRICS}
        assert values["voltageAN"] == f32(truth[asset]["v_l1_n"])
        assert values["frequency"] == f32(truth[asset]["frequency"])
        assert values["realPower"] == f32(truth[asset]["kw_system"])
        assert (values["alarm1"], values["alarm2"], values["output1"], values["output2"]) == (0, 1, 1, 0)
        assert status[asset].register_map["verdict"] == "consistent"
