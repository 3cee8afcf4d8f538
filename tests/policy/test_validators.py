"""The policy pack's validators on the resources of both real stacks (mock runtime), and on broken
variants of them: each rule passes the real stacks and catches the fault it exists for."""

from __future__ import annotations

import copy
import json
import runpy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest

from policy import validators as v
from preflight.mock_runtime import PROJECT_DIR, EvaluatedStack, evaluate_stack


@dataclass(frozen=True)
class Res:
    """What pulumi-policy hands a stack validation (`PolicyResource`), for one mock-evaluated resource."""

    resource_type: str
    props: Mapping[str, Any]
    urn: str
    name: str
    property_dependencies: Mapping[str, Sequence[Any]] = field(default_factory=dict)


def _resources(stack: EvaluatedStack) -> list[Res]:
    # Mocked ids equal the provider-assigned physical names (e.g. the auto-named bucket).
    return [
        Res(r.type, {**copy.deepcopy(r.inputs), "id": r.id}, r.urn, r.name)
        for r in stack.resources
        if r.custom
    ]


@pytest.fixture(scope="module", params=["staging", "prod"])
def resources(request: pytest.FixtureRequest) -> list[Res]:
    return _resources(evaluate_stack(request.param))


def _mutate(
    resources: list[Res], type_: str, change: Callable[[dict[str, Any]], None], name: str | None = None
) -> list[Res]:
    out = []
    hit = False
    for r in resources:
        if r.resource_type == type_ and (name is None or r.name == name) and not hit:
            props = copy.deepcopy(dict(r.props))
            change(props)
            r = replace(r, props=props)
            hit = True
        out.append(r)
    assert hit, f"no {type_} {name or ''} to break"
    return out


def _json_edit(prop: str, edit: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def change(props: dict[str, Any]) -> None:
        doc = json.loads(props[prop])
        edit(doc)
        props[prop] = json.dumps(doc)

    return change


def test_real_stacks_pass_every_policy(resources: list[Res]) -> None:
    assert v.validate_all(resources) == {name: [] for name in v.POLICIES}


BROKEN: list[tuple[str, Callable[[list[Res]], list[Res]], str]] = [
    (
        "pm500-encryption-at-rest",
        lambda rs: _mutate(rs, v.STREAM, lambda p: p.pop("encryptionType")),
        "Kinesis stream",
    ),
    (
        "pm500-encryption-at-rest",
        lambda rs: _mutate(rs, v.FIREHOSE, lambda p: p["serverSideEncryption"].update(enabled=False)),
        "Firehose",
    ),
    (
        "pm500-encryption-at-rest",
        lambda rs: _mutate(rs, v.QUEUE, lambda p: p.pop("kmsMasterKeyId")),
        "SQS queue",
    ),
    (
        "pm500-encryption-at-rest",
        lambda rs: [r for r in rs if r.resource_type != v.BUCKET_SSE],
        "no server-side encryption",
    ),
    (
        "pm500-s3-public-access-blocked",
        lambda rs: _mutate(rs, v.BUCKET_PAB, lambda p: p.update(restrictPublicBuckets=False)),
        "public access",
    ),
    (
        "pm500-s3-public-access-blocked",
        lambda rs: [r for r in rs if r.resource_type != v.BUCKET_PAB],
        "public access",
    ),
    (
        "pm500-iam-no-wildcard-writes",
        lambda rs: _mutate(
            rs,
            "aws:iam/rolePolicy:RolePolicy",
            _json_edit("policy", lambda d: d["Statement"][0].update(Resource="*")),
            "rule-policy/ddata_kinesis",
        ),
        "kinesis:PutRecord on Resource '*'",
    ),
    (
        "pm500-iot-policy-thing-name",
        lambda rs: _mutate(
            rs,
            v.IOT_POLICY,
            _json_edit(
                "policy",
                lambda d: d["Statement"][1]["Resource"].append("arn:aws:iot:eu-west-1:1:topic/spBv1.0/#"),
            ),
        ),
        "not scoped",
    ),
    (
        "pm500-iot-policy-thing-name",
        lambda rs: _mutate(
            rs, v.IOT_POLICY, _json_edit("policy", lambda d: d["Statement"][0].pop("Condition"))
        ),
        "IsAttached",
    ),
    (
        "pm500-iot-policy-thing-name",
        lambda rs: _mutate(
            rs,
            v.IOT_POLICY,
            _json_edit(
                "policy", lambda d: d["Statement"][0].update(Resource=["arn:aws:iot:eu-west-1:1:client/*"])
            ),
        ),
        "connect only as",
    ),
    (
        "pm500-rules-error-actions",
        lambda rs: _mutate(rs, v.TOPIC_RULE, lambda p: p.pop("errorAction")),
        "errorAction",
    ),
    (
        "pm500-no-certificates",
        lambda rs: [*rs, Res(v.IOT_CERTIFICATE, {"active": True}, "urn:x::cert", "cert")],
        "not allowed",
    ),
]


@pytest.mark.parametrize(
    ("policy", "breaker", "message"), BROKEN, ids=[f"{b[0]}-{i}" for i, b in enumerate(BROKEN)]
)
def test_each_policy_catches_its_fault(
    resources: list[Res], policy: str, breaker: Callable[[list[Res]], list[Res]], message: str
) -> None:
    results = v.validate_all(breaker(resources))
    assert [m for m, _ in results[policy]] and all(message in m for m, _ in results[policy]), results[policy]
    assert all(not found for name, found in results.items() if name != policy)


def test_unknown_values_during_preview_are_skipped() -> None:
    unknown = [Res(v.IOT_POLICY, {}, "urn:p", "p"), Res("aws:iam/rolePolicy:RolePolicy", {}, "urn:r", "r")]
    assert v.iot_policy_uses_thing_name(unknown) == [] and v.no_wildcard_writes(unknown) == []


def test_bucket_link_by_property_dependency() -> None:
    """In a preview the bucket name may be unknown: the link comes from property dependencies."""
    bucket = Res(v.BUCKET, {}, "urn:bucket", "archive")
    pab = Res(
        v.BUCKET_PAB, {flag: True for flag in v.PUBLIC_ACCESS_FLAGS}, "urn:pab", "pab", {"bucket": [bucket]}
    )
    assert v.public_access_blocked([bucket, pab]) == []
    assert v.public_access_blocked([bucket]) != []


def test_pack_registers_every_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    packs: list[dict[str, Any]] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: packs.append(kw))
    runpy.run_path(str(PROJECT_DIR / "policy" / "__main__.py"), run_name="__main__")
    (pack,) = packs
    assert pack["name"] == "pm500"
    assert pack["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    assert [p.name for p in pack["policies"]] == list(v.POLICIES)
    violations: list[tuple[str, str | None]] = []
    cert = Res(v.IOT_CERTIFICATE, {}, "urn:cert", "cert")
    by_name = {p.name: p for p in pack["policies"]}
    by_name["pm500-no-certificates"].validate(
        pulumi_policy.StackValidationArgs(resources=[cert]),  # type: ignore[list-item]
        lambda message, urn=None: violations.append((message, urn)),
    )
    assert violations == [
        ("cert: aws:iot/certificate resources are not allowed (certificates come from the CLI)", "urn:cert")
    ]


def test_policy_pack_file_points_at_the_project_venv() -> None:
    text = (PROJECT_DIR / "policy" / "PulumiPolicy.yaml").read_text()
    assert "runtime:" in text and "python" in text
    assert (
        Path(PROJECT_DIR / "policy" / text.split("virtualenv:")[1].strip()).resolve() == PROJECT_DIR / ".venv"
    )
