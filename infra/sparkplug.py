"""Cloud side of `encoding: sparkplug-b`: decode the protobuf DDATA so Kinesis and S3 get the JSON shape.

Two steps, because IoT SQL can reshape only fields of the message a rule reads (nested object queries
take their FROM from the incoming message, not from a function result):

1. `spb_decode` reads this stack's Sparkplug DDATA and republishes `decode(*, 'proto', ...)` (the
   Payload as JSON) to a topic of this stack only, `pm500-decoded/<stack>/<thing>/<asset>`, which no
   device may publish to (the collectors' IoT policy covers only their own `spBv1.0/` topics).
2. `spb_kinesis` and `spb_archive` read that topic and rebuild the design note's DDATA JSON: aliases
   back to metric names, aliases and units (from the one metric table, `collector.metrics`), `site`
   and `asset` from the thing name and topic. Then Kinesis and the archive receive the same shape as
   from a `json` collector (`seq` is then the edge node's Sparkplug seq, 0..255).

The descriptor set (`collector/proto/sparkplug_b.desc`, protoc's `--descriptor_set_out` of Tahu's
proto) is uploaded under a content-addressed key: AWS caches descriptors for up to 15 minutes, so a
changed proto gets a new key and the rule SQL changes with it. AWS reads the object as the IoT service
(`iot.amazonaws.com`) per its documentation; the bucket policy grants that, scoped to this account, and
the decode rule's role, and nothing else. SSE-S3 (not KMS): the IoT service needs no key grant then.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pulumi
import pulumi_aws as aws

from collector.metrics import METRICS, Metric
from collector.proto import DESCRIPTOR_SET_FILE, PAYLOAD_TYPE, PROTO_NAME
from collector.sparkplug_b import NUMBERS, SLOT_SIZE
from collector.topics import ddata_filter, stack_thing_prefix
from infra import iam
from infra.buckets import make_private
from infra.rules import RouteRule, RuleContext, route_rule

DECODE_ROUTE = "spb_decode"
KINESIS_ROUTE = "spb_kinesis"
ARCHIVE_ROUTE = "spb_archive"
DECODED_TOPIC_ROOT = "pm500-decoded"
# Kinesis partition key of the decoded records: <thing>/<asset>, as for JSON DDATA (levels 3 and 4 here).
DECODED_PARTITION_KEY = "${topic(3)}/${topic(4)}"
DECODED_METER_SQL = "concat(topic(3), '/', topic(4))"  # the same <thing>/<asset> in rule SQL
# When the reading was taken: every metric of a DDATA carries it (the payload's own timestamp is when
# the edge node published, which for a replayed backlog is much later). A uint64: a string in protobuf's
# JSON, compared only once cast.
DECODED_TIMESTAMP_SQL = "cast(get(metrics, 0).timestamp AS Decimal)"
LATEST_ROUTE = "spb_latest"
# Where the descriptor set lives: named by its content (see the module docstring).
DESCRIPTOR_KEY = f"sparkplug_b/{hashlib.sha256(DESCRIPTOR_SET_FILE.read_bytes()).hexdigest()[:16]}.desc"


def decoded_topic_filter(stack: str) -> str:
    return f"{DECODED_TOPIC_ROOT}/{stack}/+/+"


def decoded_topic_template(stack: str) -> str:
    """Republish target: `${topic(4)}` is the thing, `${topic(5)}` the asset of the DDATA topic."""
    return f"{DECODED_TOPIC_ROOT}/{stack}/${{topic(4)}}/${{topic(5)}}"


def decode_sql(stack: str, bucket: str, key: str = DESCRIPTOR_KEY, *, mixed: bool = False) -> str:
    """This stack's Sparkplug DDATA, decoded with the descriptor set in `bucket`/`key`.

    In a stack that also has `json` collectors (`mixed`), JSON payloads are left to the JSON rules: a
    JSON DDATA has a `metrics` field, a protobuf payload has no fields the SQL can read.
    """
    where = f"startswith(topic(4), '{stack_thing_prefix(stack)}')"
    if mixed:
        where += " AND isUndefined(metrics)"
    # Names from our own validated config and constants: no quote can appear in them.
    return (f"SELECT VALUE decode(*, 'proto', '{bucket}', '{key}', '{PROTO_NAME}', '{PAYLOAD_TYPE}') "  # noqa: S608
            f"FROM '{ddata_filter()}' WHERE {where}")


def json_ddata_filter_for_mixed_stacks() -> str:
    """What a mixed stack's JSON rules add to their WHERE: only payloads that are JSON DDATA."""
    return " AND NOT isUndefined(metrics)"


