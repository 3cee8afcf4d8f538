"""`cli.py fleet status`, `cli.py collector set` and `cli.py sites rotate-cert` through CliRunner, against
moto: exit codes for scripts, problems first, nothing written when a value is refused, rotation by
certificate expiry that resumes after a failure."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography import x509
from typer.testing import CliRunner

import cli
from collector.config import CERT_FILE
from commands import sites as sites_commands
from devices import aws
from infra import outputs as names
from infra.iam import collector_iot_policy
from sandbox.aws_seed import create_fleet_table, seed_stack
from sandbox.ca import DevCA
from tests.cli.conftest import STACK, Hook, Stack, fail_with, make_outputs, moto_iot_client
from tests.cli.test_fleet_functions import HOUR_MS, presence, report

runner = CliRunner()
TABLE = "pm500-test-fleet"
NOW_MS = int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def fleet_stack(tmp_path: Path, with_table: bool = True) -> Stack:
    outputs = {**make_outputs(), **({names.FLEET_TABLE: TABLE} if with_table else {})}
    iot = moto_iot_client()
    seed_stack(iot, outputs, collector_iot_policy("aws", "eu-west-1", "123456789012"))
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    if with_table:
        create_fleet_table(boto3.client("dynamodb"), TABLE)
    return Stack(outputs, outputs_file, iot, tmp_path)


def put(*items: dict[str, Any]) -> None:
    for item in items:
        boto3.client("dynamodb").put_item(TableName=TABLE, Item=item)


def status(stack: Stack, *extra: str) -> Any:
    return runner.invoke(cli.app, ["fleet", "status", "--stack", STACK, "--outputs-file",
                                   str(stack.outputs_file), *extra])


def test_fleet_status_lists_problems_first_and_exits_3(aws_env: dict[str, str], tmp_path: Path) -> None:
    stack = fleet_stack(tmp_path)
    put(presence("test:plant-a:edge-01", False, NOW_MS - 2 * HOUR_MS, "MQTT_KEEP_ALIVE_TIMEOUT"),
        presence("test:plant-a:edge-02", True, NOW_MS - HOUR_MS), report("test:plant-a:edge-02"))
    result = status(stack, "--json")
    assert result.exit_code == 3, result.output
    body = json.loads(result.stdout)
    assert [(c["thing"], c["state"]) for c in body["collectors"]] == [
        ("test:plant-a:edge-01", "offline"), ("test:plant-b:edge-01", "never connected"),
        ("test:plant-a:edge-02", "ok")]
    assert body["collectors"][0]["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"
    assert body["summary"]["offline"] == 1 and body["summary"]["ok"] == 1

    text = status(stack)
    assert text.exit_code == 3
    assert "needing attention" in text.stdout
    assert "3 collectors: 1 offline, 1 never connected, 1 ok" in text.stdout
    assert "plant-a/edge-01" in text.stdout and "plant-b/edge-01" in text.stdout
    assert "plant-a/edge-02" not in text.stdout  # healthy rows only with --all
    assert "plant-a/edge-02" in status(stack, "--all").stdout

    only_b = json.loads(status(stack, "--site", "plant-b", "--json").stdout)
    assert [c["thing"] for c in only_b["collectors"]] == ["test:plant-b:edge-01"]
    assert "1 collector: 1 never connected" in status(stack, "--site", "plant-b").stdout


def test_a_healthy_fleet_exits_0(aws_env: dict[str, str], tmp_path: Path) -> None:
    stack = fleet_stack(tmp_path)
    for thing in stack.outputs[names.COLLECTORS]:
        put(presence(thing, True, NOW_MS - HOUR_MS), report(thing))
    result = status(stack)
    assert result.exit_code == 0, result.output
    assert "3 collectors: 3 ok" in result.stdout and "needing attention" not in result.stdout
    # A narrower window does not flag a certificate valid until 2030; a wider one does.
    assert status(stack, "--expiring-within", "5200w").exit_code == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--expiring-within", "soon"], "--expiring-within 'soon': expected a number and a unit"),
    (["--site", "Plant A"], "--site 'Plant A': expected"),
])
def test_fleet_status_bad_input_is_one_line(aws_env: dict[str, str], tmp_path: Path, args: list[str],
                                            message: str) -> None:
    result = status(fleet_stack(tmp_path), *args)
    assert result.exit_code == 1 and message in result.stderr


def test_a_stack_without_the_fleet_table_says_so(aws_env: dict[str, str], tmp_path: Path) -> None:
    result = status(fleet_stack(tmp_path, with_table=False))
    assert result.exit_code == 1
    assert "no fleet table output (fleetTableName)" in result.stderr


# -- collector set ------------------------------------------------------------------------------------


def collector_set(stack: Stack, *args: str) -> Any:
    return runner.invoke(cli.app, ["collector", "set", "--stack", STACK, "--outputs-file",
                                   str(stack.outputs_file), *args])


def desired(thing: str) -> dict[str, Any] | None:
    try:
        answer = boto3.client("iot-data").get_thing_shadow(thingName=thing, shadowName="pm500")
    except boto3.client("iot-data").exceptions.ResourceNotFoundException:
        return None
    document: dict[str, Any] = json.loads(answer["payload"].read())["state"].get("desired")
    return document


def test_collector_set_checks_writes_and_waits(aws_env: dict[str, str], tmp_path: Path) -> None:
    stack = fleet_stack(tmp_path)
    thing = "test:plant-a:edge-01"
    refused = collector_set(stack, "--thing", thing, "debug=on")
    assert refused.exit_code == 1 and "nothing written: debug: expected true or false" in refused.stderr
    assert desired(thing) is None
    unknown = collector_set(stack, "--thing", "test:plant-z:edge-01", "debug=true")
    assert unknown.exit_code == 1 and "not a collector of stack 'test'" in unknown.stderr
    meter = next(iter(stack.outputs[names.COLLECTORS][thing]["meters"]))["asset"]
    pending = collector_set(stack, "--thing", thing, "--timeout", "0", "--json", "poll_interval_s=5",
                            f"meters.{meter}.in_service=false")
    assert pending.exit_code == 3, pending.output
    assert json.loads(pending.stdout)["result"] == "pending"
    assert desired(thing) == {"poll_interval_s": 5, "meters": {meter: {"in_service": False}}}


# -- sites rotate-cert --------------------------------------------------------------------------------


def rotate(stack: Stack, *extra: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(cli.app, ["sites", "rotate-cert", "--stack", STACK, "--outputs-file",
                                     str(stack.outputs_file), "--out-root", str(stack.tmp / "bundles"),
                                     "--workers", "2", "--json", *extra])
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else {"error": result.stderr}


def expiry(stack: Stack, site: str, collector: str) -> dt.datetime:
    path = stack.tmp / "bundles" / STACK / site / collector / CERT_FILE
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


@pytest.mark.usefixtures("csr_signing")
def test_rotation_by_expiry_resumes_after_a_failure(
    aws_env: dict[str, str], tmp_path: Path, dev_ca: DevCA, inject: Callable[[str, Hook], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = fleet_stack(tmp_path)
    stack.iot.register_ca_certificate(caCertificate=dev_ca.cert_pem.decode(), setAsActive=True)
    common = ["--stack", STACK, "--outputs-file", str(stack.outputs_file)]
    for collector, ca in (("edge-01", True), ("edge-02", False)):  # plant-a: 10 days and 365 days left
        out = stack.tmp / "bundles" / STACK / "plant-a" / collector
        extra = ["--ca-cert", str(dev_ca.cert_path), "--ca-key", str(dev_ca.key_path),
                 "--validity-days", "10"] if ca else []
        result = runner.invoke(cli.app, ["devices", "provision", *common, "--site", "plant-a", "--collector",
                                         collector, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
    before = expiry(stack, "plant-a", "edge-02")

    inject("before-call.iot.AttachPolicy", fail_with("InternalFailure", "AttachPolicy"))
    code, first = rotate(stack, "--site", "plant-a", "--expiring-within", "30d")
    assert code == 1 and first["summary"] == {"rotated": 0, "unchanged": 0, "failed": 1}
    assert [d["thingName"] for d in first["devices"]] == ["test:plant-a:edge-01"]  # edge-02 not due
    assert (stack.tmp / "bundles" / STACK / "rotate-cert.json").exists()

    code, other = rotate(stack, "--site", "plant-b")
    assert code == 1 and "unfinished rotation of another selection" in other["error"]

    monkeypatch.setattr(sites_commands, "iot_client", aws.iot_client)  # the outage is over
    code, second = rotate(stack, "--site", "plant-a", "--expiring-within", "30d")
    assert code == 0 and second["summary"] == {"rotated": 1, "unchanged": 0, "failed": 0}
    assert expiry(stack, "plant-a", "edge-01") > dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    assert expiry(stack, "plant-a", "edge-02") == before  # never selected
    assert not (stack.tmp / "bundles" / STACK / "rotate-cert.json").exists()
    code, third = rotate(stack, "--site", "plant-a", "--expiring-within", "30d")
    assert code == 0 and third["devices"] == []  # nothing left to do
