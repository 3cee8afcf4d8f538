"""GitHub's rule for reusable workflows: a called job can only lower the GITHUB_TOKEN permissions.

"The GITHUB_TOKEN permissions passed from the caller workflow can be only downgraded (not elevated) by
the called workflow" (docs.github.com, "Reusing workflows" > "Access and permissions"). A job of a
called workflow that asks for more than the calling job grants makes GitHub refuse the whole run
("The nested job 'up' is requesting 'id-token: write', but is only allowed 'id-token: none'").

Effective permissions of a job: its own `permissions`, else its workflow's, else (a called
workflow's job) what the caller passed, else the repository default. We assume the *restricted*
default (contents and packages read), the default of every repository created since February 2023,
so a workflow that passes here works under either default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LEVELS = {"none": 0, "read": 1, "write": 2}
NAMES = {v: k for k, v in LEVELS.items()}
SCOPES = ("actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token",
          "issues", "models", "packages", "pages", "pull-requests", "repository-projects",
          "security-events", "statuses")
RESTRICTED_DEFAULT = {"contents": 1, "packages": 1}

Grant = dict[str, int]


def parse_permissions(spec: Any) -> Grant | None:
    """`permissions:` as scope -> level, None when the key is absent (the job inherits)."""
    if spec is None:
        return None
    if spec in ("read-all", "write-all"):
        level = LEVELS[spec.removesuffix("-all")]
        return {scope: level for scope in SCOPES}
    if not isinstance(spec, dict):
        raise ValueError(f"permissions: expected a map, read-all or write-all, got {spec!r}")
    return {str(scope): LEVELS[str(level)] for scope, level in spec.items()}


def load_workflow(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a workflow")
    return doc


def job_grant(job: dict[str, Any], workflow: dict[str, Any], inherited: Grant | None) -> Grant:
    for spec in (job.get("permissions"), workflow.get("permissions")):
        grant = parse_permissions(spec)
        if grant is not None:
            return grant if inherited is None else {s: min(v, inherited.get(s, 0)) for s, v in grant.items()}
    return dict(RESTRICTED_DEFAULT if inherited is None else inherited)


def _requested(job: dict[str, Any], workflow: dict[str, Any]) -> Grant:
    """What a called job asks for explicitly (nothing when it just inherits)."""
    for spec in (job.get("permissions"), workflow.get("permissions")):
        grant = parse_permissions(spec)
        if grant is not None:
            return grant
    return {}


# A reusable workflow of the same repository: `$/path` (self-repository syntax, the commit that is running)
# or the older workspace-relative `./path`.
LOCAL_PREFIXES = ("$/", "./")


def _local_path(uses: object) -> str | None:
    """The repository path of a same-repository `uses:`, None for anything else."""
    if isinstance(uses, str):
        for prefix in LOCAL_PREFIXES:
            if uses.startswith(prefix):
                return uses.removeprefix(prefix).split("@")[0]
    return None


def call_problems(workflow_path: Path, repo_root: Path) -> list[str]:
    """One line per called job scope that asks for more than its calling job grants (recursively)."""
    return _problems(workflow_path, repo_root, None, f"{workflow_path.name}")


def _problems(path: Path, repo_root: Path, inherited: Grant | None, where: str) -> list[str]:
    workflow = load_workflow(path)
    problems: list[str] = []
    for job_id, job in (workflow.get("jobs") or {}).items():
        uses = job.get("uses")
        granted = job_grant(job, workflow, inherited)
        if inherited is not None:  # a called job: compare what it asks for with what it is given
            for scope, level in sorted(_requested(job, workflow).items()):
                have = inherited.get(scope, 0)
                if level > have:
                    problems.append(f"{where} job {job_id!r} requests '{scope}: {NAMES[level]}' but the "
                                    f"calling job grants '{scope}: {NAMES[have]}'")
        local = _local_path(uses)
        if local is not None:
            called = repo_root / local
            problems += _problems(called, repo_root, granted, f"{where} -> {job_id} -> {called.name}")
    return problems
