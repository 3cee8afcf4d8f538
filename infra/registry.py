"""The IoT registry of one stack: thing type, thing groups (root + one child per site), one thing per
collector with its group membership, and the collectors' least-privilege IoT policy.

Things are keyed by `<site>/<collector>` (their logical names), never by position, so reordering sites
or collectors in the config or inventory replaces nothing. No certificates here: the CLI mints them
on the operator's machine so that no private key ever enters Pulumi state.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

import pulumi
import pulumi_aws as aws

from collector.topics import PRIMARY_HOST_ATTRIBUTE
from infra import iam
from infra.config import CollectorSpec, StackConfig
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
    provisioning_prerequisites: list[pulumi.Resource]

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 partition: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
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
        site_groups: list[pulumi.Resource] = []
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
            site_groups.append(group)
            self.site_group_names[site.name] = group.name
            self.thing_names[site.name] = self._declare_things(cfg, names, site.name, site.collectors,
                                                               thing_type, group)

        region = cfg.region or ""

        Render = Callable[[str, str], iam.Document]  # (partition, account id) -> policy document

        def iot_policy(logical: str, name: str, document: Render) -> aws.iot.Policy:
            """An IoT policy of the stack."""
            rendered = pulumi.Output.all(partition, account_id).apply(lambda a: json.dumps(document(*a)))
            return aws.iot.Policy(logical, aws.iot.PolicyArgs(
                name=name,
                policy=rendered,
                tags={"pm500:stack": cfg.stack},
            ), opts=child)

        policy = iot_policy("collector-policy", names.collector_policy,
                            lambda p, a: iam.collector_iot_policy(p, region, a))
        self.host_policy_names: dict[str, pulumi.Output[str]] = {}
        if cfg.primary_hosts:
            # Each collector reads its own host's STATE (its thing's primaryHostId attribute). On the
            # root group, which every collector belongs to through its site group: no certificate flow
            # (CLI or fleet provisioning) has to attach a second policy.
            state_policy = iot_policy("collector-host-state-policy", names.collector_state_policy,
                                      lambda p, a: iam.collector_state_policy(p, region, a))
            aws.iot.PolicyAttachment("collector-host-state-on-root-group", aws.iot.PolicyAttachmentArgs(
                policy=state_policy.name, target=root.arn,
            ), opts=child)
            # The IoT policy a Sparkplug Host Application's certificate gets (`cli.py hosts provision`).
            for host in sorted(cfg.primary_hosts):
                document = functools.partial(_host_document, region=region, stack=cfg.stack, host=host)
                self.host_policy_names[host] = iot_policy(
                    f"host-policy/{host}", names.host_policy(host), document).name

        self.thing_type_name = thing_type.name
        self.root_group_name = root.name
        self.policy_name = policy.name
        self.policy_arn = policy.arn
        # What a claim-provisioned device needs to exist: never the things themselves (depending on the
        # component would make the template wait for, and the engine track, every one of 10,000 things).
        self.provisioning_prerequisites = [thing_type, root, *site_groups, policy]
        self.register_outputs({
            "thingTypeName": self.thing_type_name,
            "rootThingGroupName": self.root_group_name,
            "siteThingGroupNames": self.site_group_names,
            "collectorPolicyName": self.policy_name,
            "sparkplugHostPolicyNames": self.host_policy_names,
        })

    def _declare_things(self, cfg: StackConfig, names: Names, site: str, collectors: Sequence[CollectorSpec],
                        thing_type: pulumi.Resource, group: pulumi.Resource) -> dict[str, str]:
        """One thing and one group membership per collector of `site`; returns `{collector: thing}`.

        This loop runs once per collector (10,000 per stack), so it stays lean: names are deterministic,
        so inputs are plain strings and ordering comes from `depends_on` (Output-valued inputs cost the
        runtime more), and the options shared by a site's things are built once.
        """
        thing_opts = pulumi.ResourceOptions(parent=self, protect=cfg.deletion_protection,
                                            depends_on=[thing_type])
        attributes = {"site": site, "env": cfg.environment}
        group_name = names.site_group(site)
        thing_names: dict[str, str] = {}
        for collector in collectors:
            key = f"{site}/{collector.name}"
            name = names.thing(site, collector.name)
            host = cfg.collector_primary_host(collector)  # the STATE it may read (collector_state_policy)
            thing = aws.iot.Thing(f"thing/{key}", aws.iot.ThingArgs(
                name=name, thing_type_name=names.thing_type,
                attributes={**attributes, PRIMARY_HOST_ATTRIBUTE: host} if host else attributes,
            ), opts=thing_opts)
            aws.iot.ThingGroupMembership(f"member/{key}", aws.iot.ThingGroupMembershipArgs(
                thing_group_name=group_name, thing_name=name,
            ), opts=pulumi.ResourceOptions(parent=self, depends_on=[group, thing]))
            thing_names[collector.name] = name
        return thing_names


def _host_document(partition: str, account_id: str, *, region: str, stack: str, host: str) -> iam.Document:
    return iam.host_iot_policy(partition, region, account_id, stack, host)
