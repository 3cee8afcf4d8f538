"""The AWS API requests the provider would send to create each resource the program declares.

One mapping, two users: `preflight.service_models` checks every request against AWS's published service
models (botocore's), and `sandbox.plan_replay.replay` sends them to moto so the local account holds
the whole stack. Input is what the engine recorded for each registration (`preflight.mock_runtime`,
camelCase keys, resolved values); output is one `ApiRequest` per API call, named by botocore's service
and operation names with the request members the API documents (as pulumi-aws/the Terraform AWS
provider fill them for our inputs).

Physical names: the explicit name input, else the provider's autoname: the logical name, `-`, and 7
random hex characters (pulumi-aws autonaming; here the 7 characters are a hash of the logical name, so
runs are reproducible and length and alphabet are exactly the provider's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from preflight.provider_requests import data, functions, iam, iot, s3, sfn, sqs
from preflight.provider_requests.base import (
    US_EAST_1,
    ApiRequest,
    Declared,
    Resolved,
    UnmappedResource,
    autoname,
    ints,
    label,
)

__all__ = ["MAPPINGS", "ApiRequest", "Resolved", "UnmappedResource", "autoname", "requests_for",
           "stack_requests"]

MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    **iot.MAPPINGS, **iam.MAPPINGS, **data.MAPPINGS, **s3.MAPPINGS, **sqs.MAPPINGS, **functions.MAPPINGS,
    **sfn.MAPPINGS,
}


def requests_for(resources: Iterable[Declared], region: str = US_EAST_1) -> list[ApiRequest]:
    """Every create request for the AWS resources among `resources` (a stack in `region`), in
    registration order (which respects dependencies: the engine registers a resource only once its
    inputs are known)."""
    out: list[ApiRequest] = []
    for r in resources:
        if not r.type.startswith("aws:"):
            continue
        mapping = MAPPINGS.get(r.type)
        if mapping is None:
            raise UnmappedResource(f"{label(r)}: no request mapping for resource type {r.type}")
        resolved = Resolved(r.type, r.name, ints(r.inputs), region)
        out += mapping(resolved)
    return out


class Evaluated(Protocol):
    """A stack evaluated on the mock runtime (`preflight.mock_runtime.EvaluatedStack`)."""

    @property
    def resources(self) -> list[Any]: ...
    @property
    def config(self) -> dict[str, str]: ...


def stack_requests(stack: Evaluated) -> list[ApiRequest]:
    """`requests_for` the stack's resources in the stack's own region (`aws:region`)."""
    return requests_for(stack.resources, stack.config.get("aws:region") or US_EAST_1)
