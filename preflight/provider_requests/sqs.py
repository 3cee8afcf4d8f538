"""SQS queues (the alarm-event queue between the IoT rule and the EventBridge Pipe)."""

from __future__ import annotations

from collections.abc import Callable

from preflight.provider_requests.base import ApiRequest, Resolved, compact, label, physical_name

# Queue input -> the CreateQueue attribute the provider sets from it. SQS takes every attribute
# value as a string (numbers in decimal, booleans as "true"/"false").
_ATTRIBUTES = {
    "delaySeconds": "DelaySeconds",
    "maxMessageSize": "MaximumMessageSize",
    "messageRetentionSeconds": "MessageRetentionPeriod",
    "receiveWaitTimeSeconds": "ReceiveMessageWaitTimeSeconds",
    "visibilityTimeoutSeconds": "VisibilityTimeout",
    "kmsMasterKeyId": "KmsMasterKeyId",
    "kmsDataKeyReusePeriodSeconds": "KmsDataKeyReusePeriodSeconds",
    "sqsManagedSseEnabled": "SqsManagedSseEnabled",
    "fifoQueue": "FifoQueue",
    "contentBasedDeduplication": "ContentBasedDeduplication",
    "policy": "Policy",
    "redrivePolicy": "RedrivePolicy",
}


def _attribute_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _queue(r: Resolved) -> list[ApiRequest]:
    attributes = {attribute: _attribute_text(r.inputs[key]) for key, attribute in _ATTRIBUTES.items()
                  if r.inputs.get(key) is not None}
    return [ApiRequest("sqs", "CreateQueue", compact({
        "QueueName": physical_name(r), "Attributes": attributes, "tags": dict(r.inputs.get("tags") or {}),
    }), label(r))]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:sqs/queue:Queue": _queue,
}
