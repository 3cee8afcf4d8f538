"""The provisioning template of each stack applied, with its own role, by a RegisterThing double that
enforces AWS's documented template rules (sandbox/fleet_provisioning.py)."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from devices.lifecycle import allow_replacement
from infra.provisioning_hook_code.handler import REPLACE_UNTIL_ATTRIBUTE
from preflight.iam_evaluator import allows
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, load_stack_config_file
from preflight.provider_requests import stack_requests
from preflight.provider_requests.functions import archive_zip
from sandbox.fleet_provisioning import Account, Claim, ProvisioningRefused, Thing, register_thing
from sandbox.plan_replay import moto_clients, replay
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


# --- The attacks of issue 24, against the stack's own pre-provisioning hook ---------------------------
# The hook is the Lambda code exactly as the program packages it (the zip the provider would upload,
# `infra.provider_requests.functions.archive_zip`), run against moto holding the stack's registry.

WORKING = "staging:plant-a:edge-01"  # a collector in service: its thing holds an ACTIVE certificate


@pytest.fixture(scope="module")
def fleet() -> EvaluatedStack:
    config, secret_keys = load_stack_config_file("staging")
    config["pm500:provisioning"] = json.dumps({"fleet": True})
    return evaluate_stack("staging", config=config, secret_keys=secret_keys)


def packaged_hook(stack: EvaluatedStack, where: Path) -> ModuleType:
    function = stack.one("aws:lambda/function:Function")
    zipfile.ZipFile(io.BytesIO(archive_zip(function.inputs["code"], "hook"))).extractall(where)
    assert function.inputs["handler"] == "handler.handler"
    spec = importlib.util.spec_from_file_location(f"hook_{where.name}", where / "handler.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Plant:
    """The stack deployed into moto, one collector in service, and the double's view of the registry."""

    account: Account
    iot: Any
    hook: Callable[[dict[str, Any]], Any]
    working_certificate: str


@pytest.fixture
def plant(fleet: EvaluatedStack, aws_env: dict[str, str], tmp_path: Path) -> Plant:
    client = moto_clients(aws_env, fleet.config["aws:region"])
    replay(stack_requests(fleet), client)
    iot = client("iot")
    working = iot.create_keys_and_certificate(setAsActive=True)["certificateId"]
    iot.attach_thing_principal(thingName=WORKING, principal=f"{ARN}:cert/{working}")
    module = packaged_hook(fleet, tmp_path / "hook")
    return Plant(_account(fleet), iot, lambda event: module.handler(event, None), working)


def claim(plant: Plant, fleet: EvaluatedStack, site: str, collector: str) -> str:
    template = fleet.one("aws:iot/provisioningTemplate:ProvisioningTemplate").inputs
    return register_thing(plant.account, _template(fleet), _role(fleet),
                          {"Site": site, "Collector": collector}, CERT, hook=plant.hook,
                          claim=Claim(template_name=template["name"], enabled=template["enabled"]))


def test_a_claim_for_a_collector_in_service_is_refused(plant: Plant, fleet: EvaluatedStack) -> None:
    """Issue 24: a claim for plant-north/edge-01 got a second ACTIVE certificate on that thing."""
    with pytest.raises(ProvisioningRefused, match="ACCESS_DENIED"):
        claim(plant, fleet, "plant-a", "edge-01")
    assert plant.account.certificates == {} and (WORKING, CERT) not in plant.account.attached


@pytest.mark.parametrize(("site", "collector"), [
    ("plant-a", "rogue-999"),  # issue 24: accepted as a new thing
    ("plant-z", "edge-01"),  # a site the inventory does not have
    ("plant-a", "edge-01:x"),  # a name that is no declared collector's
    ("plant-b", "EDGE-01"),
])
def test_a_claim_for_an_undeclared_collector_is_refused(plant: Plant, fleet: EvaluatedStack, site: str,
                                                        collector: str) -> None:
    things = set(plant.account.things)
    with pytest.raises(ProvisioningRefused, match="ACCESS_DENIED"):
        claim(plant, fleet, site, collector)
    assert set(plant.account.things) == things and plant.account.certificates == {}


def test_a_declared_collector_without_a_certificate_is_provisioned(plant: Plant,
                                                                   fleet: EvaluatedStack) -> None:
    assert claim(plant, fleet, "plant-b", "edge-02") == "staging:plant-b:edge-02"
    assert plant.account.certificates == {CERT: "ACTIVE"}
    assert ("staging:plant-b:edge-02", CERT) in plant.account.attached


@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_a_thing_whose_certificate_is_dead_takes_a_new_one(plant: Plant, fleet: EvaluatedStack,
                                                           status: str) -> None:
    plant.iot.update_certificate(certificateId=plant.working_certificate, newStatus=status)
    assert claim(plant, fleet, "plant-a", "edge-01") == WORKING


def test_a_replacement_the_operator_allowed_is_provisioned_until_the_window_closes(
        plant: Plant, fleet: EvaluatedStack) -> None:
    until = allow_replacement(plant.iot, WORKING, minutes=30)
    assert until > time.time()
    assert claim(plant, fleet, "plant-a", "edge-01") == WORKING
    plant.account.certificates.clear()
    plant.iot.update_thing(thingName=WORKING, attributePayload={
        "attributes": {REPLACE_UNTIL_ATTRIBUTE: str(int(time.time()) - 1)}, "merge": True})
    with pytest.raises(ProvisioningRefused, match="ACCESS_DENIED"):
        claim(plant, fleet, "plant-a", "edge-01")


def test_without_fleet_provisioning_the_template_refuses_every_claim(staging: EvaluatedStack) -> None:
    template = staging.one("aws:iot/provisioningTemplate:ProvisioningTemplate").inputs
    with pytest.raises(ProvisioningRefused, match="disabled"):
        register_thing(_account(staging), _template(staging), _role(staging),
                       {"Site": "plant-b", "Collector": "edge-02"}, CERT,
                       claim=Claim(template_name=template["name"], enabled=template["enabled"]))


def test_the_hook_reads_only_this_stacks_things(fleet: EvaluatedStack) -> None:
    """Its role: describe this stack's things, certificate statuses, its own log streams; nothing else."""
    policy = json.loads(fleet.one("aws:iam/rolePolicy:RolePolicy", "hook-policy").inputs["policy"])
    assert allows(policy, "iot:ListThingPrincipals", f"{ARN}:thing/{WORKING}")
    assert not allows(policy, "iot:ListThingPrincipals", f"{ARN}:thing/prod:plant-north:edge-01")
    assert allows(policy, "iot:DescribeCertificate", f"{ARN}:cert/{CERT}")
    for action in ("iot:UpdateCertificate", "iot:AttachThingPrincipal", "iot:UpdateThing", "iot:CreateThing"):
        assert not allows(policy, action, f"{ARN}:thing/{WORKING}")
        assert not allows(policy, action, f"{ARN}:cert/{CERT}")
