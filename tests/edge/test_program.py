"""The real program (`infra/__main__.py`) on the mock runtime: edge on per stack, off = no Docker at all."""

from __future__ import annotations

import json

import pytest

from infra.mock_runtime import evaluate_stack, load_stack_config_file
from infra.outputs import EDGE


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_cloud_only_stack_declares_no_docker_resource(stack: str) -> None:
    config, _ = load_stack_config_file(stack)
    assert json.loads(config["pm500:features"]).get("edge", False) is False
    result = evaluate_stack(stack)
    docker = [r for r in result.resources if r.type.startswith(("docker:", "pulumi:providers:docker"))]
    assert docker == []
    assert not [r for r in result.resources if r.type.startswith(("aws:ecr", "pm500:edge"))]
    assert EDGE not in result.outputs


def test_staging_with_edge_on_gets_one_provider_per_site_host() -> None:
    config, secret_keys = load_stack_config_file("staging")
    sites = json.loads(config["pm500:sites"])
    for site in sites:
        site["edge"] = {"dockerHost": f"ssh://pm500@edge.{site['name']}.example"}
    features = {**json.loads(config["pm500:features"]), "edge": True}
    config = {**config, "pm500:sites": json.dumps(sites), "pm500:features": json.dumps(features)}

    result = evaluate_stack("staging", config=config, secret_keys=secret_keys)
    providers = result.of_type("pulumi:providers:docker")
    assert sorted(p.inputs["host"] for p in providers) == sorted(s["edge"]["dockerHost"] for s in sites)
    containers = result.of_type("docker:index/container:Container")
    collectors = [r for r in containers if r.name.endswith("-collector")]
    assert len(collectors) == sum(len(s["collectors"]) for s in sites)
    edge = result.outputs[EDGE]
    assert set(edge["sites"]) == {s["name"] for s in sites}
    assert edge["imageDigest"].startswith(edge["imageRepositoryUrl"] + "@sha256:")
