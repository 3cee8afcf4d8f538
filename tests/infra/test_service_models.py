"""Every request the stacks would make, checked against AWS's published service models (botocore's).

Staging, prod and a generated stack at the longest names the config accepts (tests/infra/longest_stack.py)
are evaluated on the mock runtime; `preflight.provider_requests` turns each declared AWS resource into the
create requests the provider sends (autonamed resources named as pulumi-aws names them) and
`preflight.service_models` applies the models' required members, types, min/max, enums and patterns plus
the document rules (JSON, size quotas).
Defects 1 (inline policy names) and 4 (template name length) of issue 10 have their own checks below.
"""

from __future__ import annotations

from typing import Any

import pytest

from collector.proto import DESCRIPTOR_SET_FILE
from preflight.mock_runtime import EvaluatedStack
from preflight.provider_requests import (
    MAPPINGS,
    ApiRequest,
    UnmappedResource,
    autoname,
    requests_for,
    stack_requests,
)
from preflight.service_models import request_problems


@pytest.fixture(scope="module", params=["staging", "prod", "longest"])
def plan(request: pytest.FixtureRequest, staging: EvaluatedStack, prod: EvaluatedStack,
         longest: EvaluatedStack) -> list[ApiRequest]:
    return stack_requests({"staging": staging, "prod": prod, "longest": longest}[request.param])


def _defect_1(line: str) -> bool:  # IAM inline policy autonamed from `rule-policy/<route>`
    return "PutRolePolicy.PolicyName" in line


def _defect_4(line: str) -> bool:  # provisioning template name over 36 characters
    return "CreateProvisioningTemplate.templateName" in line


def problems(plan: list[ApiRequest]) -> list[str]:
    return [p for r in plan for p in request_problems(r)]


def test_every_request_passes_the_service_models(plan: list[ApiRequest]) -> None:
    assert problems(plan) == []


def test_inline_policy_names_match_iams_pattern(plan: list[ApiRequest]) -> None:
    assert [p for p in problems(plan) if _defect_1(p)] == []


def test_provisioning_template_name_fits_at_the_longest_stack_name(longest: EvaluatedStack) -> None:
    assert [p for p in problems(stack_requests(longest)) if _defect_4(p)] == []


def test_every_declared_aws_resource_becomes_a_request(longest: EvaluatedStack) -> None:
    aws = [r for r in longest.resources if r.type.startswith("aws:")]
    labels = {r.resource for r in stack_requests(longest)}
    assert labels == {f"{r.type} {r.name}" for r in aws}
    assert {r.type for r in aws} <= set(MAPPINGS)


def test_an_unmapped_aws_type_is_an_error_not_a_skip() -> None:
    class Fake:
        type, name, inputs = "aws:sns/topic:Topic", "t", {"name": "t"}

    with pytest.raises(UnmappedResource, match="aws:sns/topic:Topic"):
        requests_for([Fake()])


def test_alarm_queue_request_carries_its_attributes_as_strings(longest: EvaluatedStack) -> None:
    """CreateQueue takes every attribute as a string: retention 4 days, the stack's data key."""
    [queue] = [r for r in stack_requests(longest) if r.operation == "CreateQueue"]
    assert queue.params["QueueName"] == "pm500-longest-stack-checks-024-alarm-events"
    assert queue.params["Attributes"]["MessageRetentionPeriod"] == "345600"
    assert queue.params["Attributes"]["KmsMasterKeyId"].startswith(
        "arn:aws:kms:ap-southeast-2:123456789012:key/")
    assert queue.params["tags"] == {"pm500:stack": "longest-stack-checks-024"}


def test_descriptor_upload_is_a_put_object_with_url_encoded_tags(longest: EvaluatedStack) -> None:
    [put] = [r for r in stack_requests(longest) if r.operation == "PutObject"]
    assert put.params["Bucket"].startswith("pm500-longest-stack-checks-024-sparkplug-")
    assert put.params["Key"].startswith("sparkplug_b/") and put.params["Key"].endswith(".desc")
    assert put.params["Tagging"] == "pm500%3Astack=longest-stack-checks-024"
    assert put.params["Body"] == DESCRIPTOR_SET_FILE.read_bytes()  # the protoc descriptor set itself


