"""Optional routes (config `features`, off by default): an EventBridge Pipe from the Kinesis stream to
the stack's event bus, a DynamoDB table holding each meter's latest reading, and the meters' alarm
events routed to the event bus.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from infra import iam, sparkplug
from infra.config import StackConfig
from infra.naming import Names
from infra.roles import service_role
from infra.rules import RouteRule, RuleContext, ddata_sql, event_sql, route_rule
from infra.stores import stack_bus, stack_table

LATEST_ROUTE = "ddata_latest"
LATEST_KEY = "meter"  # `<thing>/<asset>`
LATEST_KEY_SQL = "concat(topic(4), '/', topic(5))"
TIMESTAMP_FIELD = "timestamp"  # collector.payload.ddata: ms since epoch


def newer_than_stored(table_name: str, role_arn: str, key_sql: str = LATEST_KEY_SQL,
                      timestamp_sql: str = TIMESTAMP_FIELD) -> str:
    """IoT SQL: the DDATA's timestamp is newer than the meter's stored one (or none is stored yet).

    Why: the dynamoDBv2 action has no condition expression, so a replayed (older) reading would
    overwrite a newer latest value. `get_dynamodb()` (SQL 2016-03-23; at most once per statement) reads
    the stored item with `role_arn`; `nanvl()` maps Undefined (no item) to -1. Not atomic: two readings
    of one meter evaluated at the same moment can both pass (docs/infra.md, latest values).
    `key_sql` and `timestamp_sql`: the meter key and the reading's timestamp in the rule's incoming message
    (decoded Sparkplug: other topic levels, a timestamp to cast).
    """
    stored = f"get_dynamodb('{table_name}', '{LATEST_KEY}', {key_sql}, '{role_arn}').{TIMESTAMP_FIELD}"
    return f"nanvl({stored}, -1) < {timestamp_sql}"


class EventPipe(pulumi.ComponentResource):
    """Kinesis stream -> EventBridge Pipe -> the stack's event bus (ticketing, automation)."""

    bus_name: pulumi.Output[str]
    bus_arn: pulumi.Output[str]
    pipe_name: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 stream_arn: pulumi.Input[str], key_arn: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:data:EventPipe", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = pulumi.Output.from_input(account_id)
        bus = aws.cloudwatch.EventBus("bus", aws.cloudwatch.EventBusArgs(
            name=names.resource("events"), tags={"pm500:stack": cfg.stack},
        ), opts=child)
        pipe_role = service_role(
            "pipe-role", "pipe-policy", name=names.resource("pipe"), service="pipes.amazonaws.com",
            description="EventBridge Pipe from the pm500 Kinesis stream to the event bus",
            stack=cfg.stack, account_id=account, opts=child,
            policy=pulumi.Output.all(stream_arn, key_arn, bus.arn).apply(
                lambda a: json.dumps(iam.pipe(a[0], a[1], a[2]))),
        )
        role, policy = pipe_role.role, pipe_role.policy
        pipe = aws.pipes.Pipe("pipe", aws.pipes.PipeArgs(
            name=names.resource("ddata-events"),
            role_arn=role.arn,
            source=stream_arn,
            target=bus.arn,
            source_parameters=aws.pipes.PipeSourceParametersArgs(
                kinesis_stream_parameters=aws.pipes.PipeSourceParametersKinesisStreamParametersArgs(
                    starting_position="LATEST", batch_size=cfg.event_pipe.batch_size,
                    maximum_batching_window_in_seconds=cfg.event_pipe.maximum_batching_window_s)),
            target_parameters=aws.pipes.PipeTargetParametersArgs(
                eventbridge_event_bus_parameters=aws.pipes.PipeTargetParametersEventbridgeEventBusParametersArgs(
                    source=f"pm500.{cfg.stack}", detail_type="pm500.DDATA")),
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[policy]))
        self.bus_name = bus.name
        self.bus_arn = bus.arn
        self.pipe_name = pipe.name
        self.role_name = role.name
        self.register_outputs({"busName": self.bus_name, "pipeName": self.pipe_name})


