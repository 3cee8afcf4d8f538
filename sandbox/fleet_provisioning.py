"""A test double of AWS IoT fleet provisioning's RegisterThing (moto has none), enforcing its documented
rules so a template that AWS would refuse is refused here too.

Rules applied (AWS IoT developer guide, "Provisioning templates",
https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html, and "Static thing groups",
https://docs.aws.amazon.com/iot/latest/developerguide/thing-groups.html):
- every parameter without a `Default` must be passed; every `Ref` names a declared parameter;
- resources are `AWS::IoT::Thing`, `AWS::IoT::Certificate`, `AWS::IoT::Policy`; intrinsics here: `Ref`,
  `Fn::Join` (the ones pm500 uses; anything else is refused, not guessed);
- `OverrideSettings`: `AttributePayload` and `ThingGroups` take DO_NOTHING/REPLACE/FAIL/MERGE,
  `ThingTypeName` DO_NOTHING/REPLACE/FAIL; they decide what happens to a thing that already exists
  (as every collector declared in the stack does after `pulumi up`): DO_NOTHING keeps the property,
  MERGE adds to it, REPLACE overwrites it, FAIL refuses the request;
- the thing name matches the iot service model's ThingName; its type and groups exist; at most 10
  groups, and never two groups of one hierarchy (a group and its ancestor, or two under one root);
- a named policy (no document) must exist; the certificate status is ACTIVE or INACTIVE;
- the provisioning role must allow each registry call RegisterThing makes for the template, checked
  with `preflight.iam_evaluator.allows` (the calls are the template's resources mapped to the actions of
  AWS's `AWSIoTThingsRegistration` policy);
- a disabled template provisions nothing;
- a pre-provisioning hook ("Pre-provisioning hooks",
  https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html) is called before
  anything else with `claimCertificateId`, `certificateId`, `certificatePem`, `templateArn`, `clientId`
  and the device's `parameters`; the request proceeds only if it answers `"allowProvisioning": true`
  (otherwise, or if it fails, ACCESS_DENIED), and its `parameterOverrides` are added to the parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from preflight.iam_evaluator import allows

THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")  # botocore iot model, shape ThingName
MAX_GROUPS_PER_THING = 10
RESOURCE_TYPES = {"AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy"}
OVERRIDES = {
    "AttributePayload": {"DO_NOTHING", "REPLACE", "FAIL", "MERGE"},
    "ThingGroups": {"DO_NOTHING", "REPLACE", "FAIL", "MERGE"},
    "ThingTypeName": {"DO_NOTHING", "REPLACE", "FAIL"},
}
CERTIFICATE_ID = "AWS::IoT::Certificate::Id"


class ProvisioningRefused(Exception):
    """What RegisterThing would answer with an error (InvalidRequest / access denied)."""


@dataclass
class Thing:
    thing_type: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)


@dataclass
class Account:
    """The registry state RegisterThing reads and changes, plus the account's identity."""

    arn: str  # arn:<partition>:iot:<region>:<account>
    thing_types: set[str] = field(default_factory=set)
    groups: dict[str, str | None] = field(default_factory=dict)  # group -> parent group
    policies: set[str] = field(default_factory=set)
    things: dict[str, Thing] = field(default_factory=dict)
    certificates: dict[str, str] = field(default_factory=dict)  # certificate id -> status
    attached: set[tuple[str, str]] = field(default_factory=set)  # (thing or policy, certificate id)

    def root_of(self, group: str) -> str:
        while (parent := self.groups[group]) is not None:
            group = parent
        return group


def _resolve(value: Any, parameters: Mapping[str, str]) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), = value.items()
        if function == "Ref":
            if argument not in parameters:
                raise ProvisioningRefused(f"Ref {argument}: not a template parameter")
            return parameters[argument]
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(_resolve(p, parameters)) for p in parts)
        if function.startswith("Fn::"):
            raise ProvisioningRefused(f"{function}: not modelled by this double")
    if isinstance(value, dict):
        return {k: _resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, parameters) for v in value]
    return value


