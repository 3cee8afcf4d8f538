"""pm500's policy rules as plain functions over a stack's resources (no Pulumi runtime needed).

Each validator takes every resource of the stack (anything with `resource_type`, `props`, `urn`,
`name` and `property_dependencies`, e.g. `pulumi_policy.PolicyResource`) and returns the violations as
`(message, urn)` pairs. `policy/__main__.py` wraps them in a pulumi-policy pack for `pulumi preview
--policy-pack policy`; the tests run them on the resources of both stacks evaluated on the mock runtime.
Values unknown during a preview (not yet computed) are skipped, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

THING_NAME_VARIABLE = "${iot:Connection.Thing.ThingName}"
READ_ONLY_PREFIXES = ("Get", "List", "Describe")

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
STREAM = "aws:kinesis/stream:Stream"
FIREHOSE = "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream"
QUEUE = "aws:sqs/queue:Queue"
TOPIC_RULE = "aws:iot/topicRule:TopicRule"
IOT_POLICY = "aws:iot/policy:Policy"
IOT_CERTIFICATE = "aws:iot/certificate:Certificate"
IAM_DOCUMENT_PROPS = {
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
}
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


class Resource(Protocol):
    @property
    def resource_type(self) -> str: ...
    @property
    def props(self) -> Mapping[str, Any]: ...
    @property
    def urn(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def property_dependencies(self) -> Mapping[str, Sequence[Any]]: ...


Violation = tuple[str, str | None]
Validator = Callable[[Sequence[Resource]], list[Violation]]


def _of_type(resources: Iterable[Resource], type_: str) -> list[Resource]:
    return [r for r in resources if r.resource_type == type_]


def _targets(resource: Resource, prop: str) -> set[str]:
    """What a `bucket`-style property points at: its value, and the URNs it was computed from."""
    out = {str(resource.props[prop])} if resource.props.get(prop) else set()
    out |= {getattr(dep, "urn", str(dep)) for dep in resource.property_dependencies.get(prop, [])}
    return out


def _bucket_keys(bucket: Resource) -> set[str]:
    return {bucket.urn, *(str(bucket.props[k]) for k in ("bucket", "id") if bucket.props.get(k))}


def _attached(buckets: list[Resource], attachments: list[Resource]) -> dict[str, list[Resource]]:
    """Bucket URN -> the per-bucket configuration resources (SSE, public access block) targeting it."""
    found: dict[str, list[Resource]] = {b.urn: [] for b in buckets}
    for a in attachments:
        for b in buckets:
            if _targets(a, "bucket") & _bucket_keys(b):
                found[b.urn].append(a)
    return found


def encryption_at_rest(resources: Sequence[Resource]) -> list[Violation]:
    """Kinesis streams (KMS), Firehose delivery streams (SSE on), SQS queues (KMS) and S3 buckets (SSE
    config) encrypted."""
    out: list[Violation] = []
    for s in _of_type(resources, STREAM):
        if s.props.get("encryptionType") != "KMS" or not s.props.get("kmsKeyId"):
            out.append((f"Kinesis stream {s.name}: encryptionType must be KMS with a kmsKeyId", s.urn))
    for f in _of_type(resources, FIREHOSE):
        sse = f.props.get("serverSideEncryption") or {}
        if not sse.get("enabled"):
            out.append((f"Firehose {f.name}: serverSideEncryption.enabled must be true", f.urn))
    for q in _of_type(resources, QUEUE):
        if not q.props.get("kmsMasterKeyId"):
            out.append((f"SQS queue {q.name}: kmsMasterKeyId must name the stack's KMS key", q.urn))
    buckets = _of_type(resources, BUCKET)
    configs = _attached(buckets, _of_type(resources, BUCKET_SSE))
    for b in buckets:
        inline = b.props.get("serverSideEncryptionConfiguration")
        algorithms = [
            (rule.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm")
            for c in configs[b.urn] for rule in c.props.get("rules") or []
        ]
        if not inline and not any(a in ("aws:kms", "aws:kms:dsse", "AES256") for a in algorithms):
            out.append((f"S3 bucket {b.name}: no server-side encryption configuration", b.urn))
    return out


def public_access_blocked(resources: Sequence[Resource]) -> list[Violation]:
    """Every bucket has a public access block with all four flags on."""
    out: list[Violation] = []
    buckets = _of_type(resources, BUCKET)
    blocks = _attached(buckets, _of_type(resources, BUCKET_PAB))
    for b in buckets:
        if not any(all(p.props.get(flag) is True for flag in PUBLIC_ACCESS_FLAGS) for p in blocks[b.urn]):
            flags = ", ".join(PUBLIC_ACCESS_FLAGS)
            out.append((f"S3 bucket {b.name}: needs a public access block with {flags} all true", b.urn))
    return out


def _document(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            doc = json.loads(value)
        except json.JSONDecodeError:
            return None
        return doc if isinstance(doc, dict) else None
    return None  # unknown during preview


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _statements(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _as_list(doc.get("Statement")) if isinstance(s, dict)]


def _is_write(action: str) -> bool:
    verb = action.split(":", 1)[-1]
    return verb == "*" or not verb.startswith(READ_ONLY_PREFIXES)


def no_wildcard_writes(resources: Sequence[Resource]) -> list[Violation]:
    """IAM documents: no Allow of a write action (or `service:*`) on `Resource: "*"`."""
    out: list[Violation] = []
    for r in resources:
        docs = []
        if r.resource_type in IAM_DOCUMENT_PROPS:
            docs.append(_document(r.props.get(IAM_DOCUMENT_PROPS[r.resource_type])))
        if r.resource_type == "aws:iam/role:Role":
            docs += [_document(p.get("policy")) for p in _as_list(r.props.get("inlinePolicies"))
                     if isinstance(p, dict)]
        for doc in filter(None, docs):
            for s in _statements(doc):
                if s.get("Effect") != "Allow" or "*" not in _as_list(s.get("Resource")):
                    continue
                writes = [a for a in _as_list(s.get("Action")) if isinstance(a, str) and _is_write(a)]
                if writes:
                    out.append((f"{r.name}: statement {s.get('Sid', '?')} allows {', '.join(writes)} on "
                                "Resource '*'; name the resources", r.urn))
    return out


def iot_policy_uses_thing_name(resources: Sequence[Resource]) -> list[Violation]:
    """IoT policies: connect only as the thing name (attached), topics only under the thing name."""
    out: list[Violation] = []
    for p in _of_type(resources, IOT_POLICY):
        doc = _document(p.props.get("policy"))
        if doc is None:
            continue
        for s in _statements(doc):
            if s.get("Effect") != "Allow":
                continue
            actions = {a.lower() for a in _as_list(s.get("Action")) if isinstance(a, str)}
            targets = [str(x) for x in _as_list(s.get("Resource"))]
            sid = s.get("Sid", "?")
            if "*" in targets or "iot:*" in actions:
                out.append((f"IoT policy {p.name}: statement {sid} uses a bare wildcard", p.urn))
                continue
            if "iot:connect" in actions:
                if any(not t.endswith(f":client/{THING_NAME_VARIABLE}") for t in targets):
                    out.append((f"IoT policy {p.name}: statement {sid} must connect only as "
                                f"client/{THING_NAME_VARIABLE}", p.urn))
                condition = (s.get("Condition") or {}).get("Bool") or {}
                attached = condition.get("iot:Connection.Thing.IsAttached")
                if str(attached).lower() != "true":
                    out.append((f"IoT policy {p.name}: statement {sid} must require "
                                "iot:Connection.Thing.IsAttached", p.urn))
            if actions & {"iot:publish", "iot:subscribe", "iot:receive"}:
                loose = [t for t in targets if THING_NAME_VARIABLE not in t]
                if loose:
                    out.append((f"IoT policy {p.name}: statement {sid} allows topics not scoped by "
                                f"{THING_NAME_VARIABLE}: {', '.join(loose)}", p.urn))
    return out


def rules_have_error_actions(resources: Sequence[Resource]) -> list[Violation]:
    """Every IoT topic rule has an error action, so a failing route is visible."""
    return [(f"IoT topic rule {r.name}: needs an errorAction", r.urn)
            for r in _of_type(resources, TOPIC_RULE)
            if not any(v for v in (r.props.get("errorAction") or {}).values())]


def no_certificates_in_state(resources: Sequence[Resource]) -> list[Violation]:
    """Device certificates are minted by the CLI: a certificate resource would put keys in state."""
    message = "aws:iot/certificate resources are not allowed (certificates come from the CLI)"
    return [(f"{r.name}: {message}", r.urn)
            for r in _of_type(resources, IOT_CERTIFICATE)]


POLICIES: dict[str, tuple[str, Validator]] = {
    "pm500-encryption-at-rest": ("Kinesis, Firehose, SQS and S3 are encrypted at rest", encryption_at_rest),
    "pm500-s3-public-access-blocked": ("S3 buckets block all public access", public_access_blocked),
    "pm500-iam-no-wildcard-writes": ("IAM never allows write actions on Resource '*'", no_wildcard_writes),
    "pm500-iot-policy-thing-name": ("IoT policies are scoped by the thing-name policy variable",
                                    iot_policy_uses_thing_name),
    "pm500-rules-error-actions": ("IoT topic rules have an error action", rules_have_error_actions),
    "pm500-no-certificates": ("No device certificates in Pulumi state", no_certificates_in_state),
}


def validate_all(resources: Sequence[Resource]) -> dict[str, list[Violation]]:
    """Every policy's violations (empty lists: compliant)."""
    return {name: check(resources) for name, (_, check) in POLICIES.items()}
