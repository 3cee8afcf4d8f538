"""The AWS API requests the provider would send to create each resource the program declares.

One mapping, two users: `infra.service_models` checks every request against AWS's published service
models (botocore's), and `sandbox.aws_seed.replay_plan` sends them to moto so the local account holds
the whole stack. Input is what the engine recorded for each registration (`infra.mock_runtime`,
camelCase keys, resolved values); output is one `ApiRequest` per API call, named by botocore's service
and operation names with the request members the API documents (as pulumi-aws/the Terraform AWS
provider fill them for our inputs).

Physical names: the explicit name input, else the provider's autoname: the logical name, `-`, and 7
random hex characters (pulumi-aws autonaming; here the 7 characters are a hash of the logical name, so
runs are reproducible and length and alphabet are exactly the provider's).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

AUTONAME_RANDOM_HEX = 7
US_EAST_1 = "us-east-1"


class Declared(Protocol):
    """What a recorded registration offers (`infra.mock_runtime.RegisteredResource`)."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ApiRequest:
    service: str  # botocore service name, e.g. "iot"
    operation: str  # e.g. "CreateThing"
    params: dict[str, Any]
    resource: str  # "<type> <logical name>", for messages
    documents: dict[str, str] = field(default_factory=dict)  # member -> document kind (see service_models)

    def describe(self) -> str:
        return f"{self.resource}: {self.service}.{self.operation}"


@dataclass(frozen=True)
class Resolved:
    """One declared resource as the mappings see it: integral numbers as ints, plus the stack region."""

    type: str
    name: str
    inputs: dict[str, Any]
    region: str


def autoname(logical: str) -> str:
    """The provider's name for a resource without an explicit one: `<logical>-<7 hex>`."""
    return f"{logical}-{hashlib.sha256(logical.encode()).hexdigest()[:AUTONAME_RANDOM_HEX]}"


def _name(r: Resolved, key: str = "name") -> str:
    value = r.inputs.get(key)
    return value if isinstance(value, str) and value else autoname(r.name)


def _ints(value: Any) -> Any:
    """The engine carries every number as a float; the APIs take integers where the value is one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


def _compact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop members the provider leaves out when the input is unset."""
    return {k: v for k, v in params.items() if v is not None and v != {} and v != []}


def _tag_list(tags: Mapping[str, str] | None, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted((tags or {}).items())]


# --- per resource type ---------------------------------------------------------------------------

def _thing_type(r: Resolved) -> list[ApiRequest]:
    props = r.inputs.get("properties") or {}
    return [ApiRequest("iot", "CreateThingType", _compact({
        "thingTypeName": _name(r),
        "thingTypeProperties": _compact({"thingTypeDescription": props.get("description"),
                                         "searchableAttributes": props.get("searchableAttributes")}),
        "tags": _tag_list(r.inputs.get("tags")),
    }), _label(r))]


def _thing_group(r: Resolved) -> list[ApiRequest]:
    props = r.inputs.get("properties") or {}
    attributes = (props.get("attributePayload") or {}).get("attributes")
    return [ApiRequest("iot", "CreateThingGroup", _compact({
        "thingGroupName": _name(r),
        "parentGroupName": r.inputs.get("parentGroupName"),
        "thingGroupProperties": _compact({"thingGroupDescription": props.get("description"),
                                          "attributePayload": _compact({"attributes": attributes})}),
        "tags": _tag_list(r.inputs.get("tags")),
    }), _label(r))]


def _thing(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "CreateThing", _compact({
        "thingName": _name(r),
        "thingTypeName": r.inputs.get("thingTypeName"),
        "attributePayload": _compact({"attributes": r.inputs.get("attributes")}),
    }), _label(r))]


def _membership(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "AddThingToThingGroup", {
        "thingGroupName": r.inputs["thingGroupName"], "thingName": r.inputs["thingName"],
    }, _label(r))]


