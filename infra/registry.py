"""The IoT registry of one stack: thing type, thing groups (root + one per site), one thing per
collector with its group membership, and the collectors' least-privilege IoT policy.

Things are keyed by `<site>/<collector>` (their logical names), never by position, so reordering sites
or collectors in the config or inventory replaces nothing. No certificates here: the CLI mints them
on the operator's machine so that no private key ever enters Pulumi state.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.config import StackConfig
from infra.naming import Names

# Thing attributes that fleet searches filter on (a thing type allows at most three).
SEARCHABLE_ATTRIBUTES = ["site", "env"]


class Registry(pulumi.ComponentResource):
    """Thing type, groups, things and the collector IoT policy of one stack."""

    thing_type_name: pulumi.Output[str]
    root_group_name: pulumi.Output[str]
    site_group_names: dict[str, pulumi.Output[str]]
    thing_names: dict[str, dict[str, str]]
    policy_name: pulumi.Output[str]
    policy_arn: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:iot:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        protect = pulumi.ResourceOptions(parent=self, protect=cfg.deletion_protection)

        thing_type = aws.iot.ThingType("thing-type", aws.iot.ThingTypeArgs(
            name=names.thing_type,
            properties=aws.iot.ThingTypePropertiesArgs(
                description=f"pm500 collector ({cfg.stack})",
                searchable_attributes=SEARCHABLE_ATTRIBUTES,
            ),
            tags={"pm500:stack": cfg.stack},
        ), opts=child)
        root = aws.iot.ThingGroup("root-group", aws.iot.ThingGroupArgs(
            name=names.root_group,
            properties=aws.iot.ThingGroupPropertiesArgs(
                description=f"every pm500 collector of stack {cfg.stack}",
                attribute_payload=aws.iot.ThingGroupPropertiesAttributePayloadArgs(
                    attributes={"env": cfg.environment}),
            ),
            tags={"pm500:stack": cfg.stack},
        ), opts=protect)

        self.site_group_names = {}
        self.thing_names = {}
        for site in cfg.sites:
            group = aws.iot.ThingGroup(f"group/{site.name}", aws.iot.ThingGroupArgs(
                name=names.site_group(site.name),
                parent_group_name=root.name,
                properties=aws.iot.ThingGroupPropertiesArgs(
                    description=f"pm500 collectors of site {site.name}",
                    attribute_payload=aws.iot.ThingGroupPropertiesAttributePayloadArgs(
                        attributes={"site": site.name, "env": cfg.environment}),
                ),
                tags={"pm500:stack": cfg.stack, "pm500:site": site.name},
            ), opts=protect)
            self.site_group_names[site.name] = group.name
            self.thing_names[site.name] = {}
            # Names are deterministic, so inputs are plain strings and ordering comes from depends_on:
            # at 10,000 collectors, Output-valued inputs cost the mock runtime (and preview) measurably more.
            thing_opts = pulumi.ResourceOptions(parent=self, protect=cfg.deletion_protection,
                                                depends_on=[thing_type])
            member_opts = pulumi.ResourceOptions(parent=self, depends_on=[group])
            attributes = {"site": site.name, "env": cfg.environment}
            for collector in site.collectors:
                key = f"{site.name}/{collector.name}"
                name = names.thing(site.name, collector.name)
                thing = aws.iot.Thing(f"thing/{key}", aws.iot.ThingArgs(
                    name=name, thing_type_name=names.thing_type, attributes=attributes,
                ), opts=thing_opts)
                aws.iot.ThingGroupMembership(f"member/{key}", aws.iot.ThingGroupMembershipArgs(
                    thing_group_name=names.site_group(site.name), thing_name=name,
                ), opts=pulumi.ResourceOptions.merge(member_opts, pulumi.ResourceOptions(depends_on=[thing])))
                self.thing_names[site.name][collector.name] = name

        region = cfg.region or ""
        policy = aws.iot.Policy("collector-policy", aws.iot.PolicyArgs(
            name=names.collector_policy,
            policy=pulumi.Output.from_input(account_id).apply(
                lambda account: json.dumps(iam.collector_iot_policy(region, account))),
            tags={"pm500:stack": cfg.stack},
        ), opts=child)

        self.thing_type_name = thing_type.name
        self.root_group_name = root.name
        self.policy_name = policy.name
        self.policy_arn = policy.arn
        self.register_outputs({
            "thingTypeName": self.thing_type_name,
            "rootThingGroupName": self.root_group_name,
            "siteThingGroupNames": self.site_group_names,
            "collectorPolicyName": self.policy_name,
        })
