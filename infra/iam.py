"""IAM and IoT policy documents as plain dicts, built from resolved ARNs.

Kept free of Pulumi so that the exact documents the program deploys can be checked against AWS's
authorization reference (preflight.iam_reference) and by the policy pack. Each role gets exactly the
actions its user performs, on exactly the resources it touches: no service-wide wildcards, and
`Resource: "*"` only for actions that have no resource-level permissions (the IAM check in
tests/infra/test_iam_reference.py enforces both).
"""

from __future__ import annotations

from typing import Any

from collector.topics import (
    PRIMARY_HOST_ATTRIBUTE,
    collector_state_topic,
    host_topics,
    iot_policy_topics,
    stack_thing_prefix,
)

Document = dict[str, Any]
VERSION = "2012-10-17"
THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"
PRIMARY_HOST_VARIABLE = f"${{iot:Connection.Thing.Attributes[{PRIMARY_HOST_ATTRIBUTE}]}}"


def _doc(*statements: Document) -> Document:
    return {"Version": VERSION, "Statement": list(statements)}


def _allow(sid: str, actions: list[str], resources: list[str], condition: Document | None = None) -> Document:
    statement: Document = {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def assume_role(service: str, account_id: str, source_arn: str | None = None) -> Document:
    """Trust policy for an AWS service, limited to calls made on behalf of this account and, where the
    service documents the key, of `source_arn` (the resource the role serves) too: confused-deputy
    prevention. Lambda execution roles take no condition: a function's role is passed with
    `iam:PassRole` in this account only, and Lambda documents no source key for it."""
    statement: Document = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if service != LAMBDA_SERVICE:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
        if source_arn is not None:
            statement["Condition"]["ArnLike"] = {"aws:SourceArn": source_arn}
    return _doc(statement)


LAMBDA_SERVICE = "lambda.amazonaws.com"


def boundary_arn(partition: str, account_id: str, policy_name: str) -> str:
    """`arn:<partition>:iam::<account>:policy/<name>`: the stack's permissions boundary (infra.naming)."""
    return f"arn:{partition}:iam::{account_id}:policy/{policy_name}"


def iot_arn(partition: str, region: str, account_id: str) -> str:
    """`arn:<partition>:iot:<region>:<account>`: the partition comes from `aws.get_partition` (aws, aws-cn,
    aws-us-gov, aws-iso...), never a literal `arn:aws:` (config accepts GovCloud and ISO regions)."""
    return f"arn:{partition}:iot:{region}:{account_id}"


def via_service(service: str, region: str, dns_suffix: str) -> str:
    """A `kms:ViaService` value: `<service>.<region>.<DNS suffix>`, the suffix from `aws.get_partition`
    (`amazonaws.com`, `amazonaws.com.cn` in China, others in ISO partitions)."""
    return f"{service}.{region}.{dns_suffix}"


def collector_iot_policy(partition: str, region: str, account_id: str) -> Document:
    """The IoT policy every collector certificate gets: its own client id, its own topics only.

    Topic resources come only from `collector.topics.iot_policy_topics`, the same templates the collector
    publishes with and the Mosquitto ACL is rendered from.
    """
    arn = iot_arn(partition, region, account_id)
    publish = [f"{arn}:topic/{t}" for t in iot_policy_topics("publish", THING_NAME_VARIABLE)]
    receive = [f"{arn}:topic/{t}" for t in iot_policy_topics("subscribe", THING_NAME_VARIABLE)]
    subscribe = [f"{arn}:topicfilter/{t}" for t in iot_policy_topics("subscribe", THING_NAME_VARIABLE)]
    return _doc(
        _allow("ConnectAsOwnThing", ["iot:Connect"], [f"{arn}:client/{THING_NAME_VARIABLE}"],
               {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}),
        _allow("PublishOwnTopics", ["iot:Publish"], publish),
        _allow("SubscribeOwnTopics", ["iot:Subscribe"], subscribe),
        _allow("ReceiveOwnTopics", ["iot:Receive"], receive),
    )


def collector_state_policy(partition: str, region: str, account_id: str) -> Document:
    """Read the STATE of the collector's own Primary Host Application: the host id is its thing's
    `primaryHostId` attribute, so a collector reads that one STATE topic only, and one without the
    attribute none (an unresolved thing policy variable matches nothing). A policy of its own, attached
    to the stack's root thing group, rather than more resources in the collector policy: AWS IoT caps a
    policy document at 2048 characters and the collector policy is close to it."""
    arn = iot_arn(partition, region, account_id)
    state = collector_state_topic(PRIMARY_HOST_VARIABLE)
    return _doc(
        _allow("SubscribeOwnHostState", ["iot:Subscribe"], [f"{arn}:topicfilter/{state}"]),
        _allow("ReceiveOwnHostState", ["iot:Receive"], [f"{arn}:topic/{state}"]),
    )


def host_iot_policy(partition: str, region: str, account_id: str, stack: str, host_id: str) -> Document:
    """A Sparkplug Host Application of the stack (client id = certificate CN = its host id): read every
    edge node of the stack, send them NCMD, publish its own STATE, retained (`iot:RetainPublish`, which
    AWS IoT requires besides `iot:Publish` for a retained message, will included)."""
    arn = iot_arn(partition, region, account_id)
    allowed = host_topics(host_id, f"{stack_thing_prefix(stack)}*")
    return _doc(
        _allow("ConnectAsHost", ["iot:Connect"], [f"{arn}:client/{host_id}"]),
        _allow("SubscribeSparkplug", ["iot:Subscribe"],
               [f"{arn}:topicfilter/{t}" for t in allowed["subscribe"]]),
        _allow("ReceiveStackEdgeNodes", ["iot:Receive"], [f"{arn}:topic/{t}" for t in allowed["receive"]]),
        _allow("CommandAndState", ["iot:Publish"], [f"{arn}:topic/{t}" for t in allowed["publish"]]),
        _allow("RetainOwnState", ["iot:RetainPublish"], [f"{arn}:topic/{t}" for t in allowed["retain"]]),
    )


def error_log_writes(log_group_arn: str) -> list[Document]:
    """The CloudWatch Logs error action: AWS IoT documents CreateLogStream, DescribeLogStreams and
    PutLogEvents (https://docs.aws.amazon.com/iot/latest/developerguide/cloudwatch-logs-rule-action.html)."""
    return [
        _allow("CreateErrorLogStreams", ["logs:CreateLogStream"], [f"{log_group_arn}:log-stream:*"]),
        _allow("FindErrorLogStreams", ["logs:DescribeLogStreams"], [f"{log_group_arn}:*"]),
        _allow("WriteErrorLogEvents", ["logs:PutLogEvents"], [f"{log_group_arn}:log-stream:*"]),
    ]


def kinesis_rule(stream_arn: str, key_arn: str, error_log_group_arn: str) -> Document:
    """IoT rule -> Kinesis: put records into the (KMS-encrypted) stream; errors to the rule log group."""
    return _doc(
        _allow("PutIntoStream", ["kinesis:PutRecord"], [stream_arn]),
        _allow("EncryptForStream", ["kms:GenerateDataKey"], [key_arn]),
        *error_log_writes(error_log_group_arn),
    )


def firehose_rule(delivery_stream_arn: str, error_log_group_arn: str) -> Document:
    """IoT rule -> Firehose: put records into the archive delivery stream."""
    return _doc(
        _allow("PutIntoDeliveryStream", ["firehose:PutRecord"], [delivery_stream_arn]),
        *error_log_writes(error_log_group_arn),
    )


def dynamodb_rule(table_arn: str, key_arn: str, error_log_group_arn: str, region: str,
                  dns_suffix: str) -> Document:
    """IoT rule -> DynamoDB latest-value table (dynamoDBv2 action = PutItem; the rule's `get_dynamodb()`
    timestamp check = GetItem).

    The table is encrypted with the stack's customer managed key, whose key policy defers to IAM: the
    caller needs the key through DynamoDB (DynamoDB developer guide, "Customer managed key"; the IoT
    dynamoDBv2 action's requirements point there).
    """
    return _doc(
        _allow("ReadAndPutLatestValue", ["dynamodb:GetItem", "dynamodb:PutItem"], [table_arn]),
        _allow("UseTableKeyViaDynamoDB",
               ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"], [key_arn],
               {"StringEquals": {"kms:ViaService": via_service("dynamodb", region, dns_suffix)}}),
        *error_log_writes(error_log_group_arn),
    )


def firehose_delivery(bucket_arn: str, key_arn: str, log_group_arn: str, region: str,
                      dns_suffix: str) -> Document:
    """Firehose -> S3 archive: the S3 calls Firehose documents for an S3 destination, nothing more."""
    return _doc(
        _allow("ArchiveBucket", ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
               [bucket_arn]),
        _allow("ArchiveObjects", ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
               [f"{bucket_arn}/*"]),
        _allow("EncryptArchiveObjects", ["kms:Decrypt", "kms:GenerateDataKey"], [key_arn],
               {"StringEquals": {"kms:ViaService": via_service("s3", region, dns_suffix)}}),
        _allow("DeliveryErrorLogs", ["logs:PutLogEvents"], [f"{log_group_arn}:log-stream:*"]),
    )


def provisioning(partition: str, region: str, account_id: str, thing_prefix: str, site_group_prefix: str,
                 policy_name: str, thing_type: str) -> Document:
    """Fleet provisioning role: what RegisterThing does for this stack's template, on this stack only.

    Action by action the subset of AWS's managed `AWSIoTThingsRegistration` the template needs, on the
    resource types the Service Authorization Reference gives each action (checked by
    tests/infra/test_iam_reference.py): `AttachPolicy` targets the certificate (types `cert`,
    `thinggroup`), `AttachThingPrincipal` the certificate, its thing narrowed by `iot:thingArn`.
    """
    arn = iot_arn(partition, region, account_id)
    things = f"{arn}:thing/{thing_prefix}*"  # thing_prefix = "<stack>:": no other stack's things
    site_groups = f"{arn}:thinggroup/{site_group_prefix}*"  # "pm500-<stack>:": no other stack's groups
    certificates = f"{arn}:cert/*"  # created by this RegisterThing call: its id is not known before
    return _doc(
        _allow("RegisterStackThings", ["iot:CreateThing", "iot:DescribeThing", "iot:UpdateThing"], [things]),
        _allow("ReadStackThingGroups", ["iot:ListThingGroupsForThing"], [things]),
        _allow("GroupStackThings", ["iot:AddThingToThingGroup"], [things, site_groups]),
        _allow("DescribeSiteGroups", ["iot:DescribeThingGroup"], [site_groups]),
        _allow("AttachThingCertificates", ["iot:AttachThingPrincipal"], [certificates],
               {"ArnLike": {"iot:thingArn": things}}),
        _allow("UseStackThingType", ["iot:DescribeThingType"], [f"{arn}:thingtype/{thing_type}"]),
        _allow("ActivateCertificates", ["iot:DescribeCertificate", "iot:UpdateCertificate"], [certificates]),
        _allow("AttachCollectorPolicy", ["iot:AttachPolicy"], [certificates]),
        _allow("ReadCollectorPolicy", ["iot:GetPolicy"], [f"{arn}:policy/{policy_name}"]),
    )


def pipe(stream_arn: str, key_arn: str, bus_arn: str) -> Document:
    """EventBridge Pipe: read the Kinesis stream (decrypting), put events on the stack's bus."""
    # Kinesis source permissions: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-pipes-permissions.html
    return _doc(
        _allow("ReadStream", ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                              "kinesis:GetShardIterator", "kinesis:ListShards"],
               [stream_arn]),
        # ListStreams has no resource-level permissions: AWS only authorizes it on "*".
        _allow("ListStreams", ["kinesis:ListStreams"], ["*"]),
        _allow("DecryptStream", ["kms:Decrypt"], [key_arn]),
        _allow("PutBusEvents", ["events:PutEvents"], [bus_arn]),
    )


