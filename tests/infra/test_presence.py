"""The presence state machine (infra/presence.py), run by moto's Step Functions interpreter against moto's
DynamoDB and EventBridge, fed lifecycle events shaped as AWS IoT documents them ("Lifecycle events":
`eventType`, `timestamp` in ms, `sessionIdentifier`, `versionNumber`, `disconnectReason`,
`clientInitiatedDisconnect`), in the orders AWS warns about: out of order and repeated.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from collector.validation import ConfigError
from infra.presence import (
    DETAIL_OFFLINE,
    DETAIL_PRESENCE,
    DETAIL_RECOVERED,
    presence_definition,
    presence_sql,
    report_sql,
)
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, load_stack_config_file
from sandbox.aws_seed import create_fleet_table
from sandbox.moto import MotoServer
from tests.collector.harness import wait_until

THING = "test:plant-a:edge-01"
SOURCE = "pm500.test"
OFFLINE_AFTER_S = 1


def test_the_rules_take_only_this_stacks_things() -> None:
    assert presence_sql("test") == (
        "SELECT *, topic(5) AS thing FROM '$aws/events/presence/+/+' WHERE startswith(topic(5), 'test:')")
    assert report_sql("test") == (
        "SELECT current.state.reported AS report, current.version AS version, timestamp() AS updated_ms "
        "FROM '$aws/things/+/shadow/name/pm500/update/documents' WHERE startswith(topic(3), 'test:')")


class Presence:
    """The state machine deployed to moto with its table and bus; the bus's events land in a queue."""

    def __init__(self, offline_after_s: int = OFFLINE_AFTER_S) -> None:
        self.ddb, self.sfn = boto3.client("dynamodb"), boto3.client("stepfunctions")
        self.sqs, events = boto3.client("sqs"), boto3.client("events")
        create_fleet_table(self.ddb, "fleet")
        events.create_event_bus(Name="bus")
        self.queue = self.sqs.create_queue(QueueName="seen")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]
        events.put_rule(Name="all", EventBusName="bus", EventPattern=json.dumps({"source": [SOURCE]}))
        events.put_targets(Rule="all", EventBusName="bus", Targets=[{"Id": "q", "Arn": arn["QueueArn"]}])
        self.machine = self.sfn.create_state_machine(
            name="presence", roleArn="arn:aws:iam::123456789012:role/presence",
            definition=json.dumps(presence_definition("fleet", "bus", SOURCE, offline_after_s)),
        )["stateMachineArn"]
        self.events: list[dict[str, Any]] = []
        self.runs = 0

    def start(self, event: dict[str, Any]) -> str:
        self.runs += 1
        body = {"clientId": THING, "thing": THING, "principalIdentifier": "cert", **event}
        arn: str = self.sfn.start_execution(stateMachineArn=self.machine, name=f"run-{self.runs}",
                                            input=json.dumps(body))["executionArn"]
        return arn

    def finish(self, arn: str) -> dict[str, Any]:
        done: dict[str, Any] = wait_until(
            lambda: (d := self.sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d,
            30, "execution finished")
        assert done["status"] == "SUCCEEDED", done
        return done

    def run(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.finish(self.start(event))

    def item(self) -> dict[str, Any]:
        found = self.ddb.get_item(TableName="fleet", Key={"thing": {"S": THING}, "record": {"S": "presence"}})
        return {k: next(iter(v.values())) for k, v in found.get("Item", {}).items()}

    def received(self) -> list[dict[str, Any]]:
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return self.events
            for m in batch:
                self.events.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])


def connected(version: int, ts: int, session: str) -> dict[str, Any]:
    return {"eventType": "connected", "timestamp": ts, "versionNumber": version,
            "sessionIdentifier": session, "ipAddress": "192.0.2.10"}


def disconnected(version: int, ts: int, session: str, reason: str = "CONNECTION_LOST") -> dict[str, Any]:
    return {"eventType": "disconnected", "timestamp": ts, "versionNumber": version,
            "sessionIdentifier": session, "disconnectReason": reason,
            "clientInitiatedDisconnect": reason == "CLIENT_INITIATED_DISCONNECT"}


