"""`cli.py hosts provision` against the moto server: a Sparkplug Host Application's certificate, policy
and bundle, minted like a collector's; refusals and rollback."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from typer.testing import CliRunner

import cli
from collector.config import CA_FILE, CERT_FILE, KEY_FILE
from commands import hosts as hosts_commands
from devices import aws
from devices.crypto import amazon_root_ca_pem, cert_matches_key
from infra.iam import collector_iot_policy
from sandbox.aws_seed import example_outputs, seed_stack
from tests.cli.conftest import ENDPOINT, SITES, STACK, fail_with, moto_iot_client

pytestmark = pytest.mark.usefixtures("csr_signing", "aws_env")
runner = CliRunner()
HOST = "scada-primary"


def _stack(tmp_path: Path, host: str | None = HOST) -> tuple[Any, Path]:
    outputs = example_outputs(STACK, SITES, primary_host_id=host)
    iot = moto_iot_client()
    seed_stack(iot, outputs, collector_iot_policy("aws", "eu-west-1", "123456789012"))
    outputs_file = tmp_path / "outputs.json"
    outputs_file.write_text(json.dumps(outputs))
    return iot, outputs_file


def _provision(outputs_file: Path, out: Path, host: str = HOST) -> Any:
    return runner.invoke(cli.app, ["hosts", "provision", "--stack", STACK, "--host-id", host,
                                   "--outputs-file", str(outputs_file), "--out", str(out), "--json"])


def test_a_host_gets_its_certificate_policy_and_bundle(tmp_path: Path) -> None:
    iot, outputs_file = _stack(tmp_path)
    bundle = tmp_path / "host"
    result = _provision(outputs_file, bundle)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["hostId"], data["policyName"]) == (HOST, f"{STACK}-host-{HOST}")

    assert stat.S_IMODE((bundle / KEY_FILE).stat().st_mode) == 0o600
    assert cert_matches_key((bundle / CERT_FILE).read_bytes(), (bundle / KEY_FILE).read_bytes())
    assert (bundle / CA_FILE).read_bytes() == amazon_root_ca_pem()
    cert = x509.load_pem_x509_certificate((bundle / CERT_FILE).read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={HOST}"

    arn = iot.describe_certificate(certificateId=data["certificateId"])["certificateDescription"]
    assert arn["status"] == "ACTIVE"
    attached = iot.list_attached_policies(target=arn["certificateArn"])["policies"]
    assert [p["policyName"] for p in attached] == [f"{STACK}-host-{HOST}"]
    # A host is no thing: no thing principal anywhere.
    for thing in iot.list_things()["things"]:
        assert iot.list_thing_principals(thingName=thing["thingName"])["principals"] == []

    settings = yaml.safe_load((bundle / "host.yaml").read_text())
    assert settings["host_id"] == HOST
    assert settings["mqtt"] == {"endpoint": ENDPOINT, "port": 8883, "client_id": HOST, "ca_file": CA_FILE,
                                "cert_file": CERT_FILE, "key_file": KEY_FILE}
    assert settings["sparkplug"]["state_topic"] == f"spBv1.0/STATE/{HOST}"
    assert settings["sparkplug"]["subscribe"] == ["spBv1.0/pm500/#"]
    assert settings["sparkplug"]["edge_nodes"] == f"{STACK}:*"


def test_the_collectors_bundles_name_the_host(tmp_path: Path) -> None:
    _, outputs_file = _stack(tmp_path)
    out = tmp_path / "edge"
    result = runner.invoke(cli.app, ["devices", "provision", "--stack", STACK, "--site", "plant-a",
                                     "--collector", "edge-01", "--outputs-file", str(outputs_file),
                                     "--out", str(out)])
    assert result.exit_code == 0, result.output
    mqtt = yaml.safe_load((out / "config.yaml").read_text())["mqtt"]
    assert (mqtt["encoding"], mqtt["primary_host_id"]) == ("sparkplug-b", HOST)


def test_an_unknown_host_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    iot, outputs_file = _stack(tmp_path)
    result = _provision(outputs_file, tmp_path / "host", host="other-host")
    assert result.exit_code == 1
    assert "'other-host'" in result.output and f"hosts: {HOST}" in result.output
    assert iot.list_certificates()["certificates"] == []


def test_a_stack_without_hosts_says_none(tmp_path: Path) -> None:
    _, outputs_file = _stack(tmp_path, host=None)
    result = _provision(outputs_file, tmp_path / "host")
    assert result.exit_code == 1 and "(hosts: none)" in result.output


def test_a_failed_attach_rolls_the_certificate_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    iot, outputs_file = _stack(tmp_path)
    real = aws.iot_client

    def failing(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        client.meta.events.register("before-call.iot.AttachPolicy", fail_with("AccessDeniedException"))
        return client

    monkeypatch.setattr(hosts_commands, "iot_client", failing)
    result = _provision(outputs_file, tmp_path / "host")
    assert result.exit_code == 1 and "AccessDeniedException" in result.output
    assert iot.list_certificates()["certificates"] == []
    assert not (tmp_path / "host" / KEY_FILE).exists()


def test_an_existing_bundle_is_not_overwritten(tmp_path: Path) -> None:
    iot, outputs_file = _stack(tmp_path)
    bundle = tmp_path / "host"
    assert _provision(outputs_file, bundle).exit_code == 0
    key = (bundle / KEY_FILE).read_bytes()
    again = _provision(outputs_file, bundle)
    assert again.exit_code == 1 and "already has a bundle" in again.output
    assert (bundle / KEY_FILE).read_bytes() == key
    assert len(iot.list_certificates()["certificates"]) == 1


def test_help_files_the_stack_and_host_under_which_host_application() -> None:
    result = runner.invoke(cli.app, ["hosts", "provision", "--help"], env={"COLUMNS": "80", "TERM": "dumb"})
    assert result.exit_code == 0
    assert "Which collector" not in result.output and "bundles/STACK/hosts/HOST_ID" in result.output
    panel = result.output.split("Which host application")[1].split("╰")[0]
    assert all(option in panel for option in ("--stack", "--host-id", "--outputs-file"))