def _iot_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "CreatePolicy", _compact({
        "policyName": _name(r), "policyDocument": r.inputs["policy"], "tags": _tag_list(r.inputs.get("tags")),
    }), _label(r), {"policyDocument": "iot-policy"})]


def _provisioning_template(r: Resolved) -> list[ApiRequest]:
    hook = r.inputs.get("preProvisioningHook")
    return [ApiRequest("iot", "CreateProvisioningTemplate", _compact({
        "templateName": _name(r),
        "description": r.inputs.get("description"),
        "templateBody": r.inputs["templateBody"],
        "enabled": r.inputs.get("enabled"),
        "provisioningRoleArn": r.inputs["provisioningRoleArn"],
        "preProvisioningHook": _compact({"targetArn": hook["targetArn"],
                                         "payloadVersion": hook.get("payloadVersion")}) if hook else None,
        "tags": _tag_list(r.inputs.get("tags")),
        "type": r.inputs.get("type"),
    }), _label(r), {"templateBody": "json"})]


_RULE_ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "kineses": lambda a: {"kinesis": _compact({"roleArn": a["roleArn"], "streamName": a["streamName"],
                                               "partitionKey": a.get("partitionKey")})},
    "firehoses": lambda a: {"firehose": _compact({"roleArn": a["roleArn"],
                                                  "deliveryStreamName": a["deliveryStreamName"],
                                                  "separator": a.get("separator"),
                                                  "batchMode": a.get("batchMode")})},
    "dynamodbv2s": lambda a: {"dynamoDBv2": {"roleArn": a["roleArn"],
                                             "putItem": {"tableName": a["putItem"]["tableName"]}}},
    "cloudwatchLogs": lambda a: {"cloudwatchLogs": _compact({"roleArn": a["roleArn"],
                                                             "logGroupName": a["logGroupName"],
                                                             "batchMode": a.get("batchMode")})},
}


_RULE_SETTINGS = {"name", "description", "enabled", "sql", "sqlVersion", "tags", "errorAction"}


def _rule_action(kind: str, action: dict[str, Any], r: Resolved) -> dict[str, Any]:
    try:
        return _RULE_ACTIONS[kind](action)
    except KeyError:
        raise UnmappedResource(f"{_label(r)}: no request mapping for topic rule action {kind!r}") from None


def _topic_rule(r: Resolved) -> list[ApiRequest]:
    actions = [_rule_action(kind, a, r) for kind in _RULE_ACTIONS if kind != "cloudwatchLogs"
               for a in r.inputs.get(kind) or []]
    unknown = [k for k, v in r.inputs.items() if v and k not in _RULE_ACTIONS and k not in _RULE_SETTINGS]
    if unknown:
        raise UnmappedResource(f"{_label(r)}: no request mapping for topic rule action(s) {unknown}")
    error = r.inputs.get("errorAction") or {}
    error_action = next((_rule_action(k, v, r) for k, v in error.items() if v), None)
    tags = r.inputs.get("tags") or {}
    return [ApiRequest("iot", "CreateTopicRule", _compact({
        "ruleName": _name(r),
        "topicRulePayload": _compact({
            "sql": r.inputs["sql"], "description": r.inputs.get("description"), "actions": actions,
            "ruleDisabled": not r.inputs.get("enabled", True), "awsIotSqlVersion": r.inputs.get("sqlVersion"),
            "errorAction": error_action,
        }),
        # CreateTopicRule takes tags as a URL query string ("k1=v1&k2=v2").
        "tags": "&".join(f"{k}={v}" for k, v in sorted(tags.items())) or None,
    }), _label(r))]


def _role(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "CreateRole", _compact({
        "RoleName": _name(r), "AssumeRolePolicyDocument": r.inputs["assumeRolePolicy"],
        "Description": r.inputs.get("description"), "Path": r.inputs.get("path"),
        "MaxSessionDuration": r.inputs.get("maxSessionDuration"),
        "Tags": _tag_list(r.inputs.get("tags")),
    }), _label(r), {"AssumeRolePolicyDocument": "iam-trust"})]


