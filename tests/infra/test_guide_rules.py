"""The rules only the services' guides carry (preflight/service_guide_rules.yaml), checked on every stack:
each grant against the ARN the request carries, each rule action against what its guide says its role
needs, each pipe against its target's batch limit, decoded protobuf fields against protobuf's JSON."""

from __future__ import annotations

import copy
import json

import pytest

from infra.sparkplug import json_shape_sql
from preflight import guide_rules
from preflight.deployer_policy import deployer_policy
from preflight.iam_evaluator import Decision, evaluate
from preflight.mock_runtime import EvaluatedStack

ACCOUNT = "123456789012"
STREAM = "arn:aws:kinesis:eu-west-1:1:stream/s"
GROUP = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/iot/pm500-prod/rule-errors"


def test_every_row_names_its_guide_section_and_page() -> None:
    data = guide_rules.rules()
    rows = [*data["authorized_arns"], data["pipe_target_max_batch"], data["iot_sql_protobuf_json"],
            *data["rule_actions"].values()]
    for row in rows:
        assert set(row["source"]) == {"guide", "section", "url"}
        assert row["source"]["url"].startswith("https://")


@pytest.mark.parametrize(("action", "arn", "rtype", "carried"), [
    # CloudWatch Logs User Guide: every log-group action but the three tag actions takes the `:*` form
    ("logs:CreateLogGroup", GROUP, "log-group", f"{GROUP}:log-stream:"),
    ("logs:PutRetentionPolicy", GROUP, "log-group", f"{GROUP}:log-stream:"),
    ("logs:DescribeLogStreams", GROUP, "log-group", f"{GROUP}:log-stream:"),
    ("logs:TagResource", GROUP, "log-group", GROUP),
    ("logs:ListTagsForResource", GROUP, "log-group", GROUP),
    ("logs:PutLogEvents", f"{GROUP}:log-stream:s", "log-stream", f"{GROUP}:log-stream:s"),
    ("kinesis:PutRecord", STREAM, "stream", STREAM),
])
def test_request_arns(action: str, arn: str, rtype: str, carried: str) -> None:
    assert guide_rules.request_arn(action, arn, rtype) == carried
    grant = guide_rules.grant_arn(action, arn, rtype)
    assert evaluate([{"Statement": [{"Effect": "Allow", "Action": action, "Resource": grant}]}], action,
                    carried) is Decision.ALLOWED


@pytest.mark.parametrize(("target", "limit"), [
    ("arn:aws:events:eu-west-1:1:event-bus/pm500-prod-events", 10),
    ("arn:aws:sqs:eu-west-1:1:q", 10),
    ("arn:aws:kinesis:eu-west-1:1:stream/s", 500),
    ("arn:aws:firehose:eu-west-1:1:deliverystream/d", 500),
    ("arn:aws:logs:eu-west-1:1:log-group:g", 10000),
    ("arn:aws:lambda:eu-west-1:1:function:f", None),  # customer defined
])
def test_pipe_target_limits_from_the_guide(target: str, limit: int | None) -> None:
    assert guide_rules.pipe_target_max_batch(target) == limit


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_the_deployer_policy_allows_every_request_on_the_arn_it_carries(
    which: str, staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack
) -> None:
    """Issue 21 item 1: CreateLogGroup & co. granted on the bare log-group ARN stop the first `pulumi up`."""
    stack = {"staging": staging, "prod": prod, "longest": longest}[which]
    policy = deployer_policy(stack, "deploy", ACCOUNT)
    assert guide_rules.deployer_findings(stack, policy.documents, policy.actions, ACCOUNT) == []


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_every_rule_role_allows_what_its_actions_need(
    which: str, staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack
) -> None:
    """Issue 21 item 4: the Sparkplug decode rule's error action needs logs:DescribeLogStreams too."""
    stack = {"staging": staging, "prod": prod, "longest": longest}[which]
    assert guide_rules.rule_role_findings(stack) == []


