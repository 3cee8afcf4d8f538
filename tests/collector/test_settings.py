"""The one settings mechanism (collector.settings): limits, refusals naming the key, persistence,
the record of every request, and one bounded worker however many commands arrive.

Expectations are written from the issue and the bundle schema's documented limits (docs/collector.md:
`poll_interval_s` 0.1..3600 s), not read back from the module.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from collector.config import CollectorConfig
from collector.settings import HISTORY_LENGTH, Running, Settings, flatten, nest, settings_path

BUNDLE: dict[str, Any] = {
    "stack": "test",
    "site": "plant-a",
    "collector": "edge-01",
    "thing_name": "test:plant-a:edge-01",
    "poll_interval_s": 0.2,
    "meters": [
        {"asset": "meter-0", "breaker": "F0", "host": "127.0.0.1"},
        {"asset": "meter-1", "breaker": "F1", "host": "127.0.0.1"},
    ],
    "mqtt": {"endpoint": "broker.example"},
}


def config(tmp_path: Path, **changes: Any) -> CollectorConfig:
    data = {**BUNDLE, "buffer": {"path": str(tmp_path / "state" / "buffer.sqlite")}, **changes}
    return CollectorConfig.model_validate(data)


class Follower:
    """Records what the worker asked the collector to run, on which thread."""

    def __init__(self) -> None:
        self.targets: list[Running] = []
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def __call__(self, target: Running) -> None:
        with self.changed:
            self.targets.append(target)
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 20) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.targets), timeout), self.targets


@pytest.fixture
def follower() -> Follower:
    return Follower()


def started(cfg: CollectorConfig, follower: Follower, debug: bool = False) -> Settings:
    settings = Settings(cfg, debug=debug, follow=follower)
    settings.start()
    return settings


def test_settable_keys_and_limits_come_from_the_bundle_schema(tmp_path: Path, follower: Follower) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    specs = {s.key: s for s in settings.specs()}
    assert sorted(specs) == [
        "debug",
        "meters.meter-0.in_service",
        "meters.meter-1.in_service",
        "poll_interval_s",
    ]
    interval = specs["poll_interval_s"]
    assert (interval.kind, interval.minimum, interval.maximum) == ("float", 0.1, 3600)
    assert specs["debug"].kind == "bool" and specs["meters.meter-1.in_service"].kind == "bool"
    assert settings.values() == {
        "poll_interval_s": 0.2,
        "debug": False,
        "meters.meter-0.in_service": True,
        "meters.meter-1.in_service": True,
    }


def test_a_valid_change_is_applied_on_the_worker_persisted_and_recorded(
    tmp_path: Path, follower: Follower
) -> None:
    cfg = config(tmp_path)
    settings = started(cfg, follower)
    try:
        outcome = settings.apply({"poll_interval_s": 5, "meters.meter-1.in_service": False}, source="ncmd")
        assert outcome.ok and outcome.refused == {}
        assert outcome.applied == {"poll_interval_s": 5.0, "meters.meter-1.in_service": False}
        follower.wait_for(lambda ts: ts and ts[-1].poll_interval_s == 5.0)
        assert follower.targets[-1] == Running(5.0, False, frozenset({"meter-1"}))
        assert follower.threads == {"settings-apply"}  # never the caller's thread (paho's network loop)
        record = settings.status()["history"][-1]
        assert (record["source"], record["outcome"]) == ("ncmd", "applied")
        assert record["changes"] == {"poll_interval_s": 5.0, "meters.meter-1.in_service": False}
        assert isinstance(record["at_ms"], int)
    finally:
        settings.stop()

    # A new process with the same bundle starts with the change.
    again = Settings(cfg, debug=False, follow=follower)
    assert again.values()["poll_interval_s"] == 5.0
    assert again.running() == Running(5.0, False, frozenset({"meter-1"}))
    stored = json.loads(settings_path(cfg).read_text())
    assert stored["values"] == {"poll_interval_s": 5.0, "meters.meter-1.in_service": False}


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"poll_interval_s": 0}, "poll_interval_s", "0.1..3600"),
        ({"poll_interval_s": 3601}, "poll_interval_s", "0.1..3600"),
        ({"poll_interval_s": math.nan}, "poll_interval_s", "0.1..3600"),
        ({"poll_interval_s": "5"}, "poll_interval_s", "number"),
        ({"poll_interval_s": True}, "poll_interval_s", "number"),
        ({"poll_interval_s": None}, "poll_interval_s", "number"),
        ({"debug": "yes"}, "debug", "true or false"),
        ({"debug": 1}, "debug", "true or false"),
        ({"meters.meter-9.in_service": False}, "meters.meter-9.in_service", "meter-0, meter-1"),
        ({"reboot": True}, "reboot", "not a setting"),
        ({"mqtt.endpoint": "evil.example"}, "mqtt.endpoint", "not a setting"),
        ({}, "(request)", "no setting"),
    ],
)
def test_a_bad_request_is_refused_naming_the_key_and_changes_nothing(
    tmp_path: Path, follower: Follower, changes: dict[str, Any], key: str, words: str
) -> None:
    cfg = config(tmp_path)
    settings = Settings(cfg, debug=False, follow=follower)
    before = settings.values()
    outcome = settings.apply(changes, source="shadow")
    assert not outcome.ok and outcome.applied == {}
    assert key in outcome.refused and words in outcome.refused[key]
    assert settings.values() == before
    assert not settings_path(cfg).exists()
    record = settings.status()["history"][-1]
    assert (record["source"], record["outcome"], record["reasons"]) == ("shadow", "refused", outcome.refused)


def test_one_bad_key_refuses_the_whole_request(tmp_path: Path, follower: Follower) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    outcome = settings.apply({"poll_interval_s": 5, "debug": "on"}, source="ncmd")
    assert list(outcome.refused) == ["debug"]
    assert settings.values()["poll_interval_s"] == 0.2


def test_a_request_that_changes_nothing_is_recorded_as_unchanged(tmp_path: Path, follower: Follower) -> None:
    cfg = config(tmp_path)
    settings = Settings(cfg, debug=False, follow=follower)
    outcome = settings.apply({"poll_interval_s": 0.2, "debug": False}, source="shadow")
    assert outcome.ok and outcome.applied == {}
    assert settings.status()["history"][-1]["outcome"] == "unchanged"
    assert not settings_path(cfg).exists()


def test_a_channel_refusal_before_parsing_is_recorded(tmp_path: Path, follower: Follower) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    settings.refuse("not JSON: Expecting value", source="ncmd")
    status = settings.status()
    assert status["history"][-1]["reasons"] == {"(request)": "not JSON: Expecting value"}
    assert status["counters"] == {"applied": 0, "unchanged": 0, "refused": 1}


def test_the_record_is_bounded_and_counts_everything(tmp_path: Path, follower: Follower) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    for i in range(3 * HISTORY_LENGTH):
        settings.apply({"poll_interval_s": 1 + i % 2}, source="ncmd")
        settings.apply({"debug": "x"}, source="ncmd")
    status = settings.status()
    assert len(status["history"]) == HISTORY_LENGTH
    n = 3 * HISTORY_LENGTH
    assert status["counters"] == {"applied": n, "unchanged": 0, "refused": n}
    assert status["history"][-1]["outcome"] == "refused"  # newest last


def test_nested_documents_flatten_to_setting_keys() -> None:
    document = {"poll_interval_s": 5, "meters": {"meter-1": {"in_service": False}}, "debug": True}
    assert flatten(document) == {"poll_interval_s": 5, "meters.meter-1.in_service": False, "debug": True}
    assert nest(flatten(document)) == document
    assert flatten({"meters": {"m1": {}}, "debug": True}) == {"debug": True}  # an empty object sets nothing


def test_a_change_that_cannot_be_persisted_is_refused(tmp_path: Path, follower: Follower) -> None:
    cfg = config(tmp_path)
    settings_path(cfg).mkdir(parents=True)  # a directory where the file should go: rename fails
    settings = Settings(cfg, debug=False, follow=follower)
    outcome = settings.apply({"poll_interval_s": 5}, source="ncmd")
    assert not outcome.ok and "cannot persist" in outcome.refused["(request)"]
    assert settings.values()["poll_interval_s"] == 0.2
    assert [p.name for p in settings_path(cfg).parent.iterdir()] == [settings_path(cfg).name]  # no temp left


def test_an_edited_bundle_wins_over_an_older_remote_change(tmp_path: Path, follower: Follower) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    assert settings.apply({"poll_interval_s": 5, "debug": True}, source="ncmd").ok
    # The operator then edits the bundle's poll interval: that newer decision wins; debug stays remote.
    edited = Settings(config(tmp_path, poll_interval_s=2), debug=False, follow=follower)
    assert edited.values()["poll_interval_s"] == 2 and edited.values()["debug"] is True


def test_stored_settings_for_a_removed_meter_or_out_of_limits_are_ignored(
    tmp_path: Path, follower: Follower, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path)
    path = settings_path(cfg)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "format": 1,
        "values": {"meters.meter-7.in_service": False, "poll_interval_s": 99999, "debug": True},
        "bundle": {"meters.meter-7.in_service": True, "poll_interval_s": 0.2, "debug": False},
    }))
    with caplog.at_level(logging.WARNING, logger="collector.settings"):
        settings = Settings(cfg, debug=False, follow=follower)
    assert settings.values()["poll_interval_s"] == 0.2 and settings.values()["debug"] is True
    assert "meters.meter-7.in_service" not in settings.values()
    assert any("poll_interval_s" in str(getattr(r, "reason", "")) for r in caplog.records)


def test_a_corrupt_settings_file_starts_from_the_bundle(
    tmp_path: Path, follower: Follower, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path)
    settings_path(cfg).parent.mkdir(parents=True)
    settings_path(cfg).write_text("{half a fi")
    with caplog.at_level(logging.WARNING, logger="collector.settings"):
        settings = Settings(cfg, debug=False, follow=follower)
    assert settings.values()["poll_interval_s"] == 0.2
    assert any(str(settings_path(cfg)) in str(getattr(r, "path", "")) for r in caplog.records)


def test_many_commands_use_one_worker_and_only_the_latest_is_applied(tmp_path: Path) -> None:
    """Issue 24: 500 remote poll-interval commands left 500 threads. Now the worker holds the latest
    target only: while one restart is stuck (a slow meter), 500 more commands queue nothing."""
    release = threading.Event()
    entered = threading.Event()
    applied: list[float] = []

    def slow_follow(target: Running) -> None:
        entered.set()
        release.wait(30)
        applied.append(target.poll_interval_s)

    settings = Settings(config(tmp_path), debug=False, follow=slow_follow)
    settings.start()
    try:
        threads_before = threading.active_count()
        assert settings.apply({"poll_interval_s": 1}, source="ncmd").ok
        assert entered.wait(20)  # the worker is stuck in the first restart
        for i in range(500):
            assert settings.apply({"poll_interval_s": 2 + i}, source="ncmd").ok
        assert threading.active_count() == threads_before
        assert settings.status()["pending"] is True
        release.set()
        assert settings.wait_applied(20)
        assert applied == [1.0, 501.0]  # the stuck one, then only the latest of the 500
        assert settings.status()["pending"] is False
    finally:
        release.set()
        settings.stop()


def test_the_worker_survives_a_failing_apply_and_reports_it(tmp_path: Path) -> None:
    calls: list[float] = []

    def follow(target: Running) -> None:
        calls.append(target.poll_interval_s)
        if len(calls) == 1:
            raise OSError("meter socket stuck")

    settings = Settings(config(tmp_path), debug=False, follow=follow)
    settings.start()
    try:
        settings.apply({"poll_interval_s": 1}, source="ncmd")
        assert settings.wait_applied(20)
        assert "meter socket stuck" in settings.status()["last_apply_error"]
        settings.apply({"poll_interval_s": 2}, source="ncmd")
        assert settings.wait_applied(20)
        assert calls == [1.0, 2.0] and settings.status()["last_apply_error"] is None
    finally:
        settings.stop()


def test_listeners_hear_each_applied_target_after_the_collector_follows(tmp_path: Path) -> None:
    """The hook a channel such as Sparkplug uses to report new values (NDATA) once they run."""
    order: list[str] = []
    settings = Settings(config(tmp_path), debug=False, follow=lambda t: order.append("follow"))
    settings.listen(lambda t: order.append(f"listener {t.debug}"))
    settings.start()
    try:
        settings.apply({"debug": True}, source="sparkplug")
        assert settings.wait_applied(20)
        assert order == ["follow", "listener True"]
    finally:
        settings.stop()
