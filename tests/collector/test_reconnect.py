"""MQTT reconnect policy: exponential backoff with full jitter, capped, reset by a connection that stayed up.

Deterministic: the assertions are on the order of events and on each delay's ceiling, never on how
long anything took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector import backoff as backoff_module
from collector.backoff import Backoff
from collector.config import load_config
from collector.mqtt_link import MqttLink
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import wait_until, write_bundle


def test_delay_ceilings_double_up_to_the_cap_and_reset_starts_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff_module.random, "uniform", lambda low, high: high)  # always the ceiling
    policy = Backoff(base_s=0.5, cap_s=30.0)
    assert [policy.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    policy.reset()
    assert policy.next_delay() == 0.5
    monkeypatch.setattr(backoff_module.random, "uniform", lambda low, high: low)  # full jitter: may be 0
    assert Backoff(base_s=0.5, cap_s=30.0, floor_s=0.1).next_delay() == 0.1  # never a busy loop


class RecordingBackoff(Backoff):
    """The real policy, plus a log of what the link asked it, in order."""

    def __init__(self) -> None:
        super().__init__(base_s=0.5, cap_s=30.0)
        self.events: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def next_delay(self) -> float:
        delay = super().next_delay()
        with self._lock:
            self.events.append(("delay", delay))
        return delay

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.events.append(("reset", 0.0))

    def snapshot(self) -> list[tuple[str, float]]:
        with self._lock:
            return list(self.events)


@pytest.fixture
def broker(tmp_path: Path, dev_ca: DevCA) -> Iterator[MosquittoBroker]:
    broker = MosquittoBroker(tmp_path / "mosquitto", dev_ca)
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.slow
def test_link_backs_off_while_the_broker_is_down_and_resets_after_a_stable_connection(
    tmp_path: Path, dev_ca: DevCA, broker: MosquittoBroker
) -> None:
    cfg = load_config(write_bundle(tmp_path / "bundle", dev_ca, broker, [free_port()], influx_url=None))
    policy = RecordingBackoff()
    link = MqttLink(cfg, on_puback=lambda mid: None, backoff=policy, stable_after_s=0.5)
    link.start()
    try:
        wait_until(link.connected.is_set, 20, "first connection")
        broker.stop()
        wait_until(lambda: len(policy.snapshot()) >= 1 + 4, 30, "four failed reconnect attempts")
        assert not link.connected.is_set()
        broker.start()
        wait_until(link.connected.is_set, 60, "reconnected after the broker came back")
        events = policy.snapshot()
        assert events[-1][0] == "delay"  # the CONNACK alone did not reset the policy
        assert link.stats["connects"] == 2 and link.stats["disconnects"] == 1
        time.sleep(1.0)  # longer than stable_after_s: this connection counts as stable

        # So the next outage starts again from the base delay, not from where the last one ended.
        broker.stop()
        wait_until(lambda: len(policy.snapshot()) > len(events) + 1, 30, "a retry after the second drop")
        assert policy.snapshot()[len(events)] == ("reset", 0.0)
        kind, first_delay = policy.snapshot()[len(events) + 1]
        assert kind == "delay" and first_delay <= 0.5
    finally:
        link.stop(timeout_s=1)
