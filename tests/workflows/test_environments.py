"""Jobs that read environment secrets run in an environment (else GitHub hands them empty strings).

Where each secret lives is the repository setup documented in docs/edge.md ("CI/CD"): environment
secrets are visible only to a job that names the environment (docs.github.com, "Using secrets in
GitHub Actions": "environment secrets ... only available to jobs that reference the environment").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflows.test_permissions import WORKFLOWS

# Per stack, in the GitHub environments `<stack>` (deploys) and `preview-<stack>` (PR previews).
ENVIRONMENT_SECRETS = {"EDGE_SSH_PRIVATE_KEY", "EDGE_SSH_KNOWN_HOSTS", "AWS_DEPLOY_ROLE_ARN"}
SECRET = re.compile(r"secrets\.([A-Za-z0-9_]+)")


def jobs_reading_environment_secrets_without_environment(workflow: dict[str, Any]) -> list[str]:
    missing = []
    for job_id, job in (workflow.get("jobs") or {}).items():
        used = set(SECRET.findall(yaml.safe_dump(job))) & ENVIRONMENT_SECRETS
        if used and not job.get("environment") and not job.get("uses"):
            missing.append(f"{job_id}: reads {', '.join(sorted(used))} but names no environment")
    return missing


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_jobs_reading_environment_secrets_name_an_environment(path: Path) -> None:
    assert jobs_reading_environment_secrets_without_environment(yaml.safe_load(path.read_text())) == []


def test_the_check_flags_a_job_without_environment() -> None:
    workflow = {"jobs": {"preview": {"steps": [{"with": {"key": "${{ secrets.EDGE_SSH_PRIVATE_KEY }}"}}]}}}
    assert jobs_reading_environment_secrets_without_environment(workflow) == [
        "preview: reads EDGE_SSH_PRIVATE_KEY but names no environment"]
    workflow["jobs"]["preview"]["environment"] = "preview-staging"
    assert jobs_reading_environment_secrets_without_environment(workflow) == []


def test_previews_never_use_the_deploy_environments() -> None:
    """`prod` has required reviewers (and may be limited to main): a PR preview must not wait on them."""
    preview = yaml.safe_load((WORKFLOWS / "pull-request.yml").read_text())["jobs"]["preview"]
    assert preview["environment"] == "preview-${{ matrix.stack }}"
