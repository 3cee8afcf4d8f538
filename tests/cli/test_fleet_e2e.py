"""The three questions of issue 22 answered end to end in the sandbox, with the cloud side as the program
declares it: a stack evaluated on the mock runtime and its whole plan replayed into moto (fleet table,
presence state machine, presence and report rules), Mosquitto with AWS IoT's services around it
(sandbox.iot_core: lifecycle events from the broker's own records, the shadow topics served by moto's
shadows, the topic rules run by a rules-engine stand-in), a real collector process and the real CLI.

- `collector set poll_interval_s=0.5` is applied by the running collector and reported (exit 0);
- `fleet status` shows it connected with its report; killed (-9) it is offline with CONNECTION_LOST
  (exit 3), and after `presence.offlineAfterS` the offline event reaches the stack's bus through the
  example EventBridge rule of docs/integration.md; restarted, it is connected again and the recovered
  event follows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from typer.testing import CliRunner

import cli
from collector.topics import thing_name
from infra import outputs as names
from infra.presence import offline_rule_pattern
from preflight.mock_runtime import evaluate_stack
from preflight.provider_requests import stack_requests
from sandbox.ca import DevCA
from sandbox.iot_core import IotCoreServices
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import REGION, MotoServer
from sandbox.plan_replay import moto_clients, replay
from tests.collector.harness import CollectorProcess, Simulator, wait_until, write_bundle

pytestmark = pytest.mark.slow
runner = CliRunner()
STACK, SITE, NODE = "test", "plant-a", "edge-01"
THING = thing_name(STACK, SITE, NODE)
OFFLINE_AFTER_S = 10
DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"


def documented_rule_pattern() -> dict[str, Any]:
    """The example EventBridge rule pattern docs/integration.md gives for SNS or ticketing (the demo uses
    infra.presence.offline_rule_pattern: the page shows that one)."""
    match = re.search(r"<!-- presence-rule -->\s*```json5\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/integration.md shows the example rule pattern"
    pattern: dict[str, Any] = json.loads(match[1])
    assert pattern == offline_rule_pattern("prod")
    return pattern


@pytest.fixture
def cloud(moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path) -> Path:
    """The stack's plan in moto; returns its outputs file."""
    sites = [{"name": SITE, "collectors": [{"name": NODE, "meters": [
        {"asset": "meter-0", "breaker": "F0", "host": "127.0.0.1"},
        {"asset": "meter-1", "breaker": "F1", "host": "127.0.0.1"}]}]}]
    config = {"aws:region": REGION, "pm500:environment": "test", "pm500:sites": json.dumps(sites),
              "pm500:features": json.dumps({"alarmEvents": True}),
              "pm500:presence": json.dumps({"offlineAfterS": OFFLINE_AFTER_S})}
    evaluated = evaluate_stack(STACK, config=config)
    moto_server.execute_state_machines()  # before the state machine exists (sandbox.iot_core)
    replay(stack_requests(evaluated), moto_clients(aws_env, REGION))
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(evaluated.outputs))
    return outputs_file


@pytest.fixture
def services(mqtt_broker: MosquittoBroker, moto_server: MotoServer, cloud: Path,
             tmp_path: Path) -> Iterator[IotCoreServices]:
    with IotCoreServices(mqtt_broker, moto_server, REGION, tmp_path / "iot-core") as running:
        # The fleet's two rules; the alarm-event rule's SQS action is not one the stand-in runs.
        assert sorted(r.name for r in running.rules.rules) == [  # type: ignore[union-attr]
            "pm500_test_fleet_report", "pm500_test_presence"]
        yield running


def fleet(outputs_file: Path) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(cli.app, ["fleet", "status", "--stack", STACK, "--outputs-file", str(outputs_file),
                                     "--json"])
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def row(outputs_file: Path) -> dict[str, Any]:
    _, body = fleet(outputs_file)
    [collector] = body["collectors"]
    return dict(collector)


def bus_events(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found = []
    for m in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        found.append(json.loads(m["Body"]))
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return found


def test_remote_settings_presence_and_the_offline_alert(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker, services: IotCoreServices, cloud: Path,
) -> None:
    outputs = json.loads(cloud.read_text())
    events = boto3.client("events")
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName="ticketing")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    bus = outputs[names.EVENT_BUS_NAME]
    events.put_rule(Name="collector-offline", EventBusName=bus,
                    EventPattern=json.dumps(documented_rule_pattern() | {"source": [f"pm500.{STACK}"]}))
    events.put_targets(Rule="collector-offline", EventBusName=bus, Targets=[{"Id": "q", "Arn": queue_arn}])

    simulator = Simulator(tmp_path, meters=2).start()
    try:
        config = write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, simulator.ports, influx_url=None)
        data = yaml.safe_load(config.read_text())
        assert data["thing_name"] == THING
        collector = CollectorProcess(config, tmp_path).start()
        try:
            first = wait_until(lambda: (r := row(cloud)) and r["connected"] and r["version"] and r, 60,
                               "connected and reported")
            assert first["disconnectReason"] is None and first["certificateNotAfter"]
            applied = runner.invoke(cli.app, ["collector", "set", "--stack", STACK, "--thing", THING,
                                              "--outputs-file", str(cloud), "poll_interval_s=0.5"])
            assert applied.exit_code == 0, applied.output
            assert "applied poll_interval_s=0.5" in applied.stdout
            health = collector.health()
            assert health is not None and health["poll_interval_s"] == 0.5
            assert health["settings"]["history"][-1]["source"] == "shadow"
            wait_until(lambda: row(cloud)["lastDdataMs"], 60, "last DDATA time reported")
        finally:
            collector.kill9()
        offline = wait_until(lambda: (r := row(cloud)) and r["connected"] is False and r, 60, "offline")
        assert offline["state"] == "offline" and offline["disconnectReason"] == "CONNECTION_LOST"
        assert fleet(cloud)[0] == 3
        alert = wait_until(lambda: bus_events(queue), 60, "the offline event on the bus")
        assert [(e["detail-type"], e["detail"]["thing"]) for e in alert] == [
            ("pm500.collector.offline", THING)]

        (tmp_path / "again").mkdir()
        collector = CollectorProcess(config, tmp_path / "again").start()
        try:
            wait_until(lambda: row(cloud)["connected"] is True, 60, "connected again")
            recovered = wait_until(lambda: bus_events(queue), 60, "the recovered event on the bus")
            assert [e["detail-type"] for e in recovered] == ["pm500.collector.recovered"]
            assert recovered[0]["detail"]["disconnect_reason"] == "CONNECTION_LOST"
            restarted = collector.health()
            assert restarted is not None and restarted["poll_interval_s"] == 0.5  # the change survived
        finally:
            collector.stop()
    finally:
        simulator.stop()
    assert services.rules is not None and services.rules.errors == []
