"""AWS IoT registry, policy, provisioning template and topic rules (+ the hook's Lambda permission)."""

from __future__ import annotations

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


def _thing_type(r: Resolved) -> list[ApiRequest]:
    props = r.inputs.get("properties") or {}
    return [ApiRequest("iot", "CreateThingType", compact({
        "thingTypeName": physical_name(r),
        "thingTypeProperties": compact({"thingTypeDescription": props.get("description"),
                                         "searchableAttributes": props.get("searchableAttributes")}),
        "tags": tag_list(r.inputs.get("tags")),
    }), label(r))]


def _thing_group(r: Resolved) -> list[ApiRequest]:
    props = r.inputs.get("properties") or {}
    attributes = (props.get("attributePayload") or {}).get("attributes")
    return [ApiRequest("iot", "CreateThingGroup", compact({
        "thingGroupName": physical_name(r),
        "parentGroupName": r.inputs.get("parentGroupName"),
        "thingGroupProperties": compact({"thingGroupDescription": props.get("description"),
                                          "attributePayload": compact({"attributes": attributes})}),
        "tags": tag_list(r.inputs.get("tags")),
    }), label(r))]


def _thing(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "CreateThing", compact({
        "thingName": physical_name(r),
        "thingTypeName": r.inputs.get("thingTypeName"),
        "attributePayload": compact({"attributes": r.inputs.get("attributes")}),
    }), label(r))]


def _membership(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "AddThingToThingGroup", {
        "thingGroupName": r.inputs["thingGroupName"], "thingName": r.inputs["thingName"],
    }, label(r))]


def _iot_policy(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "CreatePolicy", compact({
        "policyName": physical_name(r), "policyDocument": r.inputs["policy"],
        "tags": tag_list(r.inputs.get("tags")),
    }), label(r), {"policyDocument": "iot-policy"})]


def _policy_attachment(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("iot", "AttachPolicy", {
        "policyName": r.inputs["policy"], "target": r.inputs["target"],
    }, label(r))]


def _provisioning_template(r: Resolved) -> list[ApiRequest]:
    hook = r.inputs.get("preProvisioningHook")
    return [ApiRequest("iot", "CreateProvisioningTemplate", compact({
        "templateName": physical_name(r),
        "description": r.inputs.get("description"),
        "templateBody": r.inputs["templateBody"],
        "enabled": r.inputs.get("enabled"),
        "provisioningRoleArn": r.inputs["provisioningRoleArn"],
        "preProvisioningHook": compact({"targetArn": hook["targetArn"],
                                         "payloadVersion": hook.get("payloadVersion")}) if hook else None,
        "tags": tag_list(r.inputs.get("tags")),
        "type": r.inputs.get("type"),
    }), label(r), {"templateBody": "json"})]


_RULE_ACTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "kineses": lambda a: {"kinesis": compact({"roleArn": a["roleArn"], "streamName": a["streamName"],
                                               "partitionKey": a.get("partitionKey")})},
    "firehoses": lambda a: {"firehose": compact({"roleArn": a["roleArn"],
                                                  "deliveryStreamName": a["deliveryStreamName"],
                                                  "separator": a.get("separator"),
                                                  "batchMode": a.get("batchMode")})},
    "dynamodbv2s": lambda a: {"dynamoDBv2": {"roleArn": a["roleArn"],
                                             "putItem": {"tableName": a["putItem"]["tableName"]}}},
    "dynamodbs": lambda a: {"dynamoDB": compact({
        "tableName": a["tableName"], "roleArn": a["roleArn"], "operation": a.get("operation"),
        "hashKeyField": a["hashKeyField"], "hashKeyValue": a["hashKeyValue"],
        "hashKeyType": a.get("hashKeyType"),
        "rangeKeyField": a.get("rangeKeyField"), "rangeKeyValue": a.get("rangeKeyValue"),
        "rangeKeyType": a.get("rangeKeyType"), "payloadField": a.get("payloadField")})},
    "stepFunctions": lambda a: {"stepFunctions": compact({
        "stateMachineName": a["stateMachineName"], "roleArn": a["roleArn"],
        "executionNamePrefix": a.get("executionNamePrefix")})},
    "sqs": lambda a: {"sqs": compact({"roleArn": a["roleArn"], "queueUrl": a["queueUrl"],
                                      "useBase64": a.get("useBase64")})},
    "republishes": lambda a: {"republish": compact({"roleArn": a["roleArn"], "topic": a["topic"],
                                                     "qos": a.get("qos")})},
    "cloudwatchLogs": lambda a: {"cloudwatchLogs": compact({"roleArn": a["roleArn"],
                                                             "logGroupName": a["logGroupName"],
                                                             "batchMode": a.get("batchMode")})},
}


_RULE_SETTINGS = {"name", "description", "enabled", "sql", "sqlVersion", "tags", "errorAction"}


def _rule_action(kind: str, action: dict[str, Any], r: Resolved) -> dict[str, Any]:
    try:
        return _RULE_ACTIONS[kind](action)
    except KeyError:
        raise UnmappedResource(f"{label(r)}: no request mapping for topic rule action {kind!r}") from None


def _topic_rule(r: Resolved) -> list[ApiRequest]:
    actions = [_rule_action(kind, a, r) for kind in _RULE_ACTIONS if kind != "cloudwatchLogs"
               for a in r.inputs.get(kind) or []]
    unknown = [k for k, v in r.inputs.items() if v and k not in _RULE_ACTIONS and k not in _RULE_SETTINGS]
    if unknown:
        raise UnmappedResource(f"{label(r)}: no request mapping for topic rule action(s) {unknown}")
    error = r.inputs.get("errorAction") or {}
    error_action = next((_rule_action(k, v, r) for k, v in error.items() if v), None)
    tags = r.inputs.get("tags") or {}
    return [ApiRequest("iot", "CreateTopicRule", compact({
        "ruleName": physical_name(r),
        "topicRulePayload": compact({
            "sql": r.inputs["sql"], "description": r.inputs.get("description"), "actions": actions,
            "ruleDisabled": not r.inputs.get("enabled", True), "awsIotSqlVersion": r.inputs.get("sqlVersion"),
            "errorAction": error_action,
        }),
        # CreateTopicRule takes tags as a URL query string ("k1=v1&k2=v2").
        "tags": "&".join(f"{k}={v}" for k, v in sorted(tags.items())) or None,
    }), label(r))]




def _lambda_permission(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("lambda", "AddPermission", compact({
        "FunctionName": r.inputs["function"], "StatementId": physical_name(r, "statementId"),
        "Action": r.inputs["action"], "Principal": r.inputs["principal"],
        "SourceArn": r.inputs.get("sourceArn"), "SourceAccount": r.inputs.get("sourceAccount"),
    }), label(r))]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:iot/thingType:ThingType": _thing_type,
    "aws:iot/thingGroup:ThingGroup": _thing_group,
    "aws:iot/thing:Thing": _thing,
    "aws:iot/thingGroupMembership:ThingGroupMembership": _membership,
    "aws:iot/policy:Policy": _iot_policy,
    "aws:iot/policyAttachment:PolicyAttachment": _policy_attachment,
    "aws:iot/provisioningTemplate:ProvisioningTemplate": _provisioning_template,
    "aws:iot/topicRule:TopicRule": _topic_rule,
    "aws:lambda/permission:Permission": _lambda_permission,
}
