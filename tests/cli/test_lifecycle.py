"""list-devices and revoke-device against moto."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

import cli
from collector.config import CERT_FILE
from collector.topics import thing_name
from sandbox.ca import DevCA
from tests.cli.conftest import STACK, Stack

pytestmark = pytest.mark.usefixtures("csr_signing")
runner = CliRunner()
EDGE_01 = thing_name(STACK, "plant-a", "edge-01")


def provision(stack: Stack, site: str = "plant-a", collector: str = "edge-01") -> str:
    result = runner.invoke(cli.app, [*stack.args("provision-device", site, collector), "--json"])
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["certificateId"])


def list_json(stack: Stack, *extra: str) -> dict[str, dict[str, object]]:
    result = runner.invoke(
        cli.app,
        ["list-devices", "--stack", STACK, "--outputs-file", str(stack.outputs_file), "--json", *extra],
    )
    assert result.exit_code == 0, result.output
    return {d["thingName"]: d for d in json.loads(result.stdout)}


def test_list_devices_shows_certificates_status_expiry_and_policies(stack: Stack) -> None:
    cert_id = provision(stack)
    stack.iot.delete_thing(thingName=thing_name(STACK, "plant-b", "edge-01"))
    devices = list_json(stack)
    assert set(devices) == set(stack.outputs["collectors"])
    [cert] = devices[EDGE_01]["certificates"]  # type: ignore[misc]
    assert cert["certificateId"] == cert_id and cert["status"] == "ACTIVE"
    assert cert["policies"] == ["test-collector"]
    assert dt.datetime.fromisoformat(cert["notAfter"]) > dt.datetime.now(dt.UTC)
    assert devices[thing_name(STACK, "plant-a", "edge-02")]["certificates"] == []
    assert devices[thing_name(STACK, "plant-b", "edge-01")]["inAws"] is False


def test_list_devices_table_and_site_filter(stack: Stack) -> None:
    provision(stack)
    assert set(list_json(stack, "--site", "plant-b")) == {thing_name(STACK, "plant-b", "edge-01")}
    result = runner.invoke(
        cli.app, ["list-devices", "--stack", STACK, "--outputs-file", str(stack.outputs_file)]
    )
    assert result.exit_code == 0
    assert (
        "ACTIVE" in result.stdout and "not provisioned" in result.stdout and "test-collector" in result.stdout
    )


def test_revoke_device_leaves_its_certificates_revoked_and_keeps_the_thing(stack: Stack) -> None:
    first = provision(stack)
    runner.invoke(cli.app, [*stack.args("provision-device"), "--rotate"])
    assert len(stack.certificates()) == 2  # one ACTIVE, one INACTIVE after rotation
    result = runner.invoke(cli.app, [*stack.args("revoke-device"), "--yes", "--json"])
    assert result.exit_code == 0, result.output
    [revoked] = json.loads(result.stdout)["revoked"]  # only the attached one was still on the thing
    assert {c["certificateId"]: c["status"] for c in stack.certificates()} == {
        first: "INACTIVE", revoked: "REVOKED"}
    assert stack.attachments() == ([], [])
    assert stack.iot.describe_thing(thingName=EDGE_01)["thingName"] == EDGE_01


def test_revoke_single_certificate_id(stack: Stack) -> None:
    cert_id = provision(stack)
    other = provision(stack, "plant-b", "edge-01")
    wrong = runner.invoke(cli.app, [*stack.args("revoke-device"), "--yes", "--certificate-id", other])
    assert wrong.exit_code == 1 and "not attached to test:plant-a:edge-01" in wrong.stderr
    result = runner.invoke(cli.app, [*stack.args("revoke-device"), "--yes", "--certificate-id", cert_id])
    assert result.exit_code == 0, result.output
    assert {c["certificateId"]: c["status"] for c in stack.certificates()} == {cert_id: "REVOKED",
                                                                              other: "ACTIVE"}


def test_a_revoked_ca_signed_certificate_cannot_be_registered_again(stack: Stack, dev_ca: DevCA) -> None:
    """Issue 24: revoke-device deleted the certificate, so one signed by the operator's CA (whose key a
    thief may hold) could be registered again. Kept REVOKED, AWS IoT refuses to register it twice."""
    stack.iot.register_ca_certificate(caCertificate=dev_ca.cert_pem.decode(), setAsActive=True)
    ca = ["--ca-cert", str(dev_ca.cert_path), "--ca-key", str(dev_ca.key_path)]
    result = runner.invoke(cli.app, [*stack.args("provision-device"), *ca, "--json"])
    assert result.exit_code == 0, result.output
    cert_id = json.loads(result.stdout)["certificateId"]
    pem = (stack.bundle() / CERT_FILE).read_text()
    assert runner.invoke(cli.app, [*stack.args("revoke-device"), "--yes"]).exit_code == 0
    description = stack.iot.describe_certificate(certificateId=cert_id)["certificateDescription"]
    assert description["status"] == "REVOKED"
    with pytest.raises(ClientError, match="ResourceAlreadyExists"):
        stack.iot.register_certificate(certificatePem=pem, caCertificatePem=dev_ca.cert_pem.decode(),
                                       status="ACTIVE")


def test_revoke_needs_confirmation(stack: Stack) -> None:
    provision(stack)
    result = runner.invoke(cli.app, stack.args("revoke-device"), input="n\n")
    assert result.exit_code == 1 and "not confirmed; nothing changed" in result.stderr
    assert len(stack.certificates()) == 1


def test_reprovision_after_revoke_needs_force(stack: Stack) -> None:
    provision(stack)
    assert runner.invoke(cli.app, [*stack.args("revoke-device"), "--yes"]).exit_code == 0
    again = runner.invoke(cli.app, stack.args("provision-device"))
    assert again.exit_code == 1 and "re-run with --force" in again.stderr
    forced = runner.invoke(cli.app, [*stack.args("provision-device"), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert sorted(c["status"] for c in stack.certificates()) == ["ACTIVE", "REVOKED"]


def test_certificate_on_thing_without_local_bundle_is_not_duplicated(stack: Stack) -> None:
    """Another host already provisioned this collector: refuse, unless --force."""
    provision(stack)
    elsewhere = stack.args("provision-device")
    elsewhere[elsewhere.index("--out") + 1] = str(stack.tmp / "other-host")
    result = runner.invoke(cli.app, elsewhere)
    assert result.exit_code == 1 and "already has 1 certificate(s) in AWS IoT" in result.stderr
    assert len(stack.certificates()) == 1 and not (stack.tmp / "other-host").exists()


def test_list_devices_makes_one_aws_call_per_certificate_not_two(stack: Stack) -> None:
    """10,000 devices: status and expiry need DescribeCertificate per certificate; the policy check is
    one (paginated) ListTargetsForPolicy for the stack's policy, not ListAttachedPolicies per certificate."""
    from devices.lifecycle import list_devices
    from devices.outputs import load_outputs

    provision(stack, "plant-a", "edge-01")
    provision(stack, "plant-a", "edge-02")
    calls: list[str] = []
    stack.iot.meta.events.register("before-call.iot.*", lambda model, **_: calls.append(model.name))
    devices = list_devices(stack.iot, load_outputs(STACK, stack.outputs_file), [], workers=1)
    assert sorted(calls) == sorted(
        ["ListTargetsForPolicy"] + ["ListThingPrincipals"] * 3 + ["DescribeCertificate"] * 2
    )
    policies = {d.thing_name: [c.policies for c in d.certificates] for d in devices}
    assert policies[EDGE_01] == [("test-collector",)]


