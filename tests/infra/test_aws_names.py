"""AWS's published naming rules (botocore's service models) for the names the program chooses, over the
real stacks and a generated stack at the longest names the config accepts; and the config and the CLI
agreeing on which names can be provisioned (issue 10, defects 1, 3, 4, 5 and the group-name collision).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest

from collector.validation import ConfigError
from devices.crypto import subject_for
from infra.config import parse_stack_config
from infra.naming import Names
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, load_stack_config_file
from tests.infra.longest_stack import COLLECTOR as LONG_COLLECTOR
from tests.infra.longest_stack import SITE as LONG_SITE
from tests.infra.longest_stack import STACK as LONG_STACK

ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TEMPLATE = "aws:iot/provisioningTemplate:ProvisioningTemplate"
GROUP = "aws:iot/thingGroup:ThingGroup"
METER = {"asset": "main", "breaker": "MCC-1", "host": "pm500.plant.example"}



def _shape(service: str, shape: str) -> dict[str, Any]:
    model = botocore.loaders.Loader().load_service_model(service, "service-2")
    return dict(model["shapes"][shape])


def _assert_valid(value: str, service: str, shape: str) -> None:
    rule = _shape(service, shape)
    assert rule.get("min", 1) <= len(value) <= rule["max"], f"{shape} {value!r}: {len(value)} > {rule['max']}"
    assert re.fullmatch(rule["pattern"].strip("^$"), value), f"{shape} {value!r} !~ {rule['pattern']}"


def _site(name: str, *collectors: str) -> dict[str, Any]:
    return {"name": name, "collectors": [{"name": c, "meters": [METER]} for c in collectors]}


def _stacks(staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> list[EvaluatedStack]:
    return [staging, prod, longest]


def test_every_inline_policy_has_a_valid_explicit_name(
        staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    """Defect 1: without `name` the provider autonames from the logical name (`rule-policy/<route>-…`)."""
    for stack in _stacks(staging, prod, longest):
        for policy in stack.of_type(ROLE_POLICY):
            assert "name" in policy.inputs, f"{stack.stack}: {policy.name} is autonamed from its logical name"
            _assert_valid(policy.inputs["name"], "iam", "policyNameType")


def test_the_data_key_alias_is_valid_at_the_longest_stack_name() -> None:
    """The alias the bootstrap gives each stack's key and the stack looks it up by (KMS CreateAlias)."""
    _assert_valid(Names(LONG_STACK).data_key_alias, "kms", "AliasNameType")
    assert not Names(LONG_STACK).data_key_alias.startswith("alias/aws/")  # reserved for AWS managed keys


