"""Optional routes (config `features`, off by default): an EventBridge Pipe from the Kinesis stream to
the stack's event bus, a DynamoDB table holding each meter's latest reading, and the meters' alarm
events routed to the event bus.
"""

from __future__ import annotations

import dataclasses
import json

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import StackConfig
from infra.naming import Names
from infra.roles import service_role
from infra.rules import RouteRule, RuleContext, ddata_sql, event_sql, route_rule

LATEST_ROUTE = "ddata_latest"
LATEST_KEY = "meter"  # `<thing>/<asset>`
LATEST_KEY_SQL = "concat(topic(4), '/', topic(5))"
TIMESTAMP_FIELD = "timestamp"  # collector.payload.ddata: ms since epoch


def newer_than_stored(table_name: str, role_arn: str) -> str:
    """IoT SQL: the DDATA's timestamp is newer than the meter's stored one (or none is stored yet).

    Why: the dynamoDBv2 action has no condition expression, so a replayed (older) reading would
    overwrite a newer latest value. `get_dynamodb()` (SQL 2016-03-23; at most once per statement) reads
    the stored item with `role_arn`; `nanvl()` maps Undefined (no item) to -1. Not atomic: two readings
    of one meter evaluated at the same moment can both pass (docs/infra.md, latest values).
    """
    stored = f"get_dynamodb('{table_name}', '{LATEST_KEY}', {LATEST_KEY_SQL}, '{role_arn}').{TIMESTAMP_FIELD}"
    return f"nanvl({stored}, -1) < {TIMESTAMP_FIELD}"


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
                    starting_position="LATEST", batch_size=100, maximum_batching_window_in_seconds=5)),
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
    rule: RouteRule

    def __init__(self, name: str, cfg: StackConfig, rule_context: RuleContext, key_arn: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:data:LatestValues", name, None, opts)
        names = rule_context.names
        region = cfg.region or ""
        table = aws.dynamodb.Table("latest", aws.dynamodb.TableArgs(
            name=names.resource("latest"),
            billing_mode="PAY_PER_REQUEST",
            hash_key=LATEST_KEY,
            attributes=[aws.dynamodb.TableAttributeArgs(name=LATEST_KEY, type="S")],
            server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(
                enabled=True, kms_key_arn=key_arn),
            point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=cfg.deletion_protection),
            deletion_protection_enabled=cfg.deletion_protection,
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, protect=cfg.deletion_protection))
        table_name = table.name
        self.rule = route_rule(
            dataclasses.replace(rule_context, parent=self), LATEST_ROUTE,
            description=f"latest DDATA per meter of stack {cfg.stack} into DynamoDB",
            sql=lambda role_arn: pulumi.Output.all(table_name, role_arn).apply(lambda a: ddata_sql(
                cfg.stack, f"*, topic(4) AS thing, {LATEST_KEY_SQL} AS {LATEST_KEY}",
                condition=newer_than_stored(a[0], a[1]))),
            policy=lambda a: iam.dynamodb_rule(a[0], a[1], a[3], region, a[2]),
            policy_inputs=[table.arn, key_arn, rule_context.dns_suffix],
            actions=lambda role_arn: {"dynamodbv2s": [aws.iot.TopicRuleDynamodbv2Args(
                role_arn=role_arn, put_item=aws.iot.TopicRuleDynamodbv2PutItemArgs(table_name=table_name))]},
        )
        self.table_name = table.name
        self.register_outputs({"tableName": self.table_name, "ruleName": self.rule.name})


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
    pipe_role_name: pulumi.Output[str]
    rule: RouteRule

    def __init__(self, name: str, cfg: StackConfig, rule_context: RuleContext, key_arn: pulumi.Input[str],
                 bus: tuple[pulumi.Input[str], pulumi.Input[str]] | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:data:AlarmEvents", name, None, opts)
        names = rule_context.names
        child = pulumi.ResourceOptions(parent=self)
        if bus is None:
            own = aws.cloudwatch.EventBus("bus", aws.cloudwatch.EventBusArgs(
                name=names.resource("events"), tags={"pm500:stack": cfg.stack}), opts=child)
            bus_arn, bus_name = own.arn, own.name
        else:
            bus_arn, bus_name = pulumi.Output.from_input(bus[0]), pulumi.Output.from_input(bus[1])
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
        self.pipe_role_name = pipe_role.role.name
        self.register_outputs({"queueName": self.queue_name, "busName": self.bus_name,
                               "ruleName": self.rule.name})
