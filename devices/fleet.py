"""A fleet at a glance, and remote settings: the plain functions behind `cli.py fleet` / `collector set`.

`fleet_status` answers "which collectors are down, since when and why, whose certificate expires next"
from one place: the stack's fleet table (infra/presence.py), which holds per collector its presence (from
AWS IoT lifecycle events) and its last report (the named shadow `pm500`, collector/shadow.py). The table
is read with one parallel Scan (no call per collector), and every collector of the stack's outputs gets
a row, including the ones never seen. Rows come problems first.

`desire` / `await_report` write desired settings to a collector's named shadow and wait until it
reports them, or reports why it refused them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from collector.settings import Schema, flatten, nest
from collector.topics import SHADOW_NAME
from devices.errors import DeviceError
from infra.outputs import CollectorOutput
from infra.presence import PRESENCE_RECORD, RANGE_KEY, REPORT_FIELD, REPORT_RECORD

SCAN_SEGMENTS = 8
_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# Problem ranks: the smaller, the sooner in the list.
OFFLINE, NEVER_SEEN, CERT_EXPIRED, FAILING, CERT_EXPIRING, DEGRADED, OK = range(7)
RANK_NAMES = ("offline", "never connected", "certificate expired", "failing", "certificate expiring",
              "degraded", "ok")


def parse_duration(option: str, text: str) -> dt.timedelta:
    """`30d`, `12h`, `2w`, `90m` -> a timedelta; anything else is an error naming the option."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise DeviceError(f"{option} {text!r}: expected a number and a unit m, h, d or w (e.g. 30d)")
    return dt.timedelta(**{_UNITS[match[2]]: int(match[1])})


# -- reading the fleet table -------------------------------------------------------------------------


def _plain(value: Mapping[str, Any]) -> Any:
    """One DynamoDB attribute value as plain JSON (numbers as int when integral)."""
    (kind, inner), = value.items()
    if kind == "N":
        return int(inner) if inner.lstrip("-").isdigit() else float(inner)
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    if kind == "NULL":
        return None
    return inner  # S and BOOL as they are; sets and binary are not written by pm500


def read_fleet_table(ddb: Any, table: str, segments: int = SCAN_SEGMENTS,
                     limit: int | None = None) -> dict[str, dict[str, Any]]:
    """`{thing: {"presence": {...}, "report": {...}}}` from one parallel Scan of the fleet table
    (`limit`: items per page; DynamoDB's own 1 MB pages otherwise)."""

    def segment(n: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table, "Segment": n, "TotalSegments": segments}
        if limit is not None:
            kwargs["Limit"] = limit
        while True:
            page = ddb.scan(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="scan") as pool:
        parts = list(pool.map(segment, range(segments)))
    fleet: dict[str, dict[str, Any]] = {}
    for item in (i for part in parts for i in part):
        record = item[RANGE_KEY]["S"]
        entry = fleet.setdefault(item["thing"]["S"], {})
        if record == PRESENCE_RECORD:
            entry["presence"] = {k: _plain(v) for k, v in item.items()}
        elif record == REPORT_RECORD and REPORT_FIELD in item:
            entry["report"] = _plain(item[REPORT_FIELD])
    return fleet


# -- one row per collector ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetRow:
    thing: str
    site: str
    collector: str
    rank: int
    attention: list[str]  # why the row is not ok, most important first
    connected: bool | None  # None: never seen by the presence route
    since_ms: int | None
    disconnect_reason: str | None
    last_ddata_ms: int | None
    certificate_not_after: str | None
    version: str | None
    backlog: int | None
    register_map: str | None  # consistent | inconsistent: <assets> | unchecked
    status: str | None
    reported_ms: int | None
    sink_errors: dict[str, Any] = field(default_factory=dict)  # sink -> its last_error {kind, message}

    def as_dict(self) -> dict[str, Any]:
        return {
            "thing": self.thing, "site": self.site, "collector": self.collector,
            "state": RANK_NAMES[self.rank], "attention": self.attention, "connected": self.connected,
            "sinceMs": self.since_ms, "disconnectReason": self.disconnect_reason,
            "lastDdataMs": self.last_ddata_ms, "certificateNotAfter": self.certificate_not_after,
            "version": self.version, "backlog": self.backlog, "registerMap": self.register_map,
            "status": self.status, "reportedMs": self.reported_ms, "sinkErrors": self.sink_errors,
        }


def _verdict(meters: Mapping[str, Any]) -> str | None:
    verdicts = {a: m.get("register_map") for a, m in meters.items() if isinstance(m, Mapping)}
    bad = sorted(a for a, v in verdicts.items() if v == "inconsistent")
    if bad:
        return f"inconsistent: {', '.join(bad)}"
    known = {v for v in verdicts.values() if v}
    return "consistent" if known == {"consistent"} else ("unchecked" if known else None)


