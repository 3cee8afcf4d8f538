"""Every job that calls a reusable workflow grants what the called jobs request (GitHub refuses otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workflows.permissions import call_problems, job_grant, parse_permissions

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"

CALLED = """
on: {workflow_call: {}}
permissions: {contents: read}
jobs:
  up:
    runs-on: ubuntu-latest
    permissions: {contents: read, id-token: write}
    steps: [{run: "true"}]
"""


def write(root: Path, name: str, text: str) -> Path:
    path = root / ".github" / "workflows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_repository_workflows_grant_what_called_jobs_request(path: Path) -> None:
    assert call_problems(path, ROOT) == []


@pytest.mark.parametrize("prefix", ["./", "$/"], ids=["workspace-relative", "self-repository"])
def test_caller_granting_less_than_the_called_job_requests_is_reported(tmp_path: Path, prefix: str) -> None:
    """`$/path` (GitHub's self-repository syntax, what deploy.yml uses) calls the same file `./path` does."""
    write(tmp_path, "called.yml", CALLED)
    caller = write(tmp_path, "caller.yml", f"""
on: push
permissions: {{contents: read}}
jobs:
  deploy: {{uses: {prefix}.github/workflows/called.yml}}
""")
    assert call_problems(caller, tmp_path) == [
        "caller.yml -> deploy -> called.yml job 'up' requests 'id-token: write' but the calling job "
        "grants 'id-token: none'"
    ]


def test_job_level_grant_on_the_calling_job_satisfies_the_called_job(tmp_path: Path) -> None:
    write(tmp_path, "called.yml", CALLED)
    caller = write(tmp_path, "caller.yml", """
on: push
permissions: {contents: read}
jobs:
  deploy:
    uses: ./.github/workflows/called.yml
    permissions: {contents: read, id-token: write}
""")
    assert call_problems(caller, tmp_path) == []


def test_caller_without_permissions_gets_the_restricted_default(tmp_path: Path) -> None:
    write(tmp_path, "called.yml", CALLED)
    caller = write(tmp_path, "caller.yml",
                   "on: push\njobs:\n  deploy: {uses: ./.github/workflows/called.yml}\n")
    assert len(call_problems(caller, tmp_path)) == 1


def test_write_all_and_read_all() -> None:
    assert parse_permissions("write-all")["id-token"] == 2
    assert parse_permissions("read-all")["contents"] == 1
    assert parse_permissions({}) == {}
    assert parse_permissions(None) is None


def test_a_called_job_cannot_exceed_what_it_inherits() -> None:
    called_job = {"permissions": {"contents": "write"}}
    assert job_grant(called_job, {}, inherited={"contents": 1}) == {"contents": 1}
    assert job_grant({}, {}, inherited={"id-token": 2}) == {"id-token": 2}


def test_the_repository_calls_are_followed() -> None:
    """deploy.yml's two stacks reach pulumi-up.yml's job (a call the check did not follow would pass)."""
    from tests.workflows.permissions import _local_path, load_workflow
    jobs = load_workflow(WORKFLOWS / "deploy.yml")["jobs"]
    assert sorted(_local_path(j.get("uses")) or "" for j in jobs.values()) == [
        "", ".github/workflows/pulumi-up.yml", ".github/workflows/pulumi-up.yml"]
