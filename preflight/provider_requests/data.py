"""KMS, Kinesis, Firehose, CloudWatch Logs, EventBridge, Pipes, DynamoDB and ECR."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from preflight.provider_requests.base import (
    ApiRequest,
    Resolved,
    UnmappedResource,
    compact,
    label,
    physical_name,
    tag_list,
)


def _kms_key(r: Resolved) -> list[ApiRequest]:
    requests = [ApiRequest("kms", "CreateKey", compact({
        "Description": r.inputs.get("description"), "KeyUsage": r.inputs.get("keyUsage"),
        "KeySpec": r.inputs.get("customerMasterKeySpec"), "Policy": r.inputs.get("policy"),
        "Tags": tag_list(r.inputs.get("tags"), "TagKey", "TagValue"),
    }), label(r))]
    if r.inputs.get("enableKeyRotation"):
        requests.append(ApiRequest("kms", "EnableKeyRotation", {"KeyId": _kms_key_id(r)}, label(r)))
    return requests


def _kms_key_id(r: Resolved) -> str:
    """A key id shaped like AWS's (a UUID); the mock runtime derives it from the logical name the same way."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, r.name))


def _kms_alias(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("kms", "CreateAlias", {
        "AliasName": physical_name(r), "TargetKeyId": r.inputs["targetKeyId"]}, label(r))]


def _stream(r: Resolved) -> list[ApiRequest]:
    name = physical_name(r)
    mode = (r.inputs.get("streamModeDetails") or {}).get("streamMode")
    requests = [ApiRequest("kinesis", "CreateStream", compact({
        "StreamName": name, "ShardCount": r.inputs.get("shardCount") if mode != "ON_DEMAND" else None,
        "StreamModeDetails": compact({"StreamMode": mode}), "Tags": dict(r.inputs.get("tags") or {}),
    }), label(r))]
    retention = r.inputs.get("retentionPeriod")
    if retention and retention > 24:
        requests.append(ApiRequest("kinesis", "IncreaseStreamRetentionPeriod",
                                   {"StreamName": name, "RetentionPeriodHours": retention}, label(r)))
    if r.inputs.get("encryptionType") == "KMS":
        requests.append(ApiRequest("kinesis", "StartStreamEncryption", {
            "StreamName": name, "EncryptionType": "KMS", "KeyId": r.inputs["kmsKeyId"]}, label(r)))
    return requests


def _firehose(r: Resolved) -> list[ApiRequest]:
    if r.inputs.get("destination") != "extended_s3":
        raise UnmappedResource(f"{label(r)}: only the extended_s3 destination is mapped")
    s3 = r.inputs["extendedS3Configuration"]
    logging = s3.get("cloudwatchLoggingOptions") or {}
    processing = s3.get("processingConfiguration") or {}
    partitioning = s3.get("dynamicPartitioningConfiguration") or {}
    sse = r.inputs.get("serverSideEncryption") or {}
    return [ApiRequest("firehose", "CreateDeliveryStream", compact({
        "DeliveryStreamName": physical_name(r),
        "DeliveryStreamType": "DirectPut",
        "DeliveryStreamEncryptionConfigurationInput": compact({
            "KeyType": sse.get("keyType"), "KeyARN": sse.get("keyArn")}) if sse.get("enabled") else None,
        "ExtendedS3DestinationConfiguration": compact({
            "RoleARN": s3["roleArn"], "BucketARN": s3["bucketArn"], "Prefix": s3.get("prefix"),
            "ErrorOutputPrefix": s3.get("errorOutputPrefix"),
            "BufferingHints": compact({"SizeInMBs": s3.get("bufferingSize"),
                                        "IntervalInSeconds": s3.get("bufferingInterval")}),
            "CompressionFormat": s3.get("compressionFormat"),
            "FileExtension": s3.get("fileExtension"),
            "CloudWatchLoggingOptions": compact({
                "Enabled": logging.get("enabled"), "LogGroupName": logging.get("logGroupName"),
                "LogStreamName": logging.get("logStreamName")}),
            "ProcessingConfiguration": compact({
                "Enabled": processing.get("enabled"),
                "Processors": [{"Type": p["type"], "Parameters": [
                    {"ParameterName": q["parameterName"], "ParameterValue": q["parameterValue"]}
                    for q in p.get("parameters") or []]} for p in processing.get("processors") or []],
            }),
            "DynamicPartitioningConfiguration": compact({
                "Enabled": partitioning.get("enabled"),
                "RetryOptions": compact({"DurationInSeconds": partitioning.get("retryDuration")}),
            }),
        }),
        "Tags": tag_list(r.inputs.get("tags")),
    }), label(r))]




