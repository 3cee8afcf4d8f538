"""Fleet provisioning by claim: the template (and the role IoT assumes to run it) that turns a claim
certificate's `RegisterThing` call into a registered collector of this stack.

The device passes `Site` and `Collector`; the template names the thing `<stack>:<Site>:<Collector>`
(the same `collector.topics.thing_name` rule the CLI uses), puts it in the stack's root and site
group (a child of the root group), activates its certificate and attaches the collector policy.

The device's word decides the thing name, so whoever holds a claim certificate could name any
collector. The template is therefore enabled only with `provisioning.fleet`, and then always behind a
pre-provisioning hook: the stack's own (`infra.provisioning_hook`: declared collectors only, never a
thing with a live certificate unless the operator allowed a replacement) or the user's, by ARN.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from collector.topics import THING_SEPARATOR, stack_thing_prefix
from infra import iam
from infra.config import StackConfig
from infra.naming import Names
from infra.provisioning_hook import ProvisioningHook
from infra.roles import service_role

TEMPLATE_PARAMETERS = ("Site", "Collector")


def template_body(cfg: StackConfig, names: Names) -> dict[str, Any]:
    """The fleet provisioning template (AWS IoT template language)."""
    thing_name = {"Fn::Join": [THING_SEPARATOR, [cfg.stack, {"Ref": "Site"}, {"Ref": "Collector"}]]}
    return {
        "Parameters": {
            **{p: {"Type": "String"} for p in TEMPLATE_PARAMETERS},
            "AWS::IoT::Certificate::Id": {"Type": "String"},
        },
        "Resources": {
            "thing": {
                "Type": "AWS::IoT::Thing",
                "OverrideSettings": {"AttributePayload": "MERGE", "ThingTypeName": "REPLACE",
                                     "ThingGroups": "DO_NOTHING"},
                "Properties": {
                    "ThingName": thing_name,
                    "ThingTypeName": names.thing_type,
                    "AttributePayload": {"site": {"Ref": "Site"}, "env": cfg.environment},
                    # The site group only: it is a child of the root group, and AWS IoT refuses a thing
                    # in two groups of one hierarchy (https://docs.aws.amazon.com/iot/latest/developerguide/thing-groups.html).
                    "ThingGroups": [{"Fn::Join": [THING_SEPARATOR, [names.root_group, {"Ref": "Site"}]]}],
                },
            },
            "certificate": {
                "Type": "AWS::IoT::Certificate",
                "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"},
            },
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": names.collector_policy}},
        },
    }


class Provisioning(pulumi.ComponentResource):
    """Provisioning template + its IAM role (+ the pre-provisioning hook and its invoke permission)."""

    template_name: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 partition: pulumi.Input[str], prerequisites: Sequence[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`prerequisites`: what the template names and must exist first (thing type, groups, policy)."""
        super().__init__("pm500:iot:Provisioning", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = cfg.region or ""
        account = pulumi.Output.from_input(account_id)
        iot = pulumi.Output.all(partition, account).apply(lambda a: iam.iot_arn(a[0], region, a[1]))

        provisioning_role = service_role(
            "provisioning-role", "provisioning-policy", name=names.resource("provisioning"),
            service="iot.amazonaws.com", description="AWS IoT fleet provisioning for pm500 collectors",
            stack=cfg.stack, account_id=account, opts=child,
            # The form AWS IoT documents for its roles ("Cross-service confused deputy prevention").
            source_arn=iot.apply(lambda arn: f"{arn}:*"),
            policy=pulumi.Output.all(partition, account).apply(lambda a: json.dumps(iam.provisioning(
                a[0], region, a[1], stack_thing_prefix(cfg.stack), names.site_group_prefix,
                names.collector_policy, names.thing_type))),
        )
        role, role_policy = provisioning_role.role, provisioning_role.policy

        hook = None
        depends: list[pulumi.Resource] = [role_policy, *prerequisites]
        if cfg.provisioning.fleet:
            hook_arn: pulumi.Input[str] = cfg.provisioning.pre_provisioning_hook_lambda_arn or \
                ProvisioningHook("hook", cfg, names, account, partition, opts=child).function_arn
            # Only this stack's template, in this account, may invoke the hook (confused deputy).
            permission = aws.lambda_.Permission("hook-permission", aws.lambda_.PermissionArgs(
                function=hook_arn,
                action="lambda:InvokeFunction",
                principal="iot.amazonaws.com",
                source_arn=iot.apply(lambda arn: f"{arn}:provisioningtemplate/{names.provisioning_template}"),
                source_account=account,
            ), opts=child)
            depends.append(permission)
            hook = aws.iot.ProvisioningTemplatePreProvisioningHookArgs(
                target_arn=hook_arn, payload_version="2020-04-01")

        template = aws.iot.ProvisioningTemplate("template", aws.iot.ProvisioningTemplateArgs(
            name=names.provisioning_template,
            description=f"pm500 collectors of stack {cfg.stack}, provisioned by claim",
            enabled=cfg.provisioning.fleet,
            type="FLEET_PROVISIONING",
            provisioning_role_arn=role.arn,
            template_body=json.dumps(template_body(cfg, names)),
            pre_provisioning_hook=hook,
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=depends))

        self.template_name = template.name
        self.role_name = role.name
        self.register_outputs({"templateName": self.template_name, "roleName": self.role_name})
