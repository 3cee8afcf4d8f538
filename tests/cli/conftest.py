"""CLI test fixtures: a stack seeded into the shared moto server, failure injection into boto3.

The stack's outputs are built with `infra.outputs.collector_output` (the program's own builder) and
its IoT policy with `infra.iam.collector_iot_policy`, so the CLI reads the real outputs shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from commands import devices as devices_commands
from commands import sites as sites_commands
from devices import aws
from infra import outputs as names
from infra.iam import collector_iot_policy
from sandbox.aws_seed import EXAMPLE_ENDPOINT, example_outputs, moto_signs_csr_key, seed_stack

STACK = "test"
ENDPOINT = EXAMPLE_ENDPOINT
SITES = {"plant-a": ["edge-01", "edge-02"], "plant-b": ["edge-01"]}


def make_outputs(stack: str = STACK, sites: dict[str, list[str]] = SITES) -> dict[str, Any]:
    """Stack outputs as `pulumi stack output --json` prints them, plus an output the CLI must ignore."""
    return {**example_outputs(stack, sites), names.RULE_NAMES: {"kinesis": f"{stack}_ddata_kinesis"}}


@dataclass
class Stack:
    outputs: dict[str, Any]
    outputs_file: Path
    iot: Any
    tmp: Path
    ca_certificate_id: str | None = None  # set when a test registers a bring-your-own CA

    def bundle(self, site: str = "plant-a", collector: str = "edge-01") -> Path:
        return self.tmp / "bundles" / site / collector

    def args(self, command: str, site: str = "plant-a", collector: str = "edge-01", *extra: str) -> list[str]:
        """Arguments for a single-device command on `site`/`collector` of this stack."""
        writes_bundle = command not in ("revoke-device", "devices allow-replacement")
        out = ["--out", str(self.bundle(site, collector))] if writes_bundle else []
        return [
            *command.split(),
            "--stack",
            STACK,
            "--site",
            site,
            "--collector",
            collector,
            "--outputs-file",
            str(self.outputs_file),
            *out,
            *extra,
        ]

    def certificates(self) -> list[dict[str, Any]]:
        return list(self.iot.list_certificates()["certificates"])

    def attachments(self) -> tuple[list[str], list[str]]:
        """(thing principals of every thing, targets of the collector policy): what a rollback must undo."""
        existing = {t["thingName"] for t in self.iot.list_things()["things"]}
        things = [
            p
            for t in self.outputs[names.COLLECTORS]
            if t in existing
            for p in self.iot.list_thing_principals(thingName=t)["principals"]
        ]
        policy = self.iot.list_targets_for_policy(policyName=self.outputs[names.COLLECTOR_POLICY_NAME])[
            "targets"
        ]
        return things, policy


def moto_iot_client() -> Any:
    return boto3.client("iot", config=Config(retries={"mode": "standard", "max_attempts": 10}))


@pytest.fixture
def stack(aws_env: dict[str, str], tmp_path: Path) -> Stack:
    """The test stack's things, groups and policy in a freshly reset moto; its outputs saved to a file."""
    outputs = make_outputs()
    iot = moto_iot_client()
    seed_stack(iot, outputs, collector_iot_policy("aws", "eu-west-1", "123456789012"))
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    return Stack(outputs, outputs_file, iot, tmp_path)


@pytest.fixture
def csr_signing() -> Iterator[None]:
    """moto's CreateCertificateFromCsr certifies the CSR's key (as AWS does) for this test."""
    with moto_signs_csr_key():
        yield


Hook = Callable[..., Any]


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Hook], None]:
    """`inject(event, handler)`: register a botocore event handler on every IoT client the CLI creates.

    e.g. `inject("before-call.iot.AttachPolicy", fail_with("AccessDeniedException"))`.
    """
    hooks: list[tuple[str, Hook]] = []
    real = aws.iot_client

    def hooked(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        for event, handler in hooks:
            client.meta.events.register(event, handler)
        return client

    for group in (devices_commands, sites_commands):  # the command modules that create IoT clients
        monkeypatch.setattr(group, "iot_client", hooked)
    return lambda event, handler: hooks.append((event, handler))


def fail_with(
    code: str,
    operation: str = "Injected",
    when: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> Hook:
    """A before-call/after-call handler raising ClientError `code` (for calls whose params match `when`)."""

    def handler(params: Any = None, **kwargs: Any) -> None:
        body = (params or {}).get("body", {}) if isinstance(params, dict) else {}
        url_path = (params or {}).get("url_path", "") if isinstance(params, dict) else ""
        if when({"body": body, "url_path": url_path, **kwargs}):
            raise ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)

    return handler


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def throttled_responses(count: int) -> tuple[Hook, list[int]]:
    """A before-send handler answering the first `count` sends with HTTP 429 ThrottlingException
    (the wire response AWS gives), so botocore's retry logic really runs; also returns the call log."""
    calls: list[int] = []

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        calls.append(1)
        if len(calls) > count:
            return None
        headers = {"x-amzn-ErrorType": "ThrottlingException", "Content-Type": "application/json"}
        return AWSResponse(request.url, 429, headers, _Raw(b'{"message": "Rate exceeded"}'))

    return handler, calls
