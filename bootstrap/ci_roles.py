"""The GitHub Actions OIDC provider and one role per GitHub environment the workflows run in, each
trusted by that environment alone and holding only its own stack's policy.

A job that names an environment gets an OIDC token whose subject is
`repo:<owner>/<repo>:environment:<name>` (GitHub docs, "OpenID Connect reference"), and `aud`
`sts.amazonaws.com` (aws-actions/configure-aws-credentials). Each role's trust policy requires both
exactly (`StringEquals`, one subject, no wildcard). Per stack `S` of `pm500-bootstrap:stacks`:

- `pm500-ci-preview-S`, trusted by environment `preview-S` (pull-request previews, any branch's code):
  read-only, the documents `cli.py stacks deployer-policy --stack S --mode preview --json` prints;
- `pm500-ci-deploy-S`, trusted by environment `S` (deploys; the environment admits `main` only):
  the documents of `--mode deploy`.

So a pull request never holds write access, and the staging deploy never holds prod's permissions.
Each document is checked to be the one `cli.py stacks deployer-policy` wrote for that stack and mode
(its statement ids say so), so prod's deploy policy cannot land on a preview role by a wrong file name.

Per stack also the permissions boundary `pm500-<stack>-boundary` (`--mode boundary`): every role the
stack creates carries it, and the deploy policy allows IAM writes only on roles that carry it. It is
made here, by an administrator, because a boundary the deployer could rewrite would cap nothing. (The
stack's data key is made here too, for the same reason: `bootstrap.data_keys`.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.naming import Names
from preflight.deployer_policy import statement_id_prefix

NAMESPACE = "pm500-bootstrap"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
# A stack name as Pulumi allows it, short enough for the role name `pm500-ci-preview-<stack>` (IAM: 64).
STACK = re.compile(r"[A-Za-z0-9._-]{1,47}")
MODES = ("preview", "deploy")


class BootstrapConfigError(ValueError):
    """A `pm500-bootstrap:` key is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class CiRole:
    """The role one GitHub environment assumes."""

    environment: str
    stack: str
    mode: str
    policy_arns: tuple[str, ...] = ()
    policy_documents: tuple[dict[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return f"pm500-ci-{self.mode}-{self.stack}"


def environment_of(stack: str, mode: str) -> str:
    """The GitHub environment of a stack's previews (pull-request.yml) or deploys (pulumi-up.yml)."""
    return f"preview-{stack}" if mode == "preview" else stack


@dataclass(frozen=True)
class Settings:
    repository: str
    roles: tuple[CiRole, ...]
    stacks: tuple[str, ...] = ()  # `pm500-bootstrap:stacks`, in order
    create_oidc_provider: bool = True
    boundaries: tuple[tuple[str, dict[str, Any]], ...] = ()  # (stack, its boundary document)


def _documents(key: str, names: list[str], stack: str,
               mode: str) -> tuple[dict[str, Any], ...]:
    """The documents of every file `names` lists (each the JSON list `cli.py stacks deployer-policy --json`
    prints for `stack` and `mode`); relative paths are relative to this project's folder."""
    documents: list[dict[str, Any]] = []
    prefix = statement_id_prefix(stack, mode)
    for name in names:
        path = Path(name) if Path(name).is_absolute() else Path(pulumi.get_root_directory()) / name
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise BootstrapConfigError(f"{NAMESPACE}:{key}: {name}: cannot read a JSON file ({e})") from None
        if not (isinstance(content, list) and content
                and all(isinstance(d, dict) and "Statement" in d for d in content)):
            raise BootstrapConfigError(f"{NAMESPACE}:{key}: {name}: expected the JSON list of policy "
                                       "documents that `cli.py stacks deployer-policy --json` prints")
        sids = [str(s.get("Sid", "")) for d in content for s in d["Statement"]]
        if not all(re.fullmatch(rf"{prefix}\d+", sid) for sid in sids):
            raise BootstrapConfigError(
                f"{NAMESPACE}:{key}: {name}: not the {mode} policy of stack {stack!r} (statement ids "
                f"{prefix}<n> expected, found {sids[0]!r}); write it with `cli.py stacks deployer-policy "
                f"--stack {stack} --mode {mode} --json`")
        documents += content
    return tuple(documents)


def _names(key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BootstrapConfigError(f"{NAMESPACE}:{key}: expected a list of names")
    return list(value)


def _per_environment(config: pulumi.Config, key: str, environments: set[str],
                     what: str = "an environment") -> dict[str, Any]:
    """`key` as a map whose keys are `environments` (the GitHub environments, or the stacks, of
    `pm500-bootstrap:stacks`)."""
    value: Any = config.get_object(key) or {}
    if not isinstance(value, dict):
        raise BootstrapConfigError(f"{NAMESPACE}:{key}: expected a map of name -> list of files")
    unknown = sorted(set(value) - environments)
    if unknown:
        raise BootstrapConfigError(f"{NAMESPACE}:{key}: {unknown[0]!r} is not {what} of "
                                   f"{NAMESPACE}:stacks (expected one of {', '.join(sorted(environments))})")
    return dict(value)


def load_settings() -> Settings:
    config = pulumi.Config(NAMESPACE)
    repository = config.get("githubRepository") or ""
    if not REPOSITORY.fullmatch(repository):
        raise BootstrapConfigError(
            f"{NAMESPACE}:githubRepository: expected <owner>/<repository>, got {repository!r}")
    stacks = _names("stacks", config.get_object("stacks"))
    bad = [s for s in stacks if not STACK.fullmatch(s)]
    if bad:
        raise BootstrapConfigError(f"{NAMESPACE}:stacks: {bad[0]!r} is not a valid stack name "
                                   "(letters, digits, . _ -, at most 47)")
    if not stacks:
        raise BootstrapConfigError(f"{NAMESPACE}:stacks: name at least one stack")
    environments = {environment_of(s, m): (s, m) for s in stacks for m in MODES}
    files = _per_environment(config, "policyFiles", set(environments))
    arns = _per_environment(config, "policyArns", set(environments))
    boundary_files = _per_environment(config, "boundaryFiles", set(stacks), "a stack")
    boundaries = []
    for stack in stacks:
        names = _names(f"boundaryFiles.{stack}", boundary_files.get(stack))
        if len(names) > 1:
            raise BootstrapConfigError(
                f"{NAMESPACE}:boundaryFiles.{stack}: one file, a boundary is one policy")
        documents = _documents(f"boundaryFiles.{stack}", names, stack, "boundary")
        if len(documents) > 1:
            raise BootstrapConfigError(f"{NAMESPACE}:boundaryFiles.{stack}: {names[0]} holds "
                                       f"{len(documents)} documents; a permissions boundary is one policy")
        boundaries += [(stack, d) for d in documents]
    roles = tuple(CiRole(
        environment=env, stack=stack, mode=mode,
        policy_arns=tuple(_names(f"policyArns.{env}", arns.get(env))),
        policy_documents=_documents(f"policyFiles.{env}",
                                    _names(f"policyFiles.{env}", files.get(env)), stack, mode),
    ) for env, (stack, mode) in environments.items())
    return Settings(repository=repository, roles=roles, stacks=tuple(stacks),
                    create_oidc_provider=config.get_bool("createOidcProvider") is not False,
                    boundaries=tuple(boundaries))


def trust_policy(provider_arn: str, repository: str, environment: str) -> dict[str, Any]:
    """Assumable only with a GitHub OIDC token of a job of `repository` in `environment`."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{GITHUB_OIDC_HOST}:aud": AUDIENCE,
                f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:environment:{environment}",
            }},
        }],
    }


class CiRoles(pulumi.ComponentResource):
    """OIDC provider (optional: one per account) + one role per GitHub environment."""

    provider_arn: pulumi.Output[str]
    role_arns: dict[str, pulumi.Output[str]]
    boundary_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:bootstrap:CiRoles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        # arn:<partition>:iam::<account>:oidc-provider/<host>: the ARN AWS gives the provider, so the
        # roles can trust an existing provider too (createOidcProvider: false).
        provider_arn = pulumi.Output.all(caller.arn, caller.account_id).apply(
            lambda a: f"arn:{a[0].split(':')[1]}:iam::{a[1]}:oidc-provider/{GITHUB_OIDC_HOST}")
        depends: list[pulumi.Resource] = []
        if settings.create_oidc_provider:
            provider = aws.iam.OpenIdConnectProvider("github", aws.iam.OpenIdConnectProviderArgs(
                url=f"https://{GITHUB_OIDC_HOST}", client_id_lists=[AUDIENCE],
                tags={"pm500:purpose": "github-actions"},
            ), opts=child)
            depends.append(provider)
        role_opts = pulumi.ResourceOptions(parent=self, depends_on=depends)
        self.provider_arn = provider_arn
        self.role_arns = {role.environment: self._role(role, settings.repository, provider_arn, role_opts)
                          for role in settings.roles}
        self.boundary_arns = {stack: aws.iam.Policy(f"{stack}-boundary", aws.iam.PolicyArgs(
            name=Names(stack).permissions_boundary,
            description=f"pm500 {stack}: permissions boundary of every role the stack creates",
            policy=json.dumps(document),
            tags={"pm500:purpose": "permissions-boundary", "pm500:stack": stack},
        ), opts=child).arn for stack, document in settings.boundaries}
        for stack in sorted({r.stack for r in settings.roles} - set(self.boundary_arns)):
            pulumi.log.warn(
                f"stack {stack}: no permissions boundary ({NAMESPACE}:boundaryFiles.{stack}); its "
                f"`pulumi up` cannot create roles until {Names(stack).permissions_boundary} exists",
                resource=self)
        self.register_outputs({"roleArns": self.role_arns, "boundaryArns": self.boundary_arns})

    def _role(self, ci_role: CiRole, repository: str, provider_arn: pulumi.Output[str],
              opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        what = "pull-request previews (pulumi preview, read-only)" if ci_role.mode == "preview" \
            else "deploys (pulumi up)"
        role = aws.iam.Role(ci_role.name, aws.iam.RoleArgs(
            name=ci_role.name,
            description=f"pm500 {ci_role.stack} {what}, GitHub {repository} "
                        f"environment {ci_role.environment}",
            assume_role_policy=provider_arn.apply(
                lambda arn: json.dumps(trust_policy(arn, repository, ci_role.environment))),
            max_session_duration=3600, tags={"pm500:purpose": "github-actions", "pm500:stack": ci_role.stack},
        ), opts=opts)
        created = [aws.iam.Policy(f"{ci_role.name}-{i + 1}", aws.iam.PolicyArgs(
            name=f"{ci_role.name}-{i + 1}",
            description=f"{ci_role.name}: generated by cli.py deployer-policy",
            policy=json.dumps(document), tags={"pm500:purpose": "github-actions"},
        ), opts=pulumi.ResourceOptions(parent=self)).arn
            for i, document in enumerate(ci_role.policy_documents)]
        policy_arns: list[pulumi.Input[str]] = [*ci_role.policy_arns, *created]
        for i, arn in enumerate(policy_arns):
            aws.iam.RolePolicyAttachment(f"{ci_role.name}-policy-{i}", aws.iam.RolePolicyAttachmentArgs(
                role=role.name, policy_arn=arn), opts=pulumi.ResourceOptions(parent=self))
        if not policy_arns:
            pulumi.log.warn(f"{ci_role.name}: no permission policy attached yet ({NAMESPACE}:policyFiles."
                            f"{ci_role.environment})", resource=self)
        return role.arn
