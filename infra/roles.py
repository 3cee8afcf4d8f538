"""A service role with its inline least-privilege policy: the pair every pm500 component needs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.naming import Names


@dataclass(frozen=True)
class ServiceRole:
    role: aws.iam.Role
    policy: aws.iam.RolePolicy  # resources using the role depend on it: the role is useless before


def service_role(
    role_resource: str,
    policy_resource: str,
    *,
    name: str,
    service: str,
    description: str,
    stack: str,
    account_id: pulumi.Input[str],
    policy: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    source_arn: pulumi.Input[str] | None = None,
) -> ServiceRole:
    r"""Role `name` assumable only by `service` from this account (and for `source_arn`, where the
    service documents `aws:SourceArn`: `iam.assume_role`), with `policy` (JSON) inline, capped by the
    stack's permissions boundary (`pm500-<stack>-boundary`, made by the bootstrap): whatever inline
    policy a compromised deployer writes, the role can do no more than the boundary allows.

    The inline policy is named explicitly (after its role): autonamed, it would take the logical name
    (`rule-policy/<route>-<hex>`), and IAM policy names refuse `/` (pattern `[\w+=,.@-]+`).
    """
    account = pulumi.Output.from_input(account_id)
    partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=opts.parent)).partition
    role = aws.iam.Role(role_resource, aws.iam.RoleArgs(
        name=name,
        description=description,
        permissions_boundary=pulumi.Output.all(partition, account).apply(
            lambda a: iam.boundary_arn(a[0], a[1], Names(stack).permissions_boundary)),
        assume_role_policy=pulumi.Output.all(account, source_arn).apply(
            lambda a: json.dumps(iam.assume_role(service, a[0], a[1]))),
        tags={"pm500:stack": stack},
    ), opts=opts)
    inline = aws.iam.RolePolicy(
        policy_resource, aws.iam.RolePolicyArgs(name=name, role=role.name, policy=policy), opts=opts)
    return ServiceRole(role, inline)
