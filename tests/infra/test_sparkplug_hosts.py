"""Sparkplug Primary Host Applications in the stack (the longest-names stack's Sparkplug collector waits
for one): the thing attribute, the STATE policy every collector gets through the root group, the host's
own IoT policy, the outputs; checked against literal documents and AWS IoT's documented actions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import outputs
from infra.config import parse_stack_config
from preflight.iam_reference import check_document
from preflight.mock_runtime import EvaluatedStack, RegisteredResource
from tests.infra.longest_stack import HOST_ID, REGION, SPARKPLUG_SITE, STACK

POLICY = "aws:iot/policy:Policy"
ATTACHMENT = "aws:iot/policyAttachment:PolicyAttachment"
ARN = f"arn:aws:iot:{REGION}:123456789012"


def _policy(stack: EvaluatedStack, name: str) -> dict[str, Any]:
    resource: RegisteredResource = next(r for r in stack.of_type(POLICY) if r.inputs["name"] == name)
    document: dict[str, Any] = json.loads(resource.inputs["policy"])
    return document


def _by_sid(document: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    return {s["Sid"]: (s["Action"], s["Resource"]) for s in document["Statement"] if s["Effect"] == "Allow"}


def test_the_collector_that_waits_for_a_host_has_its_id_as_thing_attribute(longest: EvaluatedStack) -> None:
    attributes = {r.inputs["name"]: r.inputs["attributes"] for r in longest.of_type("aws:iot/thing:Thing")}
    assert attributes == {
        f"{STACK}:longest-site-name-for-checks--32:edge-1": {"site": "longest-site-name-for-checks--32",
                                                             "env": STACK},
        f"{STACK}:{SPARKPLUG_SITE}:edge-1": {"site": SPARKPLUG_SITE, "env": STACK, "primaryHostId": HOST_ID},
    }


def test_each_collector_reads_only_its_own_hosts_state(longest: EvaluatedStack) -> None:
    """Literal document: the thing attribute as a policy variable, on the STATE topic only."""
    name = f"pm500-{STACK}-collector-host-state"
    variable = "${iot:Connection.Thing.Attributes[primaryHostId]}"
    assert _by_sid(_policy(longest, name)) == {
        "SubscribeOwnHostState": (["iot:Subscribe"], [f"{ARN}:topicfilter/spBv1.0/STATE/{variable}"]),
        "ReceiveOwnHostState": (["iot:Receive"], [f"{ARN}:topic/spBv1.0/STATE/{variable}"]),
    }
    # On the root thing group, which every collector's site group descends from: whatever attaches the
    # collector policy to a certificate (CLI, fleet provisioning) need not know about it.
    attachment = longest.one(ATTACHMENT)
    assert attachment.inputs == {"policy": name, "target": f"{ARN}:thinggroup/pm500-{STACK}"}


def test_the_host_policy_reads_the_stacks_edge_nodes_commands_them_and_retains_its_state(
    longest: EvaluatedStack,
) -> None:
    name = f"pm500-{STACK}-host-{HOST_ID}"
    state = f"spBv1.0/STATE/{HOST_ID}"
    assert _by_sid(_policy(longest, name)) == {
        "ConnectAsHost": (["iot:Connect"], [f"{ARN}:client/{HOST_ID}"]),
        "SubscribeSparkplug": (["iot:Subscribe"], [
            f"{ARN}:topicfilter/spBv1.0/#",
            f"{ARN}:topicfilter/spBv1.0/pm500/#",
            f"{ARN}:topicfilter/{state}",
        ]),
        # Whatever it subscribes to, it receives this stack's edge nodes only (and its own STATE).
        "ReceiveStackEdgeNodes": (["iot:Receive"], [
            f"{ARN}:topic/spBv1.0/pm500/*/{STACK}:*", f"{ARN}:topic/{state}",
        ]),
        "CommandAndState": (["iot:Publish"], [
            f"{ARN}:topic/spBv1.0/pm500/NCMD/{STACK}:*", f"{ARN}:topic/{state}",
        ]),
        # AWS IoT Core Developer Guide, "AWS IoT Core policy actions": publishing with the RETAIN flag
        # needs iot:RetainPublish besides iot:Publish.
        "RetainOwnState": (["iot:RetainPublish"], [f"{ARN}:topic/{state}"]),
    }
    assert longest.outputs[outputs.SPARKPLUG_HOST_POLICIES] == {HOST_ID: name}
    collectors = longest.outputs[outputs.COLLECTORS]
    assert collectors[f"{STACK}:{SPARKPLUG_SITE}:edge-1"]["primaryHostId"] == HOST_ID
    assert "primaryHostId" not in collectors[f"{STACK}:longest-site-name-for-checks--32:edge-1"]


def test_host_documents_pass_the_reference_check_within_the_iot_policy_size(longest: EvaluatedStack) -> None:
    for name in (f"pm500-{STACK}-collector-host-state", f"pm500-{STACK}-host-{HOST_ID}"):
        document = _policy(longest, name)
        assert check_document(document) == []
        assert len(json.dumps(document, separators=(",", ":"))) <= 2048  # AWS IoT policy document cap


def test_stacks_without_a_primary_host_get_none_of_it(stack: EvaluatedStack) -> None:
    assert stack.of_type(ATTACHMENT) == []
    assert [r.name for r in stack.of_type(POLICY)] == ["collector-policy"]
    assert stack.outputs[outputs.SPARKPLUG_HOST_POLICIES] == {}


@pytest.mark.parametrize(("collector", "expected"), [
    ({"encoding": "json", "primaryHostId": "scada"}, "needs encoding sparkplug-b"),
    ({"encoding": "sparkplug-b", "primaryHostId": "no spaces"}, "primaryHostId"),
])
def test_a_primary_host_only_on_sparkplug_collectors_with_a_valid_id(collector: dict[str, str],
                                                                       expected: str) -> None:
    sites = [{"name": "a", "collectors": [{"name": "c", "meters": [{"asset": "m", "breaker": "b",
                                                                   "host": "10.0.0.1"}], **collector}]}]
    with pytest.raises(Exception, match=expected):
        parse_stack_config({"sites": sites}, stack="s", project_dir=Path("."), region="eu-west-1")


def test_the_stack_setting_applies_to_its_sparkplug_collectors_only() -> None:
    meters = [{"asset": "m", "breaker": "b", "host": "10.0.0.1"}]
    sites = [{"name": "a", "collectors": [{"name": "j", "meters": meters, "encoding": "json"},
                                          {"name": "s", "meters": meters},
                                          {"name": "o", "meters": meters, "primaryHostId": "other"}]}]
    cfg = parse_stack_config({"sites": sites, "encoding": "sparkplug-b", "primaryHostId": "scada"},
                             stack="s", project_dir=Path("."), region="eu-west-1")
    by_name = {c.name: cfg.collector_primary_host(c) for c in cfg.sites[0].collectors}
    assert by_name == {"j": None, "s": "scada", "o": "other"}
    assert cfg.primary_hosts == {"scada", "other"}
