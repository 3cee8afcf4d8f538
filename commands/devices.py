"""`cli.py devices ...`: one collector's identity in AWS IoT (certificate, bundle, revocation)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from commands.console import emit, operator_errors, out
from commands.help_format import command_group
from commands.options import (
    CERTIFICATE,
    AskInfluxPassword,
    CaCert,
    CaKey,
    CollectorId,
    Endpoint,
    InfluxDatabase,
    InfluxPasswordArgument,
    InfluxPasswordFile,
    InfluxUrl,
    InfluxUsername,
    JsonOut,
    KeyType,
    MqttPort,
    Out,
    OutputsFile,
    Region,
    RevokeOld,
    ServerCa,
    Site,
    Stack,
    ValidityDays,
    bundle_settings,
    influx_password,
    issue_options,
)
from devices.aws import iot_client
from devices.bundle import default_bundle_dir
from devices.errors import DeviceError
from devices.lifecycle import allow_replacement, list_devices, revoke_device
from devices.outputs import check_name, load_outputs
from devices.provision import BundleSettings, IssueOptions, Mode, provision_device

app, command = command_group(
    "One collector's identity in AWS IoT: provision it, rotate or revoke its certificate, list them."
)


def _single(
    stack: str,
    site: str,
    collector: str,
    outputs_file: Path | None,
    region: str | None,
    out_dir: Path | None,
    issue: IssueOptions,
    settings: BundleSettings,
    mode: Mode,
    revoke_old: bool,
) -> dict[str, Any]:
    check_name("--site", site)
    check_name("--collector", collector)
    outputs = load_outputs(stack, outputs_file)
    target = outputs.collector(site, collector)
    bundle_dir = out_dir or default_bundle_dir(Path("bundles"), stack, site, collector)
    outcome = provision_device(
        iot_client(region), outputs, target, bundle_dir, issue, settings, mode, revoke_old
    )
    return outcome.as_dict()


def _describe_outcome(result: dict[str, Any]) -> str:
    if result["status"] == "unchanged":
        return (
            f"{result['thingName']} is already provisioned (certificate {result['certificateId']} in "
            f"{result['bundleDir']}); nothing to do. Use --rotate or --force to re-issue."
        )
    text = (
        f"{result['thingName']}: certificate {result['certificateId']} active, "
        f"bundle written to {result['bundleDir']}"
    )
    if result["retiredCertificateId"]:
        text += f"; old certificate {result['retiredCertificateId']} {result['retired']}"
    if result["revokedCertificateIds"]:
        text += f"; revoked {', '.join(result['revokedCertificateIds'])} (held by no bundle here)"
    return text


@command("provision")
def provision_device_cmd(
    stack: Stack,
    site: Site,
    collector: CollectorId,
    out_dir: Out = None,
    key_type: KeyType = "ec-p256",
    outputs_file: OutputsFile = None,
    region: Region = None,
    ca_cert: CaCert = None,
    ca_key: CaKey = None,
    validity_days: ValidityDays = 3650,
    server_ca: ServerCa = None,
    endpoint: Endpoint = None,
    mqtt_port: MqttPort = None,
    influx_url: InfluxUrl = None,
    influx_database: InfluxDatabase = None,
    influx_username: InfluxUsername = None,
    influx_password_file: InfluxPasswordFile = None,
    ask_influx_password: AskInfluxPassword = False,
    influx_password_argument: InfluxPasswordArgument = None,
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate",
            help="Re-issue even if provisioned: new certificate first, old one set INACTIVE afterwards.",
            rich_help_panel=CERTIFICATE,
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Re-issue whatever the current state; every certificate the thing held is revoked.",
            rich_help_panel=CERTIFICATE,
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Create the collector's certificate and write its bundle (key, certificate, CA, config.yaml).

    The private key is generated on this machine and never leaves it: AWS IoT only receives a CSR.
    Safe to re-run: a provisioned collector is left as it is.
    """
    with operator_errors():
        mode: Mode = "force" if force else "rotate" if rotate else "create"
        result = _single(
            stack,
            site,
            collector,
            outputs_file,
            region,
            out_dir,
            issue_options(key_type, ca_cert, ca_key, validity_days),
            bundle_settings(
                server_ca, endpoint, mqtt_port, influx_url, influx_database, influx_username,
                influx_password(influx_password_file, ask_influx_password, influx_password_argument),
            ),
            mode,
            False,
        )
    emit(as_json, result, _describe_outcome(result))