def _since(ms: int, now: dt.datetime) -> str:
    seconds = max(0, int(now.timestamp() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def fleet_row(target: CollectorOutput, entry: Mapping[str, Any], now: dt.datetime,
              expiring_within: dt.timedelta) -> FleetRow:
    presence, data = entry.get("presence"), entry.get("report") or {}
    report = data.get("report") or {}
    attention: list[str] = []
    ranks = [OK]
    connected = presence.get("connected") if presence else None
    since = presence.get("since_ms") if presence else None
    reason = presence.get("disconnect_reason") if presence else None
    if presence is None:
        ranks.append(NEVER_SEEN)
        attention.append("never connected")
    elif connected is False:
        ranks.append(OFFLINE)
        attention.append(f"offline for {_since(since, now)} ({reason})" if since else f"offline ({reason})")
    not_after = (report.get("certificate") or {}).get("not_after")
    if not_after:
        expiry = dt.datetime.fromisoformat(not_after)  # "...Z" is read as UTC since Python 3.11
        if expiry < now:  # valid through notAfter inclusive (RFC 5280 4.1.2.5)
            ranks.append(CERT_EXPIRED)
            attention.append(f"certificate expired {not_after[:10]}")
        elif expiry <= now + expiring_within:
            ranks.append(CERT_EXPIRING)
            attention.append(f"certificate expires {not_after[:10]}")
    status = report.get("status")
    problems = [str(p) for p in report.get("problems") or []]
    if status == "failing":
        ranks.append(FAILING)
    elif status == "degraded":
        ranks.append(DEGRADED)
    attention += problems[:2]
    verdict = _verdict(report.get("meters") or {})
    if verdict and verdict.startswith("inconsistent"):
        ranks.append(DEGRADED)
        attention.append(f"register map {verdict}")
    if report.get("settings_refused"):
        ranks.append(DEGRADED)
        reasons = report["settings_refused"].get("reasons") or {}
        attention.append("desired settings refused: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    backlog = report.get("backlog")
    queued = sum(v for v in backlog.values() if isinstance(v, int)) if isinstance(backlog, Mapping) else None
    return FleetRow(
        thing=target.thing_name, site=target.site, collector=target.collector, rank=min(ranks),
        attention=attention, connected=connected, since_ms=since, disconnect_reason=reason,
        last_ddata_ms=report.get("last_ddata_ms"), certificate_not_after=not_after,
        version=report.get("version"),
        backlog=queued,
        register_map=verdict, status=status, reported_ms=data.get("updated_ms"),
        sink_errors=_sink_errors(report.get("sinks")),
    )


def _sink_errors(sinks: object) -> dict[str, Any]:
    if not isinstance(sinks, Mapping):
        return {}
    return {name: sink["last_error"] for name, sink in sinks.items()
            if isinstance(sink, Mapping) and sink.get("last_error")}


def fleet_status(targets: Iterable[CollectorOutput], fleet: Mapping[str, Mapping[str, Any]], now: dt.datetime,
                 expiring_within: dt.timedelta) -> list[FleetRow]:
    """One row per target, problems first: offline (longest first), never connected, expired
    certificates, failing, expiring certificates, degraded, then the healthy ones by name."""
    rows = [fleet_row(t, fleet.get(t.thing_name, {}), now, expiring_within) for t in targets]

    def order(row: FleetRow) -> tuple[int, float, str]:
        return row.rank, row.since_ms if row.rank == OFFLINE and row.since_ms else 0, row.thing

    return sorted(rows, key=order)


# -- remote settings ------------------------------------------------------------------------------


def parse_assignments(pairs: Iterable[str]) -> dict[str, object]:
    """`key=value` words -> settings; a value is read as JSON (`5`, `0.5`, `true`), else kept as text."""
    changes: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise DeviceError(f"{pair!r}: expected key=value, e.g. poll_interval_s=5")
        try:
            changes[key.strip()] = json.loads(text)
        except ValueError:
            changes[key.strip()] = text
    if not changes:
        raise DeviceError("no setting given: expected key=value, e.g. poll_interval_s=5")
    return changes


def check_settings(target: CollectorOutput, changes: Mapping[str, object]) -> None:
    """Refuse, before anything is written, what the collector itself would refuse."""
    reasons = Schema([m.asset for m in target.meters]).check(changes)
    if reasons:
        detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        raise DeviceError(f"{target.thing_name}: refused, nothing written: {detail}")


def _document(iot_data: Any, thing: str) -> dict[str, Any]:
    try:
        answer = iot_data.get_thing_shadow(thingName=thing, shadowName=SHADOW_NAME)
    except iot_data.exceptions.ResourceNotFoundException:
        return {}
    document: dict[str, Any] = json.loads(answer["payload"].read())
    return document


def desire(iot_data: Any, thing: str, changes: Mapping[str, object]) -> int:
    """Write `changes` as the desired state of the collector's named shadow; the new version."""
    payload = json.dumps({"state": {"desired": nest(changes)}})
    answer = iot_data.update_thing_shadow(thingName=thing, shadowName=SHADOW_NAME, payload=payload)
    version: int = json.loads(answer["payload"].read())["version"]
    return version


def withdraw(iot_data: Any, thing: str, keys: Iterable[str]) -> None:
    """Remove `keys` from the desired state (null deletes), so a refused value stops being a delta."""
    payload = json.dumps({"state": {"desired": nest(dict.fromkeys(keys))}})
    iot_data.update_thing_shadow(thingName=thing, shadowName=SHADOW_NAME, payload=payload)


@dataclass(frozen=True)
class SetOutcome:
    result: Literal["applied", "refused", "pending"]
    version: int
    reasons: dict[str, str] = field(default_factory=dict)
    reported: dict[str, object] = field(default_factory=dict)


def await_report(iot_data: Any, thing: str, changes: Mapping[str, object], version: int, timeout_s: float,
                 poll_s: float = 1.0, on_poll: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> SetOutcome:
    """Poll the shadow until the collector reports every change, refuses this version, or time runs out."""
    deadline = clock() + timeout_s
    while True:
        reported = (_document(iot_data, thing).get("state") or {}).get("reported") or {}
        refused = reported.get("settings_refused") or {}
        if isinstance(refused, dict) and int(refused.get("desired_version") or 0) >= version:
            return SetOutcome("refused", version, dict(refused.get("reasons") or {}))
        flat = flatten(reported)
        if all(flat.get(k) == v for k, v in changes.items()):  # 5 == 5.0: the collector reports floats
            return SetOutcome("applied", version, reported={k: flat[k] for k in changes})
        if clock() >= deadline:
            return SetOutcome("pending", version)
        on_poll()
        sleep(poll_s)

