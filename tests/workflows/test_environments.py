"""Who can read CI's credentials: a pull request runs the branch's own code (and its own copy of the
workflow files), so it must hold nothing a branch may not see.

GitHub's documented rules the checks model (docs.github.com):
- "Using secrets in GitHub Actions": repository secrets reach every workflow run of the repository,
  including pull requests from its own branches; "secrets are not passed to the runner when a workflow
  is triggered from a forked repository" (forks only).
- "Managing environments for deployment": "Secrets stored in an environment are only available to
  workflow jobs that reference the environment", and only once its protection rules pass; "Deployment
  branches and tags" restrict which branches may reference it (ours: `staging` and `prod` admit `main`
  only, docs/edge.md "CI/CD").
- OIDC: a job in an environment gets the subject `repo:<owner>/<repo>:environment:<name>`, which is what
  each bootstrap role trusts (tests/bootstrap).
So: every secret and variable the workflows read is an environment's; pull-request jobs reference only
`preview-<stack>` environments and never an edge or deploy credential.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.workflows.test_permissions import ROOT, WORKFLOWS

CONTEXT = re.compile(r"\b(secrets|vars)\.([A-Za-z0-9_]+)")
EDGE_SECRETS = {"EDGE_SSH_PRIVATE_KEY", "EDGE_SSH_KNOWN_HOSTS"}
PULL_REQUEST_EVENTS = {"pull_request", "pull_request_target"}


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the bare key `on` as True
    return dict(doc)


def triggers(workflow: dict[str, Any]) -> set[str]:
    on = workflow["on"]
    return {on} if isinstance(on, str) else set(on)


def exposure_problems(workflow: dict[str, Any]) -> list[str]:
    """What a branch push could read through `workflow`, one line each."""
    problems = []
    pull_request = bool(triggers(workflow) & PULL_REQUEST_EVENTS)
    for job_id, job in (workflow.get("jobs") or {}).items():
        used = {f"{kind}.{name}" for kind, name in CONTEXT.findall(yaml.safe_dump(job))}
        environment = job.get("environment")
        if job.get("secrets") == "inherit":
            problems.append(f"{job_id}: passes every secret it holds to {job.get('uses')}")
        if used and not environment and not job.get("uses"):
            problems.append(f"{job_id}: reads {', '.join(sorted(used))} outside an environment "
                            "(repository secrets and variables reach every branch)")
        if pull_request:
            if environment and not str(environment).startswith("preview-"):
                problems.append(f"{job_id}: a pull-request job in environment {environment!r}")
            edge = {u for u in used if u.split(".")[1] in EDGE_SECRETS}
            if edge:
                problems.append(f"{job_id}: a pull-request job reads {', '.join(sorted(edge))}")
            if job.get("uses"):
                problems.append(f"{job_id}: a pull-request job calls {job['uses']}")
    return problems


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_no_workflow_exposes_a_credential_to_a_branch(path: Path) -> None:
    assert exposure_problems(load(path)) == []


def test_the_check_flags_what_the_old_preview_held() -> None:
    """The preview job as it was: a repository Pulumi token and the edge SSH key, in every PR."""
    old = {"on": {"pull_request": {}}, "jobs": {"preview": {
        "environment": "preview-${{ matrix.stack }}",
        "env": {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"},
        "steps": [{"with": {"ssh-private-key": "${{ secrets.EDGE_SSH_PRIVATE_KEY }}"}}]}}}
    assert exposure_problems(old) == ["preview: a pull-request job reads secrets.EDGE_SSH_PRIVATE_KEY"]
    old["jobs"]["preview"].pop("environment")
    assert exposure_problems(old) == [
        "preview: reads secrets.EDGE_SSH_PRIVATE_KEY, secrets.PULUMI_ACCESS_TOKEN outside an environment "
        "(repository secrets and variables reach every branch)",
        "preview: a pull-request job reads secrets.EDGE_SSH_PRIVATE_KEY"]
    old["jobs"]["preview"]["environment"] = "prod"
    assert "preview: a pull-request job in environment 'prod'" in exposure_problems(old)
    assert exposure_problems({"on": "push", "jobs": {"staging": {"uses": "$/x.yml", "secrets": "inherit"}}}) \
        == ["staging: passes every secret it holds to $/x.yml"]


def preview_job() -> dict[str, Any]:
    return dict(load(WORKFLOWS / "pull-request.yml")["jobs"]["preview"])


def test_previews_use_their_own_environment_and_role_and_never_edge_hosts() -> None:
    job = preview_job()
    assert job["environment"] == "preview-${{ matrix.stack }}"
    aws = next(s for s in job["steps"] if "aws-actions/configure-aws-credentials@" in s.get("uses", ""))
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    assert not any("ssh-agent" in s.get("uses", "") or "known_hosts" in s.get("run", "")
                   for s in job["steps"])
    edge_off = [s for s in job["steps"] if "pm500:features.edge' false" in s.get("run", "")]
    assert len(edge_off) == 1 and "if" not in edge_off[0]  # always, not behind a switch


def pulumi_token_steps(job: dict[str, Any]) -> list[str]:
    return [s.get("name") or s.get("uses", "") for s in job["steps"]
            if "secrets.PULUMI_ACCESS_TOKEN" in yaml.safe_dump(s.get("env", {}))]


@pytest.mark.parametrize(("workflow", "job_id"), [("pull-request.yml", "preview"), ("pulumi-up.yml", "up")])
def test_the_pulumi_token_reaches_only_the_steps_that_run_pulumi(workflow: str, job_id: str) -> None:
    """Not the job's environment: `./dev setup` resolves packages from PyPI (issue 24, item 5)."""
    job = load(WORKFLOWS / workflow)["jobs"][job_id]
    assert "PULUMI_ACCESS_TOKEN" not in (job.get("env") or {})
    steps = job["steps"]
    holders = [s for s in steps if "secrets.PULUMI_ACCESS_TOKEN" in yaml.safe_dump(s.get("env", {}))]
    assert holders and all(s.get("uses", "").startswith("pulumi/actions@") or "pulumi " in s.get("run", "")
                           for s in holders)
    names = [s.get("name", "") for s in steps]
    setup = names.index("Install the Pulumi program's environment (.venv)")
    credentials = next(i for i, s in enumerate(steps) if "configure-aws-credentials" in s.get("uses", ""))
    assert setup < credentials


def ci_section() -> str:
    text = (ROOT / "docs" / "edge.md").read_text()
    return text[text.index("## CI/CD"):]


def test_the_docs_set_up_each_environment_as_the_workflows_need() -> None:
    """Environments, their branch limit, and where each credential lives, as the workflows read them."""
    section = ci_section()
    assert "no repository secrets" in section.lower()
    assert re.search(r"environments `staging` and `prod`.{0,200}the `main` branch only", section, re.S)
    for name in ("AWS_ROLE_ARN", "PULUMI_ACCESS_TOKEN", *EDGE_SECRETS):
        assert f"`{name}`" in section, name
    workflow_text = "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    documented = set(re.findall(r"`(AWS_[A-Z_]+|PULUMI_[A-Z_]+|EDGE_[A-Z_]+)`", section))
    assert all(re.search(rf"(secrets|vars)\.{name}\b", workflow_text) for name in documented), documented
