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
from bootstrap.plan import evaluate_bootstrap
from preflight.deployer_policy import deployer_policy
from preflight.iam_evaluator import allows
from preflight.mock_runtime import EvaluatedStack, evaluate_stack
from preflight.provider_requests import stack_requests
from preflight.service_models import plan_problems
from sandbox.plan_replay import moto_clients, replay

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "bootstrap"
WORKFLOWS = ROOT / ".github" / "workflows"
PROVIDER_ARN = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
ROLE = "aws:iam/role:Role"


def run(**overrides: Any) -> EvaluatedStack:
    return evaluate_bootstrap(**overrides)


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


ROLES = {"preview-staging": "pm500-ci-preview-staging", "preview-prod": "pm500-ci-preview-prod",
         "staging": "pm500-ci-deploy-staging", "prod": "pm500-ci-deploy-prod"}


def test_each_workflow_environment_has_its_own_role_trusted_by_that_environment_alone(
        ci: EvaluatedStack) -> None:
    preview, deploy = workflow_environments()
    assert preview | deploy == set(ROLES)
    assert {r.inputs["name"] for r in ci.of_type(ROLE)} == set(ROLES.values())
    for environment, role in ROLES.items():
        [statement] = trust(ci, role)["Statement"]
        assert statement["Principal"] == {"Federated": PROVIDER_ARN}
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"] == {"StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": f"repo:acme/pm500:environment:{environment}",
        }}
    assert ci.outputs["roleArns"] == {e: f"arn:aws:iam::123456789012:role/{r}" for e, r in ROLES.items()}


def test_oidc_provider_for_github_with_the_sts_audience(ci: EvaluatedStack) -> None:
    provider = ci.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    assert ci.outputs["oidcProviderArn"] == PROVIDER_ARN


def test_an_existing_provider_is_trusted_not_recreated() -> None:
    stack = run(githubRepository="acme/pm500", createOidcProvider="false")
    assert stack.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider") == []
    assert trust(stack, "pm500-ci-deploy-prod")["Statement"][0]["Principal"] == {"Federated": PROVIDER_ARN}


def test_permission_policies_are_attached_by_reference_to_one_environment() -> None:
    arn = "arn:aws:iam::123456789012:policy/pm500-deployer"
    stack = run(githubRepository="acme/pm500", policyArns={"prod": [arn]})
    [attachment] = stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert (attachment.inputs["role"], attachment.inputs["policyArn"]) == ("pm500-ci-deploy-prod", arn)


def _policy_files(tmp_path: Path, stack: EvaluatedStack) -> dict[str, Path]:
    files = {}
    for mode in ("preview", "deploy"):
        files[mode] = tmp_path / f"{stack.stack}-{mode}.json"
        files[mode].write_text(json.dumps(list(deployer_policy(stack, mode, "123456789012").documents)))
    return files


def test_each_role_holds_only_its_own_stacks_generated_policy(tmp_path: Path) -> None:
    """Issue 24: one deploy role held staging's and prod's policies, so staging's unapproved deploy
    held prod's permissions. Now each environment's role holds its own stack and mode only."""
    staging = _policy_files(tmp_path, evaluate_stack("staging"))
    prod = _policy_files(tmp_path, evaluate_stack("prod"))
    stack = run(githubRepository="acme/pm500", policyFiles={
        "preview-staging": [str(staging["preview"])], "staging": [str(staging["deploy"])],
        "preview-prod": [str(prod["preview"])], "prod": [str(prod["deploy"])]},
        policyArns={"prod": ["arn:aws:iam::aws:policy/Extra"]})
    policies = {p.inputs["name"]: json.loads(p.inputs["policy"])
                for p in stack.of_type("aws:iam/policy:Policy")}
    expected = {}
    for role, path in (("pm500-ci-preview-staging", staging["preview"]), ("pm500-ci-deploy-staging",
                       staging["deploy"]), ("pm500-ci-preview-prod", prod["preview"]),
                       ("pm500-ci-deploy-prod", prod["deploy"])):
        for i, document in enumerate(json.loads(path.read_text())):
            expected[f"{role}-{i + 1}"] = document
    assert policies == expected
    attached: dict[str, set[str]] = {}
    for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        attached.setdefault(a.inputs["role"], set()).add(a.inputs["policyArn"].rsplit("/", 1)[1])
    assert attached == {
        "pm500-ci-preview-staging": {n for n in expected if n.startswith("pm500-ci-preview-staging-")},
        "pm500-ci-deploy-staging": {n for n in expected if n.startswith("pm500-ci-deploy-staging-")},
        "pm500-ci-preview-prod": {n for n in expected if n.startswith("pm500-ci-preview-prod-")},
        "pm500-ci-deploy-prod": {n for n in expected if n.startswith("pm500-ci-deploy-prod-")} | {"Extra"},
    }
    # staging's deploy role can do nothing to prod's resources
    staging_deploy = [expected[n] for n in attached["pm500-ci-deploy-staging"]]
    prod_thing = "arn:aws:iot:eu-west-1:123456789012:thing/prod:plant-north:edge-01"
    assert any(allows(d, "iot:UpdateThing", prod_thing.replace("prod:plant-north", "staging:plant-a"))
               for d in staging_deploy)
    assert not any(allows(d, "iot:UpdateThing", prod_thing) for d in staging_deploy)
    assert plan_problems(stack_requests(stack)) == []


