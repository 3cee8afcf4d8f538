"""The deployer's least-privilege policy (`cli.py stacks deployer-policy`), from the declared resources.

Expectations are written out (ARNs, actions, principals) or come from sources independent of the
generator: the mock runtime's ARN formats for each declared resource, and the access levels of AWS's
Service Authorization Reference.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from typer.testing import CliRunner

import cli
from infra.sparkplug import DESCRIPTOR_KEY
from preflight.deployer_policy import (
    MANAGED_POLICY_MAX_CHARS,
    DeployerPolicy,
    DeployerPolicyError,
    deployer_policy,
    iam_action,
    policy_chars,
)
from preflight.guide_rules import request_arn
from preflight.iam_evaluator import allows
from preflight.iam_reference import action, check_document
from preflight.mock_runtime import (
    ARN_FORMATS,
    IAM_RESOURCE_TYPES,
    EvaluatedStack,
    Invoke,
    RegisteredResource,
    evaluate_stack,
    mock_state,
)
from preflight.provider_requests import stack_requests

ACCOUNT = "123456789012"
# Every IAM write on a stack role carries the stack's permissions boundary (issue 24); the key is tagged.
BOUNDARY = {"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/pm500-staging-boundary"}
STAGING_ARN = "arn:aws:{service}:eu-west-1:123456789012:{resource}"
KEY_ID = "0b7e4f1c-1111-2222-3333-444455556666"
STAGING_KEY = {"aws:ResourceTag/pm500:stack": "staging"}
FOR_A_SERVICE = {"kms:GrantIsForAWSResource": "true"}  # a grant Firehose or DynamoDB makes for the caller
MUTATING = (
    "iot:CreateThing",
    "iot:DeleteThing",
    "iam:PassRole",
    "iam:PutRolePolicy",
    "s3:PutBucketPolicy",
    "kms:CreateKey",
    "kinesis:DeleteStream",
    "iot:CreateTopicRule",
)


def _allowed(policy: DeployerPolicy, name: str, resource: str, context: dict[str, str] | None = None) -> bool:
    return any(allows(d, name, resource, context) for d in policy.documents)


@pytest.fixture(scope="module")
def staging_deploy(staging: EvaluatedStack) -> DeployerPolicy:
    return deployer_policy(staging, "deploy", ACCOUNT)


@pytest.fixture(scope="module")
def staging_preview(staging: EvaluatedStack) -> DeployerPolicy:
    return deployer_policy(staging, "preview", ACCOUNT)


def _arn(service: str, resource: str) -> str:
    return STAGING_ARN.format(service=service, resource=resource)


@pytest.mark.parametrize(
    ("name", "resource", "context"),
    [
        ("iot:CreateThing", _arn("iot", "thing/staging:plant-b:edge-02"), {}),
        ("iot:AddThingToThingGroup", _arn("iot", "thing/staging:plant-a:edge-01"), {}),
        ("iot:AddThingToThingGroup", _arn("iot", "thinggroup/pm500-staging:plant-a"), {}),
        ("iot:CreateThingGroup", _arn("iot", "thinggroup/pm500-staging"), {}),
        ("iot:CreatePolicy", _arn("iot", "policy/pm500-staging-collector"), {}),
        ("iot:CreateProvisioningTemplate", _arn("iot", "provisioningtemplate/pm500-staging-claim"), {}),
        ("iot:CreateTopicRule", _arn("iot", "rule/pm500_staging_ddata_kinesis"), {}),
        ("iam:CreateRole", "arn:aws:iam::123456789012:role/pm500-staging-firehose", BOUNDARY),
        ("iam:PutRolePolicy", "arn:aws:iam::123456789012:role/pm500-staging-rule-ddata_archive", BOUNDARY),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/pm500-staging-firehose",
            {"iam:PassedToService": "firehose.amazonaws.com"},
        ),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/pm500-staging-provisioning",
            {"iam:PassedToService": "iot.amazonaws.com"},
        ),
        # the bootstrap's key of the stack (tagged pm500:stack=staging there): looked up, and granted to
        # Firehose by the service itself
        ("kms:DescribeKey", _arn("kms", f"key/{KEY_ID}"), STAGING_KEY),
        ("kms:CreateGrant", _arn("kms", f"key/{KEY_ID}"), {**STAGING_KEY, **FOR_A_SERVICE}),
        ("kinesis:StartStreamEncryption", _arn("kinesis", "stream/pm500-staging-ddata"), {}),
        ("firehose:CreateDeliveryStream", _arn("firehose", "deliverystream/pm500-staging-archive"), {}),
        ("s3:CreateBucket", "arn:aws:s3:::pm500-staging-archive-0a1b2c3", {}),
        ("s3:PutEncryptionConfiguration", "arn:aws:s3:::pm500-staging-archive-0a1b2c3", {}),
        ("s3:PutBucketPublicAccessBlock", "arn:aws:s3:::pm500-staging-archive-0a1b2c3", {}),
        (
            "logs:CreateLogStream",
            _arn("logs", "log-group:/aws/kinesisfirehose/pm500-staging-archive:log-stream:S3Delivery"),
            {},
        ),
        ("iot:DescribeEndpoint", "*", {"aws:RequestedRegion": "eu-west-1"}),
        # alarm events (issue 13): the queue, the rule sending to it, the pipe reading it
        ("sqs:CreateQueue", _arn("sqs", "pm500-staging-alarm-events"), {}),
        ("sqs:TagQueue", _arn("sqs", "pm500-staging-alarm-events"), {}),
        ("sqs:GetQueueAttributes", _arn("sqs", "pm500-staging-alarm-events"), {}),
        ("sqs:DeleteQueue", _arn("sqs", "pm500-staging-alarm-events"), {}),
        ("iot:CreateTopicRule", _arn("iot", "rule/pm500_staging_alarm_events"), {}),
        ("pipes:CreatePipe", _arn("pipes", "pipe/pm500-staging-alarm-events"), {}),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/pm500-staging-alarm-pipe",
            {"iam:PassedToService": "pipes.amazonaws.com"},
        ),
    ],
)
def test_deploy_policy_allows_what_staging_needs(
    staging_deploy: DeployerPolicy, name: str, resource: str, context: dict[str, str]
) -> None:
    assert _allowed(staging_deploy, name, resource, context)


@pytest.mark.parametrize(
    ("name", "resource", "context"),
    [
        ("iot:CreateThing", "arn:aws:iot:eu-west-1:123456789012:thing/prod:plant-a:edge-01", {}),
        ("iot:CreateThingGroup", "arn:aws:iot:eu-west-1:123456789012:thinggroup/pm500-prod:plant-a", {}),
        ("iot:CreateThing", "arn:aws:iot:us-east-1:123456789012:thing/staging:plant-a:edge-01", {}),
        ("iam:PutRolePolicy", "arn:aws:iam::123456789012:role/admin", BOUNDARY),
        ("iam:PutRolePolicy", "arn:aws:iam::123456789012:role/pm500-staging-firehose", {}),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/pm500-staging-firehose",
            {"iam:PassedToService": "ec2.amazonaws.com"},
        ),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/pm500-prod-firehose",
            {"iam:PassedToService": "firehose.amazonaws.com"},
        ),
        ("s3:DeleteBucket", "arn:aws:s3:::pm500-prod-archive-0a1b2c3", {}),
        ("kms:CreateKey", "*", {"aws:RequestedRegion": "us-east-1"}),
        # keys are the bootstrap's: the stack neither makes, names, tags nor administers one
        ("kms:CreateKey", "*", {"aws:RequestedRegion": "eu-west-1", "aws:RequestTag/pm500:stack": "staging"}),
        ("kms:CreateAlias", _arn("kms", "alias/pm500-staging-data"), {}),
        ("kms:TagResource", _arn("kms", f"key/{KEY_ID}"), {"aws:RequestTag/pm500:stack": "staging"}),
        ("kms:ScheduleKeyDeletion", _arn("kms", f"key/{KEY_ID}"), STAGING_KEY),
        ("kms:DescribeKey", _arn("kms", f"key/{KEY_ID}"), {"aws:ResourceTag/pm500:stack": "prod"}),
        ("kms:CreateGrant", _arn("kms", f"key/{KEY_ID}"), STAGING_KEY),  # one the deployer asks for itself
        ("iot:CreateThing", "arn:aws:iot:eu-west-1:999999999999:thing/staging:plant-a:edge-01", {}),
        ("dynamodb:CreateTable", _arn("dynamodb", "table/pm500-staging-latest"), {}),  # feature off
        ("sqs:CreateQueue", _arn("sqs", "pm500-prod-alarm-events"), {}),
        ("sqs:DeleteQueue", _arn("sqs", "pm500-staging-alarm-events-x"), {}),
        ("s3:PutObject", "arn:aws:s3:::pm500-staging-archive-0a1b2c3/sparkplug_b/x.desc", {}),  # json only
    ],
)
def test_deploy_policy_denies_other_stacks_services_and_accounts(
    staging_deploy: DeployerPolicy, name: str, resource: str, context: dict[str, str]
) -> None:
    assert not _allowed(staging_deploy, name, resource, context)


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_every_create_request_is_allowed_on_the_resource_arn(
    which: str, staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack
) -> None:
    """Each declared resource's ARN as the mock runtime forms it, in the form the request carries
    (preflight/service_guide_rules.yaml); every request the provider sends for it."""
    stack = {"staging": staging, "prod": prod, "longest": longest}[which]
    region = stack.config["aws:region"]
    policy = deployer_policy(stack, "deploy", ACCOUNT)
    arns = {
        f"{r.type} {r.name}": (mock_state(r.type, r.name, r.inputs, region, ACCOUNT)[1]["arn"],
                               IAM_RESOURCE_TYPES[r.type][1])
        for r in stack.resources
        if r.type in ARN_FORMATS and r.type in IAM_RESOURCE_TYPES
    }
    boundaries = {r.inputs["name"]: r.inputs["permissionsBoundary"]
                  for r in stack.of_type("aws:iam/role:Role")}
    checked = 0
    for request in stack_requests(stack):
        if request.resource in arns:
            name = iam_action(request.service, request.operation)
            context = _request_context(request.params, boundaries, region)
            if action(name).resource_level:
                arn, rtype = arns[request.resource]
                carried = request_arn(name, arn, rtype)
                assert _allowed(policy, name, carried, context), f"{name} on {carried}"
                checked += 1
            else:
                assert _allowed(policy, name, "*", context), name
    assert checked > 20


def _request_context(params: dict[str, Any], boundaries: dict[str, str], region: str) -> dict[str, str]:
    """The condition keys IAM sets for the request from its own parameters (IAM User Guide, "AWS global
    condition context keys"; the IAM and KMS chapters of the Service Authorization Reference): the
    boundary a new role asks for or an existing role carries, the tags a new resource asks for."""
    context = {"aws:RequestedRegion": region}
    boundary = params.get("PermissionsBoundary") or boundaries.get(params.get("RoleName", ""))
    if boundary:
        context["iam:PermissionsBoundary"] = boundary
    for tag in params.get("Tags") or []:
        if isinstance(tag, dict):
            key, value = tag.get("TagKey", tag.get("Key")), tag.get("TagValue", tag.get("Value"))
            context[f"aws:RequestTag/{key}"] = value
    return context


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
@pytest.mark.parametrize("mode", ["preview", "deploy"])
def test_every_document_passes_the_reference_check_within_the_size_quota(
    which: str, mode: str, staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack
) -> None:
    stack = {"staging": staging, "prod": prod, "longest": longest}[which]
    policy = deployer_policy(stack, mode, ACCOUNT)  # type: ignore[arg-type]
    for document in policy.documents:
        assert [str(f) for f in check_document(document)] == []
        assert policy_chars(document) <= 6144
    sids = [s["Sid"] for d in policy.documents for s in d["Statement"]]
    assert len(sids) == len(set(sids))


def test_a_policy_over_the_quota_is_split_into_several_documents(prod: EvaluatedStack) -> None:
    policy = deployer_policy(prod, "deploy", ACCOUNT)
    total = sum(policy_chars(d) for d in policy.documents)
    assert MANAGED_POLICY_MAX_CHARS == 6144
    assert total > 6144 and len(policy.documents) >= 2


def test_preview_policy_allows_no_mutating_action(
    staging_preview: DeployerPolicy, prod: EvaluatedStack
) -> None:
    for policy in (staging_preview, deployer_policy(prod, "preview", ACCOUNT)):
        assert {action(a).access_level for a in policy.actions} <= {"Read", "List"}
        for name in MUTATING:
            for resource in (
                "*",
                _arn("iot", "thing/staging:plant-a:edge-01"),
                "arn:aws:iam::123456789012:role/pm500-staging-firehose",
            ):
                assert not _allowed(
                    policy,
                    name,
                    resource,
                    {"aws:RequestedRegion": "eu-west-1", "iam:PassedToService": "iot.amazonaws.com"},
                )
    assert _allowed(staging_preview, "iot:DescribeThing", _arn("iot", "thing/staging:plant-a:edge-01"))
    assert _allowed(staging_preview, "iam:GetRole", "arn:aws:iam::123456789012:role/pm500-staging-firehose")
    assert _allowed(staging_preview, "s3:GetBucketPolicy", "arn:aws:s3:::pm500-staging-archive-0a1b2c3")


def test_preview_is_narrower_than_deploy(
    staging_preview: DeployerPolicy, staging_deploy: DeployerPolicy
) -> None:
    assert staging_preview.actions < staging_deploy.actions
    assert "iam:PassRole" not in staging_preview.actions


def _generated(region: str, **features: bool) -> EvaluatedStack:
    sites = [
        {
            "name": "site-1",
            "collectors": [
                {
                    "name": "edge-1",
                    "meters": [{"asset": "main", "breaker": "MCC-1", "host": "pm500.plant.example"}],
                }
            ],
        }
    ]
    config: dict[str, Any] = {
        "aws:region": region,
        "pm500:sites": json.dumps(sites),
        "pm500:features": json.dumps(
            {"eventBridgePipe": False, "latestValueTable": False, "fleet": False, **features}),
    }
    return evaluate_stack("gen", config=config)


def test_enabling_a_feature_changes_the_policy() -> None:
    without = deployer_policy(_generated("eu-central-1"), "deploy", ACCOUNT)
    with_table = deployer_policy(_generated("eu-central-1", latestValueTable=True), "deploy", ACCOUNT)
    table = "arn:aws:dynamodb:eu-central-1:123456789012:table/pm500-gen-latest"
    assert not _allowed(without, "dynamodb:CreateTable", table)
    assert _allowed(with_table, "dynamodb:CreateTable", table)
    assert {"dynamodb:CreateTable", "dynamodb:DeleteTable"} <= with_table.actions - without.actions


def test_the_fleet_feature_brings_its_state_machine_and_table() -> None:
    without = deployer_policy(_generated("eu-central-1"), "deploy", ACCOUNT)
    fleet = deployer_policy(_generated("eu-central-1", fleet=True), "deploy", ACCOUNT)
    machine = "arn:aws:states:eu-central-1:123456789012:stateMachine:pm500-gen-presence"
    table = "arn:aws:dynamodb:eu-central-1:123456789012:table/pm500-gen-fleet"
    for name, arn in (("states:CreateStateMachine", machine), ("states:DeleteStateMachine", machine),
                        ("dynamodb:CreateTable", table)):
        assert _allowed(fleet, name, arn) and not _allowed(without, name, arn)
    assert not _allowed(fleet, "states:CreateStateMachine", machine.replace("pm500-gen", "pm500-prod"))
    assert _allowed(fleet, "iam:PassRole", "arn:aws:iam::123456789012:role/pm500-gen-presence",
                    {"iam:PassedToService": "states.amazonaws.com"})


def test_arns_follow_the_partition_of_the_region() -> None:
    policy = deployer_policy(_generated("cn-north-1"), "deploy", ACCOUNT)
    assert _allowed(
        policy, "iot:CreateThing", "arn:aws-cn:iot:cn-north-1:123456789012:thing/gen:site-1:edge-1"
    )
    assert not _allowed(
        policy, "iot:CreateThing", "arn:aws:iot:cn-north-1:123456789012:thing/gen:site-1:edge-1"
    )


def test_a_fleet_of_things_is_one_resource_pattern(staging_deploy: DeployerPolicy) -> None:
    [statement] = [
        s for d in staging_deploy.documents for s in d["Statement"] if "iot:CreateThing" in s["Action"]
    ]
    assert statement["Resource"] == ["arn:aws:iot:eu-west-1:123456789012:thing/staging:*"]


# --- the CLI -------------------------------------------------------------------------------------------


def test_cli_prints_the_documents_as_json() -> None:
    result = CliRunner().invoke(
        cli.app,
        ["stacks", "deployer-policy", "--stack", "staging", "--mode", "preview", "--account", ACCOUNT,
         "--json"],
    )
    assert result.exit_code == 0, result.output
    documents = json.loads(result.stdout)
    assert all(d["Version"] == "2012-10-17" for d in documents)
    actions = {a for d in documents for s in d["Statement"] for a in s["Action"]}
    assert "iot:DescribeThing" in actions and "iot:CreateThing" not in actions


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "apply"], "--mode 'apply': expected one of preview, deploy"),
        (["--account", "12345"], "--account '12345': expected a 12-digit AWS account id or *"),
        (["--stack", "nope"], "Pulumi.nope.yaml"),
    ],
)
def test_cli_bad_arguments_are_one_clear_line(args: list[str], message: str) -> None:
    argv = ["stacks", "deployer-policy", "--stack", "staging", *args]
    result = CliRunner().invoke(cli.app, argv)
    assert result.exit_code == 1
    assert message in result.stderr


# The longest stack's Sparkplug descriptor bucket is autonamed: the policy names it with 7 `?`.
SPARKPLUG_BUCKET = "arn:aws:s3:::pm500-longest-stack-checks-024-sparkplug-0a1b2c3"


@pytest.mark.parametrize("name", ["s3:PutObject", "s3:PutObjectTagging", "s3:GetObject", "s3:DeleteObject"])
def test_the_descriptor_object_is_writable_only_under_its_own_key(name: str, longest: EvaluatedStack) -> None:
    """Issue 14's descriptor upload (PutObject with tags) and its read/delete, on that object only."""
    policy = deployer_policy(longest, "deploy", ACCOUNT)
    assert _allowed(policy, name, f"{SPARKPLUG_BUCKET}/{DESCRIPTOR_KEY}")
    assert not _allowed(policy, name, f"{SPARKPLUG_BUCKET}/sparkplug_b/other.desc")
    archive = "arn:aws:s3:::pm500-longest-stack-checks-024-archive-0a1b2c3"
    assert not _allowed(policy, name, f"{archive}/{DESCRIPTOR_KEY}")


@pytest.mark.parametrize(("typ", "name"), [("aws:kms/key:Key", "data-key"),
                                           ("aws:kms/alias:Alias", "data-key-alias")])
def test_a_stack_that_declares_a_key_gets_no_policy(typ: str, name: str, staging: EvaluatedStack) -> None:
    """A key (or alias) in the stack would need key administration in the deployer's policy: refused,
    naming the bootstrap, which makes the stack's key."""
    stack = dataclasses.replace(staging, resources=[*staging.resources, RegisteredResource(
        type=typ, name=name, urn=f"urn:pulumi:staging::pm500::{typ}::{name}", id="", inputs={}, parent=None,
        custom=True)])
    with pytest.raises(DeployerPolicyError, match=f"{typ} {name}: KMS .*bootstrap"):
        deployer_policy(stack, "deploy", ACCOUNT)


def test_a_lookup_whose_calls_are_unknown_gets_no_policy(staging: EvaluatedStack) -> None:
    lookup = Invoke("aws:ssm/getParameter:getParameter", {})
    stack = dataclasses.replace(staging, invokes=[*staging.invokes, lookup])
    with pytest.raises(DeployerPolicyError, match=r"getParameter:getParameter: .* add it to PROGRAM_READS"):
        deployer_policy(stack, "deploy", ACCOUNT)
