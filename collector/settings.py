"""The collector's running settings: the one place a remote change is checked, kept, applied and recorded.

Every channel (a JSON NCMD, the named shadow, a Sparkplug NCMD write) calls `Settings.apply(changes,
source)` with flat keys (`flatten` turns a nested document into them):

- `poll_interval_s`: seconds, within the bundle schema's limits (`CollectorConfig.poll_interval_s`);
- `debug`: true or false (print every decoded reading);
- `meters.<asset>.in_service`: false takes a configured meter out of service (not polled), true back.

A request is all or nothing: one bad key refuses it whole, and every reason names its key
(`poll_interval_s: expected a number of seconds in 0.1..3600, got 0`). An accepted change is written to
the settings file next to the buffer (temporary file, fsync, rename: a crash leaves the old file or the
new one) before the collector follows it, so it survives a restart. A remote override remembers the
bundle value it replaced: when the operator later edits that value in the bundle, the newer bundle wins.

The collector follows on ONE worker thread (`settings-apply`), never on the caller's (paho's network
thread must not wait for a poller restart). The worker holds only the latest target: any number of
commands queue nothing, and a stuck restart is followed by one more, to the newest values.

Every request, applied, unchanged or refused, is logged and recorded (source, time, outcome) in a
bounded history that /health shows (`status()`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from collector.config import CollectorConfig

log = logging.getLogger(__name__)

POLL_INTERVAL = "poll_interval_s"
DEBUG = "debug"
METERS = "meters"
IN_SERVICE = "in_service"
REQUEST = "(request)"  # the key of a reason about the request as a whole
HISTORY_LENGTH = 20
FILE_FORMAT = 1


def in_service_key(asset: str) -> str:
    return f"{METERS}.{asset}.{IN_SERVICE}"


def settings_path(cfg: CollectorConfig) -> Path:
    """Next to the buffer: the one writable place a collector has (the bundle is mounted read-only)."""
    return Path(f"{cfg.buffer.path}.settings.json")


@dataclass(frozen=True)
class SettingSpec:
    """One remotely settable key: its type and limits (what a Sparkplug NBIRTH declares writable)."""

    key: str
    kind: Literal["float", "bool"]
    description: str
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Running:
    """What the collector runs with; the worker hands the latest one to the collector."""

    poll_interval_s: float
    debug: bool
    out_of_service: frozenset[str]


@dataclass(frozen=True)
class Outcome:
    """The answer to one request: `applied` holds the keys whose value changed; `refused` the reasons
    (by key) when the request was refused, in which case nothing changed."""

    source: str
    at_ms: int
    applied: dict[str, object]
    refused: dict[str, str]

    @property
    def ok(self) -> bool:
        return not self.refused

    @property
    def outcome(self) -> str:
        return "refused" if self.refused else "applied" if self.applied else "unchanged"

    def as_dict(self) -> dict[str, object]:
        return {
            "at_ms": self.at_ms,
            "source": self.source,
            "outcome": self.outcome,
            "changes": self.applied,
            "reasons": self.refused,
        }


def flatten(document: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """`{"meters": {"m1": {"in_service": false}}}` -> `{"meters.m1.in_service": false}`. An empty object
    holds no setting and gives no key."""
    flat: dict[str, object] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def nest(flat: Mapping[str, object]) -> dict[str, Any]:
    """The inverse of `flatten`: `{"meters.m1.in_service": false}` -> `{"meters": {"m1": {...}}}`."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _interval_limits() -> tuple[float, float]:
    """The bundle schema's own bounds for poll_interval_s: one definition for the file and the remote."""
    metadata = CollectorConfig.model_fields[POLL_INTERVAL].metadata
    low = next(m.ge for m in metadata if hasattr(m, "ge"))
    high = next(m.le for m in metadata if hasattr(m, "le"))
    return float(low), float(high)


