"""devices/fleet.py against moto: the fleet table read in one parallel Scan (items shaped as the presence
state machine and the report rule write them, infra/presence.py), rows problems first, and desired
settings written to the named shadow and awaited until the collector reports them or refuses them.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import boto3
import pytest

from devices.errors import DeviceError
from devices.fleet import (
    CERT_EXPIRED,
    CERT_EXPIRING,
    DEGRADED,
    FAILING,
    NEVER_SEEN,
    OFFLINE,
    OK,
    await_report,
    check_settings,
    desire,
    fleet_status,
    parse_assignments,
    parse_duration,
    read_fleet_table,
    withdraw,
)
from infra.outputs import CollectorOutput
from sandbox.aws_seed import create_fleet_table
from sandbox.moto import MotoServer

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
HOUR_MS = 3_600_000


def target(name: str, site: str = "plant-a") -> CollectorOutput:
    thing = f"test:{site}:{name}"
    return CollectorOutput.model_validate({
        "site": site, "collector": name, "thingName": thing, "pollIntervalS": 1.0,
        "meters": [{"asset": "mcc-1", "breaker": "F1", "host": "meter.example"}], "topics": {}})


def presence(thing: str, connected: bool, since_ms: int, reason: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "thing": {"S": thing}, "record": {"S": "presence"}, "connected": {"BOOL": connected},
        "since_ms": {"N": str(since_ms)}, "session_id": {"S": "s"}, "version_number": {"N": "3"}}
    if reason:
        item["disconnect_reason"] = {"S": reason}
    return item


def report(thing: str, not_after: str = "2030-01-01T00:00:00Z", status: str = "ok",
           verdict: str = "consistent", problems: tuple[str, ...] = (),
           influx_error: tuple[str, str] | None = None) -> dict[str, Any]:
    """As the report rule's dynamoDB action writes it: the SELECT result as a map in `data`."""
    def s(v: str) -> dict[str, str]:
        return {"S": v}
    reported = {"M": {
        "version": s("0.1.0"), "status": s(status), "problems": {"L": [s(p) for p in problems]},
        "certificate": {"M": {"not_after": s(not_after)}},
        "backlog": {"M": {"mqtt": {"N": "3"}, "influx": {"N": "4"}, "events": {"N": "0"}}},
        "last_ddata_ms": {"N": str(NOW_MS - 5000)},
        "meters": {"M": {"mcc-1": {"M": {"in_service": {"BOOL": True}, "state": s("ok"),
                                          "register_map": s(verdict)}}}},
        # the shadow drops nulls: a sink without an error has no last_error
        "sinks": {"M": {"mqtt": {"M": {}}, "influx": {"M": {"last_error": {"M": {
            "kind": s(influx_error[0]), "message": s(influx_error[1])}}} if influx_error else {}}}},
    }}
    return {"thing": s(thing), "record": s("report"),
            "data": {"M": {"report": reported, "version": {"N": "7"}, "updated_ms": {"N": str(NOW_MS)}}}}


@pytest.fixture
def table(moto_server: MotoServer, aws_env: dict[str, str]) -> Any:
    ddb = boto3.client("dynamodb")
    create_fleet_table(ddb, "fleet")
    return ddb


