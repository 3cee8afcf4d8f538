"""The evaluator against the behaviour the IAM User Guide documents, case by case (literal policies from
its examples, literal requests)."""

from __future__ import annotations

from typing import Any

import pytest

from preflight.iam_evaluator import Decision, evaluate

BUCKET = "arn:aws:s3:::amzn-s3-demo-bucket"
IOT = "iot.amazonaws.com"
GROUP = "arn:aws:logs:eu-west-1:111122223333:log-group:g"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# "IAM JSON policy elements: NotAction": all of S3 on any resource except deleting a bucket.
NOT_DELETE_BUCKET = doc({"Effect": "Allow", "NotAction": "s3:DeleteBucket", "Resource": "arn:aws:s3:::*"})


@pytest.mark.parametrize(("documents", "action", "resource", "context", "expected"), [
    ([NOT_DELETE_BUCKET], "s3:GetObject", f"{BUCKET}/key", {}, Decision.ALLOWED),
    ([NOT_DELETE_BUCKET], "s3:DeleteBucket", BUCKET, {}, Decision.IMPLICIT_DENY),
    ([NOT_DELETE_BUCKET], "iam:CreateUser", "arn:aws:iam::111122223333:user/x", {}, Decision.IMPLICIT_DENY),
    # an explicit Deny wins over any Allow ("Policy evaluation logic")
    ([doc({"Effect": "Allow", "Action": "*", "Resource": "*"}),
      doc({"Effect": "Deny", "Action": "s3:*", "Resource": BUCKET})], "s3:DeleteBucket", BUCKET, {},
     Decision.EXPLICIT_DENY),
    # NotResource with Deny: everything but the one bucket is denied
    ([doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
          {"Effect": "Deny", "Action": "s3:*", "NotResource": [BUCKET, f"{BUCKET}/*"]})],
     "s3:GetObject", "arn:aws:s3:::other/key", {}, Decision.EXPLICIT_DENY),
    ([doc({"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
          {"Effect": "Deny", "Action": "s3:*", "NotResource": [BUCKET, f"{BUCKET}/*"]})],
     "s3:GetObject", f"{BUCKET}/key", {}, Decision.ALLOWED),
    # action names are case-insensitive, ARNs are not
    ([doc({"Effect": "Allow", "Action": "logs:createloggroup", "Resource": "*"})],
     "logs:CreateLogGroup", f"{GROUP}:log-stream:", {}, Decision.ALLOWED),
    ([doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/Key"})],
     "s3:GetObject", f"{BUCKET}/key", {}, Decision.IMPLICIT_DENY),
    # `?` is one character; a `*` inside a component (not its last character) stays inside it
    ([doc({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::pm500-archive-???"})],
     "s3:ListBucket", "arn:aws:s3:::pm500-archive-abc", {}, Decision.ALLOWED),
    ([doc({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::pm500-archive-???"})],
     "s3:ListBucket", "arn:aws:s3:::pm500-archive-abcd", {}, Decision.IMPLICIT_DENY),
    ([doc({"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:*:111122223333:topic/a"})],
     "iot:Publish", "arn:aws:iot:eu-west-1:111122223333:topic/a", {}, Decision.ALLOWED),
    ([doc({"Effect": "Allow", "Action": "iot:Publish", "Resource": "arn:aws:iot:eu*1:topic/a"})],
     "iot:Publish", "arn:aws:iot:eu-west-1:111122223333:topic/a", {}, Decision.IMPLICIT_DENY),
    # the trailing `:*` of a log group: the request carries `:log-stream:`, the bare ARN does not match
    ([doc({"Effect": "Allow", "Action": "logs:PutRetentionPolicy",
           "Resource": "arn:aws:logs:eu-west-1:111122223333:log-group:g"})],
     "logs:PutRetentionPolicy", "arn:aws:logs:eu-west-1:111122223333:log-group:g:log-stream:", {},
     Decision.IMPLICIT_DENY),
])
def test_documented_decisions(documents: list[dict[str, Any]], action: str, resource: str,
                              context: dict[str, str], expected: Decision) -> None:
    assert evaluate(documents, action, resource, context) is expected


PASS_ROLE = doc({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
                 "Condition": {"StringEquals": {"iam:PassedToService": IOT}}})


@pytest.mark.parametrize(("condition", "context", "expected"), [
    ({"StringEquals": {"iam:PassedToService": IOT}}, {"iam:PassedToService": IOT},
     True),
    ({"StringEquals": {"iam:PassedToService": IOT}}, {"iam:passedtoservice": IOT},
     True),  # condition key names are case-insensitive
    ({"StringEquals": {"iam:PassedToService": IOT}}, {"iam:PassedToService": "ec2.amazonaws.com"},
     False),
    ({"StringEquals": {"iam:PassedToService": IOT}}, {}, False),  # key absent
    ({"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}, {}, True),  # negated, key absent: holds
    ({"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}, {"aws:RequestedRegion": "eu-west-1"}, False),
    ({"StringEqualsIfExists": {"aws:RequestedRegion": "eu-west-1"}}, {}, True),
    ({"StringLike": {"iot:thingArn": "arn:aws:iot:*:*:thing/staging:*"}},
     {"iot:thingArn": "arn:aws:iot:eu-west-1:1:thing/staging:a:b"}, True),
    ({"ArnLike": {"iot:thingArn": "arn:aws:iot:*:*:thing/staging:*"}},
     {"iot:thingArn": "arn:aws:iot:eu-west-1:1:thing/prod:a:b"}, False),
    ({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": "False"}, True),
    ({"Null": {"aws:TokenIssueTime": "true"}}, {}, True),
    ({"Null": {"aws:TokenIssueTime": "true"}}, {"aws:TokenIssueTime": "x"}, False),
])
def test_conditions(condition: dict[str, Any], context: dict[str, str], expected: bool) -> None:
    statement = {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*", "Condition": condition}
    decision = evaluate([doc(statement)], "iam:PassRole", "arn:aws:iam::1:role/r", context)
    assert (decision is Decision.ALLOWED) is expected


def test_a_condition_that_fails_denies_nothing_explicitly() -> None:
    # moto's evaluator turns a failing condition into an explicit Deny; IAM only skips the statement.
    deny = doc({"Effect": "Deny", "Action": "*", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    allow = doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})
    decision = evaluate([deny, allow], "s3:GetObject", BUCKET, {"aws:SecureTransport": "true"})
    assert decision is Decision.ALLOWED


@pytest.mark.parametrize("condition", [{"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}},
                                       {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}])
def test_what_is_not_evaluated_is_refused(condition: dict[str, Any]) -> None:
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Condition": condition}
    with pytest.raises(ValueError, match="not evaluated here"):
        evaluate([doc(statement)], "s3:GetObject", BUCKET, {"aws:TagKeys": "a"})


# "IAM JSON policy elements: Condition operators", ARN condition operators: ArnEquals and ArnLike share one
# row, "Case-sensitive matching of the ARN. Each of the six colon-delimited components of the ARN is
# checked separately and each can include multi-character match wildcards (*) or single-character match
# wildcards (?)": ArnEquals takes wildcards exactly as ArnLike does.
@pytest.mark.parametrize(("operator", "context", "expected"), [
    ("ArnEquals", {"aws:SourceArn": "arn:aws:iot:eu-west-1:111122223333:rule/pm500_ddata"}, True),
    ("ArnEquals", {"aws:SourceArn": "arn:aws:iot:eu-west-1:444455556666:rule/pm500_ddata"}, False),
    ("ArnNotEquals", {"aws:SourceArn": "arn:aws:iot:eu-west-1:111122223333:rule/pm500_ddata"}, False),
    ("ArnNotEquals", {"aws:SourceArn": "arn:aws:iot:eu-west-1:444455556666:rule/pm500_ddata"}, True),
    ("ArnEqualsIfExists", {}, True),
])
def test_arn_equals_takes_wildcards_like_arn_like(operator: str, context: dict[str, str],
                                                  expected: bool) -> None:
    statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*",
                 "Condition": {operator: {"aws:SourceArn": "arn:aws:iot:*:111122223333:rule/*"}}}
    decision = evaluate([doc(statement)], "sts:AssumeRole", "arn:aws:iam::111122223333:role/r", context)
    assert (decision is Decision.ALLOWED) is expected


# "IAM JSON policy elements: Resource", Using wildcards in resource ARNs: "If the * wildcard is the last
# character of a resource ARN segment, it can expand to match beyond the colon boundaries."
@pytest.mark.parametrize(("resource", "request_arn", "expected"), [
    ("arn:aws:iot:*", "arn:aws:iot:eu-west-1:111122223333:thing/staging:site:c1", Decision.ALLOWED),
    ("arn:aws:iot:eu-*:topic/a", "arn:aws:iot:eu-west-1:111122223333:topic/a", Decision.ALLOWED),
    ("arn:aws:iot:eu-*:topic/a", "arn:aws:iot:us-east-1:111122223333:topic/a", Decision.IMPLICIT_DENY),
    # a `*` inside a segment, not its last character, stays inside it
    ("arn:aws:iot:eu-*-1:111122223333:topic/a", "arn:aws:iot:eu-west:x-1:111122223333:topic/a",
     Decision.IMPLICIT_DENY),
    ("arn:aws:s3", "arn:aws:s3:::bucket", Decision.IMPLICIT_DENY),  # no wildcard: nothing expands
])
def test_a_trailing_star_of_a_segment_expands_beyond_the_colons(resource: str, request_arn: str,
                                                                 expected: Decision) -> None:
    allow = doc({"Effect": "Allow", "Action": "iot:*", "Resource": resource})
    assert evaluate([allow], "iot:Publish", request_arn) is expected


def test_a_deny_on_a_short_arn_with_a_trailing_star_denies() -> None:
    # the same rule in a Deny: a missed match here would turn an explicit Deny into an Allow
    documents = [doc({"Effect": "Allow", "Action": "*", "Resource": "*"},
                     {"Effect": "Deny", "Action": "iam:*", "Resource": "arn:aws:iam::*"})]
    assert evaluate(documents, "iam:PutRolePolicy", "arn:aws:iam::111122223333:role/admin") is \
        Decision.EXPLICIT_DENY


# "Policy evaluation logic" and "IAM JSON policy elements: NotAction / NotResource": the cases the
# issue names that the table above does not cover.
@pytest.mark.parametrize(("documents", "action", "resource", "expected"), [
    # Deny with NotAction: everything but the named actions is denied, whatever allows it
    ([doc({"Effect": "Allow", "Action": "*", "Resource": "*"},
          {"Effect": "Deny", "NotAction": ["iam:Get*", "iam:List*"], "Resource": "*"})],
     "iam:CreateRole", "arn:aws:iam::111122223333:role/r", Decision.EXPLICIT_DENY),
    ([doc({"Effect": "Allow", "Action": "*", "Resource": "*"},
          {"Effect": "Deny", "NotAction": ["iam:Get*", "iam:List*"], "Resource": "*"})],
     "IAM:getrole", "arn:aws:iam::111122223333:role/r", Decision.ALLOWED),
    # Allow with NotResource: every resource but the named ones
    ([doc({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/private/*"})],
     "s3:GetObject", f"{BUCKET}/public/a", Decision.ALLOWED),
    ([doc({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/private/*"})],
     "s3:GetObject", f"{BUCKET}/private/a", Decision.IMPLICIT_DENY),
])
def test_not_action_and_not_resource(documents: list[dict[str, Any]], action: str, resource: str,
                                     expected: Decision) -> None:
    assert evaluate(documents, action, resource) is expected