def test_new_rule_actions_and_pipe_source_are_mapped(longest: EvaluatedStack) -> None:
    by_resource = {r.resource: r.params for r in stack_requests(longest)}
    alarm = by_resource["aws:iot/topicRule:TopicRule rule/alarm_events"]["topicRulePayload"]["actions"]
    assert alarm == [{"sqs": {
        "roleArn": "arn:aws:iam::123456789012:role/pm500-longest-stack-checks-024-rule-alarm_events",
        "queueUrl": "https://sqs.ap-southeast-2.amazonaws.com/123456789012/pm500-longest-stack-checks-024-alarm-events",
        "useBase64": False}}]
    decode = by_resource["aws:iot/topicRule:TopicRule rule/spb_decode"]["topicRulePayload"]["actions"]
    assert decode == [{"republish": {
        "roleArn": "arn:aws:iam::123456789012:role/pm500-longest-stack-checks-024-rule-spb_decode",
        "topic": "pm500-decoded/longest-stack-checks-024/${topic(4)}/${topic(5)}", "qos": 1}}]
    pipe = by_resource["aws:pipes/pipe:Pipe alarm-pipe"]
    assert pipe["SourceParameters"] == {"SqsQueueParameters": {"BatchSize": 10}}
    assert pipe["TargetParameters"]["InputTemplate"] == "<$.body>"


def test_autonames_are_the_logical_name_a_dash_and_seven_hex_characters() -> None:
    name = autoname("rule-policy/ddata_kinesis")
    prefix, suffix = name.rsplit("-", 1)
    assert prefix == "rule-policy/ddata_kinesis" and len(suffix) == 7 and int(suffix, 16) >= 0


# --- the checker itself, against literal expectations ----------------------------------------------

def check(service: str, operation: str, params: dict[str, Any], **docs: str) -> list[str]:
    return request_problems(ApiRequest(service, operation, params, "test", docs))


def test_pattern_max_length_and_required_members() -> None:
    assert check("iot", "CreateThing", {"thingName": "ok:name_1-2"}) == []
    [pattern] = check("iot", "CreateThing", {"thingName": "a/b"})
    assert "thingName: 'a/b' does not match the pattern [a-zA-Z0-9:_-]+" in pattern
    [length] = check("iot", "CreateThing", {"thingName": "x" * 129})
    assert "thingName: 129 characters, at most 128 allowed" in length
    [required] = check("iot", "CreateThing", {})
    assert "Missing required parameter" in required and "thingName" in required


def test_enums_and_nested_members() -> None:
    [enum] = check("ecr", "CreateRepository", {"repositoryName": "repo", "imageTagMutability": "SOMETIMES"})
    assert "imageTagMutability: 'SOMETIMES' is not one of" in enum
    firehose = {"roleArn": "arn:aws:iam::1:role/r", "deliveryStreamName": "s", "separator": ";"}
    payload = {"sql": "SELECT * FROM 't'", "actions": [{"firehose": firehose}]}
    [nested] = check("iot", "CreateTopicRule", {"ruleName": "r", "topicRulePayload": payload})
    assert "CreateTopicRule.topicRulePayload.actions[0].firehose.separator: ';' does not match" in nested


def test_java_unicode_classes_in_patterns() -> None:
    tags = [{"Key": "pm500:stack", "Value": "prod"}]
    assert check("iot", "CreateThingType", {"thingTypeName": "t", "tags": tags}) == []
    bad = check("iot", "CreateThingType", {"thingTypeName": "t", "tags": [{"Key": "a\u0007", "Value": "v"}]})
    assert [p for p in bad if "tags[0].Key" in p]


def test_documents_are_json_within_their_quota() -> None:
    policy = '{"Version": "2012-10-17", "Statement": []}'
    ok = {"RoleName": "r", "PolicyName": "p", "PolicyDocument": policy}
    assert check("iam", "PutRolePolicy", ok, PolicyDocument="iam-inline") == []
    [invalid] = check("iam", "PutRolePolicy", {**ok, "PolicyDocument": "{"}, PolicyDocument="iam-inline")
    assert "PolicyDocument: not valid JSON" in invalid
    big = '{"Statement": "' + "x" * 10_300 + '"}'
    [size] = check("iam", "PutRolePolicy", {**ok, "PolicyDocument": big}, PolicyDocument="iam-inline")
    assert "at most 10240" in size


def test_bucket_names_follow_the_s3_naming_rules() -> None:
    good = {"Bucket": "pm500-prod-archive-1a2b3c4"}
    assert check("s3", "CreateBucket", good, Bucket="s3-bucket-name") == []
    for bad in ("Upper-Case", "-leading", "a" * 64, "two..dots"):
        assert check("s3", "CreateBucket", {"Bucket": bad}, Bucket="s3-bucket-name"), bad