def _log_group(r: Resolved) -> list[ApiRequest]:
    name = physical_name(r)
    requests = [ApiRequest("logs", "CreateLogGroup", compact({
        "logGroupName": name, "kmsKeyId": r.inputs.get("kmsKeyId"), "tags": dict(r.inputs.get("tags") or {}),
    }), label(r))]
    if r.inputs.get("retentionInDays"):
        requests.append(ApiRequest("logs", "PutRetentionPolicy", {
            "logGroupName": name, "retentionInDays": r.inputs["retentionInDays"]}, label(r)))
    return requests


def _log_stream(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("logs", "CreateLogStream", {
        "logGroupName": r.inputs["logGroupName"], "logStreamName": physical_name(r)}, label(r))]


def _event_bus(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("events", "CreateEventBus", compact({
        "Name": physical_name(r), "Tags": tag_list(r.inputs.get("tags"))}), label(r))]


def _pipe(r: Resolved) -> list[ApiRequest]:
    sources = r.inputs.get("sourceParameters") or {}
    unknown = sorted(k for k, v in sources.items() if v and k not in _PIPE_SOURCES)
    if unknown:
        raise UnmappedResource(f"{label(r)}: no request mapping for pipe source parameters {unknown}")
    targets = r.inputs.get("targetParameters") or {}
    bus = targets.get("eventbridgeEventBusParameters") or {}
    return [ApiRequest("pipes", "CreatePipe", compact({
        "Name": physical_name(r), "RoleArn": r.inputs["roleArn"], "Source": r.inputs["source"],
        "Target": r.inputs["target"],
        "SourceParameters": compact({member: shape(sources.get(key) or {})
                                     for key, (member, shape) in _PIPE_SOURCES.items()}),
        "TargetParameters": compact({
            "InputTemplate": targets.get("inputTemplate"),
            "EventBridgeEventBusParameters": compact({
                "Source": bus.get("source"), "DetailType": bus.get("detailType")}),
        }),
        "Tags": dict(r.inputs.get("tags") or {}),
    }), label(r))]


# Pipe source parameter input -> (CreatePipe member, its members from the input).
_PIPE_SOURCES: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "kinesisStreamParameters": ("KinesisStreamParameters", lambda s: compact({
        "StartingPosition": s.get("startingPosition"), "BatchSize": s.get("batchSize"),
        "MaximumBatchingWindowInSeconds": s.get("maximumBatchingWindowInSeconds")})),
    "sqsQueueParameters": ("SqsQueueParameters", lambda s: compact({
        "BatchSize": s.get("batchSize"),
        "MaximumBatchingWindowInSeconds": s.get("maximumBatchingWindowInSeconds")})),
}


def _table(r: Resolved) -> list[ApiRequest]:
    name = physical_name(r)
    sse = r.inputs.get("serverSideEncryption") or {}
    requests = [ApiRequest("dynamodb", "CreateTable", compact({
        "TableName": name,
        "BillingMode": r.inputs.get("billingMode"),
        "KeySchema": [{"AttributeName": r.inputs["hashKey"], "KeyType": "HASH"}]
        + ([{"AttributeName": r.inputs["rangeKey"], "KeyType": "RANGE"}] if r.inputs.get("rangeKey") else []),
        "AttributeDefinitions": [{"AttributeName": a["name"], "AttributeType": a["type"]}
                                 for a in r.inputs["attributes"]],
        "SSESpecification": compact({
            "Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": sse.get("kmsKeyArn"),
        }) if sse.get("enabled") else None,
        "DeletionProtectionEnabled": r.inputs.get("deletionProtectionEnabled"),
        "Tags": tag_list(r.inputs.get("tags")),
    }), label(r))]
    if (r.inputs.get("pointInTimeRecovery") or {}).get("enabled"):
        requests.append(ApiRequest("dynamodb", "UpdateContinuousBackups", {
            "TableName": name,
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}, label(r)))
    return requests




def _ecr_repository(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("ecr", "CreateRepository", compact({
        "repositoryName": physical_name(r), "imageTagMutability": r.inputs.get("imageTagMutability"),
        "imageScanningConfiguration": compact({
            "scanOnPush": (r.inputs.get("imageScanningConfiguration") or {}).get("scanOnPush")}),
        "tags": tag_list(r.inputs.get("tags")),
    }), label(r))]


def _ecr_lifecycle(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("ecr", "PutLifecyclePolicy", {
        "repositoryName": r.inputs["repository"], "lifecyclePolicyText": r.inputs["policy"]},
        label(r), {"lifecyclePolicyText": "json"})]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:kms/key:Key": _kms_key,
    "aws:kms/alias:Alias": _kms_alias,
    "aws:kinesis/stream:Stream": _stream,
    "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream": _firehose,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/logStream:LogStream": _log_stream,
    "aws:cloudwatch/eventBus:EventBus": _event_bus,
    "aws:pipes/pipe:Pipe": _pipe,
    "aws:dynamodb/table:Table": _table,
    "aws:ecr/repository:Repository": _ecr_repository,
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _ecr_lifecycle,
}
