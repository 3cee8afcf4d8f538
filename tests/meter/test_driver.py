"""The pycomm3 driver against the real simulator process: decoding, size check, CIP error status."""

from __future__ import annotations

import struct

import pytest

from collector.meter import CipStatusError, CommError, PycommDriver, SizeMismatchError, check_sizes
from collector.metrics import METRICS
from collector.registers import register_map
from collector.simulator.process import SimulatorProcess


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def test_values_decode_as_the_simulator_generated_them(sim: SimulatorProcess) -> None:
    sim.control.freeze(1)
    truth = sim.control.registers(1)
    regmap = register_map()
    driver = PycommDriver("127.0.0.1", sim.ports[1], timeout_s=2.0)
    try:
        check_sizes(driver, regmap, "m1")
        payloads = {n: driver.read_attribute(n, 3) for n in regmap.instances}
    finally:
        driver.close()
    values, nan = regmap.decode(payloads)
    assert nan == []
    assert set(values) == {m.name for m in METRICS}
    assert values["voltageAN"] == f32(truth["v_l1_n"])
    assert 270 < values["voltageAN"] < 285 and 465 < values["voltageAB"] < 495
    assert values["currentC"] == f32(truth["a_l3"])
    assert values["powerFactor"] == f32(truth["pf_system"])
    assert values["frequency"] == f32(truth["frequency"])
    expected_energy = (
        f32(truth["total_kwh_import_giga"]) * 1e6
        + f32(truth["total_kwh_import_kilo"])
        - f32(truth["total_kwh_export_giga"]) * 1e6
        - f32(truth["total_kwh_export_kilo"])
    )
    assert values["energy"] == pytest.approx(expected_energy, abs=1e-6)
    assert values["energy"] > 1_000_000  # the giga part was applied


def test_size_attribute_mismatch_is_refused_naming_meter_instance_and_sizes(sim: SimulatorProcess) -> None:
    sim.control.set_faults(0, size={"102": 68})
    driver = PycommDriver("127.0.0.1", sim.ports[0], timeout_s=2.0)
    try:
        with pytest.raises(SizeMismatchError) as err:
            check_sizes(driver, register_map(), "feeder-7")
    finally:
        driver.close()
    message = str(err.value)
    assert (
        "feeder-7" in message
        and "instance 102" in message
        and "68 bytes" in message
        and "expects 72" in message
    )


def test_cip_error_status_is_reported_with_its_code_and_the_session_survives(sim: SimulatorProcess) -> None:
    driver = PycommDriver("127.0.0.1", sim.ports[0], timeout_s=2.0)
    try:
        sim.control.set_faults(0, cip_status=0x08)
        with pytest.raises(CipStatusError) as err:
            driver.read_attribute(101, 3)
        assert err.value.status == 0x08 and err.value.instance == 101
        sim.control.reset(0)
        assert len(driver.read_attribute(101, 3)) == 48  # same driver, same session
    finally:
        driver.close()


def test_unreachable_meter_is_a_comm_error(sim: SimulatorProcess) -> None:
    sim.control.set_faults(2, drop=True)
    with pytest.raises(CommError, match="cannot open EtherNet/IP session"):
        PycommDriver("127.0.0.1", sim.ports[2], timeout_s=1.0)


def test_reply_slower_than_the_socket_timeout_is_a_comm_error(sim: SimulatorProcess) -> None:
    driver = PycommDriver("127.0.0.1", sim.ports[2], timeout_s=0.3)
    try:
        sim.control.set_faults(2, delay_ms=1500)
        with pytest.raises(CommError, match="timed out"):
            driver.read_attribute(101, 3)
    finally:
        driver.close()
