"""The stack's own pre-provisioning hook: a small Lambda that lets fleet provisioning register only the
collectors the inventory declares, and never onto a thing that holds a live certificate unless the
operator asked for a replacement (the rules: `infra/provisioning_hook_code/handler.py`).

The program packages the handler with `collectors.json` (site -> collector -> thing name, from the
validated stack config, so the hook and the registry agree on every name), gives it a role that can
only read this stack's things and certificate statuses and write its own log group, and lets only
this stack's provisioning template invoke it (`aws:SourceArn` + `aws:SourceAccount`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pulumi_aws as aws

from collector.topics import stack_thing_prefix
from infra import iam
from infra.config import StackConfig
from infra.naming import Names
from infra.roles import service_role

CODE_DIR = Path(__file__).with_name("provisioning_hook_code")
HANDLER = "handler.handler"
RUNTIME = "python3.13"
# AWS IoT waits 5 seconds for the hook, then refuses the request: a slower answer is useless.
TIMEOUT_S = 5
LOG_RETENTION_DAYS = 90  # every claim decision, kept for an investigation


def inventory_document(cfg: StackConfig, names: Names) -> dict[str, dict[str, dict[str, str]]]:
    """`collectors.json`: every declared collector and its thing name."""
    return {"collectors": {site.name: {c.name: names.thing(site.name, c.name) for c in site.collectors}
                           for site in cfg.sites}}


def code_archive(cfg: StackConfig, names: Names) -> pulumi.AssetArchive:
    return pulumi.AssetArchive({
        "handler.py": pulumi.FileAsset(str(CODE_DIR / "handler.py")),
        "collectors.json": pulumi.StringAsset(json.dumps(inventory_document(cfg, names), sort_keys=True)),
    })


class ProvisioningHook(pulumi.ComponentResource):
    """Role + log group + function; `function_arn` is what the template's hook names."""

    function_arn: pulumi.Output[str]
    function_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 partition: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:iot:ProvisioningHook", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = cfg.region or ""
        function_name = names.resource("claim-hook")
        account = pulumi.Output.from_input(account_id)
        log_group = aws.cloudwatch.LogGroup("hook-logs", aws.cloudwatch.LogGroupArgs(
            name=f"/aws/lambda/{function_name}", retention_in_days=LOG_RETENTION_DAYS,
            tags={"pm500:stack": cfg.stack},
        ), opts=child)
        hook_role = service_role(
            "hook-role", "hook-policy", name=function_name, service="lambda.amazonaws.com",
            description="pm500 pre-provisioning hook: declared collectors only", stack=cfg.stack,
            account_id=account, opts=child,
            policy=pulumi.Output.all(partition, account, log_group.arn).apply(
                lambda a: json.dumps(iam.provisioning_hook(a[0], region, a[1], stack_thing_prefix(cfg.stack),
                                                           a[2]))),
        )
        function = aws.lambda_.Function("hook", aws.lambda_.FunctionArgs(
            name=function_name,
            description=f"pm500 {cfg.stack}: fleet provisioning only for declared collectors",
            role=hook_role.role.arn, runtime=RUNTIME, handler=HANDLER, code=code_archive(cfg, names),
            timeout=TIMEOUT_S, memory_size=128, architectures=["arm64"],
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[hook_role.policy, log_group]))
        self.function_arn = function.arn
        self.function_name = function.name
        self.register_outputs({"functionArn": self.function_arn})