class Schema:
    """The settable keys of a collector with meters `assets`, and the check of a request against them:
    the collector's `Settings` and the operator's `cli.py collector set` use this one definition."""

    def __init__(self, assets: Sequence[str]) -> None:
        self.assets = tuple(assets)
        low, high = _interval_limits()
        self.specs = {
            POLL_INTERVAL: SettingSpec(POLL_INTERVAL, "float", "seconds between polls of a meter", low, high),
            DEBUG: SettingSpec(DEBUG, "bool", "print every decoded reading on stdout"),
            **{
                in_service_key(a): SettingSpec(in_service_key(a), "bool", f"meter {a} is polled")
                for a in self.assets
            },
        }

    def check(self, changes: Mapping[str, object]) -> dict[str, str]:
        """The reason per key that refuses `changes` (a request is all or nothing); empty: acceptable."""
        reasons = {key: r for key, value in changes.items() if (r := self.problem(key, value)) is not None}
        if not changes:
            reasons[REQUEST] = f"no setting given; settable: {self.settable()}"
        return reasons

    def settable(self) -> str:
        return ", ".join([POLL_INTERVAL, DEBUG, f"{METERS}.<asset>.{IN_SERVICE}"])

    def problem(self, key: str, value: object) -> str | None:
        spec = self.specs.get(key)
        if spec is None:
            if key.startswith(f"{METERS}.") and key.endswith(f".{IN_SERVICE}"):
                asset = key[len(METERS) + 1 : -len(IN_SERVICE) - 1]
                return f"no meter {asset!r} in this collector (meters: {', '.join(self.assets)})"
            return f"not a setting; settable: {self.settable()}"
        if spec.kind == "bool":
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        assert spec.minimum is not None and spec.maximum is not None  # a float spec has both limits
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and spec.minimum <= value <= spec.maximum)
        ):
            return f"expected a number of seconds in {spec.minimum:g}..{spec.maximum:g}, got {value!r}"
        return None

    def normal(self, key: str, value: object) -> object:
        return float(value) if self.specs[key].kind == "float" else value  # type: ignore[arg-type]