def test_rows_come_problems_first(table: Any) -> None:
    names = ["offline-3h", "offline-1h", "never", "expired", "failing", "expiring", "inconsistent", "ok"]
    t = {n: target(n) for n in names}
    items = [
        presence(t["offline-3h"].thing_name, False, NOW_MS - 3 * HOUR_MS, "CONNECTION_LOST"),
        presence(t["offline-1h"].thing_name, False, NOW_MS - HOUR_MS, "MQTT_KEEP_ALIVE_TIMEOUT"),
        report(t["offline-1h"].thing_name),
        presence(t["expired"].thing_name, True, NOW_MS),
        report(t["expired"].thing_name, "2026-05-01T00:00:00Z"),
        presence(t["failing"].thing_name, True, NOW_MS),
        report(t["failing"].thing_name, status="failing", problems=("meter mcc-1: polling thread died",),
               influx_error=("not_authorized", "HTTP 401: authorization failed")),
        presence(t["expiring"].thing_name, True, NOW_MS),
        report(t["expiring"].thing_name, "2026-06-11T00:00:00Z"),
        presence(t["inconsistent"].thing_name, True, NOW_MS),
        report(t["inconsistent"].thing_name, verdict="inconsistent"),
        presence(t["ok"].thing_name, True, NOW_MS - 2 * HOUR_MS), report(t["ok"].thing_name),
    ]
    for item in items:
        table.put_item(TableName="fleet", Item=item)
    fleet = read_fleet_table(table, "fleet", segments=3, limit=2)  # several pages per segment
    rows = fleet_status(reversed(list(t.values())), fleet, NOW, parse_duration("--expiring-within", "30d"))
    assert [r.collector for r in rows] == names
    assert [r.rank for r in rows] == [OFFLINE, OFFLINE, NEVER_SEEN, CERT_EXPIRED, FAILING, CERT_EXPIRING,
                                      DEGRADED, OK]
    by = {r.collector: r for r in rows}
    assert by["offline-3h"].attention == ["offline for 3h (CONNECTION_LOST)"]
    assert by["never"].attention == ["never connected"] and by["never"].connected is None
    assert by["expired"].attention == ["certificate expired 2026-05-01"]
    assert by["failing"].attention == ["meter mcc-1: polling thread died"]
    assert by["failing"].as_dict()["sinkErrors"] == {
        "influx": {"kind": "not_authorized", "message": "HTTP 401: authorization failed"}}
    assert by["inconsistent"].attention == ["register map inconsistent: mcc-1"]
    ok = by["ok"]
    assert (ok.attention, ok.connected, ok.backlog, ok.version, ok.register_map) == ([], True, 7, "0.1.0",
                                                                                      "consistent")
    assert ok.last_ddata_ms == NOW_MS - 5000 and ok.reported_ms == NOW_MS
    assert ok.sink_errors == {} and by["never"].sink_errors == {}
    assert ok.as_dict()["state"] == "ok" and by["never"].as_dict()["state"] == "never connected"


@pytest.mark.parametrize(("text", "expected"), [
    ("30d", dt.timedelta(days=30)), ("12h", dt.timedelta(hours=12)), ("2w", dt.timedelta(weeks=2)),
    ("90m", dt.timedelta(minutes=90))])
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration("--expiring-within", text) == expected


