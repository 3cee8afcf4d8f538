"""Poll many PowerMonitor 500s concurrently at a fixed rate and hand each decoded poll to a callback.

One thread per meter, each on its own fixed-rate schedule (ticks at start + k * interval): a slow
or dead meter only ever blocks its own thread, so it never delays another meter's readings. A
thread that overruns its period skips the missed ticks (counted as `overrun`) instead of bursting.

Per poll the thread reads the data attribute of every instance the register map lists (101, 102,
107, 108) over one re-used driver, in one Multiple Service Packet when the meter accepts it
(`collector.assembly_reader`; the mode is per connection and shown in `status()`), and decodes with
the pre-compiled register map (REAL, INT or UINT elements, per instance).
Each instance's reply is judged on its own: a failed instance leaves out only its metrics.
Failure handling, per kind:
- `comm`: the driver is closed and a new one built after exponential backoff (with jitter);
- `cip_status`: the meter answered an instance with an error; the driver is kept;
- `size_mismatch`: attribute 4 disagrees with the register map; nothing is decoded, the check is
  retried on the backoff schedule (a replaced meter may fix it);
- `short_payload`: a data attribute of the wrong length: that instance's layout cannot be trusted;
- `nan`: an element decoded as NaN; only the metrics built from it are left out of the reading
  (the others are good measurements).
A poll with some metrics left is delivered (state `degraded`); one with none left is dropped.
Each is counted; the log gets one line per state change (e.g. ok -> comm_error, and back), never
one per poll.

Complete polls (every instance decoded; NaN elements are skipped by the check) also go through the
physics self-check of the register map (`collector.consistency`), the first one and then one every
`self_check_period_s` (default 5 s: the check costs ~18x a decode,
and a map does not change between polls). The per-meter verdict is in `status()` (`register_map`),
logged when it changes and handed to `on_verdict` (the collector re-announces the meter's DBIRTH
with it). An inconsistent map is a flag, not a stop: the readings are still published.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from collector.assembly_reader import MULTIPLE_SERVICE_PACKET, AssemblyReader
from collector.config import MeterConfig
from collector.consistency import ConsistencyMonitor, Verdict
from collector.meter import (
    CipStatusError,
    CommError,
    DriverFactory,
    MeterDriver,
    SizeMismatchError,
    SizeUnverifiableError,
    pycomm_driver,
)
from collector.reading import Reading
from collector.registers import PayloadError, RegisterMap, register_map

log = logging.getLogger(__name__)

ERROR_KINDS = ("comm", "cip_status", "size_mismatch", "short_payload", "nan", "callback")
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
SELF_CHECK_PERIOD_S = 5.0
BACKOFF_MAX_PERIODS = 10  # a dead meter is retried at least every 10 poll periods (within the cap)


def socket_timeout_for(interval_s: float) -> float:
    """A read must give up before the next poll is due: 80% of the period, capped at 5 s."""
    return max(0.05, min(interval_s * 0.8, 5.0))


@dataclass
class MeterStatus:
    """Snapshot of one meter's health, as served by the health endpoint."""

    asset: str
    # starting | ok | degraded (some metrics NaN) | comm_error | cip_error | size_mismatch | bad_payload
    # | callback_error | stopped
    state: str = "starting"
    last_success_ms: int | None = None
    consecutive_failures: int = 0
    reads: int = 0  # successful polls (readings handed to on_reading)
    overruns: int = 0  # ticks skipped because a poll took longer than the interval
    reconnects: int = 0  # drivers built after the first
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 0))
    last_error: str | None = None
    # How the current connection reads (collector.assembly_reader): multiple_service_packet |
    # single_requests; None before the first connection. The reason says why 0x0A is not used.
    request_mode: str | None = None
    request_mode_reason: str | None = None
    register_map: dict[str, Any] = field(default_factory=dict)  # self-check verdict (Verdict.as_dict)

    def snapshot(self) -> MeterStatus:
        return MeterStatus(
            self.asset,
            self.state,
            self.last_success_ms,
            self.consecutive_failures,
            self.reads,
            self.overruns,
            self.reconnects,
            dict(self.errors),
            self.last_error,
            self.request_mode,
            self.request_mode_reason,
        )


