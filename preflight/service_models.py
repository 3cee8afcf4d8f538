"""Check API requests against AWS's published service models (the ones botocore ships), as AWS would.

botocore's own `ParamValidator` checks types, required members and minimums; AWS also enforces the
models' maximum lengths/values, enums and patterns server-side, which botocore leaves to the service.
`shape_problems` walks any shape for those, generic over structures, lists, maps and scalars. Patterns
are Java regular expressions (`\\p{L}`...): they are compiled with the `regex` module and must match
the whole value.

Documents carried as strings (policies, templates) also get the rules of the service that parses
them: valid JSON, and the size quotas the models do not carry (each with its source in
`DOCUMENT_RULES`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import botocore.session
import regex
from botocore.model import ListShape, MapShape, OperationModel, Shape, StringShape, StructureShape
from botocore.validate import ParamValidator

from preflight.provider_requests import ApiRequest


@dataclass(frozen=True)
class DocumentRule:
    max_chars: int | None
    count_whitespace: bool
    source: str


# Size rules the service models do not carry. IAM counts no whitespace; IoT policies neither.
DOCUMENT_RULES: dict[str, DocumentRule] = {
    "json": DocumentRule(None, True, "the API parses the member as JSON"),
    "iam-inline": DocumentRule(10_240, False, "IAM quotas: inline policies of one role, 10,240 characters in "
                               "total, whitespace not counted (IAM User Guide, IAM and AWS STS quotas)"),
    "iam-managed": DocumentRule(6_144, False, "IAM quotas: managed policy length 6,144 characters, "
                                "whitespace not counted (IAM User Guide, IAM and AWS STS quotas)"),
    "iam-trust": DocumentRule(2_048, False, "IAM quotas: role trust policy length 2,048 characters by "
                              "default (IAM User Guide, IAM and AWS STS quotas)"),
    "iot-policy": DocumentRule(2_048, False, "AWS IoT Core quotas: policy document size 2,048 characters, "
                               "whitespace excluded (AWS General Reference, AWS IoT Core endpoints and "
                               "quotas)"),
    "s3-bucket-policy": DocumentRule(20_480, True, "S3 bucket policies are limited to 20 KB (Amazon S3 User "
                                     "Guide, Bucket policies)"),
    "s3-bucket-name": DocumentRule(None, True, "Amazon S3 User Guide, General purpose bucket naming rules"),
}
# 3-63 characters, lowercase letters, digits, dots and hyphens; begins and ends with a letter or digit.
S3_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@functools.cache
def _operation(service: str, operation: str) -> OperationModel:
    return botocore.session.get_session().get_service_model(service).operation_model(operation)


@functools.cache
def _pattern(expression: str) -> regex.Pattern[str] | None:
    try:
        return regex.compile(expression)
    except regex.error:  # a Java construct `regex` lacks (surrogate ranges): not checkable here
        return None


def shape_problems(shape: Shape, value: Any, path: str) -> list[str]:
    """Max lengths/values, enums and patterns of `shape` and everything nested in it."""
    problems: list[str] = []
    meta = shape.metadata
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                problems += shape_problems(member, value[name], f"{path}.{name}")
    elif isinstance(shape, ListShape) and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} items, at most {meta['max']} allowed")
        for i, item in enumerate(value):
            problems += shape_problems(shape.member, item, f"{path}[{i}]")
    elif isinstance(shape, MapShape) and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"{path}: {len(value)} entries, at most {meta['max']} allowed")
        for key, item in value.items():
            problems += shape_problems(shape.key, key, f"{path} key {key!r}")
            problems += shape_problems(shape.value, item, f"{path}[{key!r}]")
    elif isinstance(shape, StringShape) and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            shown = repr(value[:80])
            problems.append(f"{path}: {len(value)} characters, at most {meta['max']} allowed ({shown})")
        if shape.enum and value not in shape.enum:
            problems.append(f"{path}: {value!r} is not one of {', '.join(shape.enum)}")
        compiled = _pattern(meta["pattern"]) if "pattern" in meta else None
        if compiled is not None and not compiled.fullmatch(value):
            problems.append(f"{path}: {value!r} does not match the pattern {meta['pattern']}")
    elif shape.type_name in ("integer", "long") and isinstance(value, int) and value > meta.get("max", value):
        problems.append(f"{path}: {value}, at most {meta['max']} allowed")
    return problems


def document_problems(kind: str, text: Any, path: str) -> list[str]:
    rule = DOCUMENT_RULES[kind]
    if kind == "s3-bucket-name":
        ok = isinstance(text, str) and S3_BUCKET_NAME.fullmatch(text) and ".." not in text
        return [] if ok else [f"{path}: {text!r} breaks the bucket naming rules ({rule.source})"]
    if not isinstance(text, str):
        return [f"{path}: expected a JSON document as a string"]
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return [f"{path}: not valid JSON ({e.msg}); {rule.source}"]
    counted = len(text) if rule.count_whitespace else len(re.sub(r"\s", "", text))
    if rule.max_chars is not None and counted > rule.max_chars:
        return [f"{path}: {counted} characters, at most {rule.max_chars} ({rule.source})"]
    return []


def request_problems(request: ApiRequest) -> list[str]:
    """Everything AWS would reject in `request`, one line each, prefixed by resource and operation."""
    op = _operation(request.service, request.operation)
    shape = op.input_shape
    report = ParamValidator().validate(request.params, shape)
    problems = report.generate_report().splitlines() if report.has_errors() else []
    problems = [p.strip() for p in problems]
    problems += shape_problems(shape, request.params, op.name)
    for member, kind in request.documents.items():
        problems += document_problems(kind, request.params.get(member), f"{op.name}.{member}")
    return [f"{request.describe()}: {p}" for p in problems]


def plan_problems(requests: Iterable[ApiRequest]) -> list[str]:
    return [p for r in requests for p in request_problems(r)]