@command("rotate-cert")
def rotate_cert_cmd(
    stack: Stack,
    site: Site,
    collector: CollectorId,
    out_dir: Out = None,
    key_type: KeyType = "ec-p256",
    outputs_file: OutputsFile = None,
    region: Region = None,
    ca_cert: CaCert = None,
    ca_key: CaKey = None,
    validity_days: ValidityDays = 3650,
    server_ca: ServerCa = None,
    revoke_old: RevokeOld = False,
    as_json: JsonOut = False,
) -> None:
    """Give a provisioned collector a new key and certificate.

    Order: new certificate active and attached, new bundle in place, then the old certificate set
    INACTIVE and detached (REVOKED with --revoke-old). Restart the collector to pick up the new bundle.
    Broker and InfluxDB settings of the current bundle are kept.
    """
    with operator_errors():
        result = _single(
            stack,
            site,
            collector,
            outputs_file,
            region,
            out_dir,
            issue_options(key_type, ca_cert, ca_key, validity_days),
            bundle_settings(server_ca, None, None, None, None, None, None),
            "rotate",
            revoke_old,
        )
    emit(as_json, result, _describe_outcome(result))


@command("revoke")
def revoke_device_cmd(
    stack: Stack,
    site: Site,
    collector: CollectorId,
    outputs_file: OutputsFile = None,
    region: Region = None,
    certificate_id: Annotated[
        str | None,
        typer.Option(help="Revoke only this certificate (default: every certificate of the collector)."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: JsonOut = False,
) -> None:
    """Take a collector's identity away: detach its certificates and leave them REVOKED.

    The thing stays (it belongs to the stack). The collector will be refused by AWS IoT at its next
    connection; provision it again with `devices provision --force`.
    """
    with operator_errors():
        check_name("--site", site)
        check_name("--collector", collector)
        outputs = load_outputs(stack, outputs_file)
        target = outputs.collector(site, collector)
        if not yes and not typer.confirm(f"Revoke the certificates of {target.thing_name}?"):
            raise DeviceError("not confirmed; nothing changed")
        revoked = revoke_device(iot_client(region), outputs, target, certificate_id)
    text = (
        f"{target.thing_name}: revoked {', '.join(revoked)} (kept REVOKED: they cannot be registered again)"
        if revoked
        else f"{target.thing_name} had no certificate; nothing to do"
    )
    emit(as_json, {"thingName": target.thing_name, "revoked": revoked}, text)


@command("allow-replacement")
def allow_replacement_cmd(
    stack: Stack,
    site: Site,
    collector: CollectorId,
    outputs_file: OutputsFile = None,
    region: Region = None,
    minutes: Annotated[int, typer.Option(help="How long a claim may replace the certificate.")] = 60,
    as_json: JsonOut = False,
) -> None:
    """Let fleet provisioning give a collector in service a new certificate, for a while.

    The stack's pre-provisioning hook refuses a claim for a collector whose thing holds a live
    certificate; this opens a window (a thing attribute) in which one claim may replace it. Revoke the
    old certificate afterwards (`devices revoke --certificate-id`).
    """
    with operator_errors():
        check_name("--site", site)
        check_name("--collector", collector)
        target = load_outputs(stack, outputs_file).collector(site, collector)
        until = allow_replacement(iot_client(region), target.thing_name, minutes)
    when = dt.datetime.fromtimestamp(until, dt.UTC).isoformat(timespec="seconds")
    emit(as_json, {"thingName": target.thing_name, "replaceCertificateUntil": until},
         f"{target.thing_name}: a fleet-provisioning claim may replace its certificate until {when}")


@command("list")
def list_devices_cmd(
    stack: Stack,
    outputs_file: OutputsFile = None,
    region: Region = None,
    site: Annotated[list[str] | None, typer.Option(help="Only this site (repeatable).")] = None,
    as_json: JsonOut = False,
) -> None:
    """Table of the stack's collectors: thing, certificates (ID, status, expiry) and attached policies."""
    with operator_errors():
        for s in site or []:
            check_name("--site", s)
        outputs = load_outputs(stack, outputs_file)
        devices = list_devices(iot_client(region, max_pool_connections=16), outputs, site or [])
    if as_json:
        out.print_json(json.dumps([d.as_dict() for d in devices]))
        return
    table = Table(title=f"Collectors of stack {stack}")
    for column in ("thing", "certificate", "status", "expires", "policies"):
        table.add_column(column, overflow="fold")  # wrap long names and ids, never cut them off
    for d in devices:
        if not d.in_aws:
            table.add_row(d.thing_name, "[red]thing missing in AWS IoT[/red]", "", "", "")
        elif not d.certificates:
            table.add_row(d.thing_name, "[yellow]not provisioned[/yellow]", "", "", "")
        for c in d.certificates:
            expires = c.not_after.strftime("%Y-%m-%d") if c.not_after else "?"
            table.add_row(d.thing_name, c.certificate_id, c.status, expires, ", ".join(c.policies))
    out.print(table)