@pytest.fixture
def presence(moto_server: MotoServer, aws_env: dict[str, str]) -> Iterator[Presence]:
    moto_server.execute_state_machines()
    yield Presence()


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(e["detail-type"], e["detail"].get("event")) for e in events]


def test_connect_disconnect_offline_once_and_recovery(presence: Presence) -> None:
    presence.run(connected(0, 1_000, "s0"))
    item = presence.item()
    assert (item["connected"], item["since_ms"], item["session_id"]) == (True, "1000", "s0")
    presence.run(disconnected(0, 2_000, "s0"))  # includes the wait of OFFLINE_AFTER_S
    item = presence.item()
    assert (item["connected"], item["disconnect_reason"]) == (False, "CONNECTION_LOST")
    assert item["since_ms"] == "2000"
    assert item["offline_alerted"] is True
    presence.run(disconnected(0, 2_000, "s0"))  # AWS may deliver an event twice: no second alert
    presence.run(connected(1, 9_000, "s1"))
    events = presence.received()
    assert kinds(events) == [
        (DETAIL_PRESENCE, "connected"), (DETAIL_PRESENCE, "disconnected"), (DETAIL_OFFLINE, None),
        (DETAIL_PRESENCE, "connected"), (DETAIL_RECOVERED, None)]
    assert all(e["source"] == SOURCE for e in events)
    assert events[1]["detail"] == {
        "thing": THING, "site": "plant-a", "collector": "edge-01", "event": "disconnected",
        "timestamp": 2_000, "disconnectReason": "CONNECTION_LOST", "clientInitiatedDisconnect": False,
        "sessionIdentifier": "s0", "versionNumber": 0}
    assert events[2]["detail"] == {"thing": THING, "site": "plant-a", "collector": "edge-01",
                                   "disconnected_ms": 2_000, "disconnectReason": "CONNECTION_LOST",
                                   "offline_after_s": OFFLINE_AFTER_S}
    assert events[4]["detail"] == {"thing": THING, "site": "plant-a", "collector": "edge-01",
                                   "connected_ms": 9_000, "offline_since_ms": 2_000,
                                   "disconnect_reason": "CONNECTION_LOST"}
    item = presence.item()
    assert (item["connected"], item["session_id"], "offline_alerted" in item) == (True, "s1", False)
    assert item["disconnect_reason"] == "CONNECTION_LOST"  # the last reason stays for `fleet status`


def test_a_late_connect_does_not_undo_its_disconnect(presence: Presence) -> None:
    presence.run(disconnected(4, 5_000, "s4", "MQTT_KEEP_ALIVE_TIMEOUT"))
    presence.run(connected(4, 4_000, "s4"))  # the same session's connect, delivered late
    presence.run(connected(3, 3_000, "s3"))  # an older session
    item = presence.item()
    assert (item["connected"], item["version_number"], item["disconnect_reason"]) == (
        False, "4", "MQTT_KEEP_ALIVE_TIMEOUT")
    assert kinds(presence.received()) == [(DETAIL_PRESENCE, "disconnected"), (DETAIL_OFFLINE, None)]


def test_a_collector_back_before_the_wait_ends_raises_no_alert(
    moto_server: MotoServer, aws_env: dict[str, str]
) -> None:
    moto_server.execute_state_machines()
    presence = Presence(offline_after_s=10)
    away = presence.start(disconnected(1, 1_000, "s1", "CLIENT_INITIATED_DISCONNECT"))
    wait_until(lambda: presence.item().get("connected") is False, 30, "disconnect recorded")
    presence.run(connected(2, 1_500, "s2"))
    still_waiting = presence.sfn.describe_execution(executionArn=away)["status"] == "RUNNING"
    assert still_waiting, "the machine was too slow to check this: the connect came after the 10 s wait"
    presence.finish(away)
    assert kinds(presence.received()) == [(DETAIL_PRESENCE, "disconnected"), (DETAIL_PRESENCE, "connected")]
    assert presence.item()["connected"] is True


