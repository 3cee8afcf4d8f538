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
from collector.settings import HISTORY_LENGTH, Running, Schema, Settings, flatten, nest, settings_path

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
    assert len(status["history"]) == HISTORY_LENGTH == 20  # docs/collector.md: the last 20 requests
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


def test_the_schema_checks_a_request_without_a_running_collector() -> None:
    """What `cli.py collector set` checks before it writes anything: the collector's own rules."""
    schema = Schema(["meter-0"])
    assert schema.check({"poll_interval_s": 5, "meters.meter-0.in_service": False}) == {}
    reasons = schema.check({"poll_interval_s": 4000, "meters.meter-7.in_service": False})
    assert "0.1..3600" in reasons["poll_interval_s"] and "meter-0" in reasons["meters.meter-7.in_service"]


def test_refusal_messages_say_what_is_settable_and_what_was_given(tmp_path: Path, follower: Follower) -> None:
    """The exact texts a channel reports back (docs/collector.md, "Remote settings")."""
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    settable = "settable: poll_interval_s, debug, meters.<asset>.in_service"
    assert settings.apply({"reboot": 1}, "ncmd").refused == {"reboot": f"not a setting; {settable}"}
    assert settings.apply({"meters.meter-0.debug": True}, "ncmd").refused == {
        "meters.meter-0.debug": f"not a setting; {settable}"}
    assert settings.apply({}, "ncmd").refused == {"(request)": f"no setting given; {settable}"}
    assert settings.apply({"poll_interval_s": 0}, "ncmd").refused == {
        "poll_interval_s": "expected a number of seconds in 0.1..3600, got 0"}
    assert settings.apply({"debug": "on"}, "ncmd").refused == {"debug": "expected true or false, got 'on'"}
    outcome = settings.refuse("not JSON", source="ncmd")
    assert (outcome.ok, outcome.refused, outcome.source) == (False, {"(request)": "not JSON"}, "ncmd")


def test_health_shows_values_remote_overrides_and_the_last_twenty(tmp_path: Path, follower: Follower) -> None:
    cfg = config(tmp_path)
    assert settings_path(cfg) == Path(f"{cfg.buffer.path}.settings.json")  # next to the buffer
    settings = Settings(cfg, debug=False, follow=follower)
    assert settings.status()["pending"] is False  # nothing submitted yet
    settings.apply({"meters.meter-1.in_service": False}, "shadow")
    status = settings.status()
    assert status["values"]["meters.meter-1.in_service"] is False
    assert status["remote"] == {"meters.meter-1.in_service": False}
    for i in range(25):
        settings.apply({"debug": i % 2 == 0}, "ncmd")
    assert len(settings.status()["history"]) == 20


def test_each_request_is_logged_with_its_source_and_outcome(
    tmp_path: Path, follower: Follower, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    with caplog.at_level(logging.INFO, logger="collector.settings"):
        settings.apply({"debug": True}, "shadow")
        settings.apply({"debug": True}, "shadow")
        settings.apply({"debug": "x"}, "ncmd")
    records = [r for r in caplog.records if r.getMessage().startswith("settings change")]
    assert [(r.getMessage(), r.levelno) for r in records] == [
        ("settings change applied", logging.INFO),
        ("settings change unchanged", logging.INFO),
        ("settings change refused", logging.WARNING),
    ]
    assert [r.source for r in records] == ["shadow", "shadow", "ncmd"]
    assert records[0].changes == {"debug": True} and records[2].reasons == {
        "debug": "expected true or false, got 'x'"}
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="collector.settings"):
        Settings(config(tmp_path), debug=False, follow=follower)
    restored = [r for r in caplog.records if r.getMessage() == "settings restored"]
    assert len(restored) == 1 and restored[0].values == {"debug": True}


@pytest.mark.parametrize("document", [
    {"format": 2, "values": {"debug": True}, "bundle": {"debug": False}},
    {"format": 1, "values": ["debug"], "bundle": {}},
])
def test_a_settings_file_in_another_format_is_ignored(
    tmp_path: Path, follower: Follower, document: dict[str, Any]
) -> None:
    cfg = config(tmp_path)
    settings_path(cfg).parent.mkdir(parents=True)
    settings_path(cfg).write_text(json.dumps(document))
    assert Settings(cfg, debug=False, follow=follower).values()["debug"] is False


