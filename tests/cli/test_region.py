"""The AWS region comes from --region, AWS_REGION or AWS_DEFAULT_REGION (in that order), then the profile.

botocore (pinned) reads only AWS_DEFAULT_REGION; AWS_REGION is what AWS's own docs, the AWS CLI v2
and most SDKs use, and what a new user (and the demo's printed command) sets. moto keeps one registry
per region, so the region a command really used is visible: the stack exists only in eu-west-1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from tests.cli.conftest import STACK, Stack

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def list_devices(stack: Stack, *extra: str) -> list[dict[str, object]] | str:
    result = runner.invoke(cli.app, ["list-devices", "--stack", STACK, "--outputs-file",
                                     str(stack.outputs_file), "--json", *extra])
    if result.exit_code != 0:
        return result.stderr
    return list(json.loads(result.stdout))


def in_aws(devices: list[dict[str, object]] | str) -> list[bool]:
    assert isinstance(devices, list), devices
    return [bool(d["inAws"]) for d in devices]


def test_aws_region_alone_is_enough(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert in_aws(list_devices(stack)) == [True, True, True]


def test_aws_region_wins_over_aws_default_region(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert in_aws(list_devices(stack)) == [True, True, True]


def test_aws_default_region_alone_still_works(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert in_aws(list_devices(stack)) == [True, True, True]


def test_region_option_wins_over_the_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert in_aws(list_devices(stack, "--region", "eu-west-1")) == [True, True, True]
    assert in_aws(list_devices(stack)) == [False, False, False]  # us-east-1 holds no thing


def test_no_region_anywhere_names_every_way_to_set_one(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    message = list_devices(stack)
    assert isinstance(message, str)
    assert message.strip() == ("error: no AWS region set: pass --region, or set AWS_REGION (or "
                               "AWS_DEFAULT_REGION), or a region in your AWS profile")


def test_help_says_which_variables_set_the_region() -> None:
    result = runner.invoke(cli.app, ["list-devices", "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert "AWS_REGION" in result.stdout and "AWS_DEFAULT_REGION" in result.stdout


def test_subprocess_with_only_aws_region(stack: Stack, aws_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_DEFAULT_REGION"}
    env["AWS_REGION"] = "eu-west-1"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "list-devices", "--stack", STACK,
         "--outputs-file", str(stack.outputs_file), "--json"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert [d["inAws"] for d in json.loads(done.stdout)] == [True, True, True]


def test_the_commands_the_demo_prints_run_as_printed(stack: Stack, aws_env: dict[str, str]) -> None:
    """Each printed command, run by a shell that has only PATH and HOME (a new user's terminal)."""
    import shutil

    from demo.inspect import aws_commands

    outputs_file = stack.tmp / "outputs.json"
    outputs_file.write_text(stack.outputs_file.read_text().replace(f'"{STACK}"', '"local"', 1))
    home = stack.tmp / "home"
    home.mkdir()
    bare = {"PATH": os.environ["PATH"], "HOME": str(home)}
    for what, command in aws_commands(aws_env["AWS_ENDPOINT_URL"], aws_env, outputs_file):
        done = subprocess.run([shutil.which("bash") or "bash", "-c", command], env=bare, cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{what}: {command}\n{done.stderr}"
        assert "local:plant-a:edge-01" in done.stdout or "test:plant-a:edge-01" in done.stdout, done.stdout
