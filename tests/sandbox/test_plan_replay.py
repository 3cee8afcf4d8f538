"""The whole plan of each stack replayed into moto through boto3, with the provider's requests.

moto validates what it implements (existing roles, keys, buckets, parameter shapes); the resources
then exist in the local account exactly as named by the program. Expected names are written out here.
"""

from __future__ import annotations

import graphlib
import hashlib
import json
from typing import Any

import pytest

from bootstrap.plan import bootstrap_requests
from collector.proto import DESCRIPTOR_SET_FILE
from infra.iam import tls_only_bucket
from preflight.mock_runtime import EvaluatedStack, RegisteredResource, evaluate_stack
from preflight.provider_requests import ApiRequest, requests_for, stack_requests
from sandbox.plan_replay import Replay, moto_clients, replay
from tests.infra.longest_stack import STACK as LONGEST
from tests.infra.longest_stack import longest_config


@pytest.fixture(scope="module")
def staging() -> EvaluatedStack:
    return evaluate_stack("staging")


@pytest.fixture(scope="module")
def prod() -> EvaluatedStack:
    return evaluate_stack("prod")


def run(stack: EvaluatedStack, env: dict[str, str]) -> tuple[Replay, Any]:
    """The account as the first deploy leaves it: the bootstrap's plan for this stack (its CI roles, its
    data key), then the stack's own."""
    client = moto_clients(env, stack.config["aws:region"])
    return replay([*bootstrap_requests(stack), *stack_requests(stack)], client), client


def test_staging_stack_lands_whole_in_moto(staging: EvaluatedStack, aws_env: dict[str, str]) -> None:
    done, client = run(staging, aws_env)
    assert [(r.operation, why) for r, why in done.skipped] == [
        ("CreateProvisioningTemplate", "moto 5.2.5 has no fleet provisioning templates")]
    iot = client("iot")
    assert sorted(t["thingName"] for t in iot.list_things()["things"]) == [
        "staging:plant-a:edge-01", "staging:plant-b:edge-01", "staging:plant-b:edge-02"]
    assert sorted(t["groupName"] for t in iot.list_thing_groups()["thingGroups"]) == [
        "pm500-staging", "pm500-staging:plant-a", "pm500-staging:plant-b"]
    assert [g["groupName"] for g in iot.list_thing_groups_for_thing(
        thingName="staging:plant-b:edge-02")["thingGroups"]] == ["pm500-staging:plant-b"]
    assert sorted(r["ruleName"] for r in iot.list_topic_rules()["rules"]) == [
        "pm500_staging_alarm_events", "pm500_staging_ddata_archive", "pm500_staging_ddata_kinesis",
        "pm500_staging_fleet_report", "pm500_staging_presence"]
    roles = {r["RoleName"] for r in client("iam").list_roles()["Roles"]}
    assert roles == {"pm500-staging-provisioning", "pm500-staging-firehose",
                     "pm500-staging-rule-ddata_kinesis", "pm500-staging-rule-ddata_archive",
                     "pm500-staging-rule-alarm_events", "pm500-staging-alarm-pipe",
                     "pm500-staging-presence", "pm500-staging-rule-presence",
                     "pm500-staging-rule-fleet_report",
                     "pm500-ci-preview-staging", "pm500-ci-deploy-staging"}  # the bootstrap's
    # The fleet view (issue 22): moto accepts the presence state machine's definition and the rules'
    # stepFunctions and dynamoDB actions as the program declares them.
    [machine] = client("stepfunctions").list_state_machines()["stateMachines"]
    assert machine["name"] == "pm500-staging-presence"
    presence = iot.get_topic_rule(ruleName="pm500_staging_presence")["rule"]["actions"][0]["stepFunctions"]
    assert presence["stateMachineName"] == "pm500-staging-presence"
    table = client("dynamodb").describe_table(TableName="pm500-staging-fleet")["Table"]
    assert [k["KeyType"] for k in table["KeySchema"]] == ["HASH", "RANGE"]
    stream = client("kinesis").describe_stream_summary(StreamName="pm500-staging-ddata")
    aliases = client("kms").list_aliases()["Aliases"]
    [alias] = [a for a in aliases if a["AliasName"] == "alias/pm500-staging-data"]
    assert stream["StreamDescriptionSummary"]["EncryptionType"] == "KMS"
    assert stream["StreamDescriptionSummary"]["KeyId"].endswith(alias["TargetKeyId"])  # the bootstrap's key
    delivery = client("firehose").describe_delivery_stream(DeliveryStreamName="pm500-staging-archive")
    s3_config = delivery["DeliveryStreamDescription"]["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert s3_config["Prefix"].startswith("site=!{partitionKeyFromQuery:site}/")
    [bucket] = [b["Name"] for b in client("s3").list_buckets()["Buckets"]]
    assert bucket.startswith("pm500-staging-archive-") and len(bucket) == len("pm500-staging-archive-") + 7
    encryption = client("s3").get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    groups = {g["logGroupName"] for g in client("logs").describe_log_groups()["logGroups"]}
    assert groups == {"/aws/iot/pm500-staging/rule-errors", "/aws/kinesisfirehose/pm500-staging-archive"}
    _assert_alarm_events_land(client, "staging")


def _assert_alarm_events_land(client: Any, stack: str) -> None:
    """Issue 13: the KMS-encrypted queue (4 days' retention), the rule sending to it, the pipe reading it."""
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=f"pm500-{stack}-alarm-events")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "345600"
    aliases = client("kms").list_aliases()["Aliases"]
    [alias] = [a for a in aliases if a["AliasName"] == f"alias/pm500-{stack}-data"]
    assert attributes["KmsMasterKeyId"].endswith(alias["TargetKeyId"])  # moto's key, not the mock's
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"pm500:stack": stack}
    rule = client("iot").get_topic_rule(ruleName=f"pm500_{stack.replace('-', '_')}_alarm_events")["rule"]
    assert rule["actions"][0]["sqs"]["queueUrl"].endswith(f"/pm500-{stack}-alarm-events")
    pipe = client("pipes").describe_pipe(Name=f"pm500-{stack}-alarm-events")
    region = pipe["Arn"].split(":")[3]
    assert pipe["Source"].endswith(f":sqs:{region}:123456789012:pm500-{stack}-alarm-events")


