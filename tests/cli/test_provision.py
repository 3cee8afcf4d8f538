"""provision-device through typer's CliRunner against the moto server: the happy path and re-runs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

import cli
from collector.config import CA_FILE, CERT_FILE, KEY_FILE, load_config
from collector.topics import thing_name
from devices.bundle import MANIFEST_FILE
from devices.crypto import amazon_root_ca_pem, cert_matches_key
from tests.cli.conftest import ENDPOINT, STACK, Stack

pytestmark = pytest.mark.usefixtures("csr_signing")
runner = CliRunner()
THING = thing_name(STACK, "plant-a", "edge-01")


def provision(
    stack: Stack, *extra: str, site: str = "plant-a", collector: str = "edge-01"
) -> dict[str, object]:
    result = runner.invoke(cli.app, [*stack.args("provision-device", site, collector), "--json", *extra])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_provision_writes_a_bundle_the_collector_loads(stack: Stack) -> None:
    result = provision(stack)
    bundle = stack.bundle()
    assert result["status"] == "provisioned" and result["thingName"] == THING

    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    assert stat.S_IMODE((bundle / KEY_FILE).stat().st_mode) == 0o600
    assert cert_matches_key((bundle / CERT_FILE).read_bytes(), (bundle / KEY_FILE).read_bytes())
    assert (bundle / CA_FILE).read_bytes() == amazon_root_ca_pem()
    cert = x509.load_pem_x509_certificate((bundle / CERT_FILE).read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={THING}"

    config = load_config(bundle / "config.yaml")  # the collector's own loader, unchanged
    assert (config.thing_name, config.mqtt.endpoint, config.mqtt.port) == (THING, ENDPOINT, 8883)
    assert [m.asset for m in config.meters] == ["pm-0-0", "pm-0-1"]
    assert config.mqtt.key_file == bundle / KEY_FILE
    assert config.influx.url == "http://127.0.0.1:8086"

    cert_id = str(result["certificateId"])
    description = stack.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert description["status"] == "ACTIVE"
    arn = description["certificateArn"]
    assert stack.iot.list_thing_principals(thingName=THING)["principals"] == [arn]
    assert [p["policyName"] for p in stack.iot.list_attached_policies(target=arn)["policies"]] == [
        "test-collector"
    ]
    assert len(stack.certificates()) == 1


def test_key_material_is_never_printed(stack: Stack) -> None:
    result = runner.invoke(cli.app, stack.args("provision-device"))
    assert result.exit_code == 0, result.output
    key = (stack.bundle() / KEY_FILE).read_text()
    body = "".join(key.splitlines()[1:-1])
    assert "PRIVATE KEY" not in result.output and body[:40] not in result.output


def test_rerun_after_success_is_a_no_op(stack: Stack) -> None:
    first = provision(stack)
    key_before = (stack.bundle() / KEY_FILE).read_bytes()
    again = provision(stack)
    assert again["status"] == "unchanged" and again["certificateId"] == first["certificateId"]
    assert (stack.bundle() / KEY_FILE).read_bytes() == key_before
    assert len(stack.certificates()) == 1


def test_rotate_keeps_old_certificate_inactive_and_detached(stack: Stack) -> None:
    first = provision(stack, "--influx-database", "plant_a")
    rotated = provision(stack, "--rotate", "--key-type", "rsa-2048")
    old, new = str(first["certificateId"]), str(rotated["certificateId"])
    assert rotated["status"] == "rotated" and old != new and rotated["retired"] == "deactivated"
    assert stack.iot.describe_certificate(certificateId=old)["certificateDescription"]["status"] == "INACTIVE"
    new_arn = stack.iot.describe_certificate(certificateId=new)["certificateDescription"]["certificateArn"]
    assert stack.iot.list_thing_principals(thingName=THING)["principals"] == [new_arn]
    assert stack.iot.list_targets_for_policy(policyName="test-collector")["targets"] == [new_arn]
    bundle = stack.bundle()
    assert cert_matches_key((bundle / CERT_FILE).read_bytes(), (bundle / KEY_FILE).read_bytes())
    assert json.loads((bundle / MANIFEST_FILE).read_text())["certificate_id"] == new
    assert load_config(bundle / "config.yaml").influx.database == "plant_a"  # kept from the first bundle
    assert not list(bundle.parent.glob(".edge-01.*"))  # no staging or set-aside dirs left


def status(stack: Stack, certificate_id: object) -> str:
    description = stack.iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    return str(description["status"])


def test_force_revokes_the_old_certificate(stack: Stack) -> None:
    first = provision(stack)
    forced = provision(stack, "--force")
    assert forced["retired"] == "revoked" and first["certificateId"] != forced["certificateId"]
    assert status(stack, first["certificateId"]) == "REVOKED"  # kept: it can never be registered again
    assert {c["certificateId"]: c["status"] for c in stack.certificates()} == {
        first["certificateId"]: "REVOKED", forced["certificateId"]: "ACTIVE"}
    arn = stack.iot.describe_certificate(certificateId=forced["certificateId"])["certificateDescription"][
        "certificateArn"]
    assert stack.iot.list_thing_principals(thingName=THING)["principals"] == [arn]


def test_force_revokes_an_unknown_certificate_on_the_thing(stack: Stack) -> None:
    """Issue 24: --force added a certificate and left the one another host holds ACTIVE on the thing."""
    unknown = stack.iot.create_keys_and_certificate(setAsActive=True)
    stack.iot.attach_thing_principal(thingName=THING, principal=unknown["certificateArn"])
    stack.iot.attach_policy(policyName="test-collector", target=unknown["certificateArn"])
    forced = provision(stack, "--force")
    assert forced["revokedCertificateIds"] == [unknown["certificateId"]]
    assert status(stack, unknown["certificateId"]) == "REVOKED"
    new_arn = stack.iot.describe_certificate(certificateId=forced["certificateId"])["certificateDescription"][
        "certificateArn"]
    assert stack.iot.list_thing_principals(thingName=THING)["principals"] == [new_arn]
    assert stack.iot.list_targets_for_policy(policyName="test-collector")["targets"] == [new_arn]


def test_rotate_cert_command_with_revoke_old(stack: Stack) -> None:
    first = provision(stack)
    result = runner.invoke(cli.app, [*stack.args("rotate-cert"), "--revoke-old", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["retiredCertificateId"] == first["certificateId"] and data["retired"] == "revoked"
    assert status(stack, first["certificateId"]) == "REVOKED"


def test_bundle_options_reach_the_config(stack: Stack, tmp_path: Path) -> None:
    password_file = tmp_path / "influx-password"
    password_file.write_text("s3cret\n")
    provision(
        stack,
        "--endpoint",
        "broker.plant-a.example",
        "--mqtt-port",
        "18883",
        "--influx-url",
        "http://influx.plant-a.example:8086",
        "--influx-username",
        "pm500",
        "--influx-password-file",
        str(password_file),
    )
    config = load_config(stack.bundle() / "config.yaml")
    assert (config.mqtt.endpoint, config.mqtt.port) == ("broker.plant-a.example", 18883)
    assert config.influx.username == "pm500" and config.influx.password is not None
    assert config.influx.password.get_secret_value() == "s3cret"
    assert stat.S_IMODE((stack.bundle() / "config.yaml").stat().st_mode) == 0o600



def test_the_stacks_encoding_reaches_the_bundle(stack: Stack) -> None:
    """`encoding` of a collector in the stack outputs becomes the bundle's `mqtt.encoding`."""
    provision(stack)  # outputs of a stack that never set it: json, the default
    assert load_config(stack.bundle() / "config.yaml").mqtt.encoding == "json"
    outputs = json.loads(stack.outputs_file.read_text())
    outputs["collectors"][THING]["encoding"] = "sparkplug-b"
    stack.outputs_file.write_text(json.dumps(outputs))
    provision(stack, "--force")
    assert load_config(stack.bundle() / "config.yaml").mqtt.encoding == "sparkplug-b"


