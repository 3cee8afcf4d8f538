"""A real simulator process (cpppo) shared by the meter tests; faults are reset after each test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from collector.simulator.process import SimulatorProcess

METERS = 3


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess(meters=METERS) as sim:
        yield sim


@pytest.fixture
def sim(simulator: SimulatorProcess) -> Iterator[SimulatorProcess]:
    yield simulator
    for i in range(METERS):
        simulator.control.reset(i)
        simulator.control.freeze(i, False)


# The request modes as /health reports them (docs/collector.md), written out rather than imported.
ONE_ROUND_TRIP = "multiple_service_packet"
ONE_BY_ONE = "single_requests"


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Poll until `predicate()`; the timeout only bounds a failing test, it asserts no speed."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