def test_prod_features_land_too(prod: EvaluatedStack, aws_env: dict[str, str]) -> None:
    done, client = run(prod, aws_env)
    assert len(done.skipped) == 1
    assert client("events").describe_event_bus(Name="pm500-prod-events")["Name"] == "pm500-prod-events"
    assert client("pipes").describe_pipe(Name="pm500-prod-ddata-events")["Source"].endswith(
        ":stream/pm500-prod-ddata")
    table = client("dynamodb").describe_table(TableName="pm500-prod-latest")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "meter", "KeyType": "HASH"}]
    assert table["DeletionProtectionEnabled"] is True
    [repo] = client("ecr").describe_repositories()["repositories"]
    assert (repo["repositoryName"], repo["imageTagMutability"]) == ("pm500-prod-collector", "MUTABLE")
    assert client("ecr").get_lifecycle_policy(repositoryName="pm500-prod-collector")["lifecyclePolicyText"]


def test_longest_names_replay(aws_env: dict[str, str]) -> None:
    stack = evaluate_stack(LONGEST, config=longest_config())
    done, client = run(stack, aws_env)
    assert sorted(r.operation for r, _ in done.skipped) == ["CreateProvisioningTemplate"]
    things = client("iot").list_things()["things"]
    assert len(things) == 2 and all(len(t["thingName"]) == 64 for t in things)
    # The stack's pre-provisioning hook, invocable by its own provisioning template only.
    hook = f"pm500-{LONGEST}-claim-hook"
    assert client("lambda").get_function(FunctionName=hook)["Configuration"]["Timeout"] == 5
    [grant] = json.loads(client("lambda").get_policy(FunctionName=hook)["Policy"])["Statement"]
    assert grant["Principal"] == {"Service": "iot.amazonaws.com"}
    template = f":provisioningtemplate/pm500-{LONGEST}-claim"
    assert grant["Condition"]["ArnLike"]["AWS:SourceArn"].endswith(template)
    _assert_alarm_events_land(client, LONGEST)
    # Issue 14: the descriptor set uploaded to the autonamed decode bucket, tagged, byte for byte.
    [bucket] = [b["Name"] for b in client("s3").list_buckets()["Buckets"]
                if b["Name"].startswith(f"pm500-{LONGEST}-sparkplug-")]
    # The bucket policy denies requests without TLS (this moto speaks HTTP): compare by listing.
    [listed] = client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert listed["Key"].startswith("sparkplug_b/") and listed["Key"].endswith(".desc")
    descriptor = DESCRIPTOR_SET_FILE.read_bytes()
    md5 = hashlib.md5(descriptor, usedforsecurity=False).hexdigest()
    assert (listed["Size"], listed["ETag"].strip('"')) == (len(descriptor), md5)


