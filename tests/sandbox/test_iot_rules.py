"""The sandbox's rules engine: topic rules registered in moto, run on the broker's traffic.

The IoT SQL semantics checked here are AWS's (Developer Guide, "AWS IoT SQL reference"): topic(n)
counts levels from 1, an Undefined JSON path is left out of the result, `*` is the whole message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from collector.topics import thing_name
from sandbox.aws_seed import create_fleet_table
from sandbox.ca import DevCA
from sandbox.iot_rules import RuleError, RulesEngine, parse_rule, topic_matches
from sandbox.lifecycle_events import LifecycleEvents
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import REGION, MotoServer
from sandbox.mqtt import close_client, tls_client
from sandbox.plan_replay import moto_clients
from tests.collector.harness import wait_until

THING = thing_name("test", "plant-a", "edge-01")
PRESENCE_SQL = ("SELECT *, topic(5) AS thing FROM '$aws/events/presence/+/+' "
                "WHERE startswith(topic(5), 'test:')")


def test_the_sql_subset_and_its_semantics() -> None:
    rule = parse_rule("r", {"sql": PRESENCE_SQL, "actions": []})
    event = {"clientId": THING, "eventType": "connected"}
    assert rule.evaluate(f"$aws/events/presence/connected/{THING}", event) == {**event, "thing": THING}
    assert rule.evaluate("$aws/events/presence/connected/other:plant-a:edge-01", event) is None
    paths = parse_rule("r", {"sql": "SELECT current.state.reported AS report, topic(3) AS thing, "
                                    "current.nothing AS gone FROM 'a/b/+'", "actions": []})
    assert paths.evaluate("a/b/t", {"current": {"state": {"reported": {"x": 1}}}}) == {
        "report": {"x": 1}, "thing": "t"}
    for sql in ("SELECT * FROM 'a' WHERE x > 1", "SELECT upper(a) AS b FROM 'a'", "DELETE FROM x"):
        with pytest.raises(RuleError):
            parse_rule("r", {"sql": sql, "actions": []})
    with pytest.raises(RuleError, match="action not supported"):
        parse_rule("r", {"sql": "SELECT * FROM 'a'", "actions": [{"lambda": {"functionArn": "x"}}]})


@pytest.mark.parametrize(("pattern", "topic", "expected"), [
    ("$aws/events/presence/+/+", "$aws/events/presence/connected/t", True),
    ("$aws/events/presence/+/+", "$aws/events/presence/connected/t/x", False),
    ("a/#", "a/b/c", True),
    ("a/+", "b/c", False),
])
def test_topic_filters(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected


@pytest.fixture
def engine_parts(
    mqtt_broker: MosquittoBroker, moto_server: MotoServer, aws_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[RulesEngine, LifecycleEvents]]:
    moto_server.execute_state_machines()
    ddb = boto3.client("dynamodb")
    create_fleet_table(ddb, "fleet")
    definition = {"StartAt": "Put", "States": {"Put": {
        "Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem", "End": True,
        "Parameters": {"TableName": "fleet", "Item": {
            "thing": {"S.$": "$.thing"}, "record": {"S.$": "$.eventType"}}}}}}
    boto3.client("stepfunctions").create_state_machine(
        name="presence", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn")
    iot = boto3.client("iot")
    role = "arn:aws:iam::123456789012:role/rule"
    iot.create_topic_rule(ruleName="presence", topicRulePayload={"sql": PRESENCE_SQL, "actions": [
        {"stepFunctions": {"stateMachineName": "presence", "executionNamePrefix": "presence-",
                           "roleArn": role}}]})
    iot.create_topic_rule(ruleName="copy", topicRulePayload={
        "sql": "SELECT *, topic(5) AS thing FROM '$aws/events/presence/+/+'", "actions": [
            {"dynamoDB": {"tableName": "fleet", "roleArn": role, "hashKeyField": "thing",
                          "hashKeyValue": "${topic(5)}", "rangeKeyField": "record",
                          "rangeKeyValue": "copy", "payloadField": "event"}}]})
    iot.create_topic_rule(ruleName="off", topicRulePayload={"sql": PRESENCE_SQL, "ruleDisabled": True,
                                                            "actions": []})
    lifecycle = LifecycleEvents(mqtt_broker, tmp_path / "lifecycle").start()
    engine = RulesEngine(mqtt_broker, moto_clients(aws_env, REGION), tmp_path / "rules").start()
    yield engine, lifecycle
    engine.stop()
    lifecycle.stop()


def items() -> dict[tuple[str, str], dict[str, Any]]:
    found = boto3.client("dynamodb").scan(TableName="fleet")["Items"]
    return {(i["thing"]["S"], i["record"]["S"]): i for i in found}


def test_a_connect_runs_the_registered_rules(
    engine_parts: tuple[RulesEngine, LifecycleEvents], mqtt_broker: MosquittoBroker, dev_ca: DevCA,
    tmp_path: Path,
) -> None:
    engine, _ = engine_parts
    assert sorted(r.name for r in engine.reload()) == ["copy", "presence"]  # the disabled one is not run
    cert, key = dev_ca.issue(THING, tmp_path / "thing")
    client = tls_client(mqtt_broker.host, mqtt_broker.port, mqtt_broker.ca_file, cert, key, client_id=THING)
    close_client(client)
    expected = {(THING, "connected"), (THING, "disconnected"), (THING, "copy")}
    found = wait_until(lambda: (i := items()) and set(i) == expected and i, 30, "every rule's item")
    copied = found[(THING, "copy")]["event"]["M"]  # the last event the copy rule wrote
    assert copied["clientId"] == {"S": THING} and copied["thing"] == {"S": THING}
    assert "N" in copied["versionNumber"]  # a JSON number stays a DynamoDB number
    assert engine.errors == []
