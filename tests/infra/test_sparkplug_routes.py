"""`encoding: sparkplug-b` stacks: descriptor set in S3, decode rule, JSON-shape rules, their policies.

The program runs on Pulumi's mock runtime; the descriptor it uploads decodes payloads made by the
collector's real buffer + wire path, and the alias tables inside the rule SQL turn them back into the
design note's JSON (checked against `collector.payload`, the JSON mode's own builder).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from collector.buffer import Buffer
from collector.config import parse_config
from collector.payload import ddata
from collector.proto import DESCRIPTOR_SET_FILE, descriptor_set
from collector.reading import Reading
from collector.wire import SparkplugWire
from infra.sparkplug import DECODED_TIMESTAMP_SQL, DESCRIPTOR_KEY, METRIC_NUMBER_SQL
from policy import validators
from preflight.iam_reference import check_document
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, load_stack_config_file
from tests.infra.iot_sql import UNDEFINED, evaluate
from tests.policy.test_validators import _resources

BASE, SECRET_KEYS = load_stack_config_file("staging")
RULE = "aws:iot/topicRule:TopicRule"
DDATA_FROM = "FROM 'spBv1.0/pm500/DDATA/+/+' WHERE startswith(topic(4), 'spb:')"


def _stack(encodings: list[str | None]) -> EvaluatedStack:
    sites = json.loads(BASE["pm500:sites"])
    template = sites[0]["collectors"][0]
    sites[0]["collectors"] = [
        {**template, "name": f"edge-{i}", **({"encoding": e} if e else {})} for i, e in enumerate(encodings)
    ]
    config = {**BASE, "pm500:sites": json.dumps(sites[:1]), "pm500:encoding": "sparkplug-b"}
    return evaluate_stack("spb", config=config, secret_keys=SECRET_KEYS)


@pytest.fixture(scope="module")
def sparkplug_stack() -> EvaluatedStack:
    return _stack([None])  # the stack's encoding: sparkplug-b


@pytest.fixture(scope="module")
def mixed_stack() -> EvaluatedStack:
    return _stack([None, "json"])


def rules(stack: EvaluatedStack) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in stack.of_type(RULE)}


def test_sparkplug_stack_decodes_then_routes_the_json_shape(sparkplug_stack: EvaluatedStack) -> None:
    by_name = rules(sparkplug_stack)
    # the staging file's alarmEvents feature adds the (JSON) alarm event rule, whatever the encoding
    assert sorted(by_name) == ["pm500_spb_alarm_events", "pm500_spb_ddata_archive", "pm500_spb_ddata_kinesis",
                               "pm500_spb_fleet_report", "pm500_spb_presence", "pm500_spb_spb_decode"]
    bucket = sparkplug_stack.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs
    assert bucket["key"] == DESCRIPTOR_KEY and re.fullmatch(r"sparkplug_b/[0-9a-f]{16}\.desc", DESCRIPTOR_KEY)
    decode = by_name["pm500_spb_spb_decode"]
    assert decode["sql"] == (
        f"SELECT VALUE decode(*, 'proto', '{bucket['bucket']}', '{DESCRIPTOR_KEY}', 'sparkplug_b', "
        f"'org.eclipse.tahu.protobuf.Payload') {DDATA_FROM}"
    )
    assert decode["republishes"][0]["topic"] == "pm500-decoded/spb/${topic(4)}/${topic(5)}"
    for route in ("kinesis", "archive"):
        sql = by_name[f"pm500_spb_ddata_{route}"]["sql"]
        assert sql.endswith("FROM 'pm500-decoded/spb/+/+'")
        assert "topic(4) AS asset" in sql and "topic(3) AS thing" in sql and "decode(" not in sql
    kinesis = by_name["pm500_spb_ddata_kinesis"]["kineses"][0]
    assert kinesis["partitionKey"] == "${topic(3)}/${topic(4)}"  # <thing>/<asset> of the decoded topic
    collector = sparkplug_stack.outputs["collectors"]["spb:plant-a:edge-0"]
    assert collector["encoding"] == "sparkplug-b"  # what the CLI writes into the bundle


def test_descriptor_object_and_its_readers(sparkplug_stack: EvaluatedStack) -> None:
    obj = sparkplug_stack.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs
    assert Path(obj["source"].path).read_bytes() == DESCRIPTOR_SET_FILE.read_bytes()
    policy = json.loads(sparkplug_stack.one("aws:s3/bucketPolicy:BucketPolicy", "sparkplug-descriptor-read")
                        .inputs["policy"])
    reads = {s["Sid"]: s for s in policy["Statement"] if s["Effect"] == "Allow"}
    assert set(reads) == {"IotReadsDescriptor", "DecodeRuleReadsDescriptor"}
    for statement in reads.values():
        assert statement["Action"] == "s3:GetObject" and statement["Resource"].endswith(f"/{DESCRIPTOR_KEY}")
    assert reads["IotReadsDescriptor"]["Principal"] == {"Service": "iot.amazonaws.com"}
    assert reads["DecodeRuleReadsDescriptor"]["Principal"]["AWS"].endswith(":role/pm500-spb-rule-spb_decode")
    role_policy = json.loads(sparkplug_stack.one("aws:iam/rolePolicy:RolePolicy", "rule-policy/spb_decode")
                             .inputs["policy"])
    publish = role_policy["Statement"][0]
    assert publish["Action"] == ["iot:Publish"]
    assert publish["Resource"] == ["arn:aws:iot:eu-west-1:123456789012:topic/pm500-decoded/spb/*"]
    assert [str(f) for f in check_document(role_policy)] == []  # AWS's authorization reference


def test_mixed_stack_splits_json_and_protobuf_payloads(mixed_stack: EvaluatedStack) -> None:
    by_name = rules(mixed_stack)
    assert len(by_name) == 8  # 2 json routes, decode + 2 decoded routes, the alarm event rule, 2 fleet rules
    for route in ("ddata_kinesis", "ddata_archive"):  # the json collectors' DDATA, as before
        assert by_name[f"pm500_spb_{route}"]["sql"].endswith(f"{DDATA_FROM} AND NOT isUndefined(metrics)")
    assert by_name["pm500_spb_spb_decode"]["sql"].endswith(f"{DDATA_FROM} AND isUndefined(metrics)")
    assert by_name["pm500_spb_spb_kinesis"]["sql"].endswith("FROM 'pm500-decoded/spb/+/+'")
    encodings = {c["collector"]: c["encoding"] for c in mixed_stack.outputs["collectors"].values()}
    assert encodings == {"edge-0": "sparkplug-b", "edge-1": "json"}


def _case(sql: str, target: str) -> str:
    """The `CASE ... END` producing `<target>` in the rule SQL, as written there."""
    whens = r"(?:WHEN \d+ THEN '[^']*' ?)+"
    match = re.search(r"(CASE cast\(alias AS Int\) % 256 " + whens + r"END)\}? AS " + target, sql)
    assert match, f"no CASE for {target}"
    return match.group(1)


def test_descriptor_decodes_collector_payloads_into_the_json_modes_shape(
    sparkplug_stack: EvaluatedStack, tmp_path: Path
) -> None:
    """What the cloud does: decode with the uploaded descriptor set (a fresh pool) into protobuf's JSON
    mapping (uint64 alias, timestamp and seq as strings, as AWS's decode renders them), then the rule's
    own expressions evaluated by IoT SQL's typing rules (tests/infra/iot_sql.py); the result equals the
    JSON a `json` collector sends, but for `seq`. The meter is the collector's second: its aliases carry
    slot 2 (514, 515, ...), which only the remainder maps back to the metric table."""
    pool = descriptor_pool.DescriptorPool()
    for file_proto in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set()).file:
        pool.Add(file_proto)
    payload_type = pool.FindMessageTypeByName("org.eclipse.tahu.protobuf.Payload")
    payload_class = message_factory.GetMessageClass(payload_type)

    cfg = parse_config({
        "stack": "spb", "site": "plant-a", "collector": "edge-0", "thing_name": "spb:plant-a:edge-0",
        "meters": [{"asset": "meter-0", "breaker": "F0", "host": "127.0.0.1"},
                   {"asset": "meter-1", "breaker": "F1", "host": "127.0.0.1"}],
        "mqtt": {"endpoint": "127.0.0.1", "encoding": "sparkplug-b"},
        "buffer": {"path": str(tmp_path / "buffer.sqlite")},
    }, "test")
    wire = SparkplugWire(cfg)
    # two values not fit to publish (collector.quality): sent as null metrics with their reason
    reading = Reading("plant-a", "meter-1", "F1", 1_713_897_600_000,
                      {"voltageAN": 480.2, "currentA": 12.1, "realPower": 4.2, "powerFactor": 0.97,
                       "voltageBN": math.inf, "currentB": -2.0, "alarm2": 1.0})
    buffer = Buffer(
        cfg.buffer.path, cfg.buffer.max_bytes, cfg.thing_name, ("mqtt",), ddata_encoder=wire.ddata_row
    )
    try:
        buffer.append(reading)
        entry = buffer.cursor("mqtt").next_batch(1)[0]
    finally:
        buffer.close()
    wire.connect_sent()
    wire.nbirth()
    sent = wire.ddata(entry, buffer_id=buffer.buffer_id)  # the bytes the collector publishes

    decoded = json_format.MessageToDict(payload_class.FromString(sent))  # protobuf's JSON mapping
    assert isinstance(decoded["timestamp"], str)
    assert all(isinstance(m["alias"], str) for m in decoded["metrics"])
    sql = rules(sparkplug_stack)["pm500_spb_ddata_kinesis"]["sql"]
    names, aliases, units = (_case(sql, t) for t in ("name", "alias", "properties"))
    # the SQL's null handling: value NULL, is_null true, quality from the metric's first property
    assert "WHEN true THEN NULL ELSE" in sql and "WHEN true THEN true END AS is_null" in sql
    assert "{'quality': CASE (" in sql and "get(get(properties.values, 0), 'stringValue')" in sql

    def metric(m: dict[str, Any]) -> dict[str, Any]:
        shaped = {"name": evaluate(names, m), "alias": evaluate(aliases, m), "value": m.get("doubleValue")}
        properties = {"unit": evaluate(units, m)}
        if m.get("isNull"):
            shaped["is_null"] = True
            properties["quality"] = evaluate("get(get(properties.values, 0), 'stringValue')", m)
        return {**shaped, "properties": properties}

    assert f"{DECODED_TIMESTAMP_SQL} AS timestamp" in sql
    rebuilt = {
        "metrics": [metric(m) for m in decoded["metrics"]],
        "timestamp": evaluate(DECODED_TIMESTAMP_SQL, decoded),  # the reading's, not the publishing's
        "uuid": decoded["uuid"],
        "site": "plant-a",
        "asset": "meter-1",
    }
    # buffer_id and the per-asset seq are the JSON encoding's; a Sparkplug node has bdSeq and its own seq
    expected = ddata(reading, cfg.thing_name, seq=0, buffer_id="not sent")
    del expected["seq"], expected["buffer_id"]
    nulls = {m["name"]: m["properties"]["quality"] for m in expected["metrics"] if m.get("is_null")}
    assert nulls == {"voltageBN": "not_finite", "currentB": "out_of_range"}
    assert rebuilt == expected
    assert int(decoded["seq"]) == 1  # the edge node's seq: the first message after NBIRTH (0)
    assert int(decoded["timestamp"]) > reading.timestamp_ms  # published now, taken in 2024


def test_without_the_cast_no_alias_would_match() -> None:
    """IoT SQL compares a String with an Int as unequal: `CASE alias WHEN 1 ...` on protobuf's JSON
    (`"alias": "257"`) gives Undefined for every metric, so name, alias and unit would vanish."""
    metric = {"alias": "257", "doubleValue": 480.2, "timestamp": "1713897600000"}
    assert evaluate("CASE alias WHEN 257 THEN 'voltageAN' END", metric) is UNDEFINED
    assert evaluate(f"CASE {METRIC_NUMBER_SQL} WHEN 1 THEN 'voltageAN' END", metric) == "voltageAN"
    assert evaluate(f"CASE {METRIC_NUMBER_SQL} WHEN 1 THEN 'voltageAN' END", {"alias": "x"}) is UNDEFINED


@pytest.mark.parametrize("which", ["sparkplug", "mixed"])
def test_sparkplug_stacks_pass_the_policy_pack(
    which: str, sparkplug_stack: EvaluatedStack, mixed_stack: EvaluatedStack
) -> None:
    stack = sparkplug_stack if which == "sparkplug" else mixed_stack
    assert validators.validate_all(_resources(stack)) == {name: [] for name in validators.POLICIES}


PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"


def test_both_buckets_are_private_under_their_established_names(sparkplug_stack: EvaluatedStack) -> None:
    """Renaming a logical name would make `pulumi up` replace the resource on existing stacks."""
    private = {
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    stack = sparkplug_stack
    assert len(stack.of_type("aws:s3/bucket:Bucket")) == 2
    guarded: set[str] = set()
    for prefix in ("archive", "sparkplug"):
        pab = stack.one(PAB, f"{prefix}-public-access")
        ownership = stack.one(OWNERSHIP, f"{prefix}-ownership")
        assert {k: v for k, v in pab.inputs.items() if k != "bucket"} == private
        assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
        assert pab.inputs["bucket"] == ownership.inputs["bucket"]
        guarded.add(pab.inputs["bucket"])
    assert len(guarded) == 2  # one pair per bucket