def test_records_are_immutable() -> None:
    import dataclasses

    from collector.settings import Outcome, SettingSpec

    for record in (SettingSpec("debug", "bool", "x"), Running(1.0, False, frozenset()),
                   Outcome("ncmd", 0, {}, {})):
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.source = "x"  # type: ignore[union-attr]


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_stop_ends_the_worker_cleanly_and_nothing_runs_after_it(tmp_path: Path, follower: Follower) -> None:
    Settings(config(tmp_path), debug=False, follow=follower).stop()  # never started: stopping is fine
    settings = started(config(tmp_path), follower)
    settings.stop()
    assert "settings-apply" not in {t.name for t in threading.enumerate()}
    settings.apply({"debug": True}, "ncmd")  # accepted and kept, but no worker runs it any more
    assert follower.targets == []


def test_pending_while_the_worker_runs_a_target(tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()

    def slow(target: Running) -> None:
        entered.set()
        release.wait(30)

    settings = Settings(config(tmp_path), debug=False, follow=slow)
    settings.start()
    try:
        settings.apply({"debug": True}, "ncmd")
        assert entered.wait(20)
        assert settings.status()["pending"] is True  # running it, nothing else waiting
        release.set()
        assert settings.wait_applied(20) and settings.status()["pending"] is False
    finally:
        release.set()
        settings.stop()


def test_no_file_descriptor_is_left_open_by_persisting(tmp_path: Path, follower: Follower) -> None:
    import os

    settings = Settings(config(tmp_path), debug=False, follow=follower)
    settings.apply({"debug": True}, "ncmd")
    before = len(os.listdir("/proc/self/fd"))
    for i in range(20):
        settings.apply({"poll_interval_s": 1 + i}, "ncmd")
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_specs_a_channel_declares_name_each_setting() -> None:
    """What Sparkplug declares writable in NBIRTH (and `collector set --help` could list): exact texts."""
    from collector.settings import SettingSpec

    assert list(Schema(["meter-0"]).specs.values()) == [
        SettingSpec("poll_interval_s", "float", "seconds between polls of a meter", 0.1, 3600),
        SettingSpec("debug", "bool", "print every decoded reading on stdout"),
        SettingSpec("meters.meter-0.in_service", "bool", "meter meter-0 is polled"),
    ]


def test_an_unknown_meter_is_named_with_the_meters_there_are(tmp_path: Path, follower: Follower) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    assert settings.apply({"meters.meter-9.in_service": False}, "shadow").refused == {
        "meters.meter-9.in_service": "no meter 'meter-9' in this collector (meters: meter-0, meter-1)"}


@pytest.mark.parametrize("value", [0.1, 3600, 3600.0])
def test_the_limits_themselves_are_allowed(tmp_path: Path, follower: Follower, value: float) -> None:
    settings = Settings(config(tmp_path), debug=False, follow=follower)
    assert settings.apply({"poll_interval_s": value}, "ncmd").applied == {"poll_interval_s": value}


def test_a_whole_number_of_seconds_is_kept_as_a_float(tmp_path: Path, follower: Follower) -> None:
    """The shadow's JSON may carry 5 for 5.0: the running value (and what is reported back) is a float."""
    cfg = config(tmp_path)
    settings = Settings(cfg, debug=False, follow=follower)
    outcome = settings.apply({"poll_interval_s": 5}, "shadow")
    assert type(outcome.applied["poll_interval_s"]) is float
    assert type(settings.values()["poll_interval_s"]) is float
    assert json.loads(settings_path(cfg).read_text())["values"] == {"poll_interval_s": 5.0}
    assert "5.0" in settings_path(cfg).read_text()


def test_every_record_carries_the_time_it_was_made(tmp_path: Path, follower: Follower) -> None:
    import time

    settings = Settings(config(tmp_path), debug=False, follow=follower)
    before = int(time.time() * 1000)
    outcomes = [settings.apply({"debug": True}, "ncmd"), settings.refuse("not JSON", "ncmd")]
    after = int(time.time() * 1000)
    assert all(before <= o.at_ms <= after for o in outcomes), [o.at_ms for o in outcomes]


def test_a_failed_write_names_the_file_and_the_error_and_applies_nothing(
    tmp_path: Path, follower: Follower
) -> None:
    cfg = config(tmp_path)
    path = settings_path(cfg)
    path.mkdir(parents=True)  # a directory where the file should go: the rename fails
    settings = Settings(cfg, debug=False, follow=follower)
    settings.start()
    try:
        outcome = settings.apply({"poll_interval_s": 5, "debug": True}, source="ncmd")
        assert outcome.applied == {}
        assert outcome.refused["(request)"].startswith(f"cannot persist the change to {path}: [Errno 21] ")
        assert settings.status()["history"][-1]["outcome"] == "refused"
        assert settings.wait_applied(5) and follower.targets == []  # nothing was submitted
    finally:
        settings.stop()


def test_the_error_of_a_failed_rename_is_reported_even_if_the_temporary_file_is_gone(
    tmp_path: Path, follower: Follower, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cleaning up after a failure never replaces the failure by its own (e.g. a vanished temp file)."""
    import os

    def replace(src: str | Path, dst: str | Path) -> None:
        os.unlink(src)
        raise OSError("No space left on device")

    cfg = config(tmp_path)
    settings = Settings(cfg, debug=False, follow=follower)
    monkeypatch.setattr("collector.settings.os.replace", replace)
    outcome = settings.apply({"debug": True}, source="ncmd")
    assert outcome.refused == {
        "(request)": f"cannot persist the change to {settings_path(cfg)}: No space left on device"}


def test_the_settings_file_is_synced_before_and_after_its_rename(
    tmp_path: Path, follower: Follower, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomic and durable: the complete temporary file is fsynced, renamed, then its directory fsynced
    (so neither a half-written file nor a lost rename survives a power cut)."""
    import os
    import stat

    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append(("dir", 0) if stat.S_ISDIR(info.st_mode) else ("file", info.st_size))
        real_fsync(fd)

    # Three levels below an existing directory: all of them are created.
    cfg = config(tmp_path, buffer={"path": str(tmp_path / "a" / "b" / "buffer.sqlite")})
    settings = Settings(cfg, debug=False, follow=follower)
    monkeypatch.setattr("collector.settings.os.fsync", fsync)
    assert settings.apply({"debug": True}, source="ncmd").ok
    assert synced == [("file", settings_path(cfg).stat().st_size), ("dir", 0)]


def test_a_stored_value_the_bundle_changed_since_is_logged_with_both_values(
    tmp_path: Path, follower: Follower, caplog: pytest.LogCaptureFixture
) -> None:
    Settings(config(tmp_path), debug=False, follow=follower).apply({"poll_interval_s": 5}, source="ncmd")
    with caplog.at_level(logging.WARNING, logger="collector.settings"):
        Settings(config(tmp_path, poll_interval_s=2), debug=False, follow=follower)
    assert [r.reason for r in caplog.records if r.getMessage() == "stored setting not restored"] == [
        "poll_interval_s: the bundle changed it since (0.2 -> 2.0)"]


def test_failures_on_the_worker_are_logged_and_reported_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def follow(target: Running) -> None:
        raise OSError("meter socket stuck")

    def listener(target: Running) -> None:
        raise RuntimeError("listener bug")

    heard: list[Running] = []
    settings = Settings(config(tmp_path), debug=False, follow=lambda t: None)
    settings.listen(listener)
    settings.listen(heard.append)  # a failing listener does not keep the next one from hearing
    failing = Settings(config(tmp_path / "other"), debug=False, follow=follow)
    with caplog.at_level(logging.ERROR, logger="collector.settings"):
        for s in (settings, failing):
            s.start()
            s.apply({"debug": True}, "ncmd")
            assert s.wait_applied(20)
            s.stop()
    assert len(heard) == 1
    assert failing.status()["last_apply_error"] == "OSError: meter socket stuck"
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["settings listener failed", "applying settings failed"]


def test_the_worker_thread_never_keeps_the_process_alive(tmp_path: Path, follower: Follower) -> None:
    """A restart stuck on a meter must not block the collector's exit (the thread is a daemon)."""
    settings = started(config(tmp_path), follower)
    try:
        [worker] = [t for t in threading.enumerate() if t.name == "settings-apply"]
        assert worker.daemon
    finally:
        settings.stop()
