"""The physics self-check: a consistent meter passes, every plausible wrong register order is flagged.

The simulator's model serves the true values through the bundled map; the collector side decodes the
same bytes with a scrambled map, as it would on a real meter whose YAML is wrong.
"""

from __future__ import annotations

import pytest

from collector.consistency import ConsistencyMonitor, check
from collector.registers import RegisterMap, register_map
from collector.simulator.model import MeterModel
from tests.meter.scramble import WRONG_ORDERS, scrambled_map


def _decoded(model: MeterModel, regmap: RegisterMap) -> dict[str, float]:
    """What the collector sees: bytes encoded with the true map, named by `regmap`."""
    return regmap.by_name(model.payloads())


@pytest.mark.parametrize("index", range(6))
def test_the_simulator_is_physically_consistent(index: int) -> None:
    assert check(_decoded(MeterModel(index, register_map()), register_map())) == []


# The relations each wrong order must break (at least these; it may break more).
EXPECTED = {
    "voltage and current blocks swapped": {"line_to_line_is_sqrt3_line_to_neutral"},
    "L-L before L-N": {"line_to_line_is_sqrt3_line_to_neutral", "apparent_power_is_v_times_i"},
    "kW and kvar swapped": {"power_factor_is_kw_over_kva"},
    "101 shifted by one element": {"averages_match_phases", "apparent_power_is_v_times_i"},
    "102 shifted by one element": {"totals_match_phases", "power_factor_is_kw_over_kva"},
    "107 shifted by one element": {"energy_pairs_well_formed"},
    "energy pair halves swapped": {"energy_pairs_well_formed"},
    "energy total and partial halves swapped": {"partial_energy_within_total"},
}


@pytest.mark.parametrize("name", sorted(WRONG_ORDERS))
def test_each_plausible_wrong_order_is_flagged_naming_the_relations(name: str) -> None:
    instance, order = WRONG_ORDERS[name]
    violated = {
        v.relation for v in check(_decoded(MeterModel(1, register_map()), scrambled_map(instance, order)))
    }
    assert EXPECTED[name] <= violated


def test_a_3_wire_meter_is_not_a_false_alarm_when_configured_3_wire() -> None:
    model = MeterModel(2, register_map())
    model.set_wiring("3-wire")
    values = _decoded(model, register_map())
    assert values["v_l1_n"] == 0.0 and values["v_l1_l2"] > 400  # no neutral, line voltages present
    assert check(values, "3-wire") == []
    flagged = check(values, "4-wire")  # the same meter configured 4-wire: flagged, with the hint
    assert "line_to_line_is_sqrt3_line_to_neutral" in [v.relation for v in flagged]
    assert any("set the meter's wiring to 3-wire" in v.detail for v in flagged)


def test_3_wire_still_flags_a_wrong_order_of_what_it_can_check() -> None:
    model = MeterModel(2, register_map())
    model.set_wiring("3-wire")
    instance, order = WRONG_ORDERS["kW and kvar swapped"]
    assert [v.relation for v in check(_decoded(model, scrambled_map(instance, order)), "3-wire")] == [
        "power_factor_is_kw_over_kva"
    ]


def test_literal_values_break_the_named_relations() -> None:
    good = {
        "v_l1_n": 230.0, "v_l2_n": 230.0, "v_l3_n": 230.0, "v_ln_system": 230.0,
        "v_l1_l2": 398.4, "v_l2_l3": 398.4, "v_l3_l1": 398.4, "v_ll_system": 398.4,
        "a_l1": 10.0, "a_l2": 10.0, "a_l3": 10.0, "a_system": 10.0,
        "kw_l1": 1.84, "kw_l2": 1.84, "kw_l3": 1.84, "kw_system": 5.52,
        "kvar_l1": 1.38, "kvar_l2": 1.38, "kvar_l3": 1.38, "kvar_system": 4.14,
        "kva_l1": 2.3, "kva_l2": 2.3, "kva_l3": 2.3, "kva_system": 6.9,
        "pf_l1": 0.8, "pf_l2": 0.8, "pf_l3": 0.8, "pf_system": 0.8, "frequency": 50.0,
        "total_kwh_import_giga": 0.0, "total_kwh_import_kilo": 100.5,
        "partial_kwh_import_giga": 0.0, "partial_kwh_import_kilo": 20.0,
    }  # fmt: skip
    assert check(good) == []
    assert [v.relation for v in check({**good, "frequency": 70.0})] == ["frequency_range"]
    assert [v.relation for v in check({**good, "a_l2": -1.0, "a_system": 6.33})] == [
        "currents_non_negative",
        "apparent_power_is_v_times_i",
    ]
    assert [v.relation for v in check({**good, "pf_l1": 0.6})] == ["power_factor_is_kw_over_kva"]
    assert [v.relation for v in check({**good, "partial_kwh_import_kilo": 200.0})] == [
        "partial_energy_within_total"
    ]
    assert [v.relation for v in check({**good, "total_kwh_import_giga": 0.5})] == ["energy_pairs_well_formed"]
    assert [v.relation for v in check({**good, "v_l3_l1": -398.4, "v_ll_system": 132.8})] == [
        "voltages_non_negative",
        "line_to_line_is_sqrt3_line_to_neutral",
    ]
    assert [v.relation for v in check({**good, "kva_system": 8.0})] == [
        "totals_match_phases",
        "apparent_power_triangle",
        "power_factor_is_kw_over_kva",
    ]
    assert [v.relation for v in check({**good, "a_system": 12.0})] == ["averages_match_phases"]
    missing = {k: v for k, v in good.items() if not k.startswith("v_")}
    assert check({**missing, "frequency": 50.0}) == []  # relations on unmapped registers are skipped


def test_monitor_flags_a_decreasing_counter_and_clears_after_good_polls() -> None:
    monitor = ConsistencyMonitor(clear_after=2)
    base = {"total_kwh_import_giga": 1.0, "total_kwh_import_kilo": 500.0, "frequency": 60.0}
    assert monitor.observe(base) is True  # unchecked -> consistent
    assert monitor.verdict.state == "consistent"
    assert monitor.observe({**base, "total_kwh_import_kilo": 400.0}) is True
    assert monitor.verdict.state == "inconsistent"
    assert monitor.verdict.violations[0].relation == "energy_never_decreases"
    assert "1.0005e+06 to 1.0004e+06" in monitor.verdict.violations[0].detail
    assert monitor.observe({**base, "total_kwh_import_kilo": 401.0}) is False  # 1 good poll: still flagged
    assert monitor.observe({**base, "total_kwh_import_kilo": 402.0}) is True  # 2 good polls: cleared
    assert monitor.verdict.as_dict() == {
        "verdict": "consistent",
        "violations": [],
        "wiring": "4-wire",
        "checks": 4,
    }


def test_unknown_wiring_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValueError, match=r"wiring must be one of \['4-wire', '3-wire'\], got 'delta'"):
        ConsistencyMonitor(wiring="delta")


def test_non_finite_elements_are_skipped_not_a_crash() -> None:
    values = {"total_kwh_import_giga": float("inf"), "total_kwh_import_kilo": 5.0, "frequency": float("nan")}
    assert check(values) == []
    monitor = ConsistencyMonitor()
    monitor.observe(values)
    assert monitor.observe({**values, "total_kwh_import_giga": 1.0}) is False
    assert monitor.verdict.state == "consistent"
