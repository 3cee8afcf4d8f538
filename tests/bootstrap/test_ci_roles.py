"""bootstrap/: the GitHub OIDC provider and the CI roles, on Pulumi's mock runtime.

Expected trust: GitHub's documented subject for a job in an environment,
`repo:<owner>/<repo>:environment:<name>`, and audience `sts.amazonaws.com`; the environments are the
ones the workflows really use (read from the workflow files, not from the bootstrap code).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.ci_roles import BootstrapConfigError
from preflight.deployer_policy import deployer_policy
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, load_stack_config_file
from preflight.provider_requests import stack_requests
from preflight.service_models import plan_problems
from sandbox.plan_replay import moto_clients, replay

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "bootstrap"
WORKFLOWS = ROOT / ".github" / "workflows"
PROVIDER_ARN = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
ROLE = "aws:iam/role:Role"


def run(**overrides: Any) -> EvaluatedStack:
    config, secret = load_stack_config_file("ci", BOOTSTRAP)
    config.update({f"pm500-bootstrap:{k}": v if isinstance(v, str) else json.dumps(v)
                   for k, v in overrides.items()})
    return evaluate_stack("ci", BOOTSTRAP, config=config, secret_keys=secret, program_dir=BOOTSTRAP)


@pytest.fixture(scope="module")
def ci() -> EvaluatedStack:
    return run(githubRepository="acme/pm500")


def trust(stack: EvaluatedStack, role: str) -> dict[str, Any]:
    return dict(json.loads(stack.one(ROLE, role).inputs["assumeRolePolicy"]))


def workflow_environments() -> tuple[set[str], set[str]]:
    """(preview environments, deploy environments) the workflows run in."""
    pr = yaml.safe_load((WORKFLOWS / "pull-request.yml").read_text())["jobs"]["preview"]
    stacks = pr["strategy"]["matrix"]["stack"]
    preview = {pr["environment"].replace("${{ matrix.stack }}", s) for s in stacks}
    up = yaml.safe_load((WORKFLOWS / "pulumi-up.yml").read_text())["jobs"]["up"]["environment"]
    deploy_jobs = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"].values()
    deploy = {up.replace("${{ inputs.stack }}", j["with"]["stack"]) for j in deploy_jobs if "uses" in j}
    return preview, deploy


def test_roles_trust_only_this_repositorys_workflow_environments(ci: EvaluatedStack) -> None:
    preview, deploy = workflow_environments()
    assert preview == {"preview-staging", "preview-prod"} and deploy == {"staging", "prod"}
    for role, environments in (("pm500-ci-preview", preview), ("pm500-ci-deploy", deploy)):
        [statement] = trust(ci, role)["Statement"]
        assert statement["Principal"] == {"Federated": PROVIDER_ARN}
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"] == {"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": sorted(f"repo:acme/pm500:environment:{e}"
                                                             for e in environments),
        }}


def test_oidc_provider_for_github_with_the_sts_audience(ci: EvaluatedStack) -> None:
    provider = ci.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert ci.outputs["oidcProviderArn"] == PROVIDER_ARN


def test_an_existing_provider_is_trusted_not_recreated() -> None:
    stack = run(githubRepository="acme/pm500", createOidcProvider="false")
    assert stack.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert trust(stack, "pm500-ci-deploy")["Statement"][0]["Principal"] == {"Federated": PROVIDER_ARN}


def test_permission_policies_are_attached_by_reference() -> None:
    arn = "arn:aws:iam::123456789012:policy/pm500-deployer"
    stack = run(githubRepository="acme/pm500", deployPolicyArns=[arn])
    [attachment] = stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert (attachment.inputs["role"], attachment.inputs["policyArn"]) == ("pm500-ci-deploy", arn)


def test_generated_deployer_policies_become_managed_policies_of_the_roles(tmp_path: Path) -> None:
    staging = evaluate_stack("staging")
    files = {}
    for mode in ("preview", "deploy"):
        documents = list(deployer_policy(staging, mode, "123456789012").documents)
        files[mode] = tmp_path / f"staging-{mode}.json"
        files[mode].write_text(json.dumps(documents))
    stack = run(githubRepository="acme/pm500", previewPolicyFiles=[str(files["preview"])],
                deployPolicyFiles=[str(files["deploy"])], deployPolicyArns=["arn:aws:iam::aws:policy/Extra"])
    managed = stack.of_type("aws:iam/policy:Policy")
    policies = {p.inputs["name"]: json.loads(p.inputs["policy"]) for p in managed}
    deploy_documents = json.loads(files["deploy"].read_text())
    assert len(deploy_documents) == 2  # staging's deploy policy is over one managed policy's quota
    assert policies == {"pm500-ci-preview-1": json.loads(files["preview"].read_text())[0],
                        "pm500-ci-deploy-1": deploy_documents[0], "pm500-ci-deploy-2": deploy_documents[1]}
    attached = sorted((a.inputs["role"], a.inputs["policyArn"])
                      for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"))
    assert attached == [("pm500-ci-deploy", "arn:aws:iam::123456789012:policy/pm500-ci-deploy-1"),
                        ("pm500-ci-deploy", "arn:aws:iam::123456789012:policy/pm500-ci-deploy-2"),
                        ("pm500-ci-deploy", "arn:aws:iam::aws:policy/Extra"),
                        ("pm500-ci-preview", "arn:aws:iam::123456789012:policy/pm500-ci-preview-1")]
    assert plan_problems(stack_requests(stack)) == []


@pytest.mark.parametrize(("overrides", "message"), [
    ({"githubRepository": "acme/pm500", "deployPolicyFiles": ["missing.json"]},
     "pm500-bootstrap:deployPolicyFiles: missing.json: cannot read a JSON file"),
    ({"githubRepository": "acme/pm500", "previewPolicyFiles": ["Pulumi.yaml"]},
     "pm500-bootstrap:previewPolicyFiles: Pulumi.yaml: cannot read a JSON file"),
    ({"githubRepository": "acme"}, "pm500-bootstrap:githubRepository: expected <owner>/<repository>"),
    ({"githubRepository": "acme/pm500", "deployEnvironments": []},
     "pm500-bootstrap:deployEnvironments: name at least one GitHub environment"),
    ({"githubRepository": "acme/pm500", "previewEnvironments": ["bad env"]},
     "pm500-bootstrap:previewEnvironments: 'bad env' is not a valid name"),
])
def test_bad_config_names_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(BootstrapConfigError, match=message):
        run(**overrides)


def test_requests_pass_the_service_models_and_replay_into_moto(ci: EvaluatedStack,
                                                               aws_env: dict[str, str]) -> None:
    requests = stack_requests(ci)
    assert plan_problems(requests) == []
    client = moto_clients(aws_env, ci.config["aws:region"])
    assert replay(requests, client).skipped == []
    roles = {r["RoleName"] for r in client("iam").list_roles()["Roles"]}
    assert roles == {"pm500-ci-preview", "pm500-ci-deploy"}


def first_deploy_section() -> str:
    text = (ROOT / "docs" / "infra.md").read_text()
    return text[text.index("### First deploy"):text.index("Without a Pulumi CLI")]


def test_the_first_deploy_steps_name_what_exists(ci: EvaluatedStack) -> None:
    """Config keys, outputs, secrets and environments the docs tell a new user to use are real."""
    section = first_deploy_section()
    keys = set(re.findall(r"pm500-bootstrap:(\w+)", section))
    stack_file = yaml.safe_load((BOOTSTRAP / "Pulumi.ci.yaml").read_text())["config"]
    assert keys and keys <= {k.removeprefix("pm500-bootstrap:") for k in stack_file}
    role_outputs = set(re.findall(r"`(\w+RoleArn)`", section))
    assert {"previewRoleArn", "deployRoleArn"} <= role_outputs <= set(ci.outputs)
    workflow_text = "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    secrets = set(re.findall(r"`([A-Z][A-Z_]+)`", section)) - {"AWS_REGION", "AWS_DEFAULT_REGION"}
    assert secrets and all(f"secrets.{s}" in workflow_text for s in secrets), secrets
    preview, deploy = workflow_environments()
    assert all(f"`{e}`" in section for e in preview | deploy)
