"""The latest-value table keeps the newest reading per meter: a replayed (older) DDATA must not
overwrite it. The dynamoDBv2 action has no condition expression, so the rule's WHERE clause reads the
stored item with `get_dynamodb()` (AWS IoT SQL reference, "Functions": SQL 2016-03-23, at most one call
per statement, the role needs dynamodb:GetItem) and `nanvl()` turns "no item yet" (Undefined) into -1.
Expected SQL and ARNs are written out.
"""

from __future__ import annotations

import json

from infra import outputs
from preflight.iam_evaluator import allows
from preflight.iam_reference import check_document
from preflight.mock_runtime import EvaluatedStack

RULE = "aws:iot/topicRule:TopicRule"
ROLE_ARN = "arn:aws:iam::123456789012:role/pm500-prod-rule-ddata_latest"
TABLE_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/pm500-prod-latest"
EXPECTED_SQL = (
    "SELECT *, topic(4) AS thing, concat(topic(4), '/', topic(5)) AS meter "
    "FROM 'spBv1.0/pm500/DDATA/+/+' "
    "WHERE startswith(topic(4), 'prod:') "
    "AND nanvl(get_dynamodb('pm500-prod-latest', 'meter', concat(topic(4), '/', topic(5)), "
    "'arn:aws:iam::123456789012:role/pm500-prod-rule-ddata_latest').timestamp, -1) < timestamp"
)


def test_the_rule_writes_only_readings_newer_than_the_stored_one(prod: EvaluatedStack) -> None:
    rule = prod.one(RULE, "rule/ddata_latest").inputs
    assert rule["sql"] == EXPECTED_SQL
    assert rule["sql"].count("get_dynamodb(") == 1  # a second call terminates the rule without actions
    assert rule["sqlVersion"] == "2016-03-23"  # get_dynamodb() needs it
    assert rule["dynamodbv2s"] == [{"putItem": {"tableName": "pm500-prod-latest"}, "roleArn": ROLE_ARN}]


def test_the_rule_role_may_read_and_write_the_table_only(prod: EvaluatedStack) -> None:
    [policy] = [p for p in prod.of_type("aws:iam/rolePolicy:RolePolicy")
                if p.inputs["role"] == "pm500-prod-rule-ddata_latest"]
    document = json.loads(policy.inputs["policy"])
    assert check_document(document) == []
    assert allows(document, "dynamodb:GetItem", TABLE_ARN)
    assert allows(document, "dynamodb:PutItem", TABLE_ARN)
    other = "arn:aws:dynamodb:eu-west-1:123456789012:table/pm500-staging-latest"
    assert not allows(document, "dynamodb:GetItem", other)
    assert not allows(document, "dynamodb:Scan", TABLE_ARN)
    key_arn = prod.outputs[outputs.KMS_KEY_ARN]  # the bootstrap's key, as the program looked it up
    via = {"kms:ViaService": "dynamodb.eu-west-1.amazonaws.com"}
    assert key_arn and allows(document, "kms:Decrypt", key_arn, via)  # reading the encrypted item


# Issue 21 item 3: a sparkplug-b collector's DDATA is protobuf on the DDATA topic (no `timestamp` the SQL
# can read: the WHERE was never true) and decoded JSON on the stack's decoded topic.
LONG = "longest-stack-checks-024"
LONG_ROLE = f"arn:aws:iam::123456789012:role/pm500-{LONG}-rule-spb_latest"


def _latest_rules(stack: EvaluatedStack) -> dict[str, dict[str, object]]:
    return {r.name: r.inputs for r in stack.of_type(RULE) if r.inputs.get("dynamodbv2s")}


def test_a_mixed_stack_writes_the_latest_values_of_both_encodings(longest: EvaluatedStack) -> None:
    rules = _latest_rules(longest)
    assert sorted(rules) == ["rule/ddata_latest", "rule/spb_latest"]
    json_sql, spb_sql = str(rules["rule/ddata_latest"]["sql"]), str(rules["rule/spb_latest"]["sql"])
    # JSON DDATA only (a protobuf payload has no `metrics` the SQL can read), as the other JSON rules
    assert "FROM 'spBv1.0/pm500/DDATA/+/+'" in json_sql and json_sql.endswith(" AND NOT isUndefined(metrics)")
    # the decoded JSON, reshaped as the archive's, keyed <thing>/<asset>, newer than the stored one
    assert f"FROM 'pm500-decoded/{LONG}/+/+'" in spb_sql
    assert "concat(topic(3), '/', topic(4)) AS meter" in spb_sql
    assert spb_sql.endswith(
        f"WHERE nanvl(get_dynamodb('pm500-{LONG}-latest', 'meter', concat(topic(3), '/', topic(4)), "
        f"'{LONG_ROLE}').timestamp, -1) < cast(get(metrics, 0).timestamp AS Decimal)")  # reading time
    assert spb_sql.count("get_dynamodb(") == 1
    assert rules["rule/spb_latest"]["dynamodbv2s"] == [
        {"putItem": {"tableName": f"pm500-{LONG}-latest"}, "roleArn": LONG_ROLE}]


def test_a_sparkplug_only_stack_reads_only_the_decoded_topic(prod: EvaluatedStack) -> None:
    import json as _json

    from preflight.mock_runtime import evaluate_stack

    config = {**prod.config, "pm500:encoding": "sparkplug-b"}
    stack = evaluate_stack("prod", config=config, secret_keys=prod.secret_keys)
    rules = _latest_rules(stack)
    assert list(rules) == ["rule/spb_latest"], _json.dumps(sorted(rules))
