"""The pycomm3 driver against the real simulator process: decoding, size check, CIP error status, and
the Multiple Service Packet with its per-connection fallback to single requests."""

from __future__ import annotations

import struct
import urllib.error

import pytest

from collector.assembly_reader import AssemblyReader
from collector.meter import (
    CipStatusError,
    CommError,
    MultipleServiceRefusedError,
    PycommDriver,
    SizeMismatchError,
    SizeUnverifiableError,
)
from collector.metrics import METRICS
from collector.registers import register_map
from collector.simulator.process import SimulatorProcess
from tests.meter.conftest import ONE_BY_ONE, ONE_ROUND_TRIP


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def test_values_decode_as_the_simulator_generated_them(sim: SimulatorProcess) -> None:
    sim.control.freeze(1)
    truth = sim.control.registers(1)
    regmap = register_map()
    driver = PycommDriver("127.0.0.1", sim.ports[1], timeout_s=2.0)
    try:
        reader = AssemblyReader(driver, regmap, "m1")
        reader.check_sizes()
        multiple = reader.read_data()
        single = {n: driver.read_attribute(n, 3) for n in regmap.instances}
    finally:
        driver.close()
    # One Multiple Service Packet gives every element of every instance, as the single reads do.
    layouts = {101: "<12f", 102: "<18f", 107: "<18f", 108: "<2h"}  # the manual's sizes (48, 72, 72, 4)
    single_elements = tuple(x for n, payload in single.items() for x in struct.unpack(layouts[n], payload))
    assert reader.mode == ONE_ROUND_TRIP and multiple == single_elements
    values, nan = regmap.decode(single)
    assert nan == []
    assert reader.decoder.decode(multiple) == (values, [])
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


def size_check_refusal(sim: SimulatorProcess, error: type[SizeMismatchError]) -> str:
    """The message of the `error` that the size check at connect raises for simulated meter 0."""
    driver = PycommDriver("127.0.0.1", sim.ports[0], timeout_s=2.0)
    try:
        with pytest.raises(error) as err:
            AssemblyReader(driver, register_map(), "feeder-7").check_sizes()
    finally:
        driver.close()
    return str(err.value)


def test_size_attribute_mismatch_is_refused_naming_meter_instance_and_sizes(sim: SimulatorProcess) -> None:
    sim.control.set_faults(0, size={"102": 68})
    for multiple_service in ("accept", "refuse"):  # the same check in both request modes
        sim.control.set_faults(0, multiple_service=multiple_service)
        message = size_check_refusal(sim, SizeMismatchError)
        assert (
            "feeder-7" in message
            and "instance 102" in message
            and "68 bytes" in message
            and "expects 72" in message
        )


def test_one_failed_embedded_reply_leaves_the_other_instances_readable(sim: SimulatorProcess) -> None:
    driver = PycommDriver("127.0.0.1", sim.ports[0], timeout_s=2.0)
    try:
        reader = AssemblyReader(driver, register_map(), "m0")
        healthy = reader.read_data()
        sim.control.set_faults(0, instance_status={"102": 0x05})
        first, second, third, fourth = reader.read_data()
    finally:
        driver.close()
    # A healthy meter's poll is one flat tuple: 12 + 18 + 18 REAL and 2 INT elements.
    assert isinstance(healthy, tuple) and len(healthy) == 50
    assert reader.mode == ONE_ROUND_TRIP  # an embedded error is no refusal of the service
    assert isinstance(second, CipStatusError) and (second.instance, second.status) == (102, 0x05)
    assert isinstance(first, bytes) and len(first) == 48
    assert isinstance(third, bytes) and len(third) == 72
    assert isinstance(fourth, bytes) and len(fourth) == 4


