"""The provisioning template of each stack applied, with its own role, by a RegisterThing double that
enforces AWS's documented template rules (sandbox/fleet_provisioning.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from preflight.mock_runtime import EvaluatedStack
from sandbox.fleet_provisioning import Account, ProvisioningRefused, Thing, register_thing
from tests.infra.longest_stack import COLLECTOR as LONG_COLLECTOR
from tests.infra.longest_stack import SITE as LONG_SITE
from tests.infra.longest_stack import STACK as LONG_STACK

ARN = "arn:aws:iot:eu-west-1:123456789012"  # staging and prod
CERT = "0" * 64


def _account(stack: EvaluatedStack) -> Account:
    """The registry `pulumi up` leaves behind, as the stack declares it."""
    account = Account(f"arn:aws:iot:{stack.config['aws:region']}:123456789012")
    account.thing_types = {r.inputs["name"] for r in stack.of_type("aws:iot/thingType:ThingType")}
    account.groups = {r.inputs["name"]: r.inputs.get("parentGroupName")
                      for r in stack.of_type("aws:iot/thingGroup:ThingGroup")}
    account.policies = {r.inputs["name"] for r in stack.of_type("aws:iot/policy:Policy")}
    for r in stack.of_type("aws:iot/thing:Thing"):
        account.things[r.inputs["name"]] = Thing(r.inputs["thingTypeName"], dict(r.inputs["attributes"]))
    for r in stack.of_type("aws:iot/thingGroupMembership:ThingGroupMembership"):
        account.things[r.inputs["thingName"]].groups.add(r.inputs["thingGroupName"])
    return account


def _template(stack: EvaluatedStack) -> dict[str, Any]:
    template = stack.one("aws:iot/provisioningTemplate:ProvisioningTemplate")
    return dict(json.loads(template.inputs["templateBody"]))


def _role(stack: EvaluatedStack) -> dict[str, Any]:
    policy = stack.one("aws:iam/rolePolicy:RolePolicy", "provisioning-policy")
    return dict(json.loads(policy.inputs["policy"]))


def test_staging_template_registers_a_collector_in_its_site_group(staging: EvaluatedStack) -> None:
    account = _account(staging)
    thing = register_thing(account, _template(staging), _role(staging),
                           {"Site": "plant-b", "Collector": "edge-09"}, CERT)
    assert thing == "staging:plant-b:edge-09"
    assert account.things[thing] == Thing("pm500-staging-collector", {"site": "plant-b", "env": "staging"},
                                          {"pm500-staging:plant-b"})
    assert account.certificates == {CERT: "ACTIVE"}
    assert account.attached == {("pm500-staging-collector", CERT), (thing, CERT)}


def test_a_collector_declared_in_the_stack_is_provisioned_into_its_existing_thing(
        staging: EvaluatedStack) -> None:
    """`pulumi up` already created the thing and its membership: the override settings keep it."""
    account = _account(staging)
    thing = "staging:plant-a:edge-01"
    assert account.things[thing] == Thing("pm500-staging-collector", {"site": "plant-a", "env": "staging"},
                                          {"pm500-staging:plant-a"})
    assert register_thing(account, _template(staging), _role(staging),
                          {"Site": "plant-a", "Collector": "edge-01"}, CERT) == thing
    assert account.things[thing].groups == {"pm500-staging:plant-a"}
    assert (thing, CERT) in account.attached


def test_override_fail_refuses_a_differing_thing(staging: EvaluatedStack) -> None:
    template = _template(staging)
    template["Resources"]["thing"]["OverrideSettings"]["AttributePayload"] = "FAIL"
    account = _account(staging)
    account.things["staging:plant-a:edge-01"].attributes = {"site": "elsewhere"}
    with pytest.raises(ProvisioningRefused, match="AttributePayload is FAIL"):
        register_thing(account, template, _role(staging), {"Site": "plant-a", "Collector": "edge-01"}, CERT)


def test_longest_names_provision(longest: EvaluatedStack) -> None:
    account = _account(longest)
    thing = register_thing(account, _template(longest), _role(longest),
                           {"Site": LONG_SITE, "Collector": LONG_COLLECTOR}, CERT)
    assert thing == f"{LONG_STACK}:{LONG_SITE}:{LONG_COLLECTOR}"


def test_root_and_site_group_together_are_refused(staging: EvaluatedStack) -> None:
    """Defect 3 as it was: the template put the thing in the root group and its child."""
    template = _template(staging)
    thing = template["Resources"]["thing"]["Properties"]
    thing["ThingGroups"] = ["pm500-staging", *thing["ThingGroups"]]
    account = _account(staging)
    with pytest.raises(ProvisioningRefused, match="only one group of a hierarchy"):
        register_thing(account, template, _role(staging), {"Site": "plant-a", "Collector": "x"}, CERT)
    assert "staging:plant-a:x" not in account.things and account.certificates == {}  # nothing half-done


def test_the_old_provisioning_role_is_refused(staging: EvaluatedStack) -> None:
    """Defect 2 as it was: AttachPolicy granted on the policy ARN instead of the certificate."""
    role = copy.deepcopy(_role(staging))
    for statement in role["Statement"]:
        if statement["Action"] == ["iot:AttachPolicy"]:
            statement["Resource"] = [f"{ARN}:policy/pm500-staging-collector"]
    with pytest.raises(ProvisioningRefused, match=r"not allowed iot:AttachPolicy on .*:cert/0000"):
        register_thing(_account(staging), _template(staging), role, {"Site": "plant-a", "Collector": "x"},
                       CERT)


@pytest.mark.parametrize(("parameters", "message"), [
    ({"Site": "plant-a"}, "parameter Collector is required"),
    ({"Site": "nowhere", "Collector": "x"}, "pm500-staging:nowhere does not exist"),
    ({"Site": "plant-a", "Collector": "bad name"}, "not a valid thing name"),
])
def test_bad_parameters_are_refused(staging: EvaluatedStack, parameters: dict[str, str],
                                    message: str) -> None:
    with pytest.raises(ProvisioningRefused, match=message):
        register_thing(_account(staging), _template(staging), _role(staging), parameters, CERT)


def test_another_stacks_role_cannot_provision_into_this_stack(staging: EvaluatedStack,
                                                              prod: EvaluatedStack) -> None:
    with pytest.raises(ProvisioningRefused, match=r"not allowed iot:DescribeThing on .*:thing/staging:"):
        register_thing(_account(staging), _template(staging), _role(prod),
                       {"Site": "plant-a", "Collector": "x"}, CERT)


def test_override_settings_are_checked(staging: EvaluatedStack) -> None:
    template = _template(staging)
    template["Resources"]["thing"]["OverrideSettings"]["ThingTypeName"] = "MERGE"
    with pytest.raises(ProvisioningRefused, match=r"OverrideSettings\.ThingTypeName: 'MERGE'"):
        register_thing(_account(staging), template, _role(staging), {"Site": "plant-a", "Collector": "x"},
                       CERT)