def _parameters(template: Mapping[str, Any], passed: Mapping[str, str],
                certificate_id: str) -> dict[str, str]:
    declared = template.get("Parameters", {})
    values = {**passed, CERTIFICATE_ID: certificate_id}
    for name, spec in declared.items():
        if name not in values:
            if "Default" not in spec:
                raise ProvisioningRefused(f"parameter {name} is required and was not passed")
            values[name] = spec["Default"]
    return {k: v for k, v in values.items() if k in declared}


def _require(role_policy: Mapping[str, Any], action: str, resource: str,
             context: Mapping[str, str] | None = None) -> None:
    if not allows(role_policy, action, resource, context):
        raise ProvisioningRefused(f"provisioning role is not allowed {action} on {resource}")


Hook = Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class Claim:
    """Who calls RegisterThing: the MQTT client and its claim certificate, and the template's state."""

    claim_certificate_id: str = "c" * 64
    client_id: str = "claim-client"
    certificate_pem: str = ""
    template_name: str = "template"
    enabled: bool = True


def _ask_hook(hook: Hook, account: Account, claim: Claim, parameters: Mapping[str, str],
              certificate_id: str) -> dict[str, str]:
    """The parameters after the hook allowed the request (with its overrides); refused otherwise."""
    event = {"claimCertificateId": claim.claim_certificate_id, "certificateId": certificate_id,
             "certificatePem": claim.certificate_pem,
             "templateArn": f"{account.arn}:provisioningtemplate/{claim.template_name}",
             "clientId": claim.client_id, "parameters": dict(parameters)}
    try:
        answer = hook(event)
    except Exception as e:  # a failing hook refuses the request
        raise ProvisioningRefused(f"ACCESS_DENIED: the pre-provisioning hook failed ({e})") from e
    if answer.get("allowProvisioning") is not True:
        raise ProvisioningRefused("ACCESS_DENIED: the pre-provisioning hook did not allow provisioning")
    return {**parameters, **{str(k): str(v) for k, v in (answer.get("parameterOverrides") or {}).items()}}


