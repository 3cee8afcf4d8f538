"""Presence of a stack's collectors: connected or not, since when and why; an event when one stays away.

AWS IoT Core publishes a lifecycle event for every client that connects or disconnects
(`$aws/events/presence/{connected,disconnected}/<clientId>`, with `disconnectReason`, `versionNumber`;
Developer Guide, "Lifecycle events"). The `presence` topic rule takes those of this stack's things and
starts an execution of the stack's presence state machine (Step Functions, Standard) for each:

- it records the event in the stack's fleet table (DynamoDB, item `{thing, record: "presence"}`) with a
  conditional update, so a late or repeated event never overwrites a newer one (lifecycle events may
  arrive out of order or twice): an event applies when its `versionNumber` is higher than the stored one,
  or equal with a disconnect after the connect of the same session;
- it puts `pm500.presence` on the stack's event bus (connected / disconnected with the reason);
- after a disconnect it waits `presence.offlineAfterS` and, if the same session is still the last one
  and still disconnected, marks the item and puts `pm500.collector.offline`: once per disconnection;
- a connect that follows such an alert puts `pm500.collector.recovered`.

The `fleet_report` rule copies each new version of a collector's named shadow `pm500`
(`.../update/documents`: what the collector reports, collector/shadow.py) into the same table (item
`{thing, record: "report"}`, DynamoDB action = PutItem), so `cli.py fleet status` reads a whole fleet
with one parallel Scan of one table instead of one GetThingShadow per collector. Step Functions and
not a rule action for presence: only a conditional update keeps the order, and only a Wait gives "still
away after N minutes" without a scheduler or code to run.

Why not the fleet index: its connectivity status is eventually consistent, it holds no "offline for
N minutes" alert, and the `fleet status` row also needs the collector's own report.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pulumi
import pulumi_aws as aws

from collector.topics import SHADOW_NAME, stack_thing_prefix
from infra.config import StackConfig
from infra.iam import Document, _allow, _doc, error_log_writes, via_service
from infra.roles import service_role
from infra.rules import RouteRule, RuleContext, route_rule
from infra.stores import stack_bus, stack_table

PRESENCE_ROUTE = "presence"
REPORT_ROUTE = "fleet_report"
HASH_KEY = "thing"
RANGE_KEY = "record"
PRESENCE_RECORD = "presence"
REPORT_RECORD = "report"
REPORT_FIELD = "data"  # the report item's attribute holding {report, version, updated_ms}
DETAIL_PRESENCE = "pm500.presence"
DETAIL_OFFLINE = "pm500.collector.offline"
DETAIL_RECOVERED = "pm500.collector.recovered"
PRESENCE_FILTER = "$aws/events/presence/+/+"
PRESENCE_THING_LEVEL = 5  # $aws / events / presence / connected / <clientId>
DOCUMENTS_FILTER = f"$aws/things/+/shadow/name/{SHADOW_NAME}/update/documents"
DOCUMENTS_THING_LEVEL = 3  # $aws / things / <thing> / ...
CONDITION_FAILED = "DynamoDB.ConditionalCheckFailedException"


def presence_sql(stack: str) -> str:
    """Every lifecycle event of this stack's things, plus the thing name (the client id is the thing)."""
    level = PRESENCE_THING_LEVEL
    return (f"SELECT *, topic({level}) AS thing FROM '{PRESENCE_FILTER}' "  # noqa: S608 (validated names)
            f"WHERE startswith(topic({level}), '{stack_thing_prefix(stack)}')")


def report_sql(stack: str) -> str:
    """The reported state of each new version of this stack's collectors' named shadow."""
    level = DOCUMENTS_THING_LEVEL
    return ("SELECT current.state.reported AS report, current.version AS version, "  # noqa: S608
            f"timestamp() AS updated_ms FROM '{DOCUMENTS_FILTER}' "
            f"WHERE startswith(topic({level}), '{stack_thing_prefix(stack)}')")


def offline_rule_pattern(stack: str) -> dict[str, Any]:
    """The EventBridge pattern docs/integration.md gives for paging or ticketing: one collector's offline
    alert and its recovery, from this stack's bus."""
    return {"source": [f"pm500.{stack}"], "detail-type": [DETAIL_OFFLINE, DETAIL_RECOVERED]}


def _number(path: str) -> dict[str, str]:
    """A DynamoDB number from a JSON number of the input (Step Functions passes N values as strings)."""
    return {"N.$": f"States.Format('{{}}', {path})"}


_THING = "$.thing"
_SITE = "States.ArrayGetItem(States.StringSplit($.thing, ':'), 1)"
_COLLECTOR = "States.ArrayGetItem(States.StringSplit($.thing, ':'), 2)"


def _put_event(bus: str, source: str, detail_type: str, detail: dict[str, Any], next_state: str | None,
               ) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::events:putEvents",
        "Parameters": {"Entries": [{
            "EventBusName": bus, "Source": source, "DetailType": detail_type,
            "Detail": {"thing.$": _THING, "site.$": _SITE, "collector.$": _COLLECTOR, **detail},
        }]},
        "ResultPath": None,
    }
    state.update({"Next": next_state} if next_state else {"End": True})
    return state


