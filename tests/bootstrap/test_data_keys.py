"""bootstrap/: each stack's data key (KMS), made by the administrator, never by the stack.

Expected values are written out: the alias the stack looks its key up by (`alias/pm500-<stack>-data`), the
tag the deployer policy's key statements require (`pm500:stack`), KMS's documented default key policy
(KMS Developer Guide, "Default key policy": the account root with `kms:*`, which lets IAM policies grant
use of the key), rotation, the 30-day deletion window.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.ci_roles import BootstrapConfigError
from bootstrap.plan import BOOTSTRAP_DIR, bootstrap_requests, evaluate_bootstrap
from infra import outputs
from preflight.mock_runtime import EvaluatedStack, RegisteredResource, evaluate_stack
from preflight.provider_requests import stack_requests
from preflight.service_models import plan_problems
from sandbox.plan_replay import moto_clients, replay

ROOT = Path(__file__).resolve().parents[2]
KEY = "aws:kms/key:Key"
ALIAS = "aws:kms/alias:Alias"
ADOPTED = "1234abcd-12ab-34cd-56ef-1234567890ab"
DEFAULT_KEY_POLICY = {
    "Version": "2012-10-17",
    "Id": "key-default-1",
    "Statement": [{
        "Sid": "Enable IAM User Permissions",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "kms:*",
        "Resource": "*",
    }],
}


@pytest.fixture(scope="module")
def ci() -> EvaluatedStack:
    return evaluate_bootstrap(githubRepository="acme/pm500")


def _key_of(stack: EvaluatedStack, name: str) -> RegisteredResource:
    [key] = [k for k in stack.of_type(KEY) if (k.inputs.get("tags") or {}).get("pm500:stack") == name]
    return key


def _alias_of(stack: EvaluatedStack, name: str) -> RegisteredResource:
    [alias] = [a for a in stack.of_type(ALIAS) if a.inputs["name"] == f"alias/pm500-{name}-data"]
    return alias


def test_each_stack_gets_its_data_key_here(ci: EvaluatedStack) -> None:
    assert len(ci.of_type(KEY)) == len(ci.of_type(ALIAS)) == 2  # Pulumi.ci.yaml: staging, prod
    for name in ("staging", "prod"):
        key = _key_of(ci, name)
        assert key.inputs["tags"] == {"pm500:stack": name}
        assert key.inputs["enableKeyRotation"] is True
        assert key.inputs["deletionWindowInDays"] == 30
        description = f"pm500 {name}: Kinesis stream, Firehose and S3 archive encryption"  # as the stack had
        assert key.inputs["description"] == description
        assert json.loads(key.inputs["policy"]) == DEFAULT_KEY_POLICY
        assert key.protect and not key.import_id
        alias = _alias_of(ci, name)
        assert alias.inputs["targetKeyId"] == key.id
        assert alias.protect and not alias.import_id
        assert ci.outputs["dataKeyArns"][name] == f"arn:aws:kms:eu-west-1:123456789012:key/{key.id}"
    assert plan_problems(stack_requests(ci)) == []


@pytest.mark.parametrize("given", [ADOPTED, f"arn:aws:kms:eu-west-1:123456789012:key/{ADOPTED}"])
def test_a_key_the_stack_made_before_is_adopted_with_its_alias(given: str) -> None:
    """docs/infra.md, "Stacks deployed before the bootstrap made their key": the stack's own protected key
    (and its alias) move into the bootstrap by import, by the key id or the stack's `dataKeyArn` output."""
    stack = evaluate_bootstrap(githubRepository="acme/pm500", adoptDataKeys={"prod": given})
    assert (_key_of(stack, "prod").import_id, _alias_of(stack, "prod").import_id) == (
        ADOPTED, "alias/pm500-prod-data")
    assert (_key_of(stack, "staging").import_id, _alias_of(stack, "staging").import_id) == ("", "")


@pytest.mark.parametrize(("adopt", "message"), [
    ({"qa": ADOPTED}, "pm500-bootstrap:adoptDataKeys: 'qa' is not a stack of pm500-bootstrap:stacks"),
    ({"prod": "alias/pm500-prod-data"}, "pm500-bootstrap:adoptDataKeys.prod: expected the key's id "),
    ({"prod": ["x"]}, "pm500-bootstrap:adoptDataKeys.prod: expected the key's id "),
    ([ADOPTED], "pm500-bootstrap:adoptDataKeys: expected a map of stack -> key id"),
])
def test_a_bad_adoption_names_the_key(adopt: Any, message: str) -> None:
    with pytest.raises(BootstrapConfigError, match=message):
        evaluate_bootstrap(githubRepository="acme/pm500", adoptDataKeys=adopt)


def test_the_stack_encrypts_with_the_key_the_bootstrap_made(aws_env: dict[str, str]) -> None:
    """The first deploy's order in moto: the bootstrap's plan for the account, then the stack's. The stack
    finds the key by its alias: its stream, archive and queue use that key, the one tagged for it."""
    staging = evaluate_stack("staging")
    client = moto_clients(aws_env, staging.config["aws:region"])
    done = replay([*bootstrap_requests(staging), *stack_requests(staging)], client)
    assert [r.operation for r, _ in done.skipped] == ["CreateProvisioningTemplate"]
    kms = client("kms")
    [alias] = [a for a in kms.list_aliases()["Aliases"] if a["AliasName"] == "alias/pm500-staging-data"]
    key_id = alias["TargetKeyId"]
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == [{"TagKey": "pm500:stack", "TagValue": "staging"}]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    stream = client("kinesis").describe_stream_summary(StreamName="pm500-staging-ddata")
    assert stream["StreamDescriptionSummary"]["KeyId"].endswith(f"key/{key_id}")
    assert len(kms.list_keys()["Keys"]) == 1  # the stack made none


def test_the_migration_steps_name_what_exists(ci: EvaluatedStack) -> None:
    """docs/infra.md's steps for a stack that made its own key: the bootstrap key they set, the output they
    read, and the URNs they exclude and delete: the key and alias the earlier program declared (`data-key`,
    `data-key-alias`) as children of the component that still holds the data routes."""
    text = (ROOT / "docs" / "infra.md").read_text()
    section = text[text.index("### Stacks deployed before the bootstrap made their key"):
                   text.index("## Configuration reference")]
    stack_file = yaml.safe_load((BOOTSTRAP_DIR / "Pulumi.ci.yaml").read_text())["config"]
    assert set(re.findall(r"pm500-bootstrap:(\w+)", section)) == {"adoptDataKeys"}
    assert "pm500-bootstrap:adoptDataKeys" in stack_file
    assert f"`pulumi stack output {outputs.KMS_KEY_ARN} -s prod`" in section
    assert "`alias/pm500-<stack>-data`" in section and _alias_of(ci, "prod")
    [routes] = evaluate_stack("prod").of_type("pm500:data:DataRoutes")
    # The engine leaves the root stack's type out of its children's type chain (the mock monitor does not).
    parent = routes.urn.split("::")[2].removeprefix("pulumi:pulumi:Stack$")
    assert set(re.findall(r"'(urn:pulumi:[^']+)'", section)) == {
        f"urn:pulumi:prod::pm500::{parent}$aws:kms/key:Key::data-key",
        f"urn:pulumi:prod::pm500::{parent}$aws:kms/alias:Alias::data-key-alias"}
