"""Requests, resolved resources and the naming and shaping helpers every mapping shares."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

AUTONAME_RANDOM_HEX = 7
US_EAST_1 = "us-east-1"


class Declared(Protocol):
    """What a recorded registration offers (`preflight.mock_runtime.RegisteredResource`)."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def inputs(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ApiRequest:
    service: str  # botocore service name, e.g. "iot"
    operation: str  # e.g. "CreateThing"
    params: dict[str, Any]
    resource: str  # "<type> <logical name>", for messages
    documents: dict[str, str] = field(default_factory=dict)  # member -> document kind (see service_models)

    def describe(self) -> str:
        return f"{self.resource}: {self.service}.{self.operation}"


@dataclass(frozen=True)
class Resolved:
    """One declared resource as the mappings see it: integral numbers as ints, plus the stack region."""

    type: str
    name: str
    inputs: dict[str, Any]
    region: str


def autoname(logical: str) -> str:
    """The provider's name for a resource without an explicit one: `<logical>-<7 hex>`."""
    return f"{logical}-{hashlib.sha256(logical.encode()).hexdigest()[:AUTONAME_RANDOM_HEX]}"


def physical_name(r: Resolved, key: str = "name") -> str:
    value = r.inputs.get(key)
    return value if isinstance(value, str) and value else autoname(r.name)


def ints(value: Any) -> Any:
    """The engine carries every number as a float; the APIs take integers where the value is one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [ints(v) for v in value]
    return value


def compact(params: Mapping[str, Any]) -> dict[str, Any]:
    """Drop members the provider leaves out when the input is unset."""
    return {k: v for k, v in params.items() if v is not None and v != {} and v != []}


def tag_list(tags: Mapping[str, str] | None, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted((tags or {}).items())]


class UnmappedResource(LookupError):
    """An AWS resource (or setting) with no request mapping: add one, never skip it silently."""


def label(r: Resolved | Declared) -> str:
    return f"{r.type} {r.name}"
