"""Replay a stack's plan into moto: every declared AWS resource created through boto3 with the request
the provider would send (`preflight.provider_requests`, the same mapping the service-model checks use).

moto then applies its own validation too, and tests and the demo run against an account that holds
the whole stack, not only the registry. Requests moto cannot take are skipped, each for a stated
reason (`MOTO_CANNOT`), never silently: anything else that fails raises.

Ids AWS generates (KMS key ids) differ from the mock runtime's: each created key's real id and ARN
replace the mock's in every later request. A stack's data key is not the stack's: the bootstrap makes it
with its alias, and the program looks it up by that alias (`preflight.mock_runtime.looked_up_key_id`).
Replay the bootstrap's plan first, as the first deploy runs it (`bootstrap.plan.bootstrap_requests`):
the alias it creates puts its key in place of the looked-up one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore import xform_name

from preflight.mock_runtime import looked_up_key_id
from preflight.provider_requests import ApiRequest

# (service, operation) -> why moto cannot take it (docs/infra.md lists these as unverified).
MOTO_CANNOT: dict[tuple[str, str], str] = {
    ("iot", "CreateProvisioningTemplate"): "moto 5.2.5 has no fleet provisioning templates",
}

# (service, operation) -> why moto must get it after every other request. moto ignores a policy
# statement's Condition: our TLS-only bucket policy (Deny s3:* if aws:SecureTransport is false) denies
# every later request to the bucket, even the PutObject AWS accepts over TLS. The engine may register
# the policy before or after the bucket's objects (both wait only on the bucket), so send it last.
MOTO_LAST: dict[tuple[str, str], str] = {
    ("s3", "PutBucketPolicy"): "moto ignores Conditions, so a TLS-only policy would deny everything",
}


@dataclass
class Replay:
    """What a replay did: requests sent, requests skipped (with the reason)."""

    sent: list[ApiRequest] = field(default_factory=list)
    skipped: list[tuple[ApiRequest, str]] = field(default_factory=list)


def _substitute(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for mock_id, real_id in ids.items():
            value = value.replace(mock_id, real_id)
        return value
    if isinstance(value, dict):
        return {k: _substitute(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, ids) for v in value]
    return value


def replay(requests: Iterable[ApiRequest], client: Callable[[str], Any]) -> Replay:
    """Send `requests` in order through `client(service)`, those in `MOTO_LAST` after all others;
    returns what was sent (in the order sent) and skipped."""
    done = Replay()
    ids: dict[str, str] = {}
    ordered = list(requests)
    ordered.sort(key=lambda request: (request.service, request.operation) in MOTO_LAST)  # stable
    for request in ordered:
        reason = MOTO_CANNOT.get((request.service, request.operation))
        if reason:
            done.skipped.append((request, reason))
            continue
        params = _substitute(request.params, ids)
        response = getattr(client(request.service), xform_name(request.operation))(**params)
        if (request.service, request.operation) == ("kms", "CreateKey"):
            _remember_key(request, response, ids)
        elif (request.service, request.operation) == ("kms", "CreateAlias"):
            # what a later `aws.kms.get_key(key_id=<alias>)` found on the mock runtime -> the aliased key
            ids[looked_up_key_id(params["AliasName"])] = params["TargetKeyId"]
        done.sent.append(request)
    return done


def _remember_key(request: ApiRequest, response: dict[str, Any], ids: dict[str, str]) -> None:
    """The mock runtime's key id for this key (uuid5 of the logical name) -> moto's."""
    import uuid

    logical = request.resource.split(" ", 1)[1]
    ids[str(uuid.uuid5(uuid.NAMESPACE_URL, logical))] = response["KeyMetadata"]["KeyId"]


def moto_clients(env: dict[str, str], region: str) -> Callable[[str], Any]:
    """`client(service)` for the moto server in `env` (`sandbox.moto.MotoServer.aws_env()`), cached."""
    session = boto3.session.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=region)
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=env["AWS_ENDPOINT_URL"])
        return clients[service]

    return client
