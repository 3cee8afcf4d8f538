"""`cli.py meters probe` against a real simulator process, with the bundled map and with maps scrambled
on purpose: what it prints, the verdict, and the YAML change `--suggest` proposes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cli
from collector.registers import DEFAULT_MAP
from collector.simulator.process import SimulatorProcess
from tests.meter.scramble import WRONG_ORDERS, write_scrambled

runner = CliRunner()


def _probe(sim: SimulatorProcess, *args: str, index: int = 0) -> Any:
    return runner.invoke(
        cli.app, ["meters", "probe", "--host", "127.0.0.1", "--port", str(sim.ports[index]), *args]
    )


def test_probe_prints_product_info_every_element_with_its_metric_and_the_verdict(
    sim: SimulatorProcess,
) -> None:
    sim.control.freeze(0)
    served = sim.control.registers(0)
    result = _probe(sim, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["product"] == {
        "model_code": "A",
        "model": "V2",
        "base_firmware_revision": 12,
        "enip_firmware": "0x0203",
        "analog_output_firmware": "0x0000",
        "product_name": "PM500 EtherNet",
        "elements": 10,
    }
    by_number = {i["instance"]: i for i in report["instances"]}
    assert sorted(by_number) == list(range(100, 109))
    assert {n: by_number[n]["size_bytes"] for n in by_number} == {
        100: 20, 101: 48, 102: 72, 103: 48, 104: 68, 105: 48, 106: 68, 107: 72, 108: 4,
    }  # fmt: skip
    first = by_number[101]["elements"][0]
    assert first["index"] == 0 and first["offset"] == 0
    assert (first["register"], first["metric"], first["unit"]) == ("v_l1_n", "voltageAN", "V")
    assert first["raw"] == pytest.approx(served["v_l1_n"], rel=1e-6)
    frequency = by_number[102]["elements"][16]
    assert (frequency["metric"], frequency["unit"]) == ("frequency", "Hz")
    assert frequency["raw"] == pytest.approx(served["frequency"], rel=1e-6)
    assert by_number[103]["elements"][0]["metric"] is None  # max/demand: shown raw, not mapped
    assert report["register_map"] == {
        "verdict": "consistent", "wiring": "4-wire", "unchecked": [], "violations": []}

    text = _probe(sim).output
    assert "product: 'PM500 EtherNet', model code A (V2), base firmware revision 12" in text
    assert "v_l1_n -> voltageAN [V]" in text and "bit 1: alarm2" in text
    assert text.rstrip().endswith("register map consistency (4-wire): consistent")


def test_probe_flags_a_scrambled_map_naming_the_relation(sim: SimulatorProcess, tmp_path: Path) -> None:
    instance, order = WRONG_ORDERS["kW and kvar swapped"]
    scrambled = write_scrambled(tmp_path / "map.yaml", instance, order)
    result = _probe(sim, "--map", str(scrambled))
    assert result.exit_code == 0, result.output
    assert "register map consistency (4-wire): INCONSISTENT" in result.output
    assert "  - power_factor_is_kw_over_kva: pf_system" in result.output
    assert "kvar_l1 -> reactivePowerA [kVAR]" in result.output  # element 0 as the wrong map names it


@pytest.mark.parametrize(
    "name",
    ["L-L before L-N", "kW and kvar swapped", "102 shifted by one element", "energy pair halves swapped"],
)
def test_suggest_finds_the_true_order_and_prints_the_yaml_change(
    sim: SimulatorProcess, tmp_path: Path, name: str
) -> None:
    instance, order = WRONG_ORDERS[name]
    scrambled = write_scrambled(tmp_path / "map.yaml", instance, order)
    result = _probe(sim, "--map", str(scrambled), "--suggest", "--json")
    assert result.exit_code == 0, result.output
    suggestion = json.loads(result.output)["suggestion"]
    assert list(suggestion["orders"]) == [str(instance)]
    assert suggestion["violations_after"] == []
    # Applying the printed diff gives back the bundled (true) map, line for line.
    diff = suggestion["diff"].splitlines()
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    scrambled_lines, true_lines = scrambled.read_text().splitlines(), DEFAULT_MAP.read_text().splitlines()
    assert removed and all(line in scrambled_lines for line in removed)
    assert sorted(added) == sorted(line for line in true_lines if line not in scrambled_lines)


def test_suggest_on_the_right_map_changes_nothing(sim: SimulatorProcess) -> None:
    result = _probe(sim, "--suggest")
    assert result.exit_code == 0, result.output
    assert "no block order does better than the current map: no change suggested" in result.output


def test_3_wire_meter_probed_as_3_wire_is_consistent_and_as_4_wire_gets_the_hint(
    sim: SimulatorProcess,
) -> None:
    sim.control.set_wiring(1, "3-wire")
    assert (
        "register map consistency (3-wire): consistent" in _probe(sim, "--wiring", "3-wire", index=1).output
    )
    four = _probe(sim, index=1).output
    assert "INCONSISTENT" in four and "set the meter's wiring to 3-wire" in four


def test_unreachable_meter_and_bad_options_are_one_clear_line(sim: SimulatorProcess, tmp_path: Path) -> None:
    closed = runner.invoke(cli.app, ["meters", "probe", "--host", "127.0.0.1", "--port", "1"])
    assert closed.exit_code == 1
    assert closed.stderr.startswith("error: meter 127.0.0.1:1: cannot open EtherNet/IP session")
    wiring = _probe(sim, "--wiring", "delta")
    assert wiring.exit_code == 1 and "--wiring 'delta': expected one of 4-wire, 3-wire" in wiring.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("instances: 3\n")
    bad_map = _probe(sim, "--map", str(broken))
    assert bad_map.exit_code == 1 and f"--map: {broken}" in bad_map.stderr


def test_an_instance_too_short_to_check_makes_the_verdict_incomplete_and_exit_3(
    sim: SimulatorProcess,
) -> None:
    """Issue 21 item 8: 101 served shorter than the map expects was warned about, then the last line said
    `consistent` and the exit code 0, although none of 101's relations had been checked."""
    sim.control.set_faults(0, size={101: 44})  # attribute 4 answers 44 bytes, the map expects 48
    text = _probe(sim)
    assert text.exit_code == 3, text.output
    last = text.output.rstrip().splitlines()[-1]
    assert last == "register map consistency (4-wire): INCOMPLETE: instance 101 not checked", last
    report = json.loads(_probe(sim, "--json").output)
    assert report["register_map"]["verdict"] == "incomplete"
    assert report["register_map"]["unchecked"] == [101]
    sim.control.reset(0)
    assert _probe(sim).exit_code == 0
