"""The GitHub Actions OIDC provider and the preview and deploy roles, trusted for one repository's
GitHub environments only.

A job that names an environment gets an OIDC token whose subject is
`repo:<owner>/<repo>:environment:<name>` (GitHub docs, "About security hardening with OpenID
Connect"), and `aud` `sts.amazonaws.com` (aws-actions/configure-aws-credentials). Each role's trust
policy requires both exactly (`StringEquals`, no wildcard): a fork, another repository, another branch
without the environment, or a preview job cannot assume the deploy role.

The roles' permissions: the least-privilege documents `cli.py deployer-policy --json` derives from
the pm500 program (`previewPolicyFiles`/`deployPolicyFiles`: this program creates one managed policy
per document and attaches it), and/or existing managed policies by ARN (`previewPolicyArns`/
`deployPolicyArns`). Without any, the roles can be assumed but can do nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

NAMESPACE = "pm500-bootstrap"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
ENVIRONMENT = re.compile(r"[A-Za-z0-9._-]{1,255}")
PREVIEW_ROLE = "pm500-ci-preview"
DEPLOY_ROLE = "pm500-ci-deploy"


class BootstrapConfigError(ValueError):
    """A `pm500-bootstrap:` key is missing or malformed (the message names it)."""


@dataclass(frozen=True)
class Settings:
    repository: str
    preview_environments: tuple[str, ...]
    deploy_environments: tuple[str, ...]
    preview_policy_arns: tuple[str, ...] = ()
    deploy_policy_arns: tuple[str, ...] = ()
    create_oidc_provider: bool = True
    preview_policy_documents: tuple[dict[str, Any], ...] = ()
    deploy_policy_documents: tuple[dict[str, Any], ...] = ()


def _policy_documents(config: pulumi.Config, key: str) -> tuple[dict[str, Any], ...]:
    """The documents of every file `key` lists (each the JSON list `cli.py deployer-policy --json` prints);
    relative paths are relative to this project's folder."""
    documents: list[dict[str, Any]] = []
    for name in _list(config, key, None, False):
        path = Path(name) if Path(name).is_absolute() else Path(pulumi.get_root_directory()) / name
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise BootstrapConfigError(f"{NAMESPACE}:{key}: {name}: cannot read a JSON file ({e})") from None
        if not (isinstance(content, list) and content
                and all(isinstance(d, dict) and "Statement" in d for d in content)):
            raise BootstrapConfigError(f"{NAMESPACE}:{key}: {name}: expected the JSON list of policy "
                                       "documents that `cli.py deployer-policy --json` prints")
        documents += content
    return tuple(documents)


def _list(config: pulumi.Config, key: str, pattern: re.Pattern[str] | None,
          required: bool) -> tuple[str, ...]:
    value: Any = config.get_object(key)
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BootstrapConfigError(f"{NAMESPACE}:{key}: expected a list of names")
    bad = [v for v in value if pattern is not None and not pattern.fullmatch(v)]
    if bad:
        raise BootstrapConfigError(f"{NAMESPACE}:{key}: {bad[0]!r} is not a valid name")
    if required and not value:
        raise BootstrapConfigError(f"{NAMESPACE}:{key}: name at least one GitHub environment")
    return tuple(value)


def load_settings() -> Settings:
    config = pulumi.Config(NAMESPACE)
    repository = config.get("githubRepository") or ""
    if not REPOSITORY.fullmatch(repository):
        raise BootstrapConfigError(
            f"{NAMESPACE}:githubRepository: expected <owner>/<repository>, got {repository!r}")
    return Settings(
        repository=repository,
        preview_environments=_list(config, "previewEnvironments", ENVIRONMENT, True),
        deploy_environments=_list(config, "deployEnvironments", ENVIRONMENT, True),
        preview_policy_arns=_list(config, "previewPolicyArns", None, False),
        deploy_policy_arns=_list(config, "deployPolicyArns", None, False),
        create_oidc_provider=config.get_bool("createOidcProvider") is not False,
        preview_policy_documents=_policy_documents(config, "previewPolicyFiles"),
        deploy_policy_documents=_policy_documents(config, "deployPolicyFiles"),
    )


def trust_policy(provider_arn: str, repository: str, environments: tuple[str, ...]) -> dict[str, Any]:
    """Assumable only with a GitHub OIDC token of `repository` in one of `environments`."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{GITHUB_OIDC_HOST}:aud": AUDIENCE,
                f"{GITHUB_OIDC_HOST}:sub": [f"repo:{repository}:environment:{e}"
                                            for e in sorted(environments)],
            }},
        }],
    }


class CiRoles(pulumi.ComponentResource):
    """OIDC provider (optional: one per account) + preview role + deploy role."""

    provider_arn: pulumi.Output[str]
    preview_role_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]

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
        self.preview_role_arn = self._role(PREVIEW_ROLE, "pm500 pull-request previews (pulumi preview)",
                                           settings, settings.preview_environments,
                                           self._policies(PREVIEW_ROLE, settings.preview_policy_arns,
                                                          settings.preview_policy_documents),
                                           provider_arn, role_opts)
        self.deploy_role_arn = self._role(DEPLOY_ROLE, "pm500 deploys (pulumi up)", settings,
                                          settings.deploy_environments,
                                          self._policies(DEPLOY_ROLE, settings.deploy_policy_arns,
                                                         settings.deploy_policy_documents),
                                          provider_arn, role_opts)
        self.register_outputs({"previewRoleArn": self.preview_role_arn,
                               "deployRoleArn": self.deploy_role_arn})

    def _policies(self, role: str, arns: tuple[str, ...],
                  documents: tuple[dict[str, Any], ...]) -> list[pulumi.Input[str]]:
        """The ARNs to attach: the given ones plus one managed policy per generated document."""
        created = [aws.iam.Policy(f"{role}-{i + 1}", aws.iam.PolicyArgs(
            name=f"{role}-{i + 1}", description=f"{role}: generated by cli.py deployer-policy",
            policy=json.dumps(document), tags={"pm500:purpose": "github-actions"},
        ), opts=pulumi.ResourceOptions(parent=self)).arn for i, document in enumerate(documents)]
        return [*arns, *created]

    def _role(self, name: str, description: str, settings: Settings, environments: tuple[str, ...],
              policy_arns: list[pulumi.Input[str]], provider_arn: pulumi.Output[str],
              opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
        role = aws.iam.Role(name, aws.iam.RoleArgs(
            name=name, description=f"{description}, GitHub {settings.repository}",
            assume_role_policy=provider_arn.apply(
                lambda arn: json.dumps(trust_policy(arn, settings.repository, environments))),
            max_session_duration=3600, tags={"pm500:purpose": "github-actions"},
        ), opts=opts)
        for i, arn in enumerate(policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-policy-{i}", aws.iam.RolePolicyAttachmentArgs(
                role=role.name, policy_arn=arn), opts=pulumi.ResourceOptions(parent=self))
        if not policy_arns:
            pulumi.log.warn(f"{name}: no permission policy attached yet ({NAMESPACE}:"
                            f"{'preview' if name == PREVIEW_ROLE else 'deploy'}PolicyArns)", resource=self)
        return role.arn
