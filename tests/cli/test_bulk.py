"""provision-site: concurrent bulk provisioning, per-device rollback, summary, resumable re-runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cli
from collector.config import CERT_FILE, KEY_FILE
from commands import sites as sites_commands
from devices import aws
from devices.crypto import cert_matches_key
from infra.iam import collector_iot_policy
from sandbox.aws_seed import seed_stack
from tests.cli.conftest import STACK, Hook, Stack, fail_with, make_outputs, moto_iot_client

pytestmark = pytest.mark.usefixtures("csr_signing")
runner = CliRunner()
FLEET = {"plant-a": [f"edge-{i:02d}" for i in range(12)], "plant-b": ["edge-00", "edge-01", "edge-02"]}


@pytest.fixture
def fleet(aws_env: dict[str, str], tmp_path: Path) -> Stack:
    outputs = make_outputs(sites=FLEET)
    iot = moto_iot_client()
    seed_stack(iot, outputs, collector_iot_policy("aws", "eu-west-1", "123456789012"))
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    return Stack(outputs, outputs_file, iot, tmp_path)


def bulk(fleet: Stack, *extra: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(
        cli.app,
        [
            "provision-site",
            "--stack",
            STACK,
            "--outputs-file",
            str(fleet.outputs_file),
            "--out-root",
            str(fleet.tmp / "bundles"),
            "--workers",
            "4",
            "--json",
            *extra,
        ],
    )
    return result.exit_code, json.loads(result.stdout)


def bundle_dirs(fleet: Stack) -> set[str]:
    return {p.parent.name + "/" + p.name for p in (fleet.tmp / "bundles" / STACK).glob("*/*")}


def test_site_is_provisioned_concurrently_with_per_device_rollback_and_resume(
    fleet: Stack, inject: Callable[[str, Hook], None]
) -> None:
    broken = "test:plant-a:edge-05"
    inject(
        "before-call.iot.AttachThingPrincipal",
        fail_with("InternalFailure", "AttachThingPrincipal", when=lambda c: "edge-05" in c["url_path"]),
    )
    code, report = bulk(fleet, "--site", "plant-a")
    assert code == 1
    assert report["summary"] == {"provisioned": 11, "unchanged": 0, "failed": 1}
    [failed] = [d for d in report["devices"] if d["status"] == "failed"]
    assert failed["thingName"] == broken and "AttachThingPrincipal failed" in failed["detail"]
    assert len(fleet.certificates()) == 11  # the failed device's certificate was rolled back
    assert fleet.iot.list_thing_principals(thingName=broken)["principals"] == []
    assert bundle_dirs(fleet) == {f"plant-a/edge-{i:02d}" for i in range(12) if i != 5}
    for d in (fleet.tmp / "bundles" / STACK).glob("*/*"):
        assert cert_matches_key((d / CERT_FILE).read_bytes(), (d / KEY_FILE).read_bytes())

    code, report = bulk_without_hooks(fleet, "--site", "plant-a")  # the outage is over: resume
    assert code == 0
    assert report["summary"] == {"provisioned": 1, "unchanged": 11, "failed": 0}
    assert len(fleet.certificates()) == 12
    assert len(bundle_dirs(fleet)) == 12


def bulk_without_hooks(fleet: Stack, *extra: str) -> tuple[int, dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sites_commands, "iot_client", aws.iot_client)
        return bulk(fleet, *extra)


def test_match_selects_by_thing_name_glob(fleet: Stack) -> None:
    code, report = bulk(fleet, "--match", "test:*:edge-0[12]")
    assert code == 0
    assert sorted(d["thingName"] for d in report["devices"]) == [
        "test:plant-a:edge-01",
        "test:plant-a:edge-02",
        "test:plant-b:edge-01",
        "test:plant-b:edge-02",
    ]
    assert len(fleet.certificates()) == 4


def test_whole_stack_then_rerun_is_all_unchanged(fleet: Stack) -> None:
    code, report = bulk(fleet)
    assert code == 0 and report["summary"]["provisioned"] == 15
    code, report = bulk(fleet)
    assert code == 0 and report["summary"] == {"provisioned": 0, "unchanged": 15, "failed": 0}
    assert len(fleet.certificates()) == 15


def test_unknown_site_or_empty_match_changes_nothing(fleet: Stack) -> None:
    for extra, expected in (
        (["--site", "plant-z"], "--site 'plant-z': stack 'test' has no such site"),
        (["--match", "prod:*"], "--match 'prod:*': no collector of stack 'test' matches"),
    ):
        result = runner.invoke(
            cli.app,
            [
                "provision-site",
                "--stack",
                STACK,
                "--outputs-file",
                str(fleet.outputs_file),
                "--out-root",
                str(fleet.tmp / "b"),
                *extra,
            ],
        )
        assert result.exit_code == 1 and expected in result.stderr
    assert fleet.certificates() == [] and not (fleet.tmp / "b").exists()


def test_summary_table_for_operators(fleet: Stack) -> None:
    result = runner.invoke(
        cli.app,
        [
            "provision-site",
            "--stack",
            STACK,
            "--site",
            "plant-b",
            "--outputs-file",
            str(fleet.outputs_file),
            "--out-root",
            str(fleet.tmp / "bundles"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Summary" in result.stdout and "provisioned" in result.stdout and " 3 " in result.stdout