@pytest.mark.parametrize("text", ["30", "d", "1y", "-1d", "1.5d"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(DeviceError, match=r"^--expiring-within .*: expected a number and a unit"):
        parse_duration("--expiring-within", text)


def test_assignments_are_json_values_checked_like_the_collector_does() -> None:
    assert parse_assignments(["poll_interval_s=5", "debug=true", "meters.mcc-1.in_service=false"]) == {
        "poll_interval_s": 5, "debug": True, "meters.mcc-1.in_service": False}
    for bad in (["poll_interval_s"], ["=5"], []):
        with pytest.raises(DeviceError, match="key=value"):
            parse_assignments(bad)
    check_settings(target("a"), {"poll_interval_s": 5})
    with pytest.raises(DeviceError, match=r"nothing written: debug: expected true or false, got 'on'"):
        check_settings(target("a"), parse_assignments(["debug=on"]))
    with pytest.raises(DeviceError, match=r"meters.mcc-9.in_service: no meter 'mcc-9'"):
        check_settings(target("a"), {"meters.mcc-9.in_service": False})
    with pytest.raises(DeviceError) as both:
        check_settings(target("a"), {"debug": 1, "poll_interval_s": 0})
    assert str(both.value) == (
        "test:plant-a:a: refused, nothing written: debug: expected true or false, got 1; "
        "poll_interval_s: expected a number of seconds in 0.1..3600, got 0")


class Collector:
    """Plays the collector's side over the HTTP API when the awaiting code sleeps: reports or refuses."""

    def __init__(self, iot_data: Any, thing: str, reported: dict[str, Any]) -> None:
        self.iot_data, self.thing, self.reported, self.sleeps = iot_data, thing, reported, 0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.slept.append(seconds)
        self.iot_data.update_thing_shadow(thingName=self.thing, shadowName="pm500",
                                          payload=json.dumps({"state": {"reported": self.reported}}))


def test_desired_settings_are_awaited_until_reported(
    moto_server: MotoServer, aws_env: dict[str, str]
) -> None:
    thing = target("a").thing_name
    boto3.client("iot").create_thing(thingName=thing)
    iot_data = boto3.client("iot-data")
    changes = {"poll_interval_s": 5, "meters.mcc-1.in_service": False}
    version = desire(iot_data, thing, changes)
    shadow = json.loads(iot_data.get_thing_shadow(thingName=thing, shadowName="pm500")["payload"].read())
    assert shadow["state"]["desired"] == {"poll_interval_s": 5, "meters": {"mcc-1": {"in_service": False}}}
    running = {"poll_interval_s": 5.0, "meters": {"mcc-1": {"in_service": False}}}
    collector = Collector(iot_data, thing, running)
    polls: list[int] = []
    outcome = await_report(iot_data, thing, changes, version, timeout_s=60, sleep=collector.sleep,
                           on_poll=lambda: polls.append(collector.sleeps))
    assert (outcome.result, collector.sleeps) == ("applied", 1)
    assert collector.slept == [1.0] and polls == [0]  # once a second; the progress hook before each wait
    assert outcome.reported == {"poll_interval_s": 5.0, "meters.mcc-1.in_service": False}


def test_a_refusal_of_this_version_ends_the_wait(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    thing = target("b").thing_name
    boto3.client("iot").create_thing(thingName=thing)
    iot_data = boto3.client("iot-data")
    old = desire(iot_data, thing, {"debug": True})
    version = desire(iot_data, thing, {"poll_interval_s": 0.2})
    older = {"desired_version": old, "reasons": {"poll_interval_s": "old"}}
    stale = Collector(iot_data, thing, {"settings_refused": older})
    clock = iter(range(100))
    outcome = await_report(iot_data, thing, {"poll_interval_s": 0.2}, version, timeout_s=3, sleep=stale.sleep,
                           clock=lambda: float(next(clock)))
    assert outcome.result == "pending"  # an older refusal is not this request's answer
    refusal = {"desired_version": version, "reasons": {"poll_interval_s": "expected ... 0.1..3600"}}
    Collector(iot_data, thing, {"settings_refused": refusal}).sleep(0)
    outcome = await_report(iot_data, thing, {"poll_interval_s": 0.2}, version, timeout_s=60)
    assert (outcome.result, outcome.reasons) == ("refused", refusal["reasons"])
    withdraw(iot_data, thing, ["poll_interval_s"])
    desired = json.loads(iot_data.get_thing_shadow(thingName=thing, shadowName="pm500")["payload"].read())
    assert desired["state"]["desired"] == {"debug": True}


def test_the_table_is_read_as_plain_json(table: Any) -> None:
    """Items as the rules write them (DynamoDB attribute values) come back as the JSON the collector
    reported: integral numbers as int, others as float, nulls, booleans, lists and maps."""
    thing = "test:plant-a:edge-01"
    table.put_item(TableName="fleet", Item={
        "thing": {"S": thing}, "record": {"S": "report"}, "data": {"M": {"report": {"M": {
            "poll_interval_s": {"N": "0.5"}, "offset": {"N": "-3"}, "debug": {"BOOL": False},
            "missing": {"NULL": True}, "problems": {"L": [{"S": "a"}, {"N": "7"}]},
            "meters": {"M": {"m1": {"M": {"in_service": {"BOOL": True}}}}}}}}}})
    table.put_item(TableName="fleet", Item=presence(thing, False, NOW_MS, "CONNECTION_LOST"))
    table.put_item(TableName="fleet", Item={"thing": {"S": thing}, "record": {"S": "other"}})
    table.put_item(TableName="fleet", Item={"thing": {"S": "test:plant-a:edge-02"}, "record": {"S": "other"},
                                            "data": {"M": {}}})  # a record this CLI does not know
    fleet = read_fleet_table(table, "fleet")
    assert fleet[thing]["report"] == {"report": {
        "poll_interval_s": 0.5, "offset": -3, "debug": False, "missing": None, "problems": ["a", 7],
        "meters": {"m1": {"in_service": True}}}}
    assert fleet[thing]["presence"]["connected"] is False and fleet[thing]["presence"]["since_ms"] == NOW_MS
    assert set(fleet[thing]) == {"report", "presence"} and fleet["test:plant-a:edge-02"] == {}


def test_the_table_is_read_in_eight_parallel_segments_page_by_page() -> None:
    """docs/cli.md: one parallel Scan of 8 segments; each segment follows LastEvaluatedKey to its end."""
    import threading

    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Ddb:
        def scan(self, **kwargs: Any) -> dict[str, Any]:
            with lock:
                calls.append(kwargs)
            if "ExclusiveStartKey" in kwargs:
                return {"Items": [presence(f"t{kwargs['Segment']}", True, NOW_MS)]}
            return {"Items": [], "LastEvaluatedKey": {"thing": {"S": "x"}}}

    fleet = read_fleet_table(Ddb(), "fleet")
    assert sorted(fleet) == [f"t{n}" for n in range(8)]
    assert {(c["Segment"], c["TotalSegments"], c["TableName"]) for c in calls} == {
        (n, 8, "fleet") for n in range(8)}
    assert len(calls) == 16 and all("Limit" not in c for c in calls)


def test_every_state_has_its_name_and_recent_outages_count_in_seconds() -> None:
    names = ["offline", "never", "expired", "failing", "expiring", "degraded", "refused", "ok"]
    t = {n: target(n) for n in names}
    up = {"connected": True, "since_ms": NOW_MS - HOUR_MS}

    def entry(presence: dict[str, Any] | None = None, **report: Any) -> dict[str, Any]:
        body = {"status": "ok", "certificate": {"not_after": "2030-01-01T00:00:00Z"}, **report}
        return {"presence": presence or up, "report": {"report": body, "updated_ms": NOW_MS}}

    fleet = {
        t["offline"].thing_name: entry({"connected": False, "since_ms": NOW_MS - 45_000,
                                        "disconnect_reason": "CONNECTION_LOST"}),
        t["expired"].thing_name: entry(certificate={"not_after": "2026-05-01T00:00:00Z"}),
        t["failing"].thing_name: entry(status="failing"),
        t["expiring"].thing_name: entry(certificate={"not_after": "2026-06-20T00:00:00Z"}),
        t["degraded"].thing_name: entry(status="degraded", problems=["influx not writing (not_authorized)"]),
        t["refused"].thing_name: entry(settings_refused={"desired_version": 4, "reasons": {
            "poll_interval_s": "expected a number of seconds in 0.1..3600",
            "debug": "expected true or false"}}),
        t["ok"].thing_name: entry(),
    }
    rows = fleet_status(t.values(), fleet, NOW, parse_duration("--expiring-within", "30d"))
    assert [(r.collector, r.as_dict()["state"]) for r in rows] == [
        ("offline", "offline"), ("never", "never connected"), ("expired", "certificate expired"),
        ("failing", "failing"), ("expiring", "certificate expiring"), ("degraded", "degraded"),
        ("refused", "degraded"), ("ok", "ok")]
    by = {r.collector: r for r in rows}
    assert by["offline"].attention == ["offline for 45s (CONNECTION_LOST)"]
    assert by["expiring"].attention == ["certificate expires 2026-06-20"]
    window_end = (NOW + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    up_now = {"connected": True, "since_ms": NOW_MS}
    assert row_of(up_now, certificate={"not_after": window_end}).rank == CERT_EXPIRING  # its last second
    many = row_of(up_now, status="degraded", problems=["one", "two", "three"])
    assert many.attention == ["one", "two"]  # the first two; /health and the shadow have them all
    assert row_of({"connected": False, "disconnect_reason": "SERVER_INITIATED_DISCONNECT"}).attention == [
        "offline (SERVER_INITIATED_DISCONNECT)"]  # no time known
    assert by["degraded"].attention == ["influx not writing (not_authorized)"]
    assert by["refused"].attention == ["desired settings refused: "
                                       "poll_interval_s: expected a number of seconds in 0.1..3600; "
                                       "debug: expected true or false"]


def test_healthy_rows_are_listed_by_name_offline_ones_longest_first() -> None:
    targets = [target(n) for n in ("b-old", "a-new", "down-short", "down-long")]
    up = {t.thing_name: NOW_MS - (5 if t.collector == "a-new" else 9) * HOUR_MS for t in targets}
    fleet = {t.thing_name: {"presence": {"connected": not t.collector.startswith("down"),
                                         "since_ms": up[t.thing_name]}} for t in targets}
    fleet[targets[2].thing_name]["presence"]["since_ms"] = NOW_MS - HOUR_MS
    rows = fleet_status(targets, fleet, NOW, parse_duration("--expiring-within", "30d"))
    assert [r.collector for r in rows] == ["down-long", "down-short", "a-new", "b-old"]


def test_a_page_size_is_passed_to_every_scan() -> None:
    calls: list[dict[str, Any]] = []

    class Ddb:
        def scan(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            return {"Items": []}

    read_fleet_table(Ddb(), "fleet", segments=2, limit=50)
    assert sorted((c["Segment"], c["TotalSegments"], c["Limit"]) for c in calls) == [(0, 2, 50), (1, 2, 50)]


def row_of(presence: dict[str, Any] | None, **report: Any) -> Any:
    body = {"status": "ok", **report}
    entry = {"presence": presence, "report": {"report": body, "updated_ms": NOW_MS}}
    [row] = fleet_status([target("x")], {target("x").thing_name: entry}, NOW,
                         parse_duration("--expiring-within", "30d"))
    return row


@pytest.mark.parametrize(("since_ms", "shown"), [
    (NOW_MS - 60_000, "1m"), (NOW_MS - 59_000, "59s"), (NOW_MS - 3_600_000, "1h"),
    (NOW_MS - 86_400_000, "1d"),
    (NOW_MS + 5_000, "0s"),  # a clock ahead of this one: never a negative time
])
def test_how_long_ago_is_shown(since_ms: int, shown: str) -> None:
    row = row_of({"connected": False, "since_ms": since_ms, "disconnect_reason": "CONNECTION_LOST"})
    assert row.attention == [f"offline for {shown} (CONNECTION_LOST)"]


def test_a_certificate_is_expired_only_after_its_last_valid_second() -> None:
    """RFC 5280 4.1.2.5: valid from notBefore through notAfter, inclusive."""
    up = {"connected": True, "since_ms": NOW_MS}
    at_now = row_of(up, certificate={"not_after": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert at_now.rank == CERT_EXPIRING
    before = NOW - dt.timedelta(seconds=1)
    second_ago = row_of(up, certificate={"not_after": before.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert second_ago.rank == CERT_EXPIRED


@pytest.mark.parametrize(("verdicts", "shown"), [
    ({"m1": "consistent", "m2": "consistent"}, "consistent"),
    ({"m1": "consistent", "m2": "unchecked"}, "unchecked"),
    ({"m1": "unchecked"}, "unchecked"),
    ({"m1": None}, None),
    ({}, None),
    ({"m2": "inconsistent", "m1": "inconsistent", "m3": "consistent"}, "inconsistent: m1, m2"),
])
def test_the_register_map_verdict_of_a_collector(verdicts: dict[str, Any], shown: str | None) -> None:
    meters = {a: {"register_map": v} for a, v in verdicts.items()}
    assert row_of({"connected": True, "since_ms": NOW_MS}, meters=meters).register_map == shown


def test_rows_and_outcomes_are_immutable() -> None:
    import dataclasses

    from devices.fleet import SetOutcome

    row = row_of(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.rank = OK  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        SetOutcome("pending", 1).result = "applied"  # type: ignore[misc]


def test_a_thing_without_a_shadow_yet_is_pending(moto_server: MotoServer, aws_env: dict[str, str]) -> None:
    thing = target("c").thing_name
    boto3.client("iot").create_thing(thingName=thing)
    clock = iter([0.0, 1.0, 2.0])
    slept: list[float] = []
    outcome = await_report(boto3.client("iot-data"), thing, {"debug": True}, 1, timeout_s=1.0,
                           clock=lambda: next(clock), sleep=slept.append)
    assert (outcome.result, outcome.version, outcome.reasons) == ("pending", 1, {})
    assert slept == []  # the deadline itself is late enough: no further wait


def test_the_json_row_names_every_field() -> None:
    """`fleet status --json`: one object per collector, camelCase like the stack outputs (docs/cli.md)."""
    row = row_of({"connected": False, "since_ms": NOW_MS - 5000, "disconnect_reason": "CONNECTION_LOST"},
                 version="0.2.0", last_ddata_ms=NOW_MS - 9000, backlog={"mqtt": 2, "influx": 1, "events": 0},
                 certificate={"not_after": "2030-01-01T00:00:00Z"},
                 meters={"mcc-1": {"register_map": "consistent"}},
                 sinks={"mqtt": {"last_error": {"kind": "connection_lost", "message": "gone"}}})
    assert row.as_dict() == {
        "thing": "test:plant-a:x", "site": "plant-a", "collector": "x", "state": "offline",
        "attention": ["offline for 5s (CONNECTION_LOST)"], "connected": False, "sinceMs": NOW_MS - 5000,
        "disconnectReason": "CONNECTION_LOST", "lastDdataMs": NOW_MS - 9000,
        "certificateNotAfter": "2030-01-01T00:00:00Z", "version": "0.2.0", "backlog": 3,
        "registerMap": "consistent", "status": "ok", "reportedMs": NOW_MS,
        "sinkErrors": {"mqtt": {"kind": "connection_lost", "message": "gone"}},
    }
