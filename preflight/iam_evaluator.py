"""IAM's decision for one request against identity policies: explicit Deny, Allow, or the implicit deny.

Why here and not a library: no maintained evaluator on PyPI fits. moto's (`moto.iam.access_control`)
matches actions case-sensitively, turns `.` into a regex wildcard, has no `?` and no `NotResource`,
counts a condition that does not hold as an explicit Deny and one whose key is absent as holding;
policyuniverse expands and summarises statements but decides no request (and has no release since
2023); iam-ape summarises a principal's effective policy from an account's authorization details (no
per-request decision, GPL-3); aws-why asks AWS's own simulator (needs an account). The one complete
simulator, @cloud-copilot/iam-simulate, is a Node package (AGPL-3.0): it would bring Node back into
`./dev setup`. This module implements the documented evaluation logic for what pm500's documents
contain, and refuses what it does not implement rather than guessing:

- "Policy evaluation logic" (IAM User Guide): an explicit Deny in any statement wins; else an Allow
  that matches; else denied.
- `Action`/`NotAction`: case-insensitive, `*` and `?` wildcards ("IAM JSON policy elements: Action").
- `Resource`/`NotResource`: ARNs compared component by component (partition, service, region, account,
  then the resource part), case-sensitively, `*` and `?` within a component, the resource part as a
  whole; a `*` that is the last character of a component "can expand to match beyond the colon
  boundaries" ("IAM JSON policy elements: Resource", Using wildcards in resource ARNs), so
  `arn:aws:iam::*` names every IAM ARN of every account.
- `ArnEquals`/`ArnLike` (and their negations) are one rule: "Each of the six colon-delimited components
  of the ARN is checked separately and each can include" `*` and `?` ("IAM JSON policy elements:
  Condition operators", Amazon Resource Name (ARN) condition operators).
- `Condition`: every operator block and every key must hold. A key absent from the request fails
  a positive operator and satisfies a negated one (`StringNotEquals`...), `...IfExists` holds when the
  key is absent, `Null` tests presence ("IAM JSON policy elements: Condition operators"). Multi-valued
  keys (`ForAnyValue:`/`ForAllValues:`) and policy variables are refused (ValueError).

The request's resource is the ARN the request actually carries, which is not always the ARN the
Service Authorization Reference shows: `preflight.guide_rules` derives it from the services' guides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from enum import Enum
from functools import cache
from typing import Any

Document = Mapping[str, Any]
ARN_COMPONENTS = 6  # arn:partition:service:region:account:resource


class Decision(Enum):
    ALLOWED = "allowed"
    EXPLICIT_DENY = "explicitly denied"
    IMPLICIT_DENY = "implicitly denied"


@cache
def _glob(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    if "${" in pattern:
        raise ValueError(f"{pattern}: policy variables are not evaluated here")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL if case_sensitive else re.DOTALL | re.IGNORECASE)


def glob_matches(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcard matching of a concrete `value`: `*` any run of characters, `?` one character."""
    return _glob(pattern, case_sensitive).fullmatch(value) is not None


def arn_matches(pattern: str, arn: str) -> bool:
    """`pattern` (a Resource entry, wildcards allowed) matches `arn` the way IAM compares ARNs: each of
    the first five components on its own, then the resource part; `*` alone matches everything."""
    if pattern == "*":
        return True
    wanted = pattern.split(":", ARN_COMPONENTS - 1)
    given = arn.split(":", ARN_COMPONENTS - 1)
    if len(wanted) != len(given):
        return False  # e.g. a `*` meant to span components: IAM compares component by component
    if len(given) != ARN_COMPONENTS:
        return glob_matches(pattern, arn)
    return all(glob_matches(w, g) for w, g in zip(wanted, given, strict=True))


@cache
def _resource_pattern(pattern: str) -> re.Pattern[str]:
    """A Resource entry as a regex (module doc): within the first five components `?` and `*` stay
    inside the component, except a `*` that ends one, which may also span the colons after it."""
    if "${" in pattern:
        raise ValueError(f"{pattern}: policy variables are not evaluated here")
    components = pattern.split(":", ARN_COMPONENTS - 1)
    parts = []
    for index, component in enumerate(components):
        in_resource = index == ARN_COMPONENTS - 1
        regex = ""
        for position, c in enumerate(component):
            if c == "*":
                regex += ".*" if in_resource or position == len(component) - 1 else "[^:]*"
            elif c == "?":
                regex += "." if in_resource else "[^:]"
            else:
                regex += re.escape(c)
        parts.append(regex)
    return re.compile(":".join(parts), re.DOTALL)


def resource_matches(pattern: str, arn: str) -> bool:
    """`pattern` (a Resource or NotResource entry) matches the ARN a request carries (module doc)."""
    return pattern == "*" or _resource_pattern(pattern).fullmatch(arn) is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _string_equals(expected: str, value: str) -> bool:
    return expected == value


def _string_like(expected: str, value: str) -> bool:
    return glob_matches(expected, value)


def _bool(expected: str, value: str) -> bool:
    return str(expected).lower() == value.lower()


# operator -> (comparison of one expected value with the request's value, negated)
_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (arn_matches, False),
    "ArnNotEquals": (arn_matches, True),
    "ArnLike": (arn_matches, False),
    "ArnNotLike": (arn_matches, True),
    "Bool": (_bool, False),
}


def _condition_holds(operator: str, key: str, expected: Any, context: Mapping[str, str]) -> bool:
    if operator.startswith(("ForAnyValue:", "ForAllValues:")):
        raise ValueError(f"condition operator {operator}: multi-valued keys are not evaluated here")
    value = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    if operator == "Null":
        return (value is None) == (str(expected).lower() == "true")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise ValueError(f"condition operator {operator} is not evaluated here")
    compare, negated = _OPERATORS[base]
    if value is None:
        return if_exists or negated
    matched = any(compare(str(e), value) for e in _as_list(expected))
    return not matched if negated else matched


def _applies(statement: Document, action: str, resource: str, context: Mapping[str, str]) -> bool:
    negated = "NotAction" in statement
    named = _as_list(statement["NotAction"] if negated else statement.get("Action"))
    action_ok = any(glob_matches(a, action, case_sensitive=False) for a in named) != negated
    if not action_ok:
        return False
    negated = "NotResource" in statement
    named = _as_list(statement["NotResource"] if negated else statement.get("Resource"))
    if any(resource_matches(str(r), resource) for r in named) == negated:
        return False
    return all(_condition_holds(operator, key, expected, context)
               for operator, block in (statement.get("Condition") or {}).items()
               for key, expected in block.items())


def evaluate(documents: Iterable[Document], action: str, resource: str,
             context: Mapping[str, str] | None = None) -> Decision:
    """IAM's decision on `action` against `resource` (the ARN the request carries, or `*` for actions
    without resource-level permissions) for a principal whose identity policies are `documents`."""
    allowed = False
    for document in documents:
        for statement in _as_list(document.get("Statement")):
            if not _applies(statement, action, resource, context or {}):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            allowed = allowed or statement.get("Effect") == "Allow"
    return Decision.ALLOWED if allowed else Decision.IMPLICIT_DENY


def allows(document: Document, action: str, resource: str, context: Mapping[str, str] | None = None) -> bool:
    """Whether the one identity policy `document` allows the request."""
    return evaluate([document], action, resource, context) is Decision.ALLOWED