def test_every_state_machine_role_allows_what_its_tasks_call(
        staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    assert all(s.of_type("aws:sfn/stateMachine:StateMachine") for s in (staging, prod, longest))
    for stack in (staging, prod, longest):
        assert guide_rules.state_machine_findings(stack) == []


def test_the_state_machine_check_sees_a_missing_grant(staging: EvaluatedStack) -> None:
    """Take events:PutEvents out of the presence role's policy: every putEvents Task is reported."""
    stack = copy.deepcopy(staging)
    for policy in stack.of_type("aws:iam/rolePolicy:RolePolicy"):
        document = json.loads(policy.inputs["policy"])
        document["Statement"] = [s for s in document["Statement"] if s["Action"] != ["events:PutEvents"]]
        policy.inputs["policy"] = json.dumps(document)
    findings = guide_rules.state_machine_findings(stack)
    assert len(findings) == 4
    assert all("may not events:PutEvents" in f and "EventBridge" in f for f in findings)


@pytest.mark.parametrize("which", ["staging", "prod", "longest"])
def test_every_pipe_batch_fits_its_target(
    which: str, staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack
) -> None:
    """Issue 21 item 2: prod's Kinesis -> event bus pipe asked for 100; an event bus takes 10."""
    stack = {"staging": staging, "prod": prod, "longest": longest}[which]
    assert guide_rules.pipe_findings(stack) == []


def test_the_rule_role_check_sees_a_missing_grant(longest: EvaluatedStack) -> None:
    # The check itself: a role policy without DescribeLogStreams is reported, naming the guide.
    import copy
    import json

    stack = copy.deepcopy(longest)
    for p in stack.of_type("aws:iam/rolePolicy:RolePolicy"):
        doc = json.loads(p.inputs["policy"])
        doc["Statement"] = [s for s in doc["Statement"] if "logs:DescribeLogStreams" not in s["Action"]]
        p.inputs["policy"] = json.dumps(doc)
    findings = guide_rules.rule_role_findings(stack)
    assert findings and all("logs:DescribeLogStreams" in f and "CloudWatch Logs (rule action)" in f
                            for f in findings)


def test_decoded_sparkplug_fields_of_64_bits_are_cast() -> None:
    """protobuf's JSON mapping writes uint64 (Payload.timestamp, seq, Metric.alias...) as strings."""
    assert {"timestamp", "seq", "alias", "longValue", "long_value"} <= guide_rules.sixty_four_bit_fields()
    assert guide_rules.protobuf_sql_findings(json_shape_sql("prod")) == []
    assert guide_rules.protobuf_sql_findings("SELECT seq FROM 'a/b'")
    assert not guide_rules.protobuf_sql_findings("SELECT cast(seq AS Decimal) AS seq FROM 'a/b'")


def test_the_config_limit_is_the_guides() -> None:
    from infra.config import EVENT_BUS_MAX_BATCH

    assert guide_rules.pipe_target_max_batch("arn:aws:events:eu-west-1:1:event-bus/b") == EVENT_BUS_MAX_BATCH


def test_the_key_lookup_is_judged_on_the_key_the_bootstrap_tagged(staging: EvaluatedStack) -> None:
    """The program looks its data key up (kms:DescribeKey by the alias); the key is the bootstrap's, tagged
    pm500:stack=<stack> there. A policy that grants the lookup only on another stack's keys is reported."""
    policy = deployer_policy(staging, "deploy", ACCOUNT)
    assert guide_rules.deployer_findings(staging, policy.documents, policy.actions, ACCOUNT) == []
    text = json.dumps(policy.documents)
    prods = json.loads(text.replace('/pm500:stack": "staging"', '/pm500:stack": "prod"'))
    findings = guide_rules.deployer_findings(staging, prods, policy.actions, ACCOUNT)
    assert any(f.startswith(f"kms:DescribeKey on arn:aws:kms:eu-west-1:{ACCOUNT}:key/") for f in findings)