# The metric an alias stands for (`collector.sparkplug_b.alias`: slot * 256 + number). Metric.alias is a
# uint64, which protobuf's JSON mapping writes as a string ("257"), and IoT SQL compares values of
# different types as unequal: cast first (preflight/service_guide_rules.yaml), then the remainder picks
# the metric whatever the device's slot.
METRIC_NUMBER_SQL = f"cast(alias AS Int) % {SLOT_SIZE}"


def _case(attribute: Callable[[Metric], str]) -> str:
    whens = " ".join(f"WHEN {NUMBERS[m.name]} THEN '{attribute(m)}'" for m in METRICS)
    return f"CASE {METRIC_NUMBER_SQL} {whens} END"


def _either(json_name: str, proto_name: str) -> str:
    """A decoded field under protobuf's JSON name, else under its proto name (see `json_shape_sql`)."""
    return f"CASE isUndefined({json_name}) WHEN true THEN {proto_name} ELSE {json_name} END"


def json_shape_sql(stack: str, extra_select: str = "", condition: str | None = None) -> str:
    """The design note's DDATA JSON from a decoded DDATA (topic `pm500-decoded/<stack>/<thing>/<asset>`).

    Field names: AWS renders the decoded Payload as JSON; protobuf's JSON mapping names `double_value`
    `doubleValue` and writes 64-bit integers as strings, so the SQL accepts either spelling and casts.

    A null metric (a value not fit to publish, `collector.quality`) becomes what the JSON encoding sends:
    `value` NULL, `is_null` true and `properties.quality` from its one property; on other metrics
    `is_null` and `quality` are Undefined, which IoT SQL leaves out of the JSON.

    `extra_select` (`, <expr> AS <name>`...) adds fields, `condition` a WHERE (the latest-value rule).
    """
    double = _either("doubleValue", "double_value")
    is_null = _either("isNull", "is_null")
    value = f"CASE ({is_null}) WHEN true THEN NULL ELSE {double} END"
    reason = _either("get(get(properties.values, 0), 'stringValue')",
                     "get(get(properties.values, 0), 'string_value')")
    # Built from the metric table and constants only.
    metrics = (
        f"SELECT {_case(lambda m: m.name)} AS name, {_case(lambda m: m.alias)} AS alias, "  # noqa: S608
        f"{value} AS value, CASE ({is_null}) WHEN true THEN true END AS is_null, "
        f"{{'quality': CASE ({is_null}) WHEN true THEN {reason} END, "
        f"'unit': {_case(lambda m: m.unit)}}} AS properties FROM metrics"
    )
    # thing = <stack>:<site>:<collector>: the site is the middle part.
    site = "regexp_replace(topic(3), '^[^:]+:([^:]+):.*$', '$1')"
    where = f" WHERE {condition}" if condition else ""
    return (f"SELECT ({metrics}) AS metrics, {DECODED_TIMESTAMP_SQL} AS timestamp, "  # noqa: S608
            f"cast(seq AS Decimal) AS seq, uuid, {site} AS site, topic(4) AS asset, topic(3) AS thing"
            f"{extra_select} FROM '{decoded_topic_filter(stack)}'{where}")


def republish_policy(topic_arn_prefix: str, error_log_group_arn: str) -> iam.Document:
    """The decode rule's role: publish to this stack's decoded topics only; errors to the log group."""
    return {
        "Version": iam.VERSION,
        "Statement": [
            {"Sid": "RepublishDecoded", "Effect": "Allow", "Action": ["iot:Publish"],
             "Resource": [f"{topic_arn_prefix}/*"]},
            *iam.error_log_writes(error_log_group_arn),  # the error action, as for every rule role
        ],
    }


