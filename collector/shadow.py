"""The collector's named shadow `pm500`: what it runs and how it is, reported; what is desired, applied.

AWS IoT Device Shadow service over MQTT (topics: `collector.topics.shadow_topic`). In each session, once
the broker granted the subscriptions, the collector asks for the document (`get`): a delta waiting
there (desired changed while it was offline) is applied, and the reported state is brought up to date
with one `update` carrying only what differs from the cloud's copy (a key that disappeared is sent as
null, which removes it). Afterwards:

- an `update/delta` (desired differs from reported) goes through `collector.settings.Settings.apply`
  as source `shadow`, with the same limits and record as every other channel; the outcome is reported
  at once (`settings_refused`: the desired version refused and the reason per key, or absent);
- the report thread (`shadow-report`) looks every CHECK_S: meter states, verdicts, sinks' errors and
  health changes are reported as they happen, up to CHANGE_BURST in a row, then at most one per
  CHANGE_MIN_S (a token bucket: a collector that starts reports its meters' "starting" and then "ok"
  within seconds, one that flaps costs at most one update a minute); the backlog and the time of the
  last delivered reading (which change all the time) only every `shadow.report_interval_s`.

A report is assumed accepted (the collector does not subscribe to `update/accepted`, which would echo
every report back); an `update/rejected` makes it fetch the document again and report from there.
Nothing is reported while disconnected: the next session starts with a `get`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from collector.mqtt_link import MqttLink
from collector.settings import Settings, flatten
from collector.topics import SHADOW_GET, SHADOW_UPDATE, shadow_topic

log = logging.getLogger(__name__)

SOURCE = "shadow"  # the channel's name in the settings record
CHECK_S = 5.0
CHANGE_MIN_S = 60.0
CHANGE_BURST = 3
VOLATILE = ("backlog", "last_ddata_ms")  # reported every report_interval_s only


def patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The shadow update that turns reported state `old` into `new`: changed keys, null for removed ones."""
    out: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = patch(before, value)
            if nested:
                out[key] = nested
        elif key not in old or before != value:
            out[key] = value
    out.update({key: None for key in old if key not in new})
    return out