@pytest.mark.parametrize("multiple_service", ["accept", "refuse"])
def test_size_attribute_answered_with_an_error_is_unverifiable_naming_meter_and_status(
    sim: SimulatorProcess, multiple_service: str
) -> None:
    sim.control.set_faults(0, multiple_service=multiple_service)
    sim.control.set_faults(0, instance_status={"107": 0x05})
    message = size_check_refusal(sim, SizeUnverifiableError)
    assert "feeder-7" in message and "cannot verify" in message and "instance 107 attribute 4" in message
    assert "CIP status 0x05" in message


class OneByteSizeMeter:
    """A meter (no simulator can be made to do this) that refuses 0x0A and answers every attribute
    with a single byte: too short to be attribute 4's UINT."""

    def read_multiple(self, requests: object) -> bytes:
        raise MultipleServiceRefusedError("refused: CIP status 0x08")

    def read_attribute(self, instance: int, attribute: int) -> bytes:
        return b"\x30"

    def close(self) -> None:
        pass


def test_size_attribute_shorter_than_a_uint_is_refused_naming_meter_and_instance() -> None:
    with pytest.raises(SizeMismatchError) as err:
        AssemblyReader(OneByteSizeMeter(), register_map(), "feeder-7").check_sizes()
    assert type(err.value) is SizeMismatchError  # a layout problem, not an unanswered request
    message = str(err.value)
    assert "feeder-7" in message and "instance 101" in message and "1 bytes, expected a UINT" in message


def test_one_failed_instance_read_singly_leaves_the_other_instances_readable(sim: SimulatorProcess) -> None:
    sim.control.set_faults(1, multiple_service="refuse")
    driver = PycommDriver("127.0.0.1", sim.ports[1], timeout_s=2.0)
    try:
        reader = AssemblyReader(driver, register_map(), "m1")
        reader.check_sizes()
        sim.control.set_faults(1, instance_status={"102": 0x05})
        first, second, third, fourth = reader.read_data()
    finally:
        driver.close()
    assert reader.mode == ONE_BY_ONE
    assert isinstance(second, CipStatusError) and (second.instance, second.status) == (102, 0x05)
    assert isinstance(first, bytes) and len(first) == 48
    assert isinstance(third, bytes) and len(third) == 72
    assert isinstance(fourth, bytes) and len(fourth) == 4


@pytest.mark.parametrize(
    ("mode", "reason"), [("refuse", "refused: CIP status 0x08"), ("malformed", "reply malformed")]
)
def test_meter_refusing_the_multiple_service_packet_is_read_one_request_at_a_time(
    sim: SimulatorProcess, mode: str, reason: str
) -> None:
    sim.control.set_faults(1, multiple_service=mode)
    probes_before = sim.control.meters()[1]["multiple_requests"]
    driver = PycommDriver("127.0.0.1", sim.ports[1], timeout_s=2.0)
    try:
        if mode == "refuse":
            with pytest.raises(MultipleServiceRefusedError, match=reason):
                driver.read_multiple([(101, 3)])
        else:  # the driver hands the reply data over; the reader finds it cannot be split
            assert driver.read_multiple([(101, 3)]) == b"\x01\x00"  # the count, then nothing
        reader = AssemblyReader(driver, register_map(), "m1")
        reader.check_sizes()  # the probe: refused, then the sizes are read one by one
        polls = [reader.read_data() for _ in range(3)]
    finally:
        driver.close()
    assert reader.mode == ONE_BY_ONE
    assert reader.fallback_reason is not None and reason in reader.fallback_reason
    assert all([len(r) for r in poll if isinstance(r, bytes)] == [48, 72, 72, 4] for poll in polls)
    # one packet from read_multiple, one from the probe; none from the three polls
    assert sim.control.meters()[1]["multiple_requests"] == probes_before + 2


def test_simulator_refuses_an_unknown_multiple_service_mode_naming_it(sim: SimulatorProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        sim.control.set_faults(0, multiple_service="sometimes")
    assert err.value.code == 400 and b"multiple_service must be one of" in err.value.read()
    assert sim.control.meters()[0]["faults"]["multiple_service"] == "accept"  # unchanged


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
