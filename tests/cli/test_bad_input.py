"""Bad input and hostile conditions: one clear line on stderr, exit 1, nothing changed in AWS or on disk."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from devices import aws
from infra import outputs as names
from tests.cli.conftest import STACK, Hook, Stack, fail_with, make_outputs, throttled_responses

pytestmark = pytest.mark.usefixtures("csr_signing")
runner = CliRunner()


def fails(stack: Stack, args: list[str], expected: str) -> str:
    """Run the CLI, expect exit 1 with one line on stderr containing `expected`, and no change anywhere."""
    bundles_before = sorted(p.name for p in stack.tmp.rglob("*"))
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert stack.certificates() == []
    assert stack.attachments() == ([], [])
    assert sorted(p.name for p in stack.tmp.rglob("*")) == bundles_before
    return lines[0]


def with_args(target: Stack, **replace: str) -> list[str]:
    args = target.args("provision-device")
    for option, value in replace.items():
        args[args.index(f"--{option.replace('_', '-')}") + 1] = value
    return args


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("site", "plant-z", "--site 'plant-z': stack 'test' has no such site (sites: plant-a, plant-b)"),
        (
            "collector",
            "edge-09",
            "--collector 'edge-09': site 'plant-a' of stack 'test' has no such collector",
        ),
        ("site", "Plant_A", "--site 'Plant_A': expected 1-32 characters"),
        ("collector", "edge:01", "--collector 'edge:01': expected"),
        ("stack", "prod", "these are the outputs of stack 'test', not --stack 'prod'"),
        ("stack", "../etc", "--stack '../etc': expected"),
    ],
)
def test_unknown_or_invalid_names(stack: Stack, option: str, value: str, expected: str) -> None:
    fails(stack, with_args(stack, **{option: value}), expected)


def test_outputs_file_missing(stack: Stack) -> None:
    fails(stack, with_args(stack, outputs_file=str(stack.tmp / "nope.json")), "nope.json: cannot read it")


def test_outputs_file_not_json(stack: Stack) -> None:
    bad = stack.tmp / "bad.json"
    bad.write_text("{not json")
    fails(stack, with_args(stack, outputs_file=str(bad)), "bad.json: not valid JSON (line 1")


def test_outputs_file_wrong_shape_names_the_field(stack: Stack) -> None:
    outputs = make_outputs()
    del outputs[names.COLLECTOR_POLICY_NAME]
    bad = stack.tmp / "shape.json"
    bad.write_text(json.dumps(outputs))
    fails(stack, with_args(stack, outputs_file=str(bad)), "shape.json: collectorPolicyName: required field")


def test_without_pulumi_cli_suggests_outputs_file(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(stack.tmp))
    args = stack.args("provision-device")
    i = args.index("--outputs-file")
    del args[i : i + 2]
    fails(stack, args, "the Pulumi CLI is not installed here; pass --outputs-file FILE")


def test_existing_directory_not_ours_is_refused(stack: Stack) -> None:
    foreign = stack.bundle()
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("plant documentation")
    fails(stack, stack.args("provision-device"), "exists and is not a pm500 bundle")
    assert (foreign / "notes.txt").read_text() == "plant documentation"


def test_bundle_of_another_device_is_refused(stack: Stack) -> None:
    other = runner.invoke(cli.app, stack.args("provision-device", "plant-b", "edge-01"))
    assert other.exit_code == 0, other.output
    certs = stack.certificates()
    args = stack.args("provision-device")
    args[args.index("--out") + 1] = str(stack.bundle("plant-b", "edge-01"))
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1
    assert "holds the bundle of test:plant-b:edge-01, not test:plant-a:edge-01" in result.stderr
    assert stack.certificates() == certs


def test_thing_missing_in_aws(stack: Stack) -> None:
    stack.iot.delete_thing(thingName=f"{STACK}:plant-a:edge-01")
    fails(stack, stack.args("provision-device"), "thing test:plant-a:edge-01 does not exist in AWS IoT")


def test_thing_name_too_long_for_a_certificate(stack: Stack) -> None:
    site, collector = "s" * 32, "c" * 32
    outputs = make_outputs(sites={site: [collector]})
    long_file = stack.tmp / "long.json"
    long_file.write_text(json.dumps(outputs))
    args = stack.args("provision-device", site, collector)
    args[args.index("--outputs-file") + 1] = str(long_file)
    fails(stack, args, "the certificate CN and holds at most 64")


def test_missing_credentials(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fails(stack, stack.args("provision-device"), "no AWS credentials found")


def test_missing_region(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    fails(stack, stack.args("provision-device"), "no AWS region set: pass --region, or set AWS_REGION (or "
          "AWS_DEFAULT_REGION), or a region in your AWS profile")


@pytest.mark.parametrize("operation", ["ListThingPrincipals", "CreateCertificateFromCsr", "AttachPolicy"])
def test_access_denied(stack: Stack, inject: Callable[[str, Hook], None], operation: str) -> None:
    inject(f"before-call.iot.{operation}", fail_with("AccessDeniedException", operation))
    fails(stack, stack.args("provision-device"), f"AWS denied {operation}: injected AccessDeniedException")


def test_throttling_is_retried_then_succeeds(stack: Stack, inject: Callable[[str, Hook], None]) -> None:
    handler, calls = throttled_responses(2)
    inject("before-send.iot.AttachThingPrincipal", handler)
    result = runner.invoke(cli.app, stack.args("provision-device"))
    assert result.exit_code == 0, result.output
    assert len(calls) == 3  # two throttled answers, then the real call
    assert len(stack.attachments()[0]) == 1


def test_persistent_throttling_fails_cleanly(
    stack: Stack, inject: Callable[[str, Hook], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 2)  # keep the test's backoff short
    handler, calls = throttled_responses(1000)
    inject("before-send.iot.AttachPolicy", handler)
    fails(stack, stack.args("provision-device"), "AWS IoT throttled AttachPolicy after 2 attempts")
    assert len(calls) == 2


def test_unreachable_endpoint(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(aws, "MAX_ATTEMPTS", 1)
    result = runner.invoke(cli.app, stack.args("provision-device"))
    assert result.exit_code == 1
    assert "cannot reach AWS IoT" in result.stderr
    assert not stack.bundle().exists()


def test_ca_options_must_go_together(stack: Stack, tmp_path: Path) -> None:
    fails(
        stack,
        [*stack.args("provision-device"), "--ca-cert", str(tmp_path / "ca.pem")],
        "--ca-cert and --ca-key go together",
    )


def test_bad_endpoint_is_refused_before_aws(stack: Stack) -> None:
    fails(
        stack,
        [*stack.args("provision-device"), "--endpoint", "not a host!"],
        "bundle config: mqtt.endpoint: expected host or IP",
    )