def _role_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "PutRolePolicy", {
        "RoleName": r.inputs["role"], "PolicyName": _name(r), "PolicyDocument": r.inputs["policy"],
    }, _label(r), {"PolicyDocument": "iam-inline"})]


def _oidc_provider(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "CreateOpenIDConnectProvider", _compact({
        "Url": r.inputs["url"], "ClientIDList": r.inputs.get("clientIdLists"),
        "ThumbprintList": r.inputs.get("thumbprintLists"), "Tags": _tag_list(r.inputs.get("tags")),
    }), _label(r))]


def _role_policy_attachment(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iam", "AttachRolePolicy", {"RoleName": r.inputs["role"],
                                                   "PolicyArn": r.inputs["policyArn"]}, _label(r))]


def _kms_key(r: Resolved) -> list[ApiRequest]:
    requests = [ApiRequest("kms", "CreateKey", _compact({
        "Description": r.inputs.get("description"), "KeyUsage": r.inputs.get("keyUsage"),
        "KeySpec": r.inputs.get("customerMasterKeySpec"), "Policy": r.inputs.get("policy"),
        "Tags": _tag_list(r.inputs.get("tags"), "TagKey", "TagValue"),
    }), _label(r))]
    if r.inputs.get("enableKeyRotation"):
        requests.append(ApiRequest("kms", "EnableKeyRotation", {"KeyId": _kms_key_id(r)}, _label(r)))
    return requests


