"""Stack output names and shapes: exported by the program, read by `cli.py` by name.

Kept free of Pulumi imports so the CLI can parse `pulumi stack output --json` without the Pulumi SDK
doing anything. `collector_output` is the per-collector entry of the `collectors` output: everything
`provision-device` needs to write a collector's bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from collector.config import DEFAULT_ENCODING, Encoding, MeterConfig
from collector.topics import COLLECTOR_TOPICS, thing_name

if TYPE_CHECKING:
    from infra.config import StackConfig

# Output names (the CLI reads these keys from `pulumi stack output --json`).
STACK = "stack"
ENVIRONMENT = "environment"
IOT_ENDPOINT = "iotEndpoint"
COLLECTOR_POLICY_NAME = "collectorPolicyName"
# {host id: IoT policy name} of the Sparkplug Host Applications the stack's collectors wait for
# (`cli.py hosts provision` attaches it to the host's certificate); {} when none.
SPARKPLUG_HOST_POLICIES = "sparkplugHostPolicyNames"
THING_TYPE_NAME = "thingTypeName"
ROOT_THING_GROUP = "rootThingGroupName"
SITE_THING_GROUPS = "siteThingGroupNames"  # {site: group name}
THING_NAMES = "thingNames"  # {site: {collector: thing name}}
COLLECTORS = "collectors"  # {thing name: CollectorOutput}
PROVISIONING_TEMPLATE_NAME = "provisioningTemplateName"
RULE_NAMES = "ruleNames"  # {route: rule name}
RULE_ARNS = "ruleArns"  # {route: rule arn}
ROLE_NAMES = "roleNames"  # {purpose: role name}
STREAM_NAME = "kinesisStreamName"
ARCHIVE_BUCKET = "archiveBucketName"
FIREHOSE_NAME = "firehoseName"
AWS_REGION = "awsRegion"
KMS_KEY_ARN = "dataKeyArn"
RULE_ERROR_LOG_GROUP = "ruleErrorLogGroupName"
EVENT_BUS_NAME = "eventBusName"  # only with features.eventBridgePipe or features.alarmEvents
ALARM_EVENT_QUEUE = "alarmEventQueueName"  # only with features.alarmEvents
LATEST_VALUE_TABLE = "latestValueTableName"  # only with features.latestValueTable
FLEET_TABLE = "fleetTableName"  # only with features.fleet (default on): what `cli.py fleet status` reads
EDGE = "edge"  # only with features.edge: image and per-site edge URLs (infra.edge.EdgeStack.summary)


class CollectorOutput(BaseModel):
    """One collector as the stack exports it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    site: str
    collector: str
    thing_name: str = Field(alias="thingName")
    poll_interval_s: float = Field(alias="pollIntervalS")
    meters: list[MeterConfig]
    topics: dict[str, str]
    encoding: Encoding = DEFAULT_ENCODING  # the bundle's mqtt.encoding (absent in older stacks: json)
    # the bundle's mqtt.primary_host_id (Sparkplug B); absent when the collector waits for no host
    primary_host_id: str | None = Field(None, alias="primaryHostId")


def topics_for(thing: str) -> dict[str, str]:
    """The collector's topics, `{asset}` left as a placeholder, for operators reading the outputs."""
    return {t.message_type: t.render(thing, "{asset}") for t in COLLECTOR_TOPICS}


def collector_output(stack: str, site: str, collector: str, meters: list[MeterConfig],
                     poll_interval_s: float, encoding: Encoding = DEFAULT_ENCODING,
                     primary_host_id: str | None = None) -> dict[str, Any]:
    thing = thing_name(stack, site, collector)
    return CollectorOutput(
        site=site, collector=collector, thing_name=thing, poll_interval_s=poll_interval_s,
        meters=meters, topics=topics_for(thing), encoding=encoding, primary_host_id=primary_host_id,
    ).model_dump(mode="json", by_alias=True, exclude_none=True)


def collectors_output(cfg: StackConfig) -> dict[str, dict[str, Any]]:
    """The `collectors` output: every collector of the stack keyed by its thing name."""
    out: dict[str, dict[str, Any]] = {}
    for site in cfg.sites:
        for c in site.collectors:
            entry = collector_output(
                cfg.stack, site.name, c.name, c.meters, c.poll_interval_s, cfg.collector_encoding(c),
                cfg.collector_primary_host(c),
            )
            out[entry["thingName"]] = entry
    return out