def test_a_tls_only_policy_registered_before_an_object_does_not_block_the_upload(
        aws_env: dict[str, str]) -> None:
    """The engine may register a bucket's policy before its objects. AWS takes the object over TLS
    either way; moto ignores the policy's TLS Condition and would refuse it (403), so the replay sends
    bucket policies last."""
    bucket = "pm500-order-check"
    policy = json.dumps(tls_only_bucket(f"arn:aws:s3:::{bucket}"))
    requests = [
        ApiRequest("s3", "CreateBucket", {"Bucket": bucket, "CreateBucketConfiguration": {
            "LocationConstraint": "eu-west-1"}}, "bucket"),
        ApiRequest("s3", "PutBucketPolicy", {"Bucket": bucket, "Policy": policy}, "policy"),
        ApiRequest("s3", "PutObject", {"Bucket": bucket, "Key": "a.desc", "Body": b"abc"}, "object"),
    ]
    client = moto_clients(aws_env, "eu-west-1")
    done = replay(requests, client)
    assert [r.resource for r in done.sent] == ["bucket", "object", "policy"]
    [listed] = client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert (listed["Key"], listed["Size"]) == ("a.desc", 3)
    # The policy did land, and moto enforces it from then on (as it would have on the upload).
    assert json.loads(client("s3").get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(policy)


def reversed_where_legal(resources: list[RegisteredResource]) -> list[RegisteredResource]:
    """Another creation order the engine may choose: each resource after its dependencies, otherwise
    the registration order reversed. Built from the end: of the resources nothing still waits for,
    the earliest registered is created last."""
    index = {r.urn: n for n, r in enumerate(resources)}
    from_the_end = graphlib.TopologicalSorter({urn: () for urn in index})
    for r in resources:
        for dependency in set(r.dependencies) & index.keys():
            from_the_end.add(dependency, r.urn)  # placed (from the end) only after what waits for it
    from_the_end.prepare()  # raises CycleError on a dependency cycle
    backwards: list[RegisteredResource] = []
    free: list[str] = []
    while from_the_end.is_active():
        free += from_the_end.get_ready()
        urn = min(free, key=index.__getitem__)
        free.remove(urn)
        backwards.append(resources[index[urn]])
        from_the_end.done(urn)
    return backwards[::-1]


def test_the_longest_stack_lands_in_another_legal_creation_order(aws_env: dict[str, str]) -> None:
    """The engine creates resources in parallel once their dependencies exist, so the registration
    order is one of many. The whole plan must land in a reversed one too: a resource missing a
    dependency it needs (a membership without `depends_on` its thing) fails here, not in `pulumi up`."""
    stack = evaluate_stack(LONGEST, config=longest_config())
    reordered = reversed_where_legal(stack.resources)
    assert [r.urn for r in reordered] != [r.urn for r in stack.resources]
    client = moto_clients(aws_env, stack.config["aws:region"])
    done = replay([*bootstrap_requests(stack), *requests_for(reordered, stack.config["aws:region"])], client)
    assert sorted(r.operation for r, _ in done.skipped) == ["CreateProvisioningTemplate"]
    assert len(client("iot").list_things()["things"]) == 2
    _assert_alarm_events_land(client, LONGEST)
    [bucket] = [b["Name"] for b in client("s3").list_buckets()["Buckets"]
                if b["Name"].startswith(f"pm500-{LONGEST}-sparkplug-")]
    assert len(client("s3").list_objects_v2(Bucket=bucket)["Contents"]) == 1