def test_each_stacks_permissions_boundary_is_made_here_from_its_generated_document(tmp_path: Path) -> None:
    """The boundary every role of the stack carries (infra/roles.py) exists before the stack's first `up`,
    made by the bootstrap's administrator: the deployer can neither create nor change it."""
    staging = evaluate_stack("staging")
    path = tmp_path / "staging-boundary.json"
    path.write_text(json.dumps(list(deployer_policy(staging, "boundary", "123456789012").documents)))
    stack = run(githubRepository="acme/pm500", boundaryFiles={"staging": [str(path)]})
    [boundary] = [p for p in stack.of_type("aws:iam/policy:Policy") if p.inputs["name"].endswith("-boundary")]
    assert boundary.inputs["name"] == "pm500-staging-boundary"
    assert json.loads(boundary.inputs["policy"]) == json.loads(path.read_text())[0]
    role_boundaries = {r.inputs["permissionsBoundary"] for r in staging.of_type(ROLE)}
    assert stack.outputs["boundaryArns"] == {"staging": role_boundaries.pop()}
    assert not role_boundaries
    assert plan_problems(stack_requests(stack)) == []
    deploy = tmp_path / "staging-deploy.json"
    deploy.write_text(json.dumps(list(deployer_policy(staging, "deploy", "123456789012").documents)))
    with pytest.raises(BootstrapConfigError, match=r"boundaryFiles\.staging: .*not the boundary policy"):
        run(githubRepository="acme/pm500", boundaryFiles={"staging": [str(deploy)]})
    with pytest.raises(BootstrapConfigError, match="boundaryFiles: 'qa' is not a stack of"):
        run(githubRepository="acme/pm500", boundaryFiles={"qa": [str(path)]})


def test_a_policy_file_of_another_stack_or_mode_is_refused(tmp_path: Path) -> None:
    prod = _policy_files(tmp_path, evaluate_stack("prod"))
    for environment, path, message in (
            ("preview-prod", prod["deploy"], "not the preview policy of stack 'prod'"),
            ("staging", prod["deploy"], "not the deploy policy of stack 'staging'")):
        with pytest.raises(BootstrapConfigError, match=f"policyFiles.{environment}: .*{message}"):
            run(githubRepository="acme/pm500", policyFiles={environment: [str(path)]})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"githubRepository": "acme/pm500", "policyFiles": {"prod": ["missing.json"]}},
     "pm500-bootstrap:policyFiles.prod: missing.json: cannot read a JSON file"),
    ({"githubRepository": "acme/pm500", "policyFiles": {"preview-prod": ["Pulumi.yaml"]}},
     "pm500-bootstrap:policyFiles.preview-prod: Pulumi.yaml: cannot read a JSON file"),
    ({"githubRepository": "acme/pm500", "policyFiles": {"production": []}},
     "pm500-bootstrap:policyFiles: 'production' is not an environment of pm500-bootstrap:stacks"),
    ({"githubRepository": "acme"}, "pm500-bootstrap:githubRepository: expected <owner>/<repository>"),
    ({"githubRepository": "acme/pm500", "stacks": []}, "pm500-bootstrap:stacks: name at least one stack"),
    ({"githubRepository": "acme/pm500", "stacks": ["bad stack"]},
     "pm500-bootstrap:stacks: 'bad stack' is not a valid stack name"),
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
    assert roles == set(ROLES.values())


def first_deploy_section() -> str:
    text = (ROOT / "docs" / "infra.md").read_text()
    return text[text.index("### First deploy"):text.index("Without a Pulumi CLI")]


def test_the_first_deploy_steps_name_what_exists(ci: EvaluatedStack) -> None:
    """Config keys, outputs, secrets and environments the docs tell a new user to use are real."""
    section = first_deploy_section()
    keys = set(re.findall(r"pm500-bootstrap:(\w+)", section))
    stack_file = yaml.safe_load((BOOTSTRAP / "Pulumi.ci.yaml").read_text())["config"]
    assert keys and keys <= {k.removeprefix("pm500-bootstrap:") for k in stack_file}
    assert "`roleArns`" in section and "roleArns" in ci.outputs
    workflow_text = "".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    names = set(re.findall(r"`([A-Z][A-Z_]+)`", section)) - {"AWS_REGION", "AWS_DEFAULT_REGION"}
    assert names and all(re.search(rf"(secrets|vars)\.{n}\b", workflow_text) for n in names), names
    preview, deploy = workflow_environments()
    assert all(f"`{e}`" in section for e in preview | deploy)
    assert all(f"`{r}`" in section for r in ROLES.values())
