"""The real collector Dockerfile and the edge containers agree; the workflows and Dockerfile lint clean."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from collector.config import apply_env_overrides
from infra import edge as edge_mod
from infra.images import (
    COLLECTOR_DOCKERFILE,
    REPO_ROOT,
    DockerfileError,
    content_tag,
    context_files,
    copy_sources,
)

DOCKERFILE = REPO_ROOT / COLLECTOR_DOCKERFILE
HADOLINT = REPO_ROOT / ".venv" / "bin" / "hadolint"


def _instruction(name: str) -> list[str]:
    """Exec-form arguments of the last `name` instruction of the collector Dockerfile."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(f"{name} ")]
    assert found, f"collector/Dockerfile has no {name}"
    args = found[-1]
    if name == "HEALTHCHECK":
        args = args.split(" CMD ", 1)[1]
    return [str(a) for a in json.loads(args)]


def test_containers_match_the_image_layout() -> None:
    assert _instruction("HEALTHCHECK") == edge_mod.COLLECTOR_HEALTHCHECK[1:]
    assert _instruction("CMD")[:2] == ["--config", edge_mod.COLLECTOR_CONFIG]
    assert edge_mod.BUFFER_MOUNT in _instruction("VOLUME")


def test_env_overrides_are_the_ones_the_collector_reads() -> None:
    env = {edge_mod.COLLECTOR_ENV_INFLUX_URL: "http://influxdb:8086",
           edge_mod.COLLECTOR_ENV_INFLUX_DATABASE: "pm500",
           edge_mod.COLLECTOR_ENV_INFLUX_USERNAME: "pm500writer",
           edge_mod.COLLECTOR_ENV_INFLUX_PASSWORD: "s3cret"}
    data, _ = apply_env_overrides({"influx": {"url": "http://127.0.0.1:8086"}}, env)
    assert data == {"influx": {"url": "http://influxdb:8086", "database": "pm500",
                               "username": "pm500writer", "password": "s3cret"}}


def test_content_tag_covers_exactly_what_the_dockerfile_copies() -> None:
    files = {str(p.relative_to(REPO_ROOT)) for p in context_files(REPO_ROOT, COLLECTOR_DOCKERFILE)}
    assert {"collector/Dockerfile", "pyproject.toml", "collector/__main__.py"} <= files
    assert not any(f.startswith(("tests/", "infra/", "docs/")) or "__pycache__" in f for f in files)
    assert content_tag(REPO_ROOT, COLLECTOR_DOCKERFILE).startswith("src-")


def test_copy_sources_parsing() -> None:
    text = 'FROM x AS b\nCOPY --chown=1:1 a.txt \\\n  b/ /dst/\nCOPY --from=b /x /y\nADD ["c d", "/e"]\n'
    assert copy_sources(text) == ["a.txt", "b/", "c d"]


def test_missing_copy_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY nothing-here /x\n")
    with pytest.raises(DockerfileError, match="'nothing-here' matches nothing"):
        content_tag(tmp_path, "Dockerfile")


def test_hadolint_passes_on_the_collector_dockerfile(tmp_path: Path) -> None:
    ok = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    caught = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, check=False)
    assert caught.returncode != 0 and "DL3006" in caught.stdout


WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict[str, object]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the bare key `on` as True
    return dict(data)


def test_pull_requests_preview_both_stacks_with_policy_and_one_edited_comment() -> None:
    wf = _workflow("pull-request.yml")
    jobs = wf["jobs"]
    assert isinstance(jobs, dict)
    preview = jobs["preview"]
    assert preview["needs"] == "test"
    assert preview["strategy"]["matrix"]["stack"] == ["staging", "prod"]
    assert preview["permissions"]["id-token"] == "write"
    steps = {s.get("uses", "").split("@")[0]: s for s in preview["steps"] if "with" in s}
    assert "role-to-assume" in steps["aws-actions/configure-aws-credentials"]["with"]
    run = [s for s in preview["steps"] if s.get("with", {}).get("command") == "preview"]
    assert run and run[0]["with"]["policyPacks"] == "policy"
    assert run[0]["with"]["comment-on-pr"] is True and run[0]["with"]["edit-pr-comment"] is True
    assert "secrets.PULUMI_ACCESS_TOKEN" in run[0]["env"]["PULUMI_ACCESS_TOKEN"]
    assert any("./dev test" in s.get("run", "") for s in jobs["test"]["steps"])


def test_main_deploys_staging_then_prod_through_a_protected_environment() -> None:
    deploy = _workflow("deploy.yml")["jobs"]
    assert isinstance(deploy, dict)
    assert deploy["staging"]["needs"] == "test" and deploy["prod"]["needs"] == "staging"
    assert deploy["prod"]["with"]["stack"] == "prod"
    up = _workflow("pulumi-up.yml")["jobs"]
    assert isinstance(up, dict)
    job = up["up"]
    assert job["environment"] == "${{ inputs.stack }}"
    assert job["concurrency"] == {"group": "pulumi-${{ inputs.stack }}", "cancel-in-progress": False}
    step = next(s for s in job["steps"] if s.get("with", {}).get("command") == "up")
    assert step["with"]["stack-name"] == "${{ inputs.stack }}"


def test_the_dev_script_runs_both_linters() -> None:
    dev = (REPO_ROOT / "dev").read_text()
    assert '"$VENV/bin/actionlint" .github/workflows/*.yml' in dev and "hadolint" in dev
    assert "npm" not in dev  # actionlint comes from its wheel (tests/workflows/test_actionlint.py)


def test_the_collector_base_image_is_pinned_by_digest_with_a_documented_refresh() -> None:
    """Issue 24: `FROM python:3.11.7-slim-bookworm`, a tag from December 2023 anyone can move."""
    from sandbox.docker_images import dockerfile_base

    base = dockerfile_base(REPO_ROOT / "collector" / "Dockerfile")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    docs = (REPO_ROOT / "docs" / "collector.md").read_text()
    section = docs[docs.index("### Base image"):]
    assert base in section and "docker buildx imagetools inspect" in section