def bundle_password(stack: Stack) -> str | None:
    password = load_config(stack.bundle() / "config.yaml").influx.password
    return None if password is None else password.get_secret_value()


def test_a_password_argument_is_refused_before_anything_happens(stack: Stack) -> None:
    """Issue 24: `--influx-password s3cret` put the password in `ps` and the shell history."""
    result = runner.invoke(cli.app, [*stack.args("provision-device"), "--influx-password", "s3cret"])
    assert result.exit_code == 1
    assert ("--influx-password: a password on the command line is visible in `ps` and kept in the shell "
            "history; use --influx-password-file FILE, --ask-influx-password or $PM500_INFLUX_PASSWORD"
            ) in " ".join(result.stderr.split())
    assert stack.certificates() == [] and not stack.bundle().exists()


def test_the_password_from_a_prompt_is_not_echoed(stack: Stack) -> None:
    result = runner.invoke(cli.app, [*stack.args("provision-device"), "--ask-influx-password"],
                           input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and bundle_password(stack) == "s3cret"


def test_the_password_from_the_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PM500_INFLUX_PASSWORD", "from-env")
    provision(stack)
    assert bundle_password(stack) == "from-env"


@pytest.mark.parametrize(("content", "message"), [
    ("", "its first line is empty (the password)"),
    (None, "cannot read it"),
])
def test_a_bad_password_file_is_one_clear_line(stack: Stack, tmp_path: Path, content: str | None,
                                               message: str) -> None:
    path = tmp_path / "influx-password"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(cli.app, [*stack.args("provision-device"), "--influx-password-file", str(path)])
    assert result.exit_code == 1 and f"--influx-password-file {path}: {message}" in result.stderr
    assert stack.certificates() == []
