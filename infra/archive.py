"""The S3 archive: an encrypted, versioned, private, TLS-only bucket fed by a Firehose delivery stream
that writes gzip JSON partitioned by `site=/year=/month=/day=` (see `infra.archive_layout`).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
from pulumi_aws.kinesis import (
    FirehoseDeliveryStreamExtendedS3ConfigurationProcessingConfigurationArgs as Processing,
)
from pulumi_aws.kinesis import (
    FirehoseDeliveryStreamExtendedS3ConfigurationProcessingConfigurationProcessorArgs as Processor,
)
from pulumi_aws.kinesis import (
    FirehoseDeliveryStreamExtendedS3ConfigurationProcessingConfigurationProcessorParameterArgs as Parameter,
)

from infra import archive_layout, iam
from infra.buckets import make_private
from infra.config import StackConfig
from infra.naming import Names
from infra.roles import service_role

s3 = aws.s3
kinesis = aws.kinesis


class Archive(pulumi.ComponentResource):
    """Bucket (+ its encryption, versioning, public access block, TLS policy, lifecycle) and Firehose."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    firehose_name: pulumi.Output[str]
    firehose_arn: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 key_arn: pulumi.Input[str], dns_suffix: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`dns_suffix`: the partition's (`aws.get_partition`), for `kms:ViaService`."""
        super().__init__("pm500:data:Archive", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = cfg.region or ""
        account = pulumi.Output.from_input(account_id)

        # Physical name auto-suffixed by Pulumi: bucket names are global across all AWS accounts.
        bucket = s3.Bucket(names.resource("archive"), s3.BucketArgs(
            force_destroy=False, tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, protect=cfg.deletion_protection))
        make_private("archive", bucket, child)
        sse_default = s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs
        s3.BucketServerSideEncryptionConfiguration("archive-encryption", s3.BucketServerSideEncryptionConfigurationInitArgs(  # noqa: E501
            bucket=bucket.id,
            rules=[s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=sse_default(
                    sse_algorithm="aws:kms", kms_master_key_id=key_arn),
                bucket_key_enabled=True,
            )],
        ), opts=child)
        s3.BucketVersioning("archive-versioning", s3.BucketVersioningInitArgs(
            bucket=bucket.id,
            versioning_configuration=s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
        ), opts=child)
        s3.BucketLifecycleConfiguration("archive-lifecycle", s3.BucketLifecycleConfigurationArgs(
            bucket=bucket.id,
            rules=[s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-versions",
                status="Enabled",
                filter=s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=cfg.archive.noncurrent_version_expiry_days),
                abort_incomplete_multipart_upload=s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=7),
            )],
        ), opts=child)
        s3.BucketPolicy("archive-tls-only", s3.BucketPolicyArgs(
            bucket=bucket.id, policy=bucket.arn.apply(lambda arn: json.dumps(iam.tls_only_bucket(arn))),
        ), opts=child)

        log_group = aws.cloudwatch.LogGroup("firehose-logs", aws.cloudwatch.LogGroupArgs(
            name=f"/aws/kinesisfirehose/{names.resource('archive')}", retention_in_days=30,
            tags={"pm500:stack": cfg.stack},
        ), opts=child)
        log_stream = aws.cloudwatch.LogStream("firehose-log-stream", aws.cloudwatch.LogStreamArgs(
            name="S3Delivery", log_group_name=log_group.name,
        ), opts=child)

        firehose_role = service_role(
            "firehose-role", "firehose-policy", name=names.resource("firehose"),
            service="firehose.amazonaws.com",
            description="Firehose delivery of pm500 DDATA into the S3 archive",
            stack=cfg.stack, account_id=account, opts=child,
            policy=pulumi.Output.all(bucket.arn, key_arn, log_group.arn, dns_suffix).apply(
                lambda a: json.dumps(iam.firehose_delivery(a[0], a[1], a[2], region, a[3]))),
        )
        role, role_policy = firehose_role.role, firehose_role.policy

        delivery = kinesis.FirehoseDeliveryStream("firehose", kinesis.FirehoseDeliveryStreamArgs(
            name=names.resource("archive"),
            destination="extended_s3",
            server_side_encryption=kinesis.FirehoseDeliveryStreamServerSideEncryptionArgs(
                enabled=True, key_type="CUSTOMER_MANAGED_CMK", key_arn=key_arn),
            extended_s3_configuration=kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationArgs(
                bucket_arn=bucket.arn,
                role_arn=role.arn,
                buffering_interval=cfg.archive.buffer_interval_s,
                buffering_size=cfg.archive.buffer_size_mb,
                compression_format="GZIP",
                file_extension=".json.gz",
                prefix=archive_layout.DATA_PREFIX,
                error_output_prefix=archive_layout.ERROR_PREFIX,
                dynamic_partitioning_configuration=(
                    kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationDynamicPartitioningConfigurationArgs(
                        enabled=True, retry_duration=300)),
                processing_configuration=_processing(),
                cloudwatch_logging_options=(
                    kinesis.FirehoseDeliveryStreamExtendedS3ConfigurationCloudwatchLoggingOptionsArgs(
                        enabled=True, log_group_name=log_group.name, log_stream_name=log_stream.name)),
            ),
            tags={"pm500:stack": cfg.stack},
        ), opts=pulumi.ResourceOptions(parent=self, depends_on=[role_policy]))

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.firehose_name = delivery.name
        self.firehose_arn = delivery.arn
        self.role_name = role.name
        self.register_outputs({"bucketName": self.bucket_name, "firehoseName": self.firehose_name})


def _processing() -> Processing:
    """Extract the partition keys with jq; newline-delimit records so the gzip objects are JSON lines."""
    return Processing(
        enabled=True,
        processors=[
            Processor(type="MetadataExtraction", parameters=[
                Parameter(parameter_name="JsonParsingEngine", parameter_value=archive_layout.JQ_ENGINE),
                Parameter(parameter_name="MetadataExtractionQuery",
                          parameter_value=archive_layout.PARTITION_QUERY),
            ]),
            Processor(type="AppendDelimiterToRecord", parameters=[
                Parameter(parameter_name="Delimiter", parameter_value="\\n"),
            ]),
        ],
    )