def sqs_rule(queue_arn: str, key_arn: str, error_log_group_arn: str) -> Document:
    """IoT rule -> SQS: send the event to the (KMS-encrypted) alarm queue."""
    return _doc(
        _allow("SendToAlarmQueue", ["sqs:SendMessage"], [queue_arn]),
        _allow("EncryptForQueue", ["kms:GenerateDataKey", "kms:Decrypt"], [key_arn]),
        *error_log_writes(error_log_group_arn),
    )


def alarm_pipe(queue_arn: str, key_arn: str, bus_arn: str) -> Document:
    """EventBridge Pipe: receive (and delete) alarm events from the queue, put them on the stack's bus."""
    return _doc(
        _allow("ReadAlarmQueue", ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
               [queue_arn]),
        _allow("DecryptAlarmQueue", ["kms:Decrypt"], [key_arn]),
        _allow("PutBusEvents", ["events:PutEvents"], [bus_arn]),
    )


def tls_only_bucket(bucket_arn: str) -> Document:
    """Bucket policy: refuse any request not made over TLS."""
    return _doc({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })


def provisioning_hook(partition: str, region: str, account_id: str, thing_prefix: str,
                      log_group_arn: str) -> Document:
    """The stack's pre-provisioning hook Lambda (infra/provisioning_hook_code): read, for this stack's
    things only, whether a thing holds a live certificate and whether the operator allowed a
    replacement; write its own log streams. `iot:DescribeCertificate` has only the `cert` resource type
    and certificate ids are AWS's, so it is on `cert/*` of this account and region (a read)."""
    arn = iot_arn(partition, region, account_id)
    return _doc(
        _allow("ReadOwnStacksThings", ["iot:DescribeThing", "iot:ListThingPrincipals"],
               [f"{arn}:thing/{thing_prefix}*"]),
        _allow("ReadCertificateStatus", ["iot:DescribeCertificate"], [f"{arn}:cert/*"]),
        _allow("WriteOwnLogStreams", ["logs:CreateLogStream", "logs:PutLogEvents"],
               [f"{log_group_arn}:log-stream:*"]),
    )
