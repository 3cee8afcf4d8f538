"""Poller resilience to failures no simulator produces: driver bugs and a failing on_reading."""

from __future__ import annotations

import threading

from collector.config import MeterConfig
from collector.meter import MeterDriver, MultipleServiceRefusedError
from collector.poller import Poller
from collector.reading import Reading
from collector.registers import register_map
from tests.meter.conftest import wait_for

METER = MeterConfig(asset="m0", breaker="B0", host="127.0.0.1", port=1)


class FlakyDriver:
    """Serves valid payloads, except that the first `broken` drivers raise an unexpected error."""

    built = 0

    def __init__(self, broken: int) -> None:
        FlakyDriver.built += 1
        self.broken = FlakyDriver.built <= broken
        regmap = register_map()
        self.payloads = {n: i.encode({"v_l1_n": 277.0}) for n, i in regmap.instances.items()}
        self.sizes = {n: i.size_bytes.to_bytes(2, "little") for n, i in regmap.instances.items()}

    def read_attribute(self, instance: int, attribute: int) -> bytes:
        if attribute == 4:
            return self.sizes[instance]
        if self.broken:
            raise RuntimeError("driver bug")
        return self.payloads[instance]

    def read_multiple(self, requests: object) -> bytes:
        raise MultipleServiceRefusedError("this driver reads one request at a time")

    def close(self) -> None:
        pass


def test_unexpected_driver_error_is_counted_and_the_driver_replaced() -> None:
    FlakyDriver.built = 0
    got: list[Reading] = []

    def factory(meter: MeterConfig, timeout_s: float) -> MeterDriver:
        return FlakyDriver(broken=2)

    p = Poller("plant-a", [METER], 0.05, got.append, driver_factory=factory)
    p.start()
    try:
        wait_for(lambda: len(got) >= 2, "readings after two broken drivers")
    finally:
        p.stop()
    status = p.status()["m0"]
    assert status.errors["comm"] == 2 and status.reconnects == 2
    assert got[-1].values["voltageAN"] == 277.0


def test_failing_on_reading_is_counted_and_polling_continues() -> None:
    calls = []
    lock = threading.Lock()

    def on_reading(reading: Reading) -> None:
        with lock:
            calls.append(reading)
            if len(calls) <= 3:
                raise OSError("buffer disk full")

    p = Poller("plant-a", [METER], 0.05, on_reading, driver_factory=lambda m, t: FlakyDriver(broken=0))
    p.start()
    try:
        wait_for(lambda: p.status()["m0"].reads >= 2, "successful hand-overs after the failures")
    finally:
        p.stop()
    status = p.status()["m0"]
    assert status.errors["callback"] == 3 and status.reads >= 2
