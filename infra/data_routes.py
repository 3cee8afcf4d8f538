"""Data routes of one stack: the Kinesis stream, the S3 archive, and the IoT topic rules that route this
stack's DDATA into both (each rule with its own role and error action), all encrypted with the stack's
KMS key.

The key is not the stack's to make: the bootstrap (an administrator) creates it with its alias
`alias/pm500-<stack>-data` and the `pm500:stack` tag, and the program looks it up by that alias. Creating a
tagged key needs `kms:TagResource` on every key of the account (KMS Developer Guide, "Managing KMS key
tags with API operations"), which would let a stack's deployer claim any untagged key; so the deployer
may only use the key its tag marks (docs/security.md).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra import iam, sparkplug
from infra.archive import Archive
from infra.config import StackConfig
from infra.naming import Names
from infra.rules import RouteRule, RuleContext, ddata_sql, route_rule

KINESIS_ROUTE = "ddata_kinesis"
FIREHOSE_ROUTE = "ddata_archive"
# One partition key per meter: a meter's readings stay in order on one shard.
KINESIS_PARTITION_KEY = "${topic(4)}/${topic(5)}"


class DataRoutes(pulumi.ComponentResource):
    """Stream + archive + the topic rules feeding them."""

    key_arn: pulumi.Output[str]
    stream_name: pulumi.Output[str]
    stream_arn: pulumi.Output[str]
    archive: Archive
    rules: dict[str, RouteRule]
    rule_context: RuleContext

    def __init__(self, name: str, cfg: StackConfig, names: Names, account_id: pulumi.Input[str],
                 dns_suffix: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        """`dns_suffix`: the partition's (`aws.get_partition`), for `kms:ViaService` conditions."""
        super().__init__("pm500:data:DataRoutes", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        protect = pulumi.ResourceOptions(parent=self, protect=cfg.deletion_protection)

        key_arn = aws.kms.get_key_output(key_id=names.data_key_alias,
                                         opts=pulumi.InvokeOutputOptions(parent=self)).arn

        on_demand = cfg.kinesis.capacity_mode == "ON_DEMAND"
        stream = aws.kinesis.Stream("stream", aws.kinesis.StreamArgs(
            name=names.resource("ddata"),
            shard_count=None if on_demand else cfg.kinesis.shards,
            stream_mode_details=aws.kinesis.StreamStreamModeDetailsArgs(stream_mode=cfg.kinesis.capacity_mode),
            retention_period=cfg.kinesis.retention_hours,
            encryption_type="KMS",
            kms_key_id=key_arn,
            tags={"pm500:stack": cfg.stack},
        ), opts=protect)

        self.archive = Archive("archive", cfg, names, account_id, key_arn, dns_suffix, opts=child)

        errors = aws.cloudwatch.LogGroup("rule-errors", aws.cloudwatch.LogGroupArgs(
            name=f"/aws/iot/{names.prefix}/rule-errors", retention_in_days=30,
            tags={"pm500:stack": cfg.stack},
        ), opts=child)
        self.rule_context = RuleContext(names, self, account_id, dns_suffix, errors.name, errors.arn)
        # Which DDATA routes: the JSON rules read json collectors' DDATA as it is; for sparkplug-b
        # collectors a decode rule republishes JSON that rules of the same shape read (infra.sparkplug).
        mixed = len(cfg.encodings) > 1
        sources: dict[tuple[str, str], tuple[str, str]] = {}  # routes -> (SQL, Kinesis partition key)
        if "json" in cfg.encodings:
            only_json = sparkplug.json_ddata_filter_for_mixed_stacks() if mixed else ""
            json_sql = ddata_sql(cfg.stack) + only_json
            sources[(KINESIS_ROUTE, FIREHOSE_ROUTE)] = (json_sql, KINESIS_PARTITION_KEY)
        self.sparkplug: sparkplug.SparkplugDecoding | None = None
        if "sparkplug-b" in cfg.encodings:
            self.sparkplug = sparkplug.SparkplugDecoding("sparkplug", self.rule_context, mixed, opts=child)
            routes = (KINESIS_ROUTE, FIREHOSE_ROUTE)
            if mixed:
                routes = (sparkplug.KINESIS_ROUTE, sparkplug.ARCHIVE_ROUTE)
            sources[routes] = (sparkplug.json_shape_sql(cfg.stack), sparkplug.DECODED_PARTITION_KEY)
        self.rules = {}
        for (kinesis_route, archive_route), (sql, partition_key) in sources.items():
            self.rules.update(
                self._routes(cfg, kinesis_route, archive_route, sql, partition_key, stream, key_arn)
            )
        if self.sparkplug is not None:
            self.rules[self.sparkplug.rule_route] = self.sparkplug.rule

        self.key_arn = key_arn
        self.stream_name = stream.name
        self.stream_arn = stream.arn
        self.register_outputs({
            "streamName": self.stream_name,
            "ruleNames": {k: r.name for k, r in self.rules.items()},
        })

    def _routes(self, cfg: StackConfig, kinesis_route: str, archive_route: str, sql: str, partition_key: str,
                stream: aws.kinesis.Stream, key_arn: pulumi.Output[str]) -> dict[str, RouteRule]:
        """The Kinesis and archive rules for DDATA of one shape (`sql` selects and filters it)."""
        stream_name = stream.name
        return {
            kinesis_route: route_rule(
                self.rule_context, kinesis_route,
                description=f"DDATA of stack {cfg.stack} into Kinesis",
                sql=sql,
                policy=lambda a: iam.kinesis_rule(a[0], a[1], a[2]),
                policy_inputs=[stream.arn, key_arn],
                actions=lambda role_arn: {"kineses": [aws.iot.TopicRuleKinesisArgs(
                    stream_name=stream_name, role_arn=role_arn, partition_key=partition_key)]},
            ),
            archive_route: route_rule(
                self.rule_context, archive_route,
                description=f"DDATA of stack {cfg.stack} into the S3 archive",
                sql=sql,
                policy=lambda a: iam.firehose_rule(a[0], a[1]),
                policy_inputs=[self.archive.firehose_arn],
                actions=lambda role_arn: {"firehoses": [aws.iot.TopicRuleFirehoseArgs(
                    delivery_stream_name=self.archive.firehose_name, role_arn=role_arn, batch_mode=False)]},
            ),
        }
