"""The stack's DynamoDB tables and its event bus, each made one way wherever a route needs one."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.config import StackConfig
from infra.naming import Names


def stack_table(resource: str, cfg: StackConfig, name: str, keys: tuple[str, ...], key_arn: pulumi.Input[str],
                parent: pulumi.Resource) -> aws.dynamodb.Table:
    """On-demand table `name`, string `keys` (hash, then range), encrypted with the stack's key, with
    point-in-time recovery and deletion protection when the stack protects its data."""
    return aws.dynamodb.Table(resource, aws.dynamodb.TableArgs(
        name=name,
        billing_mode="PAY_PER_REQUEST",
        hash_key=keys[0],
        range_key=keys[1] if len(keys) > 1 else None,
        attributes=[aws.dynamodb.TableAttributeArgs(name=k, type="S") for k in keys],
        server_side_encryption=aws.dynamodb.TableServerSideEncryptionArgs(enabled=True, kms_key_arn=key_arn),
        point_in_time_recovery=aws.dynamodb.TablePointInTimeRecoveryArgs(enabled=cfg.deletion_protection),
        deletion_protection_enabled=cfg.deletion_protection,
        tags={"pm500:stack": cfg.stack},
    ), opts=pulumi.ResourceOptions(parent=parent, protect=cfg.deletion_protection))


def stack_bus(cfg: StackConfig, names: Names, shared: tuple[pulumi.Input[str], pulumi.Input[str]] | None,
              parent: pulumi.Resource) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """(ARN, name) of the stack's event bus: `shared` when another route made it, else made here."""
    if shared is not None:
        return pulumi.Output.from_input(shared[0]), pulumi.Output.from_input(shared[1])
    bus = aws.cloudwatch.EventBus("bus", aws.cloudwatch.EventBusArgs(
        name=names.resource("events"), tags={"pm500:stack": cfg.stack}),
        opts=pulumi.ResourceOptions(parent=parent))
    return bus.arn, bus.name
