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


class Collector:
    """Plays the collector's side over the HTTP API when the awaiting code sleeps: reports or refuses."""

    def __init__(self, iot_data: Any, thing: str, reported: dict[str, Any]) -> None:
        self.iot_data, self.thing, self.reported, self.sleeps = iot_data, thing, reported, 0

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
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
    outcome = await_report(iot_data, thing, changes, version, timeout_s=60, sleep=collector.sleep)
    assert (outcome.result, collector.sleeps) == ("applied", 1)
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