class Poller:
    """Polls `meters` every `interval_s` seconds; `on_reading` is called from the meter threads."""

    def __init__(
        self,
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        driver_factory: DriverFactory = pycomm_driver,
        regmap: RegisterMap | None = None,
        timeout_s: float | None = None,
        on_verdict: Callable[[str, Verdict], None] | None = None,
        self_check_period_s: float = SELF_CHECK_PERIOD_S,
    ) -> None:
        """`timeout_s` (socket timeout per read) defaults to `socket_timeout_for(interval_s)`;
        `on_verdict(asset, verdict)` is called from the meter's thread when its self-check verdict changes."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        timeout = timeout_s if timeout_s is not None else socket_timeout_for(interval_s)
        self._stop = threading.Event()
        self._workers = [
            _MeterWorker(
                site, m, interval_s, timeout, on_reading, driver_factory, regmap or register_map(), self._stop
            )
            for m in meters
        ]
        self._threads: list[threading.Thread] = []
        for w in self._workers:
            w.on_verdict, w.self_check_period_s = on_verdict, self_check_period_s

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("Poller already started")
        # Spread the meters over the first period so 100 meters don't fire in the same millisecond.
        n = max(1, len(self._workers))
        for i, w in enumerate(self._workers):
            t = threading.Thread(target=w.run, args=(i / n,), name=f"poll-{w.meter.asset}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop all meter threads; an in-flight read ends at the latest after the socket timeout."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def status(self) -> dict[str, MeterStatus]:
        return {w.meter.asset: w.status_snapshot() for w in self._workers}


class _MeterWorker:
    def __init__(
        self,
        site: str,
        meter: MeterConfig,
        interval_s: float,
        timeout_s: float,
        on_reading: Callable[[Reading], None],
        driver_factory: DriverFactory,
        regmap: RegisterMap,
        stop: threading.Event,
    ) -> None:
        self.site, self.meter, self.interval_s = site, meter, interval_s
        self.on_reading, self.driver_factory, self.regmap, self.stop = (
            on_reading,
            driver_factory,
            regmap,
            stop,
        )
        self.timeout_s = timeout_s
        self.name = f"{meter.asset} ({meter.host}:{meter.port})"
        self.status = MeterStatus(meter.asset)
        self.lock = threading.Lock()
        self.reader: AssemblyReader | None = None
        self.probe_unanswered = False
        self.drivers_built = 0
        self.backoff_initial_s = min(BACKOFF_INITIAL_S, interval_s)
        self.backoff_max_s = min(BACKOFF_MAX_S, max(1.0, BACKOFF_MAX_PERIODS * interval_s))
        self.backoff_s = self.backoff_initial_s
        self.monitor = ConsistencyMonitor(wiring=meter.wiring)
        self.on_verdict: Callable[[str, Verdict], None] | None = None
        self.self_check_period_s = SELF_CHECK_PERIOD_S
        self.next_self_check = 0.0  # time.monotonic() of the next due check

    def status_snapshot(self) -> MeterStatus:
        with self.lock:
            snapshot = self.status.snapshot()
        snapshot.register_map = self.monitor.verdict.as_dict()  # replaced whole on each check: no lock
        return snapshot

    # -- the loop -------------------------------------------------------------------------------

    def run(self, phase: float) -> None:
        next_tick = time.monotonic() + phase * self.interval_s
        try:
            while not self.stopped_before(next_tick):
                retry_after = self.poll_once()
                now = time.monotonic()
                next_tick += self.interval_s
                if retry_after is not None:  # backing off: don't come back before the delay
                    next_tick = max(next_tick, now + retry_after)
                if next_tick < now:
                    missed = int((now - next_tick) // self.interval_s) + 1
                    next_tick += missed * self.interval_s
                    with self.lock:
                        self.status.overruns += missed
        finally:
            self.close_driver()
            self.set_state("stopped", None)

    def stopped_before(self, tick: float) -> bool:
        """Wait for `tick`; True if stopped. A tick already due is polled at once, without a timed
        wait (which costs a futex syscall and a context switch even when it returns at once)."""
        delay = tick - time.monotonic()
        return self.stop.wait(delay) if delay > 0 else self.stop.is_set()

    def poll_once(self) -> float | None:
        """One poll; returns a backoff delay (seconds) when the next attempt must wait."""
        timestamp_ms = time.time_ns() // 1_000_000
        try:
            reader = self.reader or self.connect()
            results = reader.read_data()
        except CommError as e:
            self.close_driver()
            return self.fail("comm", "comm_error", f"{e}", backoff=True)
        except SizeUnverifiableError as e:
            self.close_driver()
            return self.fail("cip_status", "cip_error", f"{e}", backoff=True)
        except SizeMismatchError as e:
            self.close_driver()
            return self.fail("size_mismatch", "size_mismatch", f"{e}", backoff=True)
        except Exception as e:  # anything unforeseen (a driver bug, OSError): same cure as a comm error
            log.debug("meter %s: unexpected error", self.name, exc_info=True)
            self.close_driver()
            return self.fail("comm", "comm_error", f"unexpected {type(e).__name__}: {e}", backoff=True)
        if reader.mode != self.status.request_mode:
            self.note_mode(reader)
        values, nan, failed, elements = self.decode(reader, results)
        if failed:
            message = "; ".join(message for _, _, message in failed)
            with self.lock:
                for kind in {kind for kind, _, _ in failed}:
                    self.status.errors[kind] += 1
                self.status.last_error = message
            if not values:
                kind, state, _ = failed[0]
                return self.fail(kind, state, message, count=False)
        if nan:
            with self.lock:
                self.status.errors["nan"] += 1
            if not values:
                return self.fail(
                    "nan", "bad_payload", f"every element is NaN ({len(nan)} metrics)", count=False
                )
        # A partial poll would pass the relations it cannot evaluate: only complete ones are checked.
        if elements is not None and time.monotonic() >= self.next_self_check:
            try:
                self.self_check(reader.decoder.by_name(elements))
            except Exception:  # a bug in the self-check must never stop the readings
                log.exception("meter %s: register map self-check failed", self.name)
        reading = Reading(self.site, self.meter.asset, self.meter.breaker, timestamp_ms, values)
        try:
            self.on_reading(reading)
        except Exception as e:  # a sink bug must not kill the meter thread; it is counted and logged
            log.exception("meter %s: on_reading failed", self.name)
            return self.fail("callback", "callback_error", f"on_reading failed: {e}")
        self.backoff_s = self.backoff_initial_s
        with self.lock:
            self.status.reads += 1
            self.status.last_success_ms = timestamp_ms
            failures, self.status.consecutive_failures = self.status.consecutive_failures, 0
        if failed or nan:
            left_out = [m for _, _, m in failed]
            if nan:
                left_out.append(f"NaN in {', '.join(sorted(nan))}")
            self.set_state("degraded", f"{'; '.join(left_out)}; those metrics are left out")
        elif self.status.state != "ok":  # unlocked peek: the steady state costs no second lock
            self.set_state("ok", f"after {failures} failed polls" if failures else None)
        return None

    @staticmethod
    def decode(
        reader: AssemblyReader, results: tuple[float | int, ...] | list[bytes | CipStatusError]
    ) -> tuple[dict[str, float], list[str], list[tuple[str, str, str]], tuple[float | int, ...] | None]:
        """(metric values, metrics left out as NaN, (error kind, state, message) per failed instance,
        the poll's elements in map order when every instance decoded, for the self-check)."""
        if isinstance(results, tuple):  # the whole poll in one reply, as the map expects: one decode
            values, nan = reader.decoder.decode(results)
            return values, nan, [], results
        values, nan, failed, parts = {}, [], [], []
        for inst, result in zip(reader.instances, results, strict=True):
            if isinstance(result, CipStatusError):
                failed.append(("cip_status", "cip_error", str(result)))
                continue
            try:
                elements = inst.unpack(result)
            except PayloadError as e:
                failed.append(("short_payload", "bad_payload", str(e)))
                continue
            parts.append(elements)
            part_values, part_nan = inst.decoder.decode(elements)
            values.update(part_values)
            nan += part_nan
        return values, nan, failed, None if failed else tuple(chain.from_iterable(parts))

    def self_check(self, elements_by_name: dict[str, float]) -> None:
        """Physics self-check of the map on this poll; log and report only on a change of verdict."""
        self.next_self_check = time.monotonic() + self.self_check_period_s
        if not self.monitor.observe(elements_by_name):
            return
        verdict = self.monitor.verdict
        if verdict.state == "inconsistent":
            log.warning("meter %s: register map consistency: %s", self.name, verdict.summary())
        else:
            log.info("meter %s: register map consistency: %s", self.name, verdict.summary())
        if self.on_verdict is not None:
            try:
                self.on_verdict(self.meter.asset, verdict)
            except Exception:  # a sink bug must not kill the meter thread
                log.exception("meter %s: on_verdict failed", self.name)

    # -- driver lifecycle -------------------------------------------------------------------------

    def connect(self) -> AssemblyReader:
        """A new session: the size check, which also probes the Multiple Service Packet afresh."""
        driver = self.driver_factory(self.meter, self.timeout_s)
        self.drivers_built += 1
        if self.drivers_built > 1:
            with self.lock:
                self.status.reconnects += 1
        reader = AssemblyReader(driver, self.regmap, self.name, probe=not self.probe_unanswered)
        try:
            reader.check_sizes()  # a size that cannot be verified is refused, like a mismatch
        except CommError:
            _close(driver)
            # No answer to the 0x0A probe: the next connection reads one request at a time.
            self.probe_unanswered = reader.mode == MULTIPLE_SERVICE_PACKET
            raise
        except BaseException:
            _close(driver)
            raise
        self.probe_unanswered = False  # the connection after this one probes again
        self.note_mode(reader)
        self.reader = reader
        return reader

    def note_mode(self, reader: AssemblyReader) -> None:
        """Show the connection's request mode; log when it differs from the previous one."""
        with self.lock:
            previous = self.status.request_mode
            self.status.request_mode, self.status.request_mode_reason = reader.mode, reader.fallback_reason
        if reader.mode != previous:
            log.info(
                "meter %s: reading with %s%s",
                self.name,
                reader.mode,
                f" ({reader.fallback_reason})" if reader.fallback_reason else "",
            )

    def close_driver(self) -> None:
        if self.reader is not None:
            _close(self.reader.driver)
            self.reader = None

    # -- bookkeeping --------------------------------------------------------------------------------

    def fail(
        self, kind: str, state: str, message: str, backoff: bool = False, count: bool = True
    ) -> float | None:
        with self.lock:
            if count:
                self.status.errors[kind] += 1
            self.status.consecutive_failures += 1
            self.status.last_error = message
        self.set_state(state, message)
        if not backoff:
            return None
        delay = self.backoff_s * random.uniform(0.8, 1.2)
        self.backoff_s = min(self.backoff_s * 2, self.backoff_max_s)
        return delay

    def set_state(self, state: str, detail: str | None) -> None:
        with self.lock:
            previous = self.status.state
            if state == previous:
                return
            self.status.state = state
        if state == "ok":
            log.info("meter %s: ok (was %s%s)", self.name, previous, f", {detail}" if detail else "")
        elif state == "stopped":
            log.info("meter %s: stopped", self.name)
        else:
            log.warning("meter %s: %s: %s", self.name, state, detail)


def _close(driver: MeterDriver) -> None:
    try:
        driver.close()
    except Exception:  # a broken driver may fail to close; it is discarded either way
        log.debug("closing a broken driver failed", exc_info=True)
