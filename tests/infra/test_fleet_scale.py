"""Fleet scale (issue 7): inventory files keep the engine's config small; 10,000 collectors evaluate;
inventory errors name the file and the path inside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.fleet_scale import STACK, write_fleet
from collector.validation import ConfigError
from infra import outputs
from preflight.mock_runtime import evaluate_stack, language_host_config_json, load_stack_config_file

LINUX_ENV_STRING_CAP = 128 * 1024


def test_config_passed_by_the_engine_stays_small_for_10000_collectors(tmp_path: Path) -> None:
    write_fleet(tmp_path / "files", 10_000)
    config, _ = load_stack_config_file(STACK, tmp_path / "files")
    assert len(language_host_config_json(config).encode()) < 4096
    # The same fleet inline would not even fit in one environment string: why files exist.
    write_fleet(tmp_path / "inline", 10_000, inline=True)
    inline, _ = load_stack_config_file(STACK, tmp_path / "inline")
    assert len(language_host_config_json(inline).encode()) > LINUX_ENV_STRING_CAP


@pytest.mark.slow
def test_10000_collector_inventory_evaluates(tmp_path: Path) -> None:
    write_fleet(tmp_path, 10_000)
    evaluated = evaluate_stack(STACK, tmp_path)
    counts = evaluated.count_by_type()
    assert counts["aws:iot/thing:Thing"] == 10_000
    assert counts["aws:iot/thingGroupMembership:ThingGroupMembership"] == 10_000
    assert counts["aws:iot/thingGroup:ThingGroup"] == 1 + 50
    # the two data routes and the two fleet rules, whatever the fleet size
    assert counts["aws:iot/topicRule:TopicRule"] == 4 and counts["aws:iot/policy:Policy"] == 1
    assert len(evaluated.outputs[outputs.COLLECTORS]) == 10_000
    assert evaluated.outputs[outputs.THING_NAMES]["site-049"]["edge-0199"] == "fleet:site-049:edge-0199"
    stream = evaluated.one("aws:kinesis/stream:Stream").inputs
    assert stream["streamModeDetails"] == {"streamMode": "ON_DEMAND"}


def test_inline_and_file_inventories_give_the_same_program(tmp_path: Path) -> None:
    write_fleet(tmp_path / "files", 30, per_site=10)
    write_fleet(tmp_path / "inline", 30, per_site=10, inline=True)
    a = evaluate_stack(STACK, tmp_path / "files")
    b = evaluate_stack(STACK, tmp_path / "inline")
    assert {r.urn: r.inputs for r in a.resources} == {r.urn: r.inputs for r in b.resources}
    assert a.outputs == b.outputs



def test_inventory_error_names_file_and_path(tmp_path: Path) -> None:
    write_fleet(tmp_path, 20, per_site=10)
    path = tmp_path / "inventory" / "site-001.yaml"
    site = yaml.safe_load(path.read_text())
    site["collectors"][3]["meters"][1]["host"] = "bad host!"
    path.write_text(yaml.safe_dump(site))
    with pytest.raises(ConfigError) as err:
        evaluate_stack(STACK, tmp_path)
    assert str(err.value) == "inventory/site-001.yaml: collectors[3].meters[1].host: expected host or IP"


def test_inventory_yaml_and_duplicate_site_errors(tmp_path: Path) -> None:
    write_fleet(tmp_path, 20, per_site=10)
    inventory = tmp_path / "inventory"
    (inventory / "site-001.yaml").write_text("name: site-001\ncollectors: [unclosed\n")
    with pytest.raises(ConfigError, match=r"^inventory/site-001.yaml: not valid YAML"):
        evaluate_stack(STACK, tmp_path)
    (inventory / "site-001.yaml").write_text((inventory / "site-000.yaml").read_text())
    duplicate = r"inventory/site-001.yaml: name: site 'site-000' is also defined in inventory/site-000.yaml"
    with pytest.raises(ConfigError, match=duplicate):
        evaluate_stack(STACK, tmp_path)


def test_inventory_glob_matching_nothing_is_named(tmp_path: Path) -> None:
    write_fleet(tmp_path, 10, per_site=10)
    stack_file = tmp_path / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["pm500:inventory"] = ["inventory/*.yaml", "inventory/missing/*.yaml"]
    stack_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"pm500:inventory: 'inventory/missing/\*.yaml' matches no file"):
        evaluate_stack(STACK, tmp_path)


def test_too_many_sites_for_firehose_partitions_is_refused(tmp_path: Path) -> None:
    write_fleet(tmp_path, 51, per_site=1)
    stack_file = tmp_path / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["pm500:archive"] = {"activePartitionLimit": 100}
    stack_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"51 sites need up to 102 active Firehose partitions"):
        evaluate_stack(STACK, tmp_path)
    doc["config"]["pm500:archive"] = {"activePartitionLimit": 102}  # after AWS raised the quota
    stack_file.write_text(yaml.safe_dump(doc))
    assert len(evaluate_stack(STACK, tmp_path).outputs[outputs.SITE_THING_GROUPS]) == 51


def test_prod_uses_inventory_files() -> None:
    config, _ = load_stack_config_file("prod")
    assert config["pm500:inventory"] == "inventory/prod/*.yaml" and "pm500:sites" not in config
    assert json.loads(config["pm500:kinesis"])["capacityMode"] == "ON_DEMAND"