def test_other_client_events_are_ignored(presence: Presence) -> None:
    presence.run({"eventType": "subscribed", "timestamp": 1, "versionNumber": 0, "sessionIdentifier": "x"})
    assert presence.received() == []
    assert presence.item() == {}


# -- the fleet resources as the program declares them -------------------------------------------------


def test_the_stack_wires_table_machine_rules_and_bus(staging: EvaluatedStack) -> None:
    from infra import outputs

    table = staging.one("aws:dynamodb/table:Table", "fleet").inputs
    assert (table["name"], table["hashKey"], table["rangeKey"]) == ("pm500-staging-fleet", "thing", "record")
    key = staging.outputs[outputs.KMS_KEY_ARN]
    assert table["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": key}
    machine = staging.one("aws:sfn/stateMachine:StateMachine").inputs
    assert (machine["name"], machine["type"]) == ("pm500-staging-presence", "STANDARD")
    assert machine["roleArn"].endswith(":role/pm500-staging-presence")
    definition = json.loads(machine["definition"])
    assert definition["States"]["StillAway"]["Seconds"] == 900  # presence.offlineAfterS, default
    tables = {s["Parameters"]["TableName"] for s in definition["States"].values() if "TableName" in
              s.get("Parameters", {})}
    buses = {e["EventBusName"] for s in definition["States"].values()
             for e in s.get("Parameters", {}).get("Entries", [])}
    assert (tables, buses) == ({"pm500-staging-fleet"}, {staging.outputs[outputs.EVENT_BUS_NAME]})
    assert len(staging.of_type("aws:cloudwatch/eventBus:EventBus")) == 1  # shared with the alarm events
    presence_rule = staging.one("aws:iot/topicRule:TopicRule", "rule/presence").inputs
    assert presence_rule["stepFunctions"] == [{
        "stateMachineName": "pm500-staging-presence", "executionNamePrefix": "presence-",
        "roleArn": "arn:aws:iam::123456789012:role/pm500-staging-rule-presence"}]
    report_rule = staging.one("aws:iot/topicRule:TopicRule", "rule/fleet_report").inputs
    [action] = report_rule["dynamodbs"]
    assert {k: action[k] for k in ("tableName", "hashKeyField", "hashKeyValue", "rangeKeyField",
                                   "rangeKeyValue", "payloadField")} == {
        "tableName": "pm500-staging-fleet", "hashKeyField": "thing", "hashKeyValue": "${topic(3)}",
        "rangeKeyField": "record", "rangeKeyValue": "report", "payloadField": "data"}
    assert staging.outputs[outputs.FLEET_TABLE] == "pm500-staging-fleet"


def test_the_offline_threshold_is_config() -> None:
    config, secrets = load_stack_config_file("staging")
    presence = json.dumps({"offlineAfterS": 120})
    evaluated = evaluate_stack("staging", config={**config, "pm500:presence": presence}, secret_keys=secrets)
    definition = json.loads(evaluated.one("aws:sfn/stateMachine:StateMachine").inputs["definition"])
    assert definition["States"]["StillAway"]["Seconds"] == 120
    with pytest.raises(ConfigError, match=r"presence.offlineAfterS: .*greater than or equal to 10"):
        evaluate_stack("staging", config={**config, "pm500:presence": json.dumps({"offlineAfterS": 5})},
                       secret_keys=secrets)


def test_without_the_feature_there_is_no_fleet() -> None:
    config, secrets = load_stack_config_file("staging")
    features = {**json.loads(config["pm500:features"]), "fleet": False}
    evaluated = evaluate_stack("staging", config={**config, "pm500:features": json.dumps(features)},
                               secret_keys=secrets)
    assert evaluated.of_type("aws:sfn/stateMachine:StateMachine") == []
    assert "fleetTableName" not in evaluated.outputs
