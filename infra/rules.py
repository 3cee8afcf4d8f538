"""IoT topic rules that take only this stack's DDATA, each with its own least-privilege role and an
error action (CloudWatch Logs) so a failing route is visible instead of silently dropping data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from collector.topics import EVENT_THING_LEVEL, ddata_filter, event_filter, stack_thing_prefix
from infra import iam
from infra.naming import Names
from infra.roles import service_role

SQL_VERSION = "2016-03-23"


def ddata_sql(stack: str, select: str = "*, topic(4) AS thing", condition: str | None = None) -> str:
    """`SELECT ... FROM <every collector's DDATA> WHERE` the thing (topic level 4) is one of this stack's
    (`AND condition`, when given)."""
    # IoT SQL built from our own validated names (NAME_PATTERN: no quotes possible), not user text.
    where = f"startswith(topic(4), '{stack_thing_prefix(stack)}')"
    return (f"SELECT {select} FROM '{ddata_filter()}' "  # noqa: S608
            f"WHERE {where}{f' AND {condition}' if condition else ''}")


def event_sql(stack: str) -> str:
    """`SELECT` every collector's alarm/output EVENT `WHERE` the thing (topic level 3) is this stack's."""
    level = EVENT_THING_LEVEL
    return (f"SELECT *, topic({level}) AS thing FROM '{event_filter()}' "  # noqa: S608 (validated names)
            f"WHERE startswith(topic({level}), '{stack_thing_prefix(stack)}')")


@dataclass(frozen=True)
class RuleContext:
    """What every route of a stack shares: naming, parent component, account and its partition's DNS
    suffix (`kms:ViaService`), the error log group."""

    names: Names
    parent: pulumi.Resource
    account_id: pulumi.Input[str]
    dns_suffix: pulumi.Input[str]
    error_log_group_name: pulumi.Input[str]
    error_log_group_arn: pulumi.Input[str]

    @property
    def iot_arn(self) -> pulumi.Output[str]:
        """`arn:<partition>:iot:<region>:<account>`: the stack's error log group is in the same partition,
        region and account (`arn:<partition>:logs:<region>:<account>:log-group:...`)."""
        return pulumi.Output.from_input(self.error_log_group_arn).apply(
            lambda arn: iam.iot_arn(arn.split(":")[1], arn.split(":")[3], arn.split(":")[4]))


@dataclass(frozen=True)
class RouteRule:
    name: pulumi.Output[str]
    arn: pulumi.Output[str]
    role_name: pulumi.Output[str]


def route_rule(
    ctx: RuleContext,
    route: str,
    *,
    policy: Callable[[list[str]], iam.Document],
    policy_inputs: list[pulumi.Input[str]],
    description: str,
    sql: pulumi.Input[str] | Callable[[pulumi.Output[str]], pulumi.Input[str]],
    actions: Callable[[pulumi.Output[str]], dict[str, Any]],
    depends_on: list[pulumi.Resource] | None = None,
) -> RouteRule:
    """Role + inline policy + topic rule for one route.

    `policy` gets the resolved `policy_inputs` (ARNs and any other value the document needs) followed
    by the error log group ARN; `actions` gets the role ARN and returns the rule's action arguments
    (e.g. `{"kineses": [...]}`); `sql` is the statement, or gets the role ARN (SQL functions that read
    other services, like `get_dynamodb()`, name the role they use). `depends_on`: what the rule's SQL
    needs to exist first (e.g. the protobuf descriptor object it decodes with).
    """
    names = ctx.names
    child = pulumi.ResourceOptions(parent=ctx.parent)
    rule_role = service_role(
        f"rule-role/{route}", f"rule-policy/{route}", name=names.resource(f"rule-{route}"),
        service="iot.amazonaws.com", description=f"IoT rule {names.rule(route)}: {description}",
        stack=names.stack, account_id=ctx.account_id, opts=child,
        # AWS IoT documents the rule's ARN as the role's source ("Granting an AWS IoT rule the access it
        # requires"); the rule is named before it exists, so its ARN is known here.
        source_arn=ctx.iot_arn.apply(lambda arn: f"{arn}:rule/{names.rule(route)}"),
        policy=pulumi.Output.all(*policy_inputs, ctx.error_log_group_arn).apply(
            lambda arns: json.dumps(policy(arns))),
    )
    role, role_policy = rule_role.role, rule_role.policy
    rule = aws.iot.TopicRule(f"rule/{route}", aws.iot.TopicRuleArgs(
        name=names.rule(route),
        description=description,
        enabled=True,
        sql=sql(role.arn) if callable(sql) else sql,
        sql_version=SQL_VERSION,
        error_action=aws.iot.TopicRuleErrorActionArgs(
            cloudwatch_logs=aws.iot.TopicRuleErrorActionCloudwatchLogsArgs(
                log_group_name=ctx.error_log_group_name, role_arn=role.arn),
        ),
        tags={"pm500:stack": names.stack},
        **actions(role.arn),
    ), opts=pulumi.ResourceOptions(parent=ctx.parent, depends_on=[role_policy, *(depends_on or [])]))
    return RouteRule(name=rule.name, arn=rule.arn, role_name=role.name)
