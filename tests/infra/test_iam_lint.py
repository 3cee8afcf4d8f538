"""Every IAM document the program deploys, linted with parliament (the documents as the mock runtime
resolved them, i.e. exactly what `pulumi up` would send)."""

from __future__ import annotations

from typing import Any

import pytest
from parliament import analyze_policy_string

from infra.mock_runtime import EvaluatedStack, RegisteredResource

IAM_DOCUMENTS = {  # resource type -> properties holding a policy document
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy",),
    "aws:iam/role:Role": ("assumeRolePolicy",),
}


def _findings(document: str) -> list[Any]:
    return list(analyze_policy_string(document, ignore_private_auditors=True).findings)


def _documents(stack: EvaluatedStack) -> list[tuple[RegisteredResource, str, str]]:
    return [
        (r, prop, r.inputs[prop])
        for r in stack.resources
        for prop in IAM_DOCUMENTS.get(r.type, ())
        if prop in r.inputs
    ]


def _parliament_gap(finding: Any) -> str | None:
    """Why a finding is a known parliament limitation rather than a policy problem (None: a real one)."""
    if finding.issue == "MALFORMED" and "neither Resource nor NotResource" in str(finding.detail):
        return (
            "role trust policies have no Resource by definition; parliament lints them as identity policies"
        )
    if finding.issue == "RESOURCE_MISMATCH":
        gaps = []
        for item in finding.detail:
            if item["action"] == "iot:AttachThingPrincipal":
                gaps.append("parliament 1.6.4's IAM data predates resource-level AttachThingPrincipal")
            elif item["action"].startswith("iot:") and "thing/" in item["required_format"]:
                gaps.append(
                    "thing names contain ':' (<stack>:<site>:<collector>, allowed by AWS IoT); "
                    "parliament rejects any ':' after the resource type"
                )
        return "; ".join(gaps) if len(gaps) == len(finding.detail) else None
    return None


def test_role_and_bucket_policies_have_no_findings(stack: EvaluatedStack) -> None:
    documents = _documents(stack)
    assert len(documents) >= 9
    for resource, prop, doc in documents:
        if resource.name == "provisioning-policy" or prop == "assumeRolePolicy":
            continue  # below, with their parliament gaps spelled out
        assert _findings(doc) == [], f"{resource.name}.{prop}"


def test_remaining_findings_are_only_known_parliament_gaps(stack: EvaluatedStack) -> None:
    for resource, prop, doc in _documents(stack):
        for finding in _findings(doc):
            assert _parliament_gap(finding), f"{resource.name}.{prop}: {finding.issue} {finding.detail}"


def test_the_linter_does_flag_a_bad_document() -> None:
    bad = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kinesis:PutRecord"],'
        '"Resource":["arn:aws:s3:::some-bucket"]}]}'
    )
    findings = _findings(bad)
    assert [f.issue for f in findings] == ["RESOURCE_MISMATCH"]
    assert _parliament_gap(findings[0]) is None


@pytest.mark.parametrize("action", ["iot:CreateThing", "iot:AttachThingPrincipal"])
def test_gap_filter_is_narrow(action: str) -> None:
    """A thing-scoped action on an unrelated resource is still reported."""
    doc = (
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["' + action + '", '
        '"s3:PutObject"],"Resource":["arn:aws:kinesis:eu-west-1:123456789012:stream/x"]}]}'
    )
    assert any(_parliament_gap(f) is None for f in _findings(doc))
