"""Backoff policy alone (no broker): full jitter between 0 and a ceiling that doubles up to the cap."""

from __future__ import annotations

import pytest

import collector.backoff as backoff_module
from collector.backoff import Backoff


def test_defaults_and_ceilings(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[float, float]] = []

    def ceiling(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    monkeypatch.setattr(backoff_module.random, "uniform", ceiling)
    policy = Backoff()
    assert (policy.base_s, policy.cap_s, policy.floor_s) == (0.5, 30.0, 0.1)
    assert [policy.next_delay() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert all(low == 0 for low, _ in asked)  # full jitter: anywhere from 0
    for _ in range(100):  # the attempt counter stops growing: no overflow after a long outage
        assert policy.next_delay() == 30.0
    policy.reset()
    assert policy.next_delay() == 0.5


def test_floor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff_module.random, "uniform", lambda low, high: 0.05)
    assert Backoff().next_delay() == 0.1
    assert Backoff(floor_s=0.01).next_delay() == 0.05
