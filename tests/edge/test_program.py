"""The real program (`infra/__main__.py`) on the mock runtime: edge on per stack, off = no Docker at all."""

from __future__ import annotations

import json

from infra.outputs import EDGE
from preflight.mock_runtime import evaluate_stack, load_stack_config_file


def test_cloud_only_stack_declares_no_docker_resource() -> None:
    config, _ = load_stack_config_file("staging")
    assert json.loads(config["pm500:features"]).get("edge", False) is False
    result = evaluate_stack("staging")
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


def test_prod_as_committed_runs_the_edge_stack_on_every_site_host() -> None:
    """Pulumi.prod.yaml turns the edge on; each inventory file names its site's Docker host."""
    result = evaluate_stack("prod")
    collectors = result.outputs["collectors"].values()
    sites = {c["site"] for c in collectors}
    providers = result.of_type("pulumi:providers:docker")
    expected_hosts = sorted(f"ssh://pm500@edge.{s}.example" for s in sites)
    assert sorted(p.inputs["host"] for p in providers) == expected_hosts
    containers = result.of_type("docker:index/container:Container")
    containers = [r for r in containers if r.name.endswith("-collector")]
    assert len(containers) == len(collectors)
    assert set(result.outputs[EDGE]["sites"]) == sites