class LatestValues(pulumi.ComponentResource):
    """DynamoDB table keyed by meter (`<thing>/<asset>`), overwritten by each DDATA newer than the
    stored one."""

    table_name: pulumi.Output[str]
    rules: dict[str, RouteRule]  # route -> rule: one per encoding the stack's collectors publish

    def __init__(self, name: str, cfg: StackConfig, rule_context: RuleContext, key_arn: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:data:LatestValues", name, None, opts)
        names = rule_context.names
        region = cfg.region or ""
        table = stack_table("latest", cfg, names.resource("latest"), (LATEST_KEY,), key_arn, self)
        table_name = table.name
        context = dataclasses.replace(rule_context, parent=self)
        mixed = len(cfg.encodings) > 1
        json_only = sparkplug.json_ddata_filter_for_mixed_stacks() if mixed else ""

        def json_sql(a: list[str]) -> str:
            return ddata_sql(cfg.stack, f"*, topic(4) AS thing, {LATEST_KEY_SQL} AS {LATEST_KEY}",
                             condition=newer_than_stored(a[0], a[1])) + json_only

        def decoded_sql(a: list[str]) -> str:  # sparkplug-b: the decoded JSON, shaped as the archive's
            return sparkplug.json_shape_sql(
                cfg.stack, f", {sparkplug.DECODED_METER_SQL} AS {LATEST_KEY}",
                condition=newer_than_stored(a[0], a[1], sparkplug.DECODED_METER_SQL,
                                            sparkplug.DECODED_TIMESTAMP_SQL))

        # One rule per encoding the stack's collectors publish: each reads where its DDATA is JSON.
        shapes = {LATEST_ROUTE: json_sql, sparkplug.LATEST_ROUTE: decoded_sql}
        encodings = {LATEST_ROUTE: "json", sparkplug.LATEST_ROUTE: "sparkplug-b"}
        self.rules: dict[str, RouteRule] = {}
        for route, shape in shapes.items():
            if encodings[route] not in cfg.encodings:
                continue
            self.rules[route] = route_rule(
                context, route,
                description=f"latest DDATA per meter of stack {cfg.stack} into DynamoDB",
                sql=self._sql(table_name, shape),
                policy=lambda a: iam.dynamodb_rule(a[0], a[1], a[3], region, a[2]),
                policy_inputs=[table.arn, key_arn, rule_context.dns_suffix],
                actions=lambda role_arn: {"dynamodbv2s": [aws.iot.TopicRuleDynamodbv2Args(
                    role_arn=role_arn,
                    put_item=aws.iot.TopicRuleDynamodbv2PutItemArgs(table_name=table_name))]},
            )
        self.table_name = table.name
        self.register_outputs({"tableName": self.table_name,
                               "ruleNames": {route: r.name for route, r in self.rules.items()}})


    @staticmethod
    def _sql(table_name: pulumi.Output[str], shape: Callable[[list[str]], str]
             ) -> Callable[[pulumi.Output[str]], pulumi.Output[str]]:
        """The rule's SQL from the table name and the rule role's ARN (which `get_dynamodb()` names)."""
        return lambda role_arn: pulumi.Output.all(table_name, role_arn).apply(shape)


ALARM_ROUTE = "alarm_events"
ALARM_DETAIL_TYPE = "pm500.alarm"


class AlarmEvents(pulumi.ComponentResource):
    """Meter alarm/output events -> the stack's EventBridge bus (ticketing, automation).

    IoT rules have no EventBridge action, so the rule sends each event to an SQS queue (KMS-encrypted
    with the stack's data key) and an EventBridge Pipe moves it onto the bus: source `pm500.<stack>`,
    detail-type `pm500.alarm`, detail = the event payload plus `thing`. The bus is the one of
    `EventPipe` when that feature is on too, else its own with the same name.
    """

    queue_name: pulumi.Output[str]
    bus_name: pulumi.Output[str]
    bus_arn: pulumi.Output[str]
    pipe_role_name: pulumi.Output[str]
    rule: RouteRule

    def __init__(self, name: str, cfg: StackConfig, rule_context: RuleContext, key_arn: pulumi.Input[str],
                 bus: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:data:AlarmEvents", name, None, opts)
        names = rule_context.names
        child = pulumi.ResourceOptions(parent=self)
        bus_arn, bus_name = stack_bus(cfg, names, bus, self)
        queue = aws.sqs.Queue("alarm-queue", aws.sqs.QueueArgs(
            name=names.resource("alarm-events"),
            kms_master_key_id=key_arn,
            message_retention_seconds=4 * 24 * 3600,
            tags={"pm500:stack": cfg.stack},
        ), opts=child)
        self.rule = route_rule(
            dataclasses.replace(rule_context, parent=self), ALARM_ROUTE,
            description=f"alarm/output events of stack {cfg.stack} into SQS for the event bus",
            sql=event_sql(cfg.stack),
            policy=lambda a: iam.sqs_rule(a[0], a[1], a[2]),
            policy_inputs=[queue.arn, key_arn],
            actions=lambda role_arn: {"sqs": [aws.iot.TopicRuleSqsArgs(
                role_arn=role_arn, queue_url=queue.url, use_base64=False)]},
        )
        pipe_role = service_role(
            "alarm-pipe-role", "alarm-pipe-policy", name=names.resource("alarm-pipe"),
            service="pipes.amazonaws.com",
            description="EventBridge Pipe from the pm500 alarm queue to the event bus",
            stack=cfg.stack, account_id=rule_context.account_id, opts=child,
            policy=pulumi.Output.all(queue.arn, key_arn, bus_arn).apply(
                lambda a: json.dumps(iam.alarm_pipe(a[0], a[1], a[2]))),
        )
        aws.pipes.Pipe("alarm-pipe", aws.pipes.PipeArgs(
            name=names.resource("alarm-events"),
            role_arn=pipe_role.role.arn,
            source=queue.arn,
            target=bus_arn,
            source_parameters=aws.pipes.PipeSourceParametersArgs(
                sqs_queue_parameters=aws.pipes.PipeSourceParametersSqsQueueParametersArgs(batch_size=10)),
            target_parameters=aws.pipes.PipeTargetParametersArgs(
                input_template="<$.body>",
                eventbridge_event_bus_parameters=aws.pipes.PipeTargetParametersEventbridgeEventBusParametersArgs(
                    source=f"pm500.{cfg.stack}", detail_type=ALARM_DETAIL_TYPE)),
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[pipe_role.policy]))
        self.queue_name = queue.name
        self.bus_name = bus_name
        self.bus_arn = bus_arn
        self.pipe_role_name = pipe_role.role.name
        self.register_outputs({"queueName": self.queue_name, "busName": self.bus_name,
                               "ruleName": self.rule.name})