def _kms_key_id(r: Resolved) -> str:
    """A key id shaped like AWS's (a UUID); the mock runtime derives it from the logical name the same way."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, r.name))


def _kms_alias(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("kms", "CreateAlias", {"AliasName": _name(r), "TargetKeyId": r.inputs["targetKeyId"]},
                       _label(r))]


def _stream(r: Resolved) -> list[ApiRequest]:
    name = _name(r)
    mode = (r.inputs.get("streamModeDetails") or {}).get("streamMode")
    requests = [ApiRequest("kinesis", "CreateStream", _compact({
        "StreamName": name, "ShardCount": r.inputs.get("shardCount") if mode != "ON_DEMAND" else None,
        "StreamModeDetails": _compact({"StreamMode": mode}), "Tags": dict(r.inputs.get("tags") or {}),
    }), _label(r))]
    retention = r.inputs.get("retentionPeriod")
    if retention and retention > 24:
        requests.append(ApiRequest("kinesis", "IncreaseStreamRetentionPeriod",
                                   {"StreamName": name, "RetentionPeriodHours": retention}, _label(r)))
    if r.inputs.get("encryptionType") == "KMS":
        requests.append(ApiRequest("kinesis", "StartStreamEncryption", {
            "StreamName": name, "EncryptionType": "KMS", "KeyId": r.inputs["kmsKeyId"]}, _label(r)))
    return requests


def _firehose(r: Resolved) -> list[ApiRequest]:
    if r.inputs.get("destination") != "extended_s3":
        raise UnmappedResource(f"{_label(r)}: only the extended_s3 destination is mapped")
    s3 = r.inputs["extendedS3Configuration"]
    logging = s3.get("cloudwatchLoggingOptions") or {}
    processing = s3.get("processingConfiguration") or {}
    partitioning = s3.get("dynamicPartitioningConfiguration") or {}
    sse = r.inputs.get("serverSideEncryption") or {}
    return [ApiRequest("firehose", "CreateDeliveryStream", _compact({
        "DeliveryStreamName": _name(r),
        "DeliveryStreamType": "DirectPut",
        "DeliveryStreamEncryptionConfigurationInput": _compact({
            "KeyType": sse.get("keyType"), "KeyARN": sse.get("keyArn")}) if sse.get("enabled") else None,
        "ExtendedS3DestinationConfiguration": _compact({
            "RoleARN": s3["roleArn"], "BucketARN": s3["bucketArn"], "Prefix": s3.get("prefix"),
            "ErrorOutputPrefix": s3.get("errorOutputPrefix"),
            "BufferingHints": _compact({"SizeInMBs": s3.get("bufferingSize"),
                                        "IntervalInSeconds": s3.get("bufferingInterval")}),
            "CompressionFormat": s3.get("compressionFormat"),
            "FileExtension": s3.get("fileExtension"),
            "CloudWatchLoggingOptions": _compact({
                "Enabled": logging.get("enabled"), "LogGroupName": logging.get("logGroupName"),
                "LogStreamName": logging.get("logStreamName")}),
            "ProcessingConfiguration": _compact({
                "Enabled": processing.get("enabled"),
                "Processors": [{"Type": p["type"], "Parameters": [
                    {"ParameterName": q["parameterName"], "ParameterValue": q["parameterValue"]}
                    for q in p.get("parameters") or []]} for p in processing.get("processors") or []],
            }),
            "DynamicPartitioningConfiguration": _compact({
                "Enabled": partitioning.get("enabled"),
                "RetryOptions": _compact({"DurationInSeconds": partitioning.get("retryDuration")}),
            }),
        }),
        "Tags": _tag_list(r.inputs.get("tags")),
    }), _label(r))]


def _bucket(r: Resolved) -> list[ApiRequest]:
    name = _name(r, "bucket")
    region = r.region
    # Outside us-east-1, CreateBucket must name the region (else IllegalLocationConstraintException).
    where = {} if region == US_EAST_1 else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    requests = [ApiRequest("s3", "CreateBucket", {"Bucket": name, **where}, _label(r),
                           {"Bucket": "s3-bucket-name"})]
    if r.inputs.get("tags"):
        requests.append(ApiRequest("s3", "PutBucketTagging", {
            "Bucket": name, "Tagging": {"TagSet": _tag_list(r.inputs["tags"])}}, _label(r)))
    return requests


def _bucket_ownership(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("s3", "PutBucketOwnershipControls", {
        "Bucket": r.inputs["bucket"],
        "OwnershipControls": {"Rules": [{"ObjectOwnership": r.inputs["rule"]["objectOwnership"]}]},
    }, _label(r))]


def _public_access_block(r: Resolved) -> list[ApiRequest]:
    keys = ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets")
    return [ApiRequest("s3", "PutPublicAccessBlock", {
        "Bucket": r.inputs["bucket"],
        "PublicAccessBlockConfiguration": {k[0].upper() + k[1:]: bool(r.inputs.get(k)) for k in keys},
    }, _label(r))]


def _bucket_encryption(r: Resolved) -> list[ApiRequest]:
    rules = []
    for rule in r.inputs["rules"]:
        default = rule.get("applyServerSideEncryptionByDefault") or {}
        rules.append(_compact({
            "ApplyServerSideEncryptionByDefault": _compact({
                "SSEAlgorithm": default.get("sseAlgorithm"),
                "KMSMasterKeyID": default.get("kmsMasterKeyId")}),
            "BucketKeyEnabled": rule.get("bucketKeyEnabled"),
        }))
    return [ApiRequest("s3", "PutBucketEncryption", {
        "Bucket": r.inputs["bucket"], "ServerSideEncryptionConfiguration": {"Rules": rules}}, _label(r))]


def _bucket_versioning(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("s3", "PutBucketVersioning", {
        "Bucket": r.inputs["bucket"],
        "VersioningConfiguration": {"Status": r.inputs["versioningConfiguration"]["status"]},
    }, _label(r))]


def _bucket_lifecycle(r: Resolved) -> list[ApiRequest]:
    rules = []
    for rule in r.inputs["rules"]:
        noncurrent = rule.get("noncurrentVersionExpiration")
        abort = rule.get("abortIncompleteMultipartUpload")
        rules.append(_compact({
            "ID": rule.get("id"), "Status": rule["status"],
            "Filter": {"Prefix": (rule.get("filter") or {}).get("prefix", "")},
            "NoncurrentVersionExpiration":
                {"NoncurrentDays": noncurrent["noncurrentDays"]} if noncurrent else None,
            "AbortIncompleteMultipartUpload":
                {"DaysAfterInitiation": abort["daysAfterInitiation"]} if abort else None,
        }))
    return [ApiRequest("s3", "PutBucketLifecycleConfiguration", {
        "Bucket": r.inputs["bucket"], "LifecycleConfiguration": {"Rules": rules}}, _label(r))]


def _bucket_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("s3", "PutBucketPolicy", {"Bucket": r.inputs["bucket"], "Policy": r.inputs["policy"]},
                       _label(r), {"Policy": "s3-bucket-policy"})]


def _log_group(r: Resolved) -> list[ApiRequest]:
    name = _name(r)
    requests = [ApiRequest("logs", "CreateLogGroup", _compact({
        "logGroupName": name, "kmsKeyId": r.inputs.get("kmsKeyId"), "tags": dict(r.inputs.get("tags") or {}),
    }), _label(r))]
    if r.inputs.get("retentionInDays"):
        requests.append(ApiRequest("logs", "PutRetentionPolicy", {
            "logGroupName": name, "retentionInDays": r.inputs["retentionInDays"]}, _label(r)))
    return requests


def _log_stream(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("logs", "CreateLogStream", {
        "logGroupName": r.inputs["logGroupName"], "logStreamName": _name(r)}, _label(r))]


def _event_bus(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("events", "CreateEventBus", _compact({
        "Name": _name(r), "Tags": _tag_list(r.inputs.get("tags"))}), _label(r))]


def _pipe(r: Resolved) -> list[ApiRequest]:
    source = (r.inputs.get("sourceParameters") or {}).get("kinesisStreamParameters") or {}
    target = (r.inputs.get("targetParameters") or {}).get("eventbridgeEventBusParameters") or {}
    return [ApiRequest("pipes", "CreatePipe", _compact({
        "Name": _name(r), "RoleArn": r.inputs["roleArn"], "Source": r.inputs["source"],
        "Target": r.inputs["target"],
        "SourceParameters": _compact({"KinesisStreamParameters": _compact({
            "StartingPosition": source.get("startingPosition"), "BatchSize": source.get("batchSize"),
            "MaximumBatchingWindowInSeconds": source.get("maximumBatchingWindowInSeconds")})}),
        "TargetParameters": _compact({"EventBridgeEventBusParameters": _compact({
            "Source": target.get("source"), "DetailType": target.get("detailType")})}),
        "Tags": dict(r.inputs.get("tags") or {}),
    }), _label(r))]


def _table(r: Resolved) -> list[ApiRequest]:
    name = _name(r)
    sse = r.inputs.get("serverSideEncryption") or {}
    requests = [ApiRequest("dynamodb", "CreateTable", _compact({
        "TableName": name,
        "BillingMode": r.inputs.get("billingMode"),
        "KeySchema": [{"AttributeName": r.inputs["hashKey"], "KeyType": "HASH"}]
        + ([{"AttributeName": r.inputs["rangeKey"], "KeyType": "RANGE"}] if r.inputs.get("rangeKey") else []),
        "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]}
                                 for a in r.inputs["attributes"]],
        "SSESpecification": _compact({
            "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": sse.get("kmsKeyArn"),
        }) if sse.get("enabled") else None,
        "DeletionProtectionEnabled": r.inputs.get("deletionProtectionEnabled"),
        "Tags": _tag_list(r.inputs.get("tags")),
    }), _label(r))]
    if (r.inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        requests.append(ApiRequest("dynamodb", "UpdateContinuousBackups", {
            "TableName": name,
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}, _label(r)))
    return requests


def _ecr_repository(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("ecr", "CreateRepository", _compact({
        "repositoryName": _name(r), "imageTagMutability": r.inputs.get("imageTagMutability"),
        "imageScanningConfiguration": _compact({
            "scanOnPush": (r.inputs.get("imageScanningConfiguration") or {}).get("scanOnPush")}),
        "tags": _tag_list(r.inputs.get("tags")),
    }), _label(r))]


def _ecr_lifecycle(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("ecr", "PutLifecyclePolicy", {
        "repositoryName": r.inputs["repository"], "lifecyclePolicyText": r.inputs["policy"]},
        _label(r), {"lifecyclePolicyText": "json"})]


def _lambda_permission(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("lambda", "AddPermission", _compact({
        "FunctionName": r.inputs["function"], "StatementId": _name(r, "statementId"),
        "Action": r.inputs["action"], "Principal": r.inputs["principal"],
        "SourceArn": r.inputs.get("sourceArn"),
    }), _label(r))]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:iot/thingType:ThingType": _thing_type,
    "aws:iot/thingGroup:ThingGroup": _thing_group,
    "aws:iot/thing:Thing": _thing,
    "aws:iot/thingGroupMembership:ThingGroupMembership": _membership,
    "aws:iot/policy:Policy": _iot_policy,
    "aws:iot/provisioningTemplate:ProvisioningTemplate": _provisioning_template,
    "aws:iot/topicRule:TopicRule": _topic_rule,
    "aws:iam/role:Role": _role,
    "aws:iam/rolePolicy:RolePolicy": _role_policy,
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": _oidc_provider,
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _role_policy_attachment,
    "aws:kms/key:Key": _kms_key,
    "aws:kms/alias:Alias": _kms_alias,
    "aws:kinesis/stream:Stream": _stream,
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": _firehose,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _bucket_ownership,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _public_access_block,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration":
        _bucket_encryption,
    "aws:s3/bucketVersioning:BucketVersioning": _bucket_versioning,
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _bucket_lifecycle,
    "aws:s3/bucketPolicy:BucketPolicy": _bucket_policy,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/logStream:LogStream": _log_stream,
    "aws:cloudwatch/eventBus:EventBus": _event_bus,
    "aws:pipes/pipe:Pipe": _pipe,
    "aws:dynamodb/table:Table": _table,
    "aws:ecr/repository:Repository": _ecr_repository,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _ecr_lifecycle,
    "aws:lambda/permission:Permission": _lambda_permission,
}


class UnmappedResource(LookupError):
    """An AWS resource (or setting) with no request mapping: add one, never skip it silently."""


def _label(r: Resolved | Declared) -> str:
    return f"{r.type} {r.name}"


def requests_for(resources: Iterable[Declared], region: str = US_EAST_1) -> list[ApiRequest]:
    """Every create request for the AWS resources among `resources` (a stack in `region`), in
    registration order (which respects dependencies: the engine registers a resource only once its
    inputs are known)."""
    out: list[ApiRequest] = []
    for r in resources:
        if not r.type.startswith("aws:"):
            continue
        mapping = MAPPINGS.get(r.type)
        if mapping is None:
            raise UnmappedResource(f"{_label(r)}: no request mapping for resource type {r.type}")
        resolved = Resolved(r.type, r.name, _ints(r.inputs), region)
        out += mapping(resolved)
    return out


class Evaluated(Protocol):
    """A stack evaluated on the mock runtime (`infra.mock_runtime.EvaluatedStack`)."""

    @property
    def resources(self) -> list[Any]: ...
    @property
    def config(self) -> dict[str, str]: ...


def stack_requests(stack: Evaluated) -> list[ApiRequest]:
    """`requests_for` the stack's resources in the stack's own region (`aws:region`)."""
    return requests_for(stack.resources, stack.config.get("aws:region") or US_EAST_1)