class Settings:
    """Thread-safe; `follow(target)` is the collector's way of running a target (called on the worker)."""

    def __init__(
        self, cfg: CollectorConfig, debug: bool, follow: Callable[[Running], None], path: Path | None = None
    ) -> None:
        self._path = path or settings_path(cfg)
        self._schema = Schema([m.asset for m in cfg.meters])
        self._assets = self._schema.assets
        self._bundle: dict[str, object] = {
            POLL_INTERVAL: cfg.poll_interval_s,
            DEBUG: debug,
            **{in_service_key(a): True for a in self._assets},
        }
        self._lock = threading.Lock()
        self._values = {**self._bundle, **self._restore()}
        self._history: collections.deque[dict[str, object]] = collections.deque(maxlen=HISTORY_LENGTH)
        self._counters = {"applied": 0, "unchanged": 0, "refused": 0}
        self._listeners: list[Callable[[Running], None]] = []
        self._follow = follow
        self._worker = _Worker(self._follow_and_tell)

    # -- the API every channel uses --------------------------------------------------------------

    def specs(self) -> list[SettingSpec]:
        """The settable keys with their type and limits."""
        return list(self._schema.specs.values())

    def values(self) -> dict[str, object]:
        """Current value of every settable key (what the collector runs, or is about to)."""
        with self._lock:
            return dict(self._values)

    def running(self) -> Running:
        with self._lock:
            return self._running_from(self._values)

    def apply(self, changes: Mapping[str, object], source: str) -> Outcome:
        """Check, persist and hand to the worker; never blocks on the running collector."""
        reasons = self._schema.check(changes)
        with self._lock:
            applied: dict[str, object] = {}
            if not reasons:
                new = {**self._values, **{k: self._schema.normal(k, v) for k, v in changes.items()}}
                applied = {k: new[k] for k in changes if new[k] != self._values[k]}
                if applied:
                    try:
                        self._store(new)
                    except OSError as e:
                        reasons[REQUEST] = f"cannot persist the change to {self._path}: {e}"
                        applied = {}
                    else:
                        self._values = new
            outcome = Outcome(source, int(time.time() * 1000), applied, reasons)
            self._record(outcome)
            target = self._running_from(self._values)
        if outcome.applied:
            self._worker.submit(target)
        return outcome

    def refuse(self, reason: str, source: str) -> Outcome:
        """Record a request a channel could not even read (not JSON, not an object)."""
        outcome = Outcome(source, int(time.time() * 1000), {}, {REQUEST: reason})
        with self._lock:
            self._record(outcome)
        return outcome

    def listen(self, listener: Callable[[Running], None]) -> None:
        """Call `listener(target)` on the worker after the collector runs each new target."""
        self._listeners.append(listener)

    def status(self) -> dict[str, Any]:
        """For /health: values, overrides of the bundle, pending work, counters, recent requests."""
        with self._lock:
            values = dict(self._values)
            history = list(self._history)
            counters = dict(self._counters)
        return {
            "values": values,
            "remote": {k: v for k, v in values.items() if v != self._bundle.get(k)},
            "pending": self._worker.pending(),
            "last_apply_error": self._worker.last_error,
            "counters": counters,
            "history": history,
        }

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.start()

    def stop(self) -> None:
        self._worker.stop()

    def wait_applied(self, timeout_s: float) -> bool:
        """True once the collector runs the latest accepted values (False on timeout)."""
        return self._worker.wait_idle(timeout_s)

    # -- internals ---------------------------------------------------------------------------------

    def _running_from(self, values: Mapping[str, object]) -> Running:
        out = frozenset(a for a in self._assets if values[in_service_key(a)] is False)
        return Running(float(values[POLL_INTERVAL]), bool(values[DEBUG]), out)  # type: ignore[arg-type]

    def _record(self, outcome: Outcome) -> None:
        """Under `_lock`: count, keep and log one request."""
        self._counters[outcome.outcome] += 1
        self._history.append(outcome.as_dict())
        extra = {"source": outcome.source, "changes": outcome.applied, "reasons": outcome.refused}
        if outcome.refused:
            log.warning("settings change refused", extra=extra)
        else:
            log.info(f"settings change {outcome.outcome}", extra=extra)

    def _follow_and_tell(self, target: Running) -> None:
        self._follow(target)
        for listener in self._listeners:
            try:
                listener(target)
            except Exception:  # a listener's bug must not stop the next change from being applied
                log.exception("settings listener failed")

    # -- the settings file ---------------------------------------------------------------------------

    def _store(self, values: Mapping[str, object]) -> None:
        """Write the overrides atomically: a temporary file, fsynced, renamed over the old one."""
        overrides = {k: v for k, v in values.items() if v != self._bundle[k]}
        document = {
            "format": FILE_FORMAT,
            "values": overrides,
            "bundle": {k: self._bundle[k] for k in overrides},
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f"{self._path.name}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(document, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        directory = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)

    def _restore(self) -> dict[str, object]:
        """Overrides from the settings file that still apply; anything else is logged and left out."""
        try:
            document = json.loads(self._path.read_text())
            stored, bundle = document["values"], document["bundle"]
            if document.get("format") != FILE_FORMAT or not isinstance(stored, dict):
                raise ValueError(f"unknown format {document.get('format')!r}")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning(
                "settings file unreadable; starting from the bundle",
                extra={"path": str(self._path), "reason": str(e)},
            )
            return {}
        kept: dict[str, object] = {}
        for key, value in stored.items():
            problem = self._schema.problem(key, value)
            if problem is None and bundle.get(key) != self._bundle[key]:
                problem = f"the bundle changed it since ({bundle.get(key)!r} -> {self._bundle[key]!r})"
            if problem is not None:
                log.warning(
                    "stored setting not restored",
                    extra={"path": str(self._path), "reason": f"{key}: {problem}"},
                )
                continue
            kept[key] = self._schema.normal(key, value)
        if kept:
            log.info("settings restored", extra={"path": str(self._path), "values": kept})
        return kept


class _Worker:
    """One thread that runs the latest submitted target; a target arriving while one runs replaces
    any other waiting one (coalescing: memory and threads stay constant whatever the command rate)."""

    def __init__(self, run: Callable[[Running], None]) -> None:
        self._run = run
        self._changed = threading.Condition()
        self._target: Running | None = None  # waiting to be run
        self._busy = False
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="settings-apply", daemon=True)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish the target in progress (a poller restart), drop any waiting one, end the thread."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, target: Running) -> None:
        with self._changed:
            self._target = target
            self._changed.notify_all()

    def pending(self) -> bool:
        with self._changed:
            return self._busy or self._target is not None

    def wait_idle(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._busy and self._target is None, timeout_s)

    def _loop(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._stopping or self._target is not None)
                if self._stopping:
                    return
                target, self._target, self._busy = self._target, None, True
            assert target is not None  # the wait's condition
            error: str | None = None
            try:
                self._run(target)
            except Exception as e:  # the worker must outlive a failed restart: the next change may work
                log.exception("applying settings failed", extra={"target": dataclasses.asdict(target)})
                error = f"{type(e).__name__}: {e}"
            with self._changed:
                self.last_error, self._busy = error, False
                self._changed.notify_all()