def descriptor_bucket_policy(
    bucket_arn: str, object_key: str, account_id: str, reader_role_arn: str
) -> iam.Document:
    """TLS only; `s3:GetObject` on the descriptor for the IoT service (this account) and the decode role."""
    policy = iam.tls_only_bucket(bucket_arn)
    policy["Statement"] += [
        {"Sid": "IotReadsDescriptor", "Effect": "Allow", "Principal": {"Service": "iot.amazonaws.com"},
         "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{object_key}",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
        {"Sid": "DecodeRuleReadsDescriptor", "Effect": "Allow", "Principal": {"AWS": reader_role_arn},
         "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{object_key}"},
    ]
    return policy


class SparkplugDecoding(pulumi.ComponentResource):
    """Descriptor bucket + object + policy, and the decode rule republishing JSON for this stack."""

    bucket_name: pulumi.Output[str]
    object_key: pulumi.Output[str]
    rule: RouteRule

    def __init__(
        self, name: str, ctx: RuleContext, mixed: bool, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("pm500:data:SparkplugDecoding", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names, stack = ctx.names, ctx.names.stack
        s3 = aws.s3
        bucket = s3.Bucket(names.resource("sparkplug"), s3.BucketArgs(
            force_destroy=True, tags={"pm500:stack": stack},  # holds only a build artifact of the repo
        ), opts=child)
        make_private("sparkplug", bucket, child)
        sse_default = s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
        s3.BucketServerSideEncryptionConfiguration("sparkplug-encryption", s3.BucketServerSideEncryptionConfigurationInitArgs(  # noqa: E501
            bucket=bucket.id,
            rules=[s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=sse_default(sse_algorithm="AES256"))],
        ), opts=child)
        descriptor = s3.BucketObjectv2("sparkplug-descriptor", s3.BucketObjectv2Args(
            bucket=bucket.id, key=DESCRIPTOR_KEY, source=pulumi.FileAsset(str(DESCRIPTOR_SET_FILE)),
            content_type="application/octet-stream", tags={"pm500:stack": stack},
        ), opts=child)

        # arn:<partition>:logs:<region>:<account>:... -> the same partition, region and account for IoT.
        decoded_root = f"{DECODED_TOPIC_ROOT}/{stack}"
        topic_arn_prefix = pulumi.Output.from_input(ctx.error_log_group_arn).apply(
            lambda arn: "arn:{1}:iot:{3}:{4}:topic/".format(*arn.split(":")) + decoded_root)
        republish_topic = decoded_topic_template(stack)
        self.rule_route = DECODE_ROUTE
        self.rule = route_rule(
            ctx, DECODE_ROUTE,
            description=f"Sparkplug B DDATA of stack {stack} decoded to JSON for the data routes",
            sql=bucket.bucket.apply(lambda b: decode_sql(stack, b, mixed=mixed)),
            policy=lambda a: republish_policy(a[0], a[1]),
            policy_inputs=[topic_arn_prefix],
            actions=lambda role_arn: {"republishes": [aws.iot.TopicRuleRepublishArgs(
                topic=republish_topic, role_arn=role_arn, qos=1)]},
            depends_on=[descriptor],
        )
        role_arn = pulumi.Output.all(ctx.error_log_group_arn, ctx.account_id, self.rule.role_name).apply(
            lambda ar: f"arn:{ar[0].split(':')[1]}:iam::{ar[1]}:role/{ar[2]}")
        s3.BucketPolicy("sparkplug-descriptor-read", s3.BucketPolicyArgs(
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, ctx.account_id, role_arn).apply(
                lambda v: json.dumps(descriptor_bucket_policy(v[0], DESCRIPTOR_KEY, v[1], v[2]))),
        ), opts=child)

        self.bucket_name = bucket.bucket
        self.object_key = descriptor.key
        self.register_outputs({"bucketName": self.bucket_name, "objectKey": self.object_key})