def merge(old: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """What the shadow service makes of `update` on `old`: nested objects merged, null removes a key."""
    out = dict(old)
    for key, value in update.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def without_nulls(document: Mapping[str, Any]) -> dict[str, Any]:
    """A shadow keeps no nulls (null deletes): compare like with like."""
    return {
        k: without_nulls(v) if isinstance(v, Mapping) else v for k, v in document.items() if v is not None
    }


class ShadowClient:
    """Build before the link starts (it adds the shadow's routes); `start()`/`stop()` the report thread."""

    def __init__(
        self,
        thing: str,
        link: MqttLink,
        settings: Settings,
        report: Callable[[], dict[str, Any]],
        interval_s: float,
    ) -> None:
        self._thing, self._link, self._settings, self._report = thing, link, settings, report
        self._interval_s = interval_s
        self._lock = threading.Condition()
        self._cloud: dict[str, Any] | None = None  # the reported state the shadow holds; None: unknown
        self._refused: dict[str, Any] | None = None  # the last refused desired version, with reasons
        self._urgent = False
        self._changes = TokenBucket(CHANGE_BURST, CHANGE_MIN_S, time.monotonic())
        self._last_volatile = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow-report", daemon=True)
        self.stats = {"reports": 0, "deltas": 0, "rejected": 0}
        handlers = {
            "update/delta": self._on_delta,
            "update/rejected": self._on_update_rejected,
            "get/accepted": self._on_get_accepted,
            "get/rejected": self._on_get_rejected,
        }
        for answer, handler in handlers.items():
            link.add_route(shadow_topic(thing, answer), handler)
        link.on_routes_ready(self._ask)
        settings.listen(lambda target: self._wake(urgent=True))  # the new values run: say so

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(10)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {"synced": self._cloud is not None, "settings_refused": self._refused, **self.stats}

    # -- from the broker (paho's thread) ---------------------------------------------------------

    def _ask(self) -> None:
        """A new session: fetch the document; reports wait until it is known."""
        with self._lock:
            self._cloud = None
        self._link.publish(SHADOW_GET.render(self._thing), json.dumps({"clientToken": _token()}).encode())

    def _on_get_accepted(self, payload: bytes) -> None:
        document = _json(payload)
        state = document.get("state") or {}
        with self._lock:
            self._cloud = dict(state.get("reported") or {})
        if state.get("delta"):
            self._apply(state["delta"], document.get("version"))
        self._wake(urgent=True)

    def _on_get_rejected(self, payload: bytes) -> None:
        answer = _json(payload)
        if answer.get("code") == 404:  # no shadow yet: the first report creates it
            with self._lock:
                self._cloud = {}
            self._wake(urgent=True)
        else:
            log.warning("shadow get rejected", extra=_reason(answer))

    def _on_delta(self, payload: bytes) -> None:
        document = _json(payload)
        self.stats["deltas"] += 1
        self._apply(document.get("state") or {}, document.get("version"))
        self._wake(urgent=True)

    def _on_update_rejected(self, payload: bytes) -> None:
        answer = _json(payload)
        self.stats["rejected"] += 1
        log.warning("shadow update rejected", extra=_reason(answer))
        self._ask()  # our copy of the cloud's state is wrong: start again from the document

    def _apply(self, delta: Mapping[str, Any], version: object) -> None:
        if not isinstance(delta, Mapping):
            outcome = self._settings.refuse("the desired state is not an object", source=SOURCE)
        else:
            outcome = self._settings.apply(flatten(delta), source=SOURCE)
        with self._lock:
            if outcome.refused:
                reasons, at_ms = outcome.refused, outcome.at_ms
                self._refused = {"desired_version": version, "reasons": reasons, "at_ms": at_ms}
            else:
                self._refused = None

    # -- reporting (own thread) --------------------------------------------------------------------

    def _wake(self, urgent: bool = False) -> None:
        with self._lock:
            self._urgent = self._urgent or urgent
            self._lock.notify_all()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                self._lock.wait_for(lambda: self._urgent or self._stopping.is_set(), CHECK_S)
                urgent, self._urgent = self._urgent, False
            if self._stopping.is_set():
                return
            try:
                self._report_if_due(urgent)
            except Exception:  # a bug in a report must never end reporting
                log.exception("shadow report failed")

    def _report_if_due(self, urgent: bool) -> None:
        if not self._link.connected.is_set():
            return
        with self._lock:
            cloud, refused = self._cloud, self._refused
        if cloud is None:
            return  # the document is on its way (get)
        state = without_nulls({**self._report(), "settings_refused": refused})
        update = patch(cloud, state)
        if not update:
            return
        now = time.monotonic()
        significant = any(key not in VOLATILE for key in update)
        due = urgent or (significant and self._changes.take(now)) or (
            now - self._last_volatile >= self._interval_s
        )
        if not due:
            return
        body = {"state": {"reported": update}, "clientToken": _token()}
        if self._link.publish(SHADOW_UPDATE.render(self._thing), json.dumps(body).encode()) is None:
            return
        with self._lock:
            if self._cloud is cloud:  # not reset by a new session meanwhile
                self._cloud = merge(cloud, update)
        self.stats["reports"] += 1
        if any(key in VOLATILE for key in update) or not significant:
            self._last_volatile = now



class TokenBucket:
    """`capacity` events at once, then one more per `period_s`: bursts pass, a steady flap is capped."""

    def __init__(self, capacity: int, period_s: float, now: float) -> None:
        self._capacity, self._period_s = float(capacity), period_s
        self._tokens, self._refilled = float(capacity), now

    def take(self, now: float) -> bool:
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled) / self._period_s)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _token() -> str:
    return uuid.uuid4().hex[:16]


def _reason(answer: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": answer.get("code"), "reason": answer.get("message")}


def _json(payload: bytes) -> dict[str, Any]:
    try:
        document = json.loads(payload)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
