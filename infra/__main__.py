"""pm500 Pulumi program: wires the components and exports the stack outputs (names: infra/outputs.py).

Pulumi runs this file as a script from `infra/`, so every import is absolute (`infra.*`, `collector.*`:
the project is installed in `.venv`). The config is read and validated before any resource exists.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra import outputs
from infra.data_routes import DataRoutes
from infra.naming import Names
from infra.optional_routes import ALARM_ROUTE, AlarmEvents, EventPipe, LatestValues
from infra.presence import Fleet
from infra.provisioning import Provisioning
from infra.registry import Registry
from infra.stack_config import load_stack_config

cfg = load_stack_config()
names = Names(cfg.stack)
account_id = aws.get_caller_identity_output().account_id
aws_partition = aws.get_partition_output()
partition = aws_partition.partition  # aws, aws-cn, aws-us-gov, aws-iso...: ARNs use it
dns_suffix = aws_partition.dns_suffix  # amazonaws.com, amazonaws.com.cn...: kms:ViaService uses it
endpoint = aws.iot.get_endpoint_output(endpoint_type="iot:Data-ATS").endpoint_address

registry = Registry("registry", cfg, names, account_id, partition)
provisioning = Provisioning("provisioning", cfg, names, account_id, partition,
                            registry.provisioning_prerequisites)
routes = DataRoutes("data-routes", cfg, names, account_id, dns_suffix)
rules = dict(routes.rules)
roles = {
    "provisioning": provisioning.role_name,
    "firehose": routes.archive.role_name,
    **{route: rule.role_name for route, rule in routes.rules.items()},
}
pipe = None
bus: tuple[pulumi.Output[str], pulumi.Output[str]] | None = None  # (ARN, name) once a route made it
if cfg.features.event_bridge_pipe:
    pipe = EventPipe("event-pipe", cfg, names, account_id, routes.stream_arn, routes.key_arn)
    roles["pipe"] = pipe.role_name
    bus = (pipe.bus_arn, pipe.bus_name)
    pulumi.export(outputs.EVENT_BUS_NAME, pipe.bus_name)
if cfg.features.alarm_events:
    alarms = AlarmEvents("alarm-events", cfg, routes.rule_context, routes.key_arn, bus=bus)
    rules[ALARM_ROUTE] = alarms.rule
    roles[ALARM_ROUTE] = alarms.rule.role_name
    roles["alarm_pipe"] = alarms.pipe_role_name
    pulumi.export(outputs.ALARM_EVENT_QUEUE, alarms.queue_name)
    if bus is None:
        bus = (alarms.bus_arn, alarms.bus_name)
        pulumi.export(outputs.EVENT_BUS_NAME, alarms.bus_name)
if cfg.features.fleet:
    fleet = Fleet("fleet", cfg, routes.rule_context, routes.key_arn, bus=bus,
                  offline_after_s=cfg.presence.offline_after_s)
    for route, rule in fleet.rules.items():
        rules[route] = rule
        roles[route] = rule.role_name
    roles["presence"] = fleet.role_name
    pulumi.export(outputs.FLEET_TABLE, fleet.table_name)
    if bus is None:
        pulumi.export(outputs.EVENT_BUS_NAME, fleet.bus_name)
if cfg.features.latest_value_table:
    latest = LatestValues("latest-values", cfg, routes.rule_context, routes.key_arn)
    for route, rule in latest.rules.items():
        rules[route] = rule
        roles[route] = rule.role_name
    pulumi.export(outputs.LATEST_VALUE_TABLE, latest.table_name)

# --- edge stack (issue 5): only when features.edge is on, so cloud-only stacks need no Docker host.
if cfg.features.edge:
    from infra.edge import EdgeStack

    edge = EdgeStack("edge", cfg)
    pulumi.export(outputs.EDGE, edge.summary)


def _inventory(value: object) -> object:
    """Inventory-derived outputs stay secret when the operator made the inventory a secret."""
    secret = cfg.is_secret("sites") or cfg.is_secret("inventory")
    return pulumi.Output.secret(value) if secret else value


pulumi.export(outputs.STACK, cfg.stack)
pulumi.export(outputs.ENVIRONMENT, cfg.environment)
pulumi.export(outputs.AWS_REGION, cfg.region)
pulumi.export(outputs.IOT_ENDPOINT, endpoint)
pulumi.export(outputs.THING_TYPE_NAME, registry.thing_type_name)
pulumi.export(outputs.ROOT_THING_GROUP, registry.root_group_name)
pulumi.export(outputs.SITE_THING_GROUPS, _inventory(registry.site_group_names))
pulumi.export(outputs.THING_NAMES, _inventory(registry.thing_names))
pulumi.export(outputs.COLLECTORS, _inventory(outputs.collectors_output(cfg)))
pulumi.export(outputs.COLLECTOR_POLICY_NAME, registry.policy_name)
pulumi.export(outputs.SPARKPLUG_HOST_POLICIES, registry.host_policy_names)
pulumi.export(outputs.PROVISIONING_TEMPLATE_NAME, provisioning.template_name)
pulumi.export(outputs.RULE_NAMES, {route: rule.name for route, rule in rules.items()})
pulumi.export(outputs.RULE_ARNS, {route: rule.arn for route, rule in rules.items()})
pulumi.export(outputs.ROLE_NAMES, roles)
pulumi.export(outputs.STREAM_NAME, routes.stream_name)
pulumi.export(outputs.KMS_KEY_ARN, routes.key_arn)
pulumi.export(outputs.RULE_ERROR_LOG_GROUP, routes.rule_context.error_log_group_name)
pulumi.export(outputs.ARCHIVE_BUCKET, routes.archive.bucket_name)
pulumi.export(outputs.FIREHOSE_NAME, routes.archive.firehose_name)