def test_list_devices_table_shows_whole_thing_names_and_certificate_ids_at_80_columns(stack: Stack) -> None:
    cert_id = provision(stack)
    result = runner.invoke(
        cli.app, ["list-devices", "--stack", STACK, "--outputs-file", str(stack.outputs_file)],
        env={"COLUMNS": "80"},
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.stdout
    rows = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
    # A folded cell continues on the next lines of the same column: join each column back up.
    thing_column, certificate_column = ("".join(row[i].strip() for row in rows) for i in (0, 1))
    assert EDGE_01 in thing_column and cert_id in certificate_column


def test_allow_replacement_opens_a_window_the_provisioning_hook_reads(stack: Stack) -> None:
    """The thing attribute the stack's pre-provisioning hook reads (infra/provisioning_hook_code)."""
    from infra.provisioning_hook_code.handler import REPLACE_UNTIL_ATTRIBUTE

    before = dt.datetime.now(dt.UTC).timestamp()
    result = runner.invoke(cli.app, [*stack.args("devices allow-replacement"), "--minutes", "30", "--json"])
    assert result.exit_code == 0, result.output
    until = json.loads(result.stdout)["replaceCertificateUntil"]
    assert int(before) + 30 * 60 <= until <= before + 30 * 60 + 60
    attributes = stack.iot.describe_thing(thingName=EDGE_01)["attributes"]
    assert attributes[REPLACE_UNTIL_ATTRIBUTE] == str(until)
    assert attributes["site"] == "plant-a"  # merged, the stack's attributes kept


@pytest.mark.parametrize("minutes", ["0", "1441"])
def test_allow_replacement_refuses_a_window_out_of_bounds(stack: Stack, minutes: str) -> None:
    result = runner.invoke(cli.app, [*stack.args("devices allow-replacement"), "--minutes", minutes])
    assert result.exit_code == 1 and f"--minutes {minutes}: expected 1 to 1440" in result.stderr
    attributes = stack.iot.describe_thing(thingName=EDGE_01).get("attributes") or {}
    assert "replaceCertificateUntil" not in attributes