def test_provisioning_template_name_is_valid_at_the_longest_stack_name(
        staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    """Defect 4: TemplateName holds 36 characters."""
    assert longest.stack == LONG_STACK
    for stack in _stacks(staging, prod, longest):
        _assert_valid(stack.one(TEMPLATE).inputs["name"], "iot", "TemplateName")


def test_group_and_thing_names_are_valid_at_the_longest_names(longest: EvaluatedStack) -> None:
    for group in longest.of_type(GROUP):
        _assert_valid(group.inputs["name"], "iot", "ThingGroupName")
    thing = longest.one("aws:iot/thing:Thing", f"thing/{LONG_SITE}/{LONG_COLLECTOR}").inputs["name"]
    _assert_valid(thing, "iot", "ThingName")
    assert len(thing) == 64
    subject_for(thing)  # the CLI can mint its certificate (CN <= 64)


def test_config_refuses_a_stack_name_the_template_name_cannot_hold(tmp_path: Path) -> None:
    """Defect 4: 25 characters would make `pm500-<stack>-claim` 37 long."""
    sites = json.dumps([_site("a", "b")])
    parse_stack_config({"sites": sites}, stack=LONG_STACK, project_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"^stack name 'longest-stack-checks-024x': at most 24 characters"):
        parse_stack_config({"sites": sites}, stack=LONG_STACK + "x", project_dir=tmp_path)


def test_config_refuses_thing_names_the_cli_cannot_provision(tmp_path: Path) -> None:
    """Defect 5: a thing name is the certificate CN (at most 64); config used to accept up to 98."""
    ok = json.dumps([_site(LONG_SITE, LONG_COLLECTOR)])
    parse_stack_config({"sites": ok}, stack=LONG_STACK, project_dir=tmp_path)
    too_long = json.dumps([_site(LONG_SITE, "ok", LONG_COLLECTOR + "7")])
    with pytest.raises(ConfigError) as err:
        parse_stack_config({"sites": too_long}, stack=LONG_STACK, project_dir=tmp_path)
    assert str(err.value) == (
        f"pm500:sites[0].collectors[1].name: thing name '{LONG_STACK}:{LONG_SITE}:edge-17' is 65 characters; "
        "a thing name is the certificate CN and holds at most 64: shorten the stack, site or collector name"
    )


def test_cli_and_config_share_one_thing_name_limit() -> None:
    """The CLI's CN check refuses exactly what the config refuses (one rule, one owner)."""
    from devices.errors import DeviceError

    subject_for("a" * 64)
    with pytest.raises(DeviceError, match="65 characters"):
        subject_for("a" * 65)


def test_group_names_of_two_stacks_never_collide() -> None:
    """Stack `a` + site `b-c` and stack `a-b` + site `c` used to share `pm500-a-b-c`; stack `a` + site `b`
    used to share `pm500-a-b` with stack `a-b`'s root group."""
    names = {Names("a").site_group("b-c"), Names("a-b").site_group("c"), Names("a").site_group("b"),
             Names("a-b").root_group, Names("a").root_group}
    assert len(names) == 5
    assert Names("a").site_group("b-c") == "pm500-a:b-c"


def test_a_thing_is_in_one_group_of_the_hierarchy(staging: EvaluatedStack) -> None:
    """Defect 3: AWS IoT refuses a thing in two groups of one hierarchy (root + its child)."""
    template = json.loads(staging.one(TEMPLATE).inputs["templateBody"])
    groups = template["Resources"]["thing"]["Properties"]["ThingGroups"]
    assert groups == [{"Fn::Join": [":", ["pm500-staging", {"Ref": "Site"}]]}]


def test_config_refuses_more_sites_than_a_thing_group_can_hold_children(tmp_path: Path) -> None:
    """AWS IoT: at most 100 direct child groups per thing group (not adjustable); sites are children of
    the stack's root group."""
    sites = [_site(f"s{i}", "c") for i in range(101)]
    values = {"sites": json.dumps(sites), "archive": json.dumps({"activePartitionLimit": 1000})}
    with pytest.raises(ConfigError, match=r"^pm500:sites: 101 sites; AWS IoT allows at most 100 direct"):
        parse_stack_config(values, stack="a", project_dir=tmp_path)
    parse_stack_config({"sites": json.dumps(sites[:100])}, stack="a", project_dir=tmp_path)


def test_arns_follow_the_partition_of_the_region() -> None:
    """Config accepts GovCloud/ISO regions: no document may hard-code the commercial `arn:aws:`."""
    region = "us-gov-west-1"
    config = {**load_stack_config_file("staging")[0], "aws:region": region}
    evaluated = evaluate_stack("staging", config=config)
    documents = [r.inputs["policy"] for r in evaluated.of_type(ROLE_POLICY)]
    documents.append(evaluated.one("aws:iot/policy:Policy").inputs["policy"])
    arns = [a for doc in documents for a in re.findall(r'"(arn:[^"]+)"', doc)]
    wrong = [a for a in arns if not a.startswith("arn:aws-us-gov:")]
    assert len(arns) > 20 and wrong == []


def test_the_stack_name_limit_is_exactly_what_the_template_name_holds() -> None:
    """Not stricter than AWS needs: the longest accepted stack fills TemplateName to its maximum."""
    assert len(Names(LONG_STACK).provisioning_template) == _shape("iot", "TemplateName")["max"]


def test_an_unprovisionable_thing_in_an_inventory_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "inventory").mkdir()
    site = _site(LONG_SITE, LONG_COLLECTOR, LONG_COLLECTOR + "7")
    (tmp_path / "inventory" / "long.yaml").write_text(json.dumps(site))  # JSON is YAML
    expected = r"^inventory/long.yaml: collectors\[1\].name: thing name '.*' is 65 characters"
    with pytest.raises(ConfigError, match=expected):
        parse_stack_config({"inventory": "inventory/*.yaml"}, stack=LONG_STACK, project_dir=tmp_path)


def test_kms_via_service_uses_the_partitions_dns_suffix() -> None:
    """kms:ViaService is `<service>.<region>.<DNS suffix>`: `amazonaws.com.cn` in the China partition."""
    config = {**load_stack_config_file("prod")[0], "aws:region": "cn-north-1"}
    evaluated = evaluate_stack("prod", config=config)
    values = sorted(s["Condition"]["StringEquals"]["kms:ViaService"]
                    for r in evaluated.of_type(ROLE_POLICY)
                    for s in json.loads(r.inputs["policy"])["Statement"] if "Condition" in s
                    and "kms:ViaService" in s["Condition"].get("StringEquals", {}))
    # latest values, the presence state machine and the report rule (fleet table), the archive
    assert values == ["dynamodb.cn-north-1.amazonaws.com.cn"] * 3 + ["s3.cn-north-1.amazonaws.com.cn"]
