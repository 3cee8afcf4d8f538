"""The real `Pulumi.staging.yaml` / `Pulumi.prod.yaml` evaluated on the mock runtime: every resource's
count and properties, the outputs, stack isolation, secrets."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from collector.topics import thing_name
from collector.validation import ConfigError
from infra import outputs
from infra.config import StackConfig, parse_stack_config
from preflight.mock_runtime import (
    PROJECT_DIR,
    EvaluatedStack,
    RegisteredResource,
    evaluate_stack,
    load_stack_config_file,
)

THING = "aws:iot/thing:Thing"
GROUP = "aws:iot/thingGroup:ThingGroup"
MEMBER = "aws:iot/thingGroupMembership:ThingGroupMembership"
RULE = "aws:iot/topicRule:TopicRule"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def _config(stack: str) -> StackConfig:
    """The same config the program saw, validated independently of the program."""
    config, _ = load_stack_config_file(stack)
    values = {k.removeprefix("pm500:"): v for k, v in config.items() if k.startswith("pm500:")}
    return parse_stack_config(values, stack=stack, project_dir=PROJECT_DIR, region=config["aws:region"])


def _doc(resource: RegisteredResource, prop: str = "policy") -> dict[str, Any]:
    value = resource.inputs[prop]
    return json.loads(value) if isinstance(value, str) else dict(value)


def test_resource_counts_follow_the_config(stack: EvaluatedStack) -> None:
    cfg = _config(stack.stack)
    counts = stack.count_by_type()
    collectors = cfg.collector_count
    extras = cfg.features
    expected = {
        "aws:iot/thingType:ThingType": 1,
        GROUP: 1 + len(cfg.sites),
        THING: collectors,
        MEMBER: collectors,
        "aws:iot/policy:Policy": 1,
        "aws:iot/provisioningTemplate:ProvisioningTemplate": 1,
        # fleet: the presence and report rules, their roles and the presence state machine's role
        RULE: 2 + extras.latest_value_table + extras.alarm_events + 2 * extras.fleet,
        ROLE: 4 + extras.latest_value_table + extras.event_bridge_pipe + 2 * extras.alarm_events
        + 3 * extras.fleet,
        ROLE_POLICY: 4 + extras.latest_value_table + extras.event_bridge_pipe + 2 * extras.alarm_events
        + 3 * extras.fleet,
        "aws:kinesis/stream:Stream": 1,
        "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": 1,
        "aws:kms/key:Key": 0,  # the bootstrap's (its administrator's), never the stack's
        "aws:kms/alias:Alias": 0,
        "aws:s3/bucket:Bucket": 1,
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": 1,
        "aws:s3/bucketVersioning:BucketVersioning": 1,
        "aws:s3/bucketPolicy:BucketPolicy": 1,
        "aws:dynamodb/table:Table": int(extras.latest_value_table) + int(extras.fleet),
        "aws:sfn/stateMachine:StateMachine": int(extras.fleet),
        "aws:pipes/pipe:Pipe": int(extras.event_bridge_pipe) + int(extras.alarm_events),
        "aws:sqs/queue:Queue": int(extras.alarm_events),
        "aws:cloudwatch/eventBus:EventBus": int(
            extras.event_bridge_pipe or extras.alarm_events or extras.fleet),
        "aws:iot/certificate:Certificate": 0,
    }
    assert {k: counts.get(k, 0) for k in expected} == expected
    assert collectors >= 3 and len(cfg.sites) >= 2


def test_prod_is_bigger_and_safer_than_staging(staging: EvaluatedStack, prod: EvaluatedStack) -> None:
    s, p = _config("staging"), _config("prod")
    assert len(p.sites) > len(s.sites) and p.collector_count > s.collector_count
    assert p.kinesis.retention_hours > s.kinesis.retention_hours
    assert p.kinesis.capacity_mode == "ON_DEMAND" and s.kinesis.capacity_mode == "PROVISIONED"
    stream = prod.one("aws:kinesis/stream:Stream")
    assert (
        stream.inputs["streamModeDetails"] == {"streamMode": "ON_DEMAND"}
        and "shardCount" not in stream.inputs
    )
    assert staging.one("aws:kinesis/stream:Stream").inputs["shardCount"] == s.kinesis.shards
    assert p.deletion_protection and not s.deletion_protection
    tables = prod.of_type("aws:dynamodb/table:Table")  # latest values and the fleet table
    assert len(tables) == 2 and all(t.inputs["deletionProtectionEnabled"] is True for t in tables)


def test_every_resource_is_parented_to_a_component(stack: EvaluatedStack) -> None:
    by_urn = stack.by_urn()
    components = {r.urn for r in stack.resources if not r.custom}
    assert {r.type for r in stack.resources if not r.custom} >= {
        "pm500:iot:Registry",
        "pm500:iot:Provisioning",
        "pm500:data:DataRoutes",
        "pm500:data:Archive",
    }
    for r in stack.resources:
        if r.custom:
            assert r.parent in components, f"{r.type} {r.name} is not under a component"
        else:
            root = f"urn:pulumi:{stack.stack}::pm500::pulumi:pulumi:Stack::pm500-{stack.stack}"
            assert r.parent == root or r.parent in by_urn


def test_things_named_by_stack_site_collector_with_attributes_and_group(stack: EvaluatedStack) -> None:
    cfg = _config(stack.stack)
    things = {r.name: r for r in stack.of_type(THING)}
    groups = {r.inputs["name"]: r for r in stack.of_type(GROUP)}
    members = {r.name: r for r in stack.of_type(MEMBER)}
    root = groups[f"pm500-{cfg.stack}"]
    assert "parentGroupName" not in root.inputs
    for site in cfg.sites:
        site_group = groups[f"pm500-{cfg.stack}:{site.name}"]
        assert site_group.inputs["parentGroupName"] == f"pm500-{cfg.stack}"  # depth 2 of AWS's 7
        for c in site.collectors:
            key = f"{site.name}/{c.name}"
            thing = things[f"thing/{key}"]
            assert thing.inputs["name"] == thing_name(cfg.stack, site.name, c.name)
            assert thing.inputs["attributes"] == {"site": site.name, "env": cfg.environment}
            assert thing.inputs["thingTypeName"] == f"pm500-{cfg.stack}-collector"
            assert members[f"member/{key}"].inputs == {
                "thingGroupName": site_group.inputs["name"],
                "thingName": thing.inputs["name"],
            }
    thing_type = stack.one("aws:iot/thingType:ThingType")
    assert thing_type.inputs["properties"]["searchableAttributes"] == ["site", "env"]


def test_creation_order_follows_what_each_resource_names(stack: EvaluatedStack) -> None:
    """Inputs are plain names, so ordering comes from dependencies: a thing waits for its thing type, a
    membership for its thing and site group, the provisioning template for the thing type, groups and
    policy it names, and never for the things (at 10,000 collectors that would be 20,000 edges)."""
    thing_type = stack.one("aws:iot/thingType:ThingType").urn
    groups = {r.inputs["name"]: r.urn for r in stack.of_type(GROUP)}
    things = {r.name: r.urn for r in stack.of_type(THING)}
    for thing in stack.of_type(THING):
        assert thing_type in thing.dependencies
    for member in stack.of_type(MEMBER):
        key = member.name.removeprefix("member/")
        assert {things[f"thing/{key}"], groups[member.inputs["thingGroupName"]]} <= set(member.dependencies)
    template = stack.one("aws:iot/provisioningTemplate:ProvisioningTemplate")
    policy = stack.one("aws:iot/policy:Policy").urn
    assert {thing_type, policy, *groups.values()} <= set(template.dependencies)
    per_collector = set(things.values()) | {r.urn for r in stack.of_type(MEMBER)}
    provisioning = stack.one("pm500:iot:Provisioning")
    assert not per_collector & (set(template.dependencies) | set(provisioning.dependencies))


def test_iot_policy_is_rendered_from_the_topic_templates(stack: EvaluatedStack) -> None:
    doc = _doc(stack.one("aws:iot/policy:Policy"))
    arn = "arn:aws:iot:eu-west-1:123456789012"
    var = "${iot:Connection.Thing.ThingName}"
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["ConnectAsOwnThing"]["Resource"] == [f"{arn}:client/{var}"]
    assert by_sid["ConnectAsOwnThing"]["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    # Literal resources (not the templates' own output): a broken template must fail here.
    assert by_sid["PublishOwnTopics"]["Resource"] == [
        f"{arn}:topic/spBv1.0/pm500/NBIRTH/{var}",
        f"{arn}:topic/spBv1.0/pm500/NDEATH/{var}",
        f"{arn}:topic/spBv1.0/pm500/NDATA/{var}",
        f"{arn}:topic/spBv1.0/pm500/DBIRTH/{var}/*",
        f"{arn}:topic/spBv1.0/pm500/DDATA/{var}/*",
        f"{arn}:topic/spBv1.0/pm500/DDEATH/{var}/*",
        f"{arn}:topic/$aws/things/{var}/shadow/name/pm500/update",
        f"{arn}:topic/$aws/things/{var}/shadow/name/pm500/get",
        f"{arn}:topic/pm500/event/{var}/*",
    ]
    # Reading: the answers of its own named shadow only (one wildcard: the 2048-character cap).
    assert by_sid["SubscribeOwnTopics"]["Resource"] == [
        f"{arn}:topicfilter/spBv1.0/pm500/NCMD/{var}",
        f"{arn}:topicfilter/$aws/things/{var}/shadow/name/pm500/*",
    ]
    assert by_sid["ReceiveOwnTopics"]["Resource"] == [
        f"{arn}:topic/spBv1.0/pm500/NCMD/{var}",
        f"{arn}:topic/$aws/things/{var}/shadow/name/pm500/*",
    ]
    assert {a for s in doc["Statement"] for a in s["Action"]} == {
        "iot:Connect",
        "iot:Publish",
        "iot:Subscribe",
        "iot:Receive",
    }
    # AWS IoT policy documents are capped at 2048 characters (whitespace excluded).
    assert len(json.dumps(doc, separators=(",", ":"))) <= 2048


def test_topic_rules_take_only_this_stacks_ddata(stack: EvaluatedStack) -> None:
    rules = stack.of_type(RULE)
    assert rules
    for rule in rules:
        sql = rule.inputs["sql"]
        if rule.name == "rule/alarm_events":  # events: the thing is topic level 3 (checked below)
            assert " FROM 'pm500/event/+/+' WHERE " in sql
            assert sql.endswith(f"WHERE startswith(topic(3), '{stack.stack}:')")
        elif rule.name == "rule/presence":  # lifecycle events: the client id is topic level 5
            assert " FROM '$aws/events/presence/+/+' WHERE " in sql
            assert sql.endswith(f"WHERE startswith(topic(5), '{stack.stack}:')")
        elif rule.name == "rule/fleet_report":  # named shadow documents: the thing is topic level 3
            assert " FROM '$aws/things/+/shadow/name/pm500/update/documents' WHERE " in sql
            assert sql.endswith(f"WHERE startswith(topic(3), '{stack.stack}:')")
        else:
            assert " FROM 'spBv1.0/pm500/DDATA/+/+' WHERE " in sql
            # Only this stack's things; the latest-value rule adds its timestamp check after an AND.
            where = f"WHERE startswith(topic(4), '{stack.stack}:')"
            assert sql.endswith(where) or f"{where} AND nanvl(get_dynamodb(" in sql
        assert rule.inputs["sqlVersion"] == "2016-03-23" and rule.inputs["enabled"] is True
        assert rule.inputs["name"].startswith(f"pm500_{stack.stack}_")
        assert set(rule.inputs["name"]) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
        )
        error = rule.inputs["errorAction"]["cloudwatchLogs"]
        assert error["logGroupName"] == f"/aws/iot/pm500-{stack.stack}/rule-errors"
    kinesis = stack.one(RULE, "rule/ddata_kinesis").inputs["kineses"][0]
    assert kinesis["streamName"] == f"pm500-{stack.stack}-ddata"
    assert kinesis["partitionKey"] == "${topic(4)}/${topic(5)}"
    firehose = stack.one(RULE, "rule/ddata_archive").inputs["firehoses"][0]
    assert firehose["deliveryStreamName"] == f"pm500-{stack.stack}-archive"


def test_each_rule_role_allows_exactly_its_targets(stack: EvaluatedStack) -> None:
    roles = {r.inputs["name"]: r for r in stack.of_type(ROLE)}
    policies = {r.name: _doc(r) for r in stack.of_type(ROLE_POLICY)}
    stream_arn = f"arn:aws:kinesis:eu-west-1:123456789012:stream/pm500-{stack.stack}-ddata"
    firehose_arn = f"arn:aws:firehose:eu-west-1:123456789012:deliverystream/pm500-{stack.stack}-archive"
    kinesis = {tuple(s["Action"]): s["Resource"] for s in policies["rule-policy/ddata_kinesis"]["Statement"]}
    assert kinesis[("kinesis:PutRecord",)] == [stream_arn]
    archive = {tuple(s["Action"]): s["Resource"] for s in policies["rule-policy/ddata_archive"]["Statement"]}
    assert archive[("firehose:PutRecord",)] == [firehose_arn]
    for rule in stack.of_type(RULE):
        route = rule.name.removeprefix("rule/")
        targets = ("kineses", "firehoses", "dynamodbv2s", "sqs", "dynamodbs", "stepFunctions")
        action = next(v for k, v in rule.inputs.items() if k in targets)[0]
        role_arn = f"arn:aws:iam::123456789012:role/pm500-{stack.stack}-rule-{route}"
        assert action["roleArn"] == role_arn == rule.inputs["errorAction"]["cloudwatchLogs"]["roleArn"]
        trust = _doc(roles[f"pm500-{stack.stack}-rule-{route}"], "assumeRolePolicy")
        assert trust["Statement"][0]["Principal"] == {"Service": "iot.amazonaws.com"}
    for doc in policies.values():
        for s in doc["Statement"]:  # "*" only for the one action AWS authorizes on nothing else
            assert "*" not in s["Resource"] or s["Action"] == ["kinesis:ListStreams"]


def test_data_stores_are_encrypted_versioned_and_private(stack: EvaluatedStack) -> None:
    key_arn = stack.outputs[outputs.KMS_KEY_ARN]
    stream = stack.one("aws:kinesis/stream:Stream").inputs
    assert stream["encryptionType"] == "KMS" and stream["kmsKeyId"] == key_arn
    assert stream["retentionPeriod"] == _config(stack.stack).kinesis.retention_hours
    bucket = stack.one("aws:s3/bucket:Bucket")
    bucket_name = stack.outputs[outputs.ARCHIVE_BUCKET]
    pab = stack.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert pab == {
        "bucket": bucket_name,
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    sse = stack.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key_arn,
    }
    versioning = stack.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    tls = _doc(stack.one("aws:s3/bucketPolicy:BucketPolicy"))["Statement"][0]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert tls["Resource"] == [f"arn:aws:s3:::{bucket_name}", f"arn:aws:s3:::{bucket_name}/*"]
    assert bucket.inputs.get("forceDestroy") is False


def test_the_data_key_is_the_bootstraps_found_by_its_alias(stack: EvaluatedStack) -> None:
    """The stack creates no key: it looks up the one the bootstrap made for it (tests/bootstrap), by the
    alias `alias/pm500-<stack>-data`, and encrypts with what that lookup answers."""
    [lookup] = [i for i in stack.invokes if i.token == "aws:kms/getKey:getKey"]
    assert lookup.args["keyId"] == f"alias/pm500-{stack.stack}-data"
    key_arn = stack.outputs[outputs.KMS_KEY_ARN]
    assert re.fullmatch(r"arn:aws:kms:eu-west-1:123456789012:key/[0-9a-f-]{36}", key_arn)
    assert stack.one("aws:kinesis/stream:Stream").inputs["kmsKeyId"] == key_arn


def test_firehose_writes_partitioned_gzip_json(stack: EvaluatedStack) -> None:
    cfg = _config(stack.stack)
    fh = stack.one("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream").inputs
    s3 = fh["extendedS3Configuration"]
    assert fh["serverSideEncryption"] == {
        "enabled": True,
        "keyType": "CUSTOMER_MANAGED_CMK",
        "keyArn": stack.outputs[outputs.KMS_KEY_ARN],
    }
    assert s3["compressionFormat"] == "GZIP"
    assert s3["prefix"].startswith("site=!{partitionKeyFromQuery:site}/year=")
    assert s3["errorOutputPrefix"].startswith("errors/")
    assert s3["dynamicPartitioningConfiguration"]["enabled"] is True
    assert s3["bufferingSize"] == cfg.archive.buffer_size_mb >= 64
    assert s3["bufferingInterval"] == cfg.archive.buffer_interval_s
    processors = {p["type"]: p for p in s3["processingConfiguration"]["processors"]}
    assert set(processors) == {"MetadataExtraction", "AppendDelimiterToRecord"}


def test_provisioning_template_registers_this_stacks_things(stack: EvaluatedStack) -> None:
    template = stack.one("aws:iot/provisioningTemplate:ProvisioningTemplate").inputs
    # Off by default: a claim certificate names any collector unless a hook checks it (issue 24).
    assert template["type"] == "FLEET_PROVISIONING" and template["enabled"] is False
    assert template["provisioningRoleArn"].endswith(f":role/pm500-{stack.stack}-provisioning")
    body = json.loads(template["templateBody"])
    thing = body["Resources"]["thing"]["Properties"]
    assert thing["ThingName"] == {"Fn::Join": [":", [stack.stack, {"Ref": "Site"}, {"Ref": "Collector"}]]}
    assert (
        body["Resources"]["policy"]["Properties"]["PolicyName"]
        == stack.outputs[outputs.COLLECTOR_POLICY_NAME]
    )
    assert body["Resources"]["certificate"]["Properties"]["Status"] == "ACTIVE"
    assert "preProvisioningHook" not in template  # neither stack turns fleet provisioning on


def test_outputs_carry_what_the_cli_needs(stack: EvaluatedStack) -> None:
    cfg = _config(stack.stack)
    out = stack.outputs
    assert out[outputs.STACK] == stack.stack and out[outputs.AWS_REGION] == "eu-west-1"
    assert out[outputs.IOT_ENDPOINT] == "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
    assert out[outputs.COLLECTOR_POLICY_NAME] == f"pm500-{stack.stack}-collector"
    assert out[outputs.ROOT_THING_GROUP] == f"pm500-{stack.stack}"
    assert out[outputs.SITE_THING_GROUPS] == {s.name: f"pm500-{stack.stack}:{s.name}" for s in cfg.sites}
    assert out[outputs.THING_NAMES] == {
        s.name: {c.name: thing_name(stack.stack, s.name, c.name) for c in s.collectors} for s in cfg.sites
    }
    assert out[outputs.COLLECTORS] == outputs.collectors_output(cfg)
    for entry in out[outputs.COLLECTORS].values():
        parsed = outputs.CollectorOutput.model_validate(entry)
        assert parsed.topics["DDATA"] == f"spBv1.0/pm500/DDATA/{parsed.thing_name}/{{asset}}"
    assert set(out[outputs.RULE_NAMES]) == set(out[outputs.RULE_ARNS])
    for route, name in out[outputs.RULE_NAMES].items():
        assert out[outputs.RULE_ARNS][route] == f"arn:aws:iot:eu-west-1:123456789012:rule/{name}"
    assert out[outputs.STREAM_NAME] == f"pm500-{stack.stack}-ddata"
    assert out[outputs.FIREHOSE_NAME] == f"pm500-{stack.stack}-archive"
    assert out[outputs.ARCHIVE_BUCKET].startswith(f"pm500-{stack.stack}-archive-")
    assert out[outputs.PROVISIONING_TEMPLATE_NAME] == f"pm500-{stack.stack}-claim"
    assert set(out[outputs.ROLE_NAMES]) >= {"provisioning", "firehose", "ddata_kinesis", "ddata_archive"}
    assert not stack.secret_outputs


def test_staging_and_prod_share_no_physical_name(staging: EvaluatedStack, prod: EvaluatedStack) -> None:
    def physical(stack: EvaluatedStack) -> set[str]:
        # Log streams are named inside their (stack-prefixed) log group, so they are not account-wide;
        # a docker RemoteImage's `name` is the image it pulls (e.g. influxdb:1.8), not a resource name.
        not_names = {"aws:cloudwatch/logStream:LogStream", "docker:index/remoteImage:RemoteImage"}
        return {
            str(r.inputs["name"])
            for r in stack.resources
            if r.custom and "name" in r.inputs and r.type not in not_names
        } | {stack.outputs[outputs.ARCHIVE_BUCKET]}

    s, p = physical(staging), physical(prod)
    assert not s & p
    assert all("staging" in n for n in s) and all("prod" in n for n in p)
    # The two stacks' rules select disjoint traffic: staging's prefix is not a prefix of prod's things.
    for thing in prod.outputs[outputs.COLLECTORS]:
        assert not thing.startswith("staging:")


def test_reordering_sites_and_collectors_replaces_nothing() -> None:
    config, secret_keys = load_stack_config_file("staging")
    sites = json.loads(config["pm500:sites"])
    shuffled = [{**s, "collectors": list(reversed(s["collectors"]))} for s in reversed(sites)]
    reordered = evaluate_stack(
        "staging", config={**config, "pm500:sites": json.dumps(shuffled)}, secret_keys=secret_keys
    )
    original = evaluate_stack("staging")

    def by_urn(stack: EvaluatedStack) -> dict[str, dict[str, Any]]:
        return {r.urn: r.inputs for r in stack.resources}

    assert by_urn(reordered) == by_urn(original)


def test_optional_features_add_pipe_and_latest_table(prod: EvaluatedStack) -> None:
    pipe = prod.one("aws:pipes/pipe:Pipe", "pipe").inputs
    assert pipe["source"] == "arn:aws:kinesis:eu-west-1:123456789012:stream/pm500-prod-ddata"
    assert pipe["target"] == "arn:aws:events:eu-west-1:123456789012:event-bus/pm500-prod-events"
    assert prod.outputs[outputs.EVENT_BUS_NAME] == "pm500-prod-events"
    table = prod.one("aws:dynamodb/table:Table", "latest").inputs
    assert table["hashKey"] == "meter" and table["billingMode"] == "PAY_PER_REQUEST"
    assert table["serverSideEncryption"]["enabled"] is True
    latest = prod.one(RULE, "rule/ddata_latest").inputs
    assert latest["dynamodbv2s"][0]["putItem"] == {"tableName": "pm500-prod-latest"}
    assert "AS meter" in latest["sql"]
    assert prod.outputs[outputs.LATEST_VALUE_TABLE] == "pm500-prod-latest"


def _with_provisioning(provisioning: dict[str, Any]) -> EvaluatedStack:
    config, secret_keys = load_stack_config_file("staging")
    return evaluate_stack("staging", config={**config, "pm500:provisioning": json.dumps(provisioning)},
                          secret_keys=secret_keys)


@pytest.mark.parametrize("own", [True, False], ids=["stack-hook", "user-hook"])
def test_fleet_provisioning_is_enabled_only_behind_a_pre_provisioning_hook(own: bool) -> None:
    user_hook = "arn:aws:lambda:eu-west-1:123456789012:function:pm500-claim-check"
    evaluated = _with_provisioning({"fleet": True} if own else
                                   {"fleet": True, "preProvisioningHookLambdaArn": user_hook})
    hook = "arn:aws:lambda:eu-west-1:123456789012:function:pm500-staging-claim-hook" if own else user_hook
    template = evaluated.one("aws:iot/provisioningTemplate:ProvisioningTemplate").inputs
    assert template["enabled"] is True
    assert template["preProvisioningHook"] == {"targetArn": hook, "payloadVersion": "2020-04-01"}
    permission = evaluated.one("aws:lambda/permission:Permission").inputs
    assert permission["principal"] == "iot.amazonaws.com" and permission["function"] == hook
    assert permission["sourceArn"] == \
        "arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/pm500-staging-claim"
    assert permission["sourceAccount"] == "123456789012"
    functions = evaluated.of_type("aws:lambda/function:Function")
    assert [f.inputs["name"] for f in functions] == (["pm500-staging-claim-hook"] if own else [])


def test_a_hook_without_fleet_provisioning_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"preProvisioningHookLambdaArn: set provisioning\.fleet"):
        _with_provisioning({"preProvisioningHookLambdaArn": "arn:aws:lambda:eu-west-1:1:function:f"})


@pytest.mark.parametrize("secret_key", ["pm500:sites"])
def test_secret_inventory_keeps_derived_outputs_secret(secret_key: str) -> None:
    config, _ = load_stack_config_file("staging")
    evaluated = evaluate_stack("staging", config=config, secret_keys=[secret_key])
    assert {outputs.COLLECTORS, outputs.THING_NAMES, outputs.SITE_THING_GROUPS} <= evaluated.secret_outputs
    assert outputs.STREAM_NAME not in evaluated.secret_outputs


def test_secure_values_in_a_stack_file_are_passed_as_secrets(tmp_path: Any) -> None:
    text = (PROJECT_DIR / "Pulumi.staging.yaml").read_text()
    sites = json.loads(load_stack_config_file("staging")[0]["pm500:sites"])
    text = text.split("  pm500:sites:")[0] + "  pm500:sites:\n    secure: v1:AAAAbm90LXJlYWw=\n"
    (tmp_path / "Pulumi.staging.yaml").write_text(text)
    _, secret_keys = load_stack_config_file("staging", tmp_path, secrets={"pm500:sites": json.dumps(sites)})
    assert secret_keys == ["pm500:sites"]
    evaluated = evaluate_stack("staging", tmp_path, secrets={"pm500:sites": json.dumps(sites)})
    assert outputs.COLLECTORS in evaluated.secret_outputs
    assert len(evaluated.outputs[outputs.COLLECTORS]) == 3


@pytest.mark.parametrize("stack_name", ["staging", "prod"])
def test_alarm_events_route_this_stacks_events_through_sqs_to_the_event_bus(
    stack_name: str, staging: EvaluatedStack, prod: EvaluatedStack
) -> None:
    evaluated = {"staging": staging, "prod": prod}[stack_name]
    rule = evaluated.one(RULE, "rule/alarm_events").inputs
    assert rule["sql"] == (
        f"SELECT *, topic(3) AS thing FROM 'pm500/event/+/+' WHERE startswith(topic(3), '{stack_name}:')"  # noqa: S608
    )
    queue_url = f"https://sqs.eu-west-1.amazonaws.com/123456789012/pm500-{stack_name}-alarm-events"
    assert rule["sqs"] == [{"queueUrl": queue_url, "roleArn": rule["sqs"][0]["roleArn"], "useBase64": False}]
    queue = evaluated.one("aws:sqs/queue:Queue").inputs
    assert queue["kmsMasterKeyId"] == evaluated.outputs[outputs.KMS_KEY_ARN]
    pipe = evaluated.one("aws:pipes/pipe:Pipe", "alarm-pipe").inputs
    assert pipe["source"] == f"arn:aws:sqs:eu-west-1:123456789012:pm500-{stack_name}-alarm-events"
    # one bus per stack: prod shares the DDATA pipe's bus, staging (no DDATA pipe) gets its own
    assert pipe["target"] == f"arn:aws:events:eu-west-1:123456789012:event-bus/pm500-{stack_name}-events"
    bus = pipe["targetParameters"]["eventbridgeEventBusParameters"]
    assert bus == {"source": f"pm500.{stack_name}", "detailType": "pm500.alarm"}
    assert evaluated.outputs[outputs.EVENT_BUS_NAME] == f"pm500-{stack_name}-events"
    assert evaluated.outputs[outputs.ALARM_EVENT_QUEUE] == f"pm500-{stack_name}-alarm-events"
    policy = _doc(evaluated.one(ROLE_POLICY, "rule-policy/alarm_events"))
    assert {a for st in policy["Statement"] for a in st["Action"]} >= {"sqs:SendMessage"}


# Trust conditions per service, as each service's guide documents them (docs/security.md):
# - AWS IoT rules: aws:SourceArn = the rule ("Granting an AWS IoT rule the access it requires"); other IoT
#   roles: arn:<partition>:iot:<region>:<account>:* ("Cross-service confused deputy prevention").
# - Firehose, EventBridge Pipes: aws:SourceAccount (their guides document no source ARN for the role).
# - Lambda (the hook's execution role): none; a function's role can only be passed by iam:PassRole in
#   this account, and Lambda documents no source key for it.
def test_every_trust_policy_names_its_source_where_the_service_documents_one(prod: EvaluatedStack) -> None:
    account, iot = "123456789012", "arn:aws:iot:eu-west-1:123456789012"
    config, secret_keys = load_stack_config_file("prod")
    config["pm500:provisioning"] = json.dumps({"fleet": True})
    stack = evaluate_stack("prod", config=config, secret_keys=secret_keys)
    checked = set()
    for role in stack.of_type("aws:iam/role:Role"):
        [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
        [service] = [statement["Principal"]["Service"]]
        name = role.inputs["name"]
        condition = statement.get("Condition")
        if service == "iot.amazonaws.com" and "-rule-" in name:
            rule = "pm500_prod_" + name.removeprefix("pm500-prod-rule-")
            assert condition == {"StringEquals": {"aws:SourceAccount": account},
                                 "ArnLike": {"aws:SourceArn": f"{iot}:rule/{rule}"}}, name
            assert stack.one(RULE, f"rule/{name.removeprefix('pm500-prod-rule-')}").inputs["name"] == rule
        elif service == "iot.amazonaws.com":
            assert condition == {"StringEquals": {"aws:SourceAccount": account},
                                 "ArnLike": {"aws:SourceArn": f"{iot}:*"}}, name
        elif service == "lambda.amazonaws.com":
            assert condition is None, name
        elif service == "states.amazonaws.com":  # the presence state machine (Step Functions guide)
            machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:pm500-prod-presence"
            assert condition == {"StringEquals": {"aws:SourceAccount": account},
                                 "ArnLike": {"aws:SourceArn": machine}}, name
            assert stack.one("aws:sfn/stateMachine:StateMachine").inputs["name"] == machine.rsplit(":", 1)[1]
        else:
            assert service in ("firehose.amazonaws.com", "pipes.amazonaws.com"), name
            assert condition == {"StringEquals": {"aws:SourceAccount": account}}, name
        checked.add(service)
    assert checked == {"iot.amazonaws.com", "lambda.amazonaws.com", "firehose.amazonaws.com",
                       "pipes.amazonaws.com", "states.amazonaws.com"}
