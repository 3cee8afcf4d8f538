"""Each stack's data key: the KMS key its Kinesis stream, Firehose, S3 archive, alarm queue and latest-value
table are encrypted with, made here by the administrator with the alias `alias/pm500-<stack>-data`, which
the stack looks it up by (infra/data_routes.py).

Why here and not in the stack: creating a KMS key with tags needs `kms:TagResource` on every key of the
account and Region, authorized before the key exists (KMS Developer Guide, "Managing KMS key tags with API
operations"). A deployer allowed that could put its stack's tag on any key that carries none (the Pulumi
secrets provider's, say) and then administer it through its tag-gated statements. So no stack's deployer
may create, tag or administer a key (preflight/deployer_policy.py); it uses the one its stack's tag marks,
made by whoever makes its permissions boundary.

The key: rotation on, a 30-day deletion window, the `pm500:stack` tag (what the deployer policy's key
statements require, and the deployer cannot change), KMS's default key policy (the account, so that IAM
policies grant the key's use: KMS Developer Guide, "Default key policy"), written out so that it is
reviewed and any drift is put back; key and alias protected. `pm500-bootstrap:adoptDataKeys.<stack>`: the
id or ARN of the key a stack made itself before this change: it and its alias are imported instead of
created (docs/infra.md, "Stacks deployed before the bootstrap made their key").
"""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pulumi_aws as aws

from bootstrap.ci_roles import NAMESPACE, BootstrapConfigError
from infra.naming import STACK_TAG, Names

ADOPT_KEY = "adoptDataKeys"
# The description the stack gave its key before the bootstrap made it: an adopted key keeps it unchanged.
DESCRIPTION = "pm500 {stack}: Kinesis stream, Firehose and S3 archive encryption"
DELETION_WINDOW_DAYS = 30
_KEY_ID = r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
_KEY_ID_OR_ARN = re.compile(rf"(?:arn:[a-z-]+:kms:[a-z0-9-]+:\d{{12}}:key/)?({_KEY_ID})")


def default_key_policy(partition: str, account: str) -> dict[str, Any]:
    """The key policy KMS gives a key created without one (KMS Developer Guide, "Default key policy"):
    the account may use and manage the key as its IAM policies allow, nobody else."""
    return {
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }],
    }


def adopted_keys(config: pulumi.Config, stacks: tuple[str, ...]) -> dict[str, str]:
    """`pm500-bootstrap:adoptDataKeys`: stack -> the id of the key to import (given as its id or ARN)."""
    value: Any = config.get_object(ADOPT_KEY) or {}
    if not isinstance(value, dict):
        raise BootstrapConfigError(
            f"{NAMESPACE}:{ADOPT_KEY}: expected a map of stack -> key id (or key ARN)")
    adopted = {}
    for stack, given in value.items():
        if stack not in stacks:
            raise BootstrapConfigError(f"{NAMESPACE}:{ADOPT_KEY}: {stack!r} is not a stack of "
                                       f"{NAMESPACE}:stacks (expected one of {', '.join(sorted(stacks))})")
        match = _KEY_ID_OR_ARN.fullmatch(given) if isinstance(given, str) else None
        if not match:
            raise BootstrapConfigError(
                f"{NAMESPACE}:{ADOPT_KEY}.{stack}: expected the key's id (1234abcd-12ab-34cd-56ef-"
                f"1234567890ab) or ARN (the stack's dataKeyArn output), got {given!r}")
        adopted[stack] = match.group(1)
    return adopted


class DataKey(pulumi.ComponentResource):
    """One stack's KMS key and its alias, protected; imported when `adopt` names an existing key."""

    key_arn: pulumi.Output[str]

    def __init__(self, stack: str, adopt: str | None = None,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:bootstrap:DataKey", stack, None, opts)
        lookup = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=lookup).account_id
        partition = aws.get_partition_output(opts=lookup).partition
        alias = Names(stack).data_key_alias
        key = aws.kms.Key(f"{stack}-data-key", aws.kms.KeyArgs(
            description=DESCRIPTION.format(stack=stack),
            enable_key_rotation=True,
            deletion_window_in_days=DELETION_WINDOW_DAYS,
            policy=pulumi.Output.all(partition, account).apply(
                lambda a: json.dumps(default_key_policy(a[0], a[1]))),
            tags={STACK_TAG: stack},
        ), opts=pulumi.ResourceOptions(parent=self, protect=True, import_=adopt))
        aws.kms.Alias(f"{stack}-data-key-alias", aws.kms.AliasArgs(name=alias, target_key_id=key.key_id),
                      opts=pulumi.ResourceOptions(parent=self, protect=True,
                                                  import_=alias if adopt else None))
        self.key_arn = key.arn
        self.register_outputs({"keyArn": self.key_arn})