def _update(table: str, expression: str, condition: str, values: dict[str, Any], next_state: str,
            on_stale: str, result_path: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Type": "Task",
        "Resource": "arn:aws:states:::dynamodb:updateItem",
        "Parameters": {
            "TableName": table,
            "Key": {HASH_KEY: {"S.$": _THING}, RANGE_KEY: {"S": PRESENCE_RECORD}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        },
        "ResultPath": result_path,
        "Catch": [{"ErrorEquals": [CONDITION_FAILED], "ResultPath": None, "Next": on_stale}],
        "Next": next_state,
    }
    if result_path is not None:
        state["Parameters"]["ReturnValues"] = "ALL_OLD"
    return state


def presence_definition(table: str, bus: str, source: str, offline_after_s: int) -> dict[str, Any]:
    """The presence state machine (Amazon States Language), input: a lifecycle event + `thing`."""
    yes, no = {"BOOL": True}, {"BOOL": False}
    event = {":ts": _number("$.timestamp"), ":v": _number("$.versionNumber"),
             ":session": {"S.$": "$.sessionIdentifier"}}
    newer = "attribute_not_exists(version_number) OR version_number < :v"
    return {
        "Comment": "pm500 presence: record a lifecycle event, announce it, alert once if it stays away",
        "StartAt": "Kind",
        "States": {
            "Kind": {"Type": "Choice", "Choices": [
                {"Variable": "$.eventType", "StringEquals": "connected", "Next": "RecordConnected"},
                {"Variable": "$.eventType", "StringEquals": "disconnected", "Next": "RecordDisconnected"},
            ], "Default": "Done"},
            "RecordConnected": _update(
                table,
                "SET connected = :yes, since_ms = :ts, last_seen_ms = :ts, session_id = :session, "
                "version_number = :v REMOVE offline_alerted",
                newer, {":yes": yes, **event}, "AnnounceConnected", "Done", result_path="$.previous"),
            "AnnounceConnected": _put_event(bus, source, DETAIL_PRESENCE, {
                "event": "connected", "timestamp.$": "$.timestamp",
                "sessionIdentifier.$": "$.sessionIdentifier", "versionNumber.$": "$.versionNumber"},
                "WasOffline"),
            # offline_alerted is only ever set true (MarkOffline) and removed on connect: present = alerted.
            "WasOffline": {"Type": "Choice", "Choices": [
                {"Variable": "$.previous.Attributes.offline_alerted", "IsPresent": True,
                 "Next": "AnnounceRecovered"},
            ], "Default": "Done"},
            "AnnounceRecovered": _put_event(bus, source, DETAIL_RECOVERED, {
                "connected_ms.$": "$.timestamp",
                "offline_since_ms.$": "States.StringToJson($.previous.Attributes.since_ms.N)",
                "disconnect_reason.$": "$.previous.Attributes.disconnect_reason.S"}, None),
            "RecordDisconnected": _update(
                table,
                "SET connected = :no, since_ms = :ts, last_seen_ms = :ts, session_id = :session, "
                "version_number = :v, disconnect_reason = :reason, client_initiated = :by_client",
                f"{newer} OR (version_number = :v AND connected = :yes)",
                {":yes": yes, ":no": no, ":reason": {"S.$": "$.disconnectReason"},
                 ":by_client": {"BOOL.$": "$.clientInitiatedDisconnect"}, **event},
                "AnnounceDisconnected", "Done"),
            "AnnounceDisconnected": _put_event(bus, source, DETAIL_PRESENCE, {
                "event": "disconnected", "timestamp.$": "$.timestamp",
                "disconnectReason.$": "$.disconnectReason",
                "clientInitiatedDisconnect.$": "$.clientInitiatedDisconnect",
                "sessionIdentifier.$": "$.sessionIdentifier", "versionNumber.$": "$.versionNumber"},
                "StillAway"),
            "StillAway": {"Type": "Wait", "Seconds": offline_after_s, "Next": "MarkOffline"},
            "MarkOffline": _update(
                table, "SET offline_alerted = :yes",
                "session_id = :session AND connected = :no AND attribute_not_exists(offline_alerted)",
                {":yes": yes, ":no": no, ":session": {"S.$": "$.sessionIdentifier"}},
                "AnnounceOffline", "Done"),
            "AnnounceOffline": _put_event(bus, source, DETAIL_OFFLINE, {
                "disconnected_ms.$": "$.timestamp", "disconnectReason.$": "$.disconnectReason",
                "offline_after_s": offline_after_s}, None),
            "Done": {"Type": "Succeed"},
        },
    }


def _table_key(key_arn: str, region: str, dns_suffix: str) -> Document:
    """The table is encrypted with the stack's customer managed key, used through DynamoDB (DynamoDB
    developer guide, "Customer managed key")."""
    actions = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
    condition = {"StringEquals": {"kms:ViaService": via_service("dynamodb", region, dns_suffix)}}
    return _allow("UseTableKeyViaDynamoDB", actions, [key_arn], condition)


def state_machine_policy(table_arn: str, bus_arn: str, key_arn: str, region: str,
                         dns_suffix: str) -> Document:
    """Presence state machine: update presence items, put events on the stack's bus."""
    return _doc(
        _allow("RecordPresence", ["dynamodb:UpdateItem"], [table_arn]),
        _table_key(key_arn, region, dns_suffix),
        _allow("AnnouncePresence", ["events:PutEvents"], [bus_arn]),
    )


def presence_rule_policy(state_machine_arn: str, error_log_group_arn: str) -> Document:
    """IoT rule -> Step Functions: start the presence state machine (its one action's requirement)."""
    return _doc(
        _allow("StartPresence", ["states:StartExecution"], [state_machine_arn]),
        *error_log_writes(error_log_group_arn),
    )


def report_rule_policy(table_arn: str, key_arn: str, error_log_group_arn: str, region: str,
                       dns_suffix: str) -> Document:
    """IoT rule -> DynamoDB (dynamoDB action = PutItem) of the collectors' reports."""
    return _doc(
        _allow("PutReport", ["dynamodb:PutItem"], [table_arn]),
        _table_key(key_arn, region, dns_suffix),
        *error_log_writes(error_log_group_arn),
    )


class Fleet(pulumi.ComponentResource):
    """The fleet table, the presence state machine and the two rules that feed them."""

    table_name: pulumi.Output[str]
    state_machine_name: pulumi.Output[str]
    bus_name: pulumi.Output[str]
    rules: dict[str, RouteRule]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, rule_context: RuleContext, key_arn: pulumi.Input[str],
                 bus: tuple[pulumi.Input[str], pulumi.Input[str]] | None, offline_after_s: int,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`bus`: (ARN, name) of the stack's event bus when another route made it, else the fleet makes it."""
        super().__init__("pm500:fleet:Fleet", name, None, opts)
        names = rule_context.names
        region = cfg.region or ""
        child = pulumi.ResourceOptions(parent=self)
        bus_arn, bus_name = stack_bus(cfg, names, bus, self)
        table = stack_table("fleet", cfg, names.resource("fleet"), (HASH_KEY, RANGE_KEY), key_arn, self)
        machine_role = service_role(
            "presence-role", "presence-policy", name=names.resource("presence"),
            service="states.amazonaws.com",
            description="pm500 presence state machine: fleet table updates and bus events",
            stack=cfg.stack, account_id=rule_context.account_id, opts=child,
            # Step Functions documents aws:SourceArn (the state machine) against the confused deputy; the
            # ARN is built from the name: the machine itself needs the role first.
            source_arn=rule_context.iot_arn.apply(
                lambda arn: arn.replace(":iot:", ":states:") + f":stateMachine:{names.resource('presence')}"),
            policy=pulumi.Output.all(table.arn, bus_arn, key_arn, rule_context.dns_suffix).apply(
                lambda a: json.dumps(state_machine_policy(a[0], a[1], a[2], region, a[3]))),
        )
        definition = pulumi.Output.all(table.name, bus_name).apply(lambda a: json.dumps(presence_definition(
            a[0], a[1], f"pm500.{cfg.stack}", offline_after_s)))
        machine = aws.sfn.StateMachine("presence", aws.sfn.StateMachineArgs(
            name=names.resource("presence"),
            role_arn=machine_role.role.arn,
            definition=definition,
            type="STANDARD",
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[machine_role.policy]))
        context = dataclasses.replace(rule_context, parent=self)
        self.rules = {
            PRESENCE_ROUTE: route_rule(
                context, PRESENCE_ROUTE,
                description=f"lifecycle events of stack {cfg.stack} into the presence state machine",
                sql=presence_sql(cfg.stack),
                policy=lambda a: presence_rule_policy(a[0], a[1]),
                policy_inputs=[machine.arn],
                actions=lambda role_arn: {"step_functions": [aws.iot.TopicRuleStepFunctionArgs(
                    role_arn=role_arn, state_machine_name=machine.name, execution_name_prefix="presence-")]},
            ),
            REPORT_ROUTE: route_rule(
                context, REPORT_ROUTE,
                description=f"collector reports (named shadow {SHADOW_NAME}) of stack {cfg.stack} "
                "into the fleet table",
                sql=report_sql(cfg.stack),
                policy=lambda a: report_rule_policy(a[0], a[1], a[3], region, a[2]),
                policy_inputs=[table.arn, key_arn, rule_context.dns_suffix],
                actions=lambda role_arn: {"dynamodbs": [aws.iot.TopicRuleDynamodbArgs(
                    role_arn=role_arn, table_name=table.name,
                    hash_key_field=HASH_KEY, hash_key_value=f"${{topic({DOCUMENTS_THING_LEVEL})}}",
                    hash_key_type="STRING", range_key_field=RANGE_KEY, range_key_value=REPORT_RECORD,
                    range_key_type="STRING", payload_field=REPORT_FIELD)]},
            ),
        }
        self.table_name = table.name
        self.state_machine_name = machine.name
        self.role_name = machine_role.role.name
        self.bus_name = bus_name
        self.register_outputs({"tableName": self.table_name, "stateMachineName": self.state_machine_name,
                               "busName": self.bus_name})