def register_thing(account: Account, template: Mapping[str, Any], role_policy: Mapping[str, Any],
                   parameters: Mapping[str, str], certificate_id: str, hook: Hook | None = None,
                   claim: Claim = Claim()) -> str:
    """Apply `template` for a device whose new certificate is `certificate_id`; returns the thing name.

    `hook`: the template's pre-provisioning hook, if it has one. Validates everything first and
    changes `account` only when the whole template would succeed.
    """
    if not claim.enabled:
        raise ProvisioningRefused(f"template {claim.template_name} is disabled")
    if hook is not None:
        parameters = _ask_hook(hook, account, claim, parameters, certificate_id)
    values = _parameters(template, parameters, certificate_id)
    resources = template.get("Resources", {})
    for logical, resource in resources.items():
        if resource.get("Type") not in RESOURCE_TYPES:
            raise ProvisioningRefused(f"{logical}: resource type {resource.get('Type')} is not allowed")
    things = [_resolve(r, values) for r in resources.values() if r["Type"] == "AWS::IoT::Thing"]
    certs = [_resolve(r, values) for r in resources.values() if r["Type"] == "AWS::IoT::Certificate"]
    policies = [_resolve(r, values) for r in resources.values() if r["Type"] == "AWS::IoT::Policy"]
    if len(things) > 1 or len(certs) > 1:
        raise ProvisioningRefused("a template provisions at most one thing and one certificate")
    cert_arn = f"{account.arn}:cert/{certificate_id}"
    thing_name = None
    result = Thing()
    for thing in things:
        overrides = thing.get("OverrideSettings", {})
        for setting, value in overrides.items():
            if value not in OVERRIDES.get(setting, set()):
                raise ProvisioningRefused(f"OverrideSettings.{setting}: {value!r} is not allowed")
        props = thing["Properties"]
        thing_name = str(props["ThingName"])
        if not THING_NAME.fullmatch(thing_name):
            raise ProvisioningRefused(f"ThingName {thing_name!r}: not a valid thing name")
        thing_arn = f"{account.arn}:thing/{thing_name}"
        _require(role_policy, "iot:DescribeThing", thing_arn)  # does it exist?
        existing = account.things.get(thing_name)
        thing_type = props.get("ThingTypeName")
        if thing_type is not None:
            if thing_type not in account.thing_types:
                raise ProvisioningRefused(f"ThingTypeName {thing_type}: no such thing type")
            _require(role_policy, "iot:DescribeThingType", f"{account.arn}:thingtype/{thing_type}")
        wanted = Thing(thing_type, {str(k): str(v) for k, v in props.get("AttributePayload", {}).items()},
                       {str(g) for g in props.get("ThingGroups", [])})
        if existing is None:
            _require(role_policy, "iot:CreateThing", thing_arn)
            result, added = wanted, wanted.groups
        else:
            result, added = _override(existing, wanted, overrides)
            if (result.thing_type, result.attributes) != (existing.thing_type, existing.attributes):
                _require(role_policy, "iot:UpdateThing", thing_arn)
            if existing.groups - result.groups:
                _require(role_policy, "iot:RemoveThingFromThingGroup", thing_arn)
        _check_groups(account, thing_name, sorted(result.groups))
        for group in sorted(added):
            _require(role_policy, "iot:AddThingToThingGroup", thing_arn)
            _require(role_policy, "iot:AddThingToThingGroup", f"{account.arn}:thinggroup/{group}")
        _require(role_policy, "iot:AttachThingPrincipal", cert_arn, {"iot:thingArn": thing_arn})
    for cert in certs:
        status = cert["Properties"].get("Status")
        if status not in ("ACTIVE", "INACTIVE"):
            raise ProvisioningRefused(f"certificate Status {status!r}: ACTIVE or INACTIVE")
        if cert["Properties"].get("CertificateId") != certificate_id:
            raise ProvisioningRefused("the certificate resource must be the device's new certificate")
        _require(role_policy, "iot:UpdateCertificate", cert_arn)
    for policy in policies:
        name = policy["Properties"].get("PolicyName")
        if "PolicyDocument" not in policy["Properties"] and name not in account.policies:
            raise ProvisioningRefused(f"PolicyName {name}: no such policy")
        _require(role_policy, "iot:AttachPolicy", cert_arn)

    account.certificates[certificate_id] = certs[0]["Properties"]["Status"] if certs else "INACTIVE"
    for policy in policies:
        account.attached.add((policy["Properties"]["PolicyName"], certificate_id))
    if thing_name is not None:
        account.things[thing_name] = result
        account.attached.add((thing_name, certificate_id))
    return thing_name or ""


def _override(existing: Thing, wanted: Thing, overrides: Mapping[str, str]) -> tuple[Thing, set[str]]:
    """The thing after RegisterThing applies `overrides` to an existing thing, and the groups it adds.

    A setting not given is DO_NOTHING (the documented default).
    """
    def choose(setting: str, old: Any, new: Any, merged: Any) -> Any:
        mode = overrides.get(setting, "DO_NOTHING")
        if mode == "FAIL" and new != old:
            raise ProvisioningRefused(f"OverrideSettings.{setting} is FAIL and the thing differs")
        return {"DO_NOTHING": old, "FAIL": old, "REPLACE": new, "MERGE": merged}[mode]

    thing_type = choose("ThingTypeName", existing.thing_type, wanted.thing_type, wanted.thing_type)
    attributes = choose("AttributePayload", existing.attributes, wanted.attributes,
                        {**existing.attributes, **wanted.attributes})
    groups = choose("ThingGroups", existing.groups, wanted.groups, existing.groups | wanted.groups)
    return Thing(thing_type, dict(attributes), set(groups)), set(groups) - existing.groups


def _check_groups(account: Account, thing: str, groups: list[str]) -> None:
    if len(groups) > MAX_GROUPS_PER_THING:
        raise ProvisioningRefused(f"{thing}: {len(groups)} thing groups, at most {MAX_GROUPS_PER_THING}")
    roots: dict[str, str] = {}
    for group in groups:
        if group not in account.groups:
            raise ProvisioningRefused(f"ThingGroups: {group} does not exist")
        root = account.root_of(group)
        if root in roots:
            raise ProvisioningRefused(
                f"ThingGroups: {roots[root]} and {group} are in one hierarchy (root {root}); "
                "a thing can be in only one group of a hierarchy")
        roots[root] = group
