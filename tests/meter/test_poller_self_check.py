"""The poller runs the physics self-check on every poll of real simulated meters: the verdict is in
`status()`, in the log and handed to `on_verdict`, naming the violated relations; readings keep flowing."""

from __future__ import annotations

import logging

import pytest

from collector.config import MeterConfig
from collector.consistency import Verdict
from collector.poller import Poller
from collector.simulator.process import SimulatorProcess
from tests.meter.conftest import wait_for
from tests.meter.scramble import WRONG_ORDERS, scrambled_map
from tests.meter.test_poller import Collected

INTERVAL_S = 0.2
EVERY_POLL = {"self_check_period_s": 0.0}  # the default checks every 5 s; these tests check each poll


def _meter(sim: SimulatorProcess, index: int, wiring: str = "4-wire") -> MeterConfig:
    return MeterConfig(
        asset=f"m{index}", breaker="MCC-1", host="127.0.0.1", port=sim.ports[index], wiring=wiring
    )


def test_a_consistent_meter_is_reported_consistent(sim: SimulatorProcess) -> None:
    verdicts: list[tuple[str, Verdict]] = []
    poller = Poller(
        "plant-a",
        [_meter(sim, 0)],
        INTERVAL_S,
        Collected(),
        on_verdict=lambda a, v: verdicts.append((a, v)),
        **EVERY_POLL,
    )
    poller.start()
    try:
        wait_for(lambda: poller.status()["m0"].register_map["checks"] >= 3, "three self-checks")
    finally:
        poller.stop()
    assert poller.status()["m0"].register_map["verdict"] == "consistent"
    assert [(a, v.state) for a, v in verdicts] == [("m0", "consistent")]


def test_a_scrambled_map_is_flagged_in_status_log_and_callback_but_readings_keep_flowing(
    sim: SimulatorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    instance, order = WRONG_ORDERS["kW and kvar swapped"]
    collected = Collected()
    verdicts: list[Verdict] = []
    poller = Poller(
        "plant-a",
        [_meter(sim, 1)],
        INTERVAL_S,
        collected,
        regmap=scrambled_map(instance, order),
        on_verdict=lambda a, v: verdicts.append(v),
        **EVERY_POLL,
    )
    with caplog.at_level(logging.INFO, logger="collector.poller"):
        poller.start()
        try:
            wait_for(lambda: collected.count("m1") >= 3, "three readings despite the flag")
        finally:
            poller.stop()
    report = poller.status()["m1"].register_map
    assert report["verdict"] == "inconsistent"
    assert [v["relation"] for v in report["violations"]] == ["power_factor_is_kw_over_kva"]
    assert [v.state for v in verdicts] == ["inconsistent"]
    flagged = [r.getMessage() for r in caplog.records if "register map consistency" in r.getMessage()]
    assert len(flagged) == 1 and "inconsistent: power_factor_is_kw_over_kva (pf_system" in flagged[0]


def test_a_3_wire_meter_configured_3_wire_is_not_a_false_alarm(sim: SimulatorProcess) -> None:
    sim.control.set_wiring(2, "3-wire")
    poller = Poller("plant-a", [_meter(sim, 2, wiring="3-wire")], INTERVAL_S, Collected(), **EVERY_POLL)
    poller.start()
    try:
        wait_for(lambda: poller.status()["m2"].register_map["checks"] >= 3, "three self-checks")
    finally:
        poller.stop()
    assert poller.status()["m2"].register_map == {
        "verdict": "consistent",
        "violations": [],
        "wiring": "3-wire",
        "checks": poller.status()["m2"].register_map["checks"],
    }


def test_the_default_checks_the_first_poll_then_once_per_period(sim: SimulatorProcess) -> None:
    collected = Collected()
    poller = Poller("plant-a", [_meter(sim, 0)], INTERVAL_S, collected, self_check_period_s=3600.0)
    poller.start()
    try:
        wait_for(lambda: collected.count("m0") >= 5, "five readings")
    finally:
        poller.stop()
    assert poller.status()["m0"].register_map["checks"] == 1


def test_a_poll_with_a_failed_instance_is_not_checked_until_every_instance_decodes(
    sim: SimulatorProcess,
) -> None:
    """Relations on the missing instance's elements cannot be evaluated: such a poll proves nothing,
    so it is neither checked nor counted (it could otherwise clear a violation or read 'consistent')."""
    collected = Collected()
    poller = Poller("plant-a", [_meter(sim, 2)], INTERVAL_S, collected, **EVERY_POLL)
    poller.start()
    try:
        wait_for(lambda: poller.status()["m2"].register_map["checks"] >= 1, "a first self-check")
        sim.control.set_faults(2, instance_status={"101": 5})  # after the connect's size check
        wait_for(lambda: poller.status()["m2"].state == "degraded", "a poll without instance 101")
        checks = poller.status()["m2"].register_map["checks"]
        seen = collected.count("m2")
        wait_for(lambda: collected.count("m2") >= seen + 3, "three more readings without instance 101")
        assert poller.status()["m2"].register_map["checks"] == checks
        last = collected.last("m2").values
        assert "voltageAN" not in last and "energy" in last
        sim.control.set_faults(2, instance_status={})
        wait_for(lambda: poller.status()["m2"].register_map["checks"] > checks, "a complete poll checked")
    finally:
        poller.stop()
    assert poller.status()["m2"].register_map["verdict"] == "consistent"
