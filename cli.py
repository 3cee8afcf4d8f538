"""pm500 operator CLI: give collectors their identity in AWS IoT and manage their certificates.

Thin typer commands over the plain functions in `devices/`. Every domain error is one red line on
stderr and exit code 1; nothing is left half-done in AWS or on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collector.consistency import WIRINGS
from collector.registers import DEFAULT_MAP, RegisterMapError, load_register_map
from devices import crypto
from devices.aws import aws_errors, iot_client
from devices.bulk import BulkResult, provision_many, summary
from devices.bundle import default_bundle_dir
from devices.errors import DeviceError
from devices.help_format import ConventionalHelpCommand
from devices.lifecycle import list_devices, revoke_device
from devices.map_suggest import describe_suggestion, suggest
from devices.meter_probe import connect, describe, probe
from devices.outputs import check_name, load_outputs
from devices.provision import BundleSettings, IssueOptions, Mode, provision_device

app = typer.Typer(
    help="Provision pm500 collectors in AWS IoT and manage their certificates.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
meter_app = typer.Typer(help="Commission PowerMonitor 500 meters on the plant network.", no_args_is_help=True)
app.add_typer(meter_app, name="meter")
command = partial(app.command, cls=ConventionalHelpCommand)
meter_command = partial(meter_app.command, cls=ConventionalHelpCommand)

# Help panels, so that a command with many options reads as a few short groups.
TARGET = "Which collector"
CERTIFICATE = "Certificate"
BUNDLE = "Bundle: broker"
INFLUX = "Bundle: local InfluxDB"
OUTPUT = "Output"
out = Console()
err = Console(stderr=True)

# Options shared by several commands.
Stack = Annotated[str, typer.Option(help="Pulumi stack name, e.g. staging or prod.", rich_help_panel=TARGET)]
Site = Annotated[str, typer.Option(help="Site name as in the stack's inventory.", rich_help_panel=TARGET)]
CollectorId = Annotated[
    str, typer.Option("--collector", help="Collector name within the site.", rich_help_panel=TARGET)
]
OutputsFile = Annotated[
    Path | None,
    typer.Option(
        help="Saved `pulumi stack output --json --stack STACK`; use it where no Pulumi CLI is installed.",
        dir_okay=False,
        rich_help_panel=TARGET,
    ),
]
Region = Annotated[
    str | None,
    typer.Option(help="AWS region (default: $AWS_REGION, else $AWS_DEFAULT_REGION, else your profile's)."),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Bundle directory to write (default: bundles/STACK/SITE/COLLECTOR). Created 0700.",
        file_okay=False,
        rich_help_panel=OUTPUT,
    ),
]
JsonOut = Annotated[
    bool,
    typer.Option("--json", help="Print a JSON result on stdout instead of text.", rich_help_panel=OUTPUT),
]
KeyType = Annotated[
    str, typer.Option(help="Private key type: ec-p256 (default) or rsa-2048.", rich_help_panel=CERTIFICATE)
]
CaCert = Annotated[
    Path | None,
    typer.Option(
        help="Your organisation's CA certificate: sign the CSR with it and RegisterCertificate "
        "(the CA must be registered with AWS IoT). Needs --ca-key.",
        dir_okay=False,
        rich_help_panel=CERTIFICATE,
    ),
]
CaKey = Annotated[
    Path | None,
    typer.Option(
        help=f"Private key of --ca-cert (if encrypted, its password in ${crypto.CA_KEY_PASSWORD_ENV}).",
        dir_okay=False,
        rich_help_panel=CERTIFICATE,
    ),
]
ValidityDays = Annotated[
    int,
    typer.Option(
        min=1, max=36500, help="Validity of certificates signed by --ca-cert.", rich_help_panel=CERTIFICATE
    ),
]
ServerCa = Annotated[
    Path | None,
    typer.Option(
        help="CA(s) that verify the broker, copied into the bundle (default: Amazon Root CA 1 and 3).",
        dir_okay=False,
        rich_help_panel=BUNDLE,
    ),
]
Endpoint = Annotated[
    str | None,
    typer.Option(
        help="MQTT broker host for the bundle (default: the stack's AWS IoT endpoint).",
        rich_help_panel=BUNDLE,
    ),
]
MqttPort = Annotated[
    int | None,
    typer.Option(min=1, max=65535, help="MQTT broker port (default 8883).", rich_help_panel=BUNDLE),
]
InfluxUrl = Annotated[
    str | None,
    typer.Option(help="Local InfluxDB 1.x URL (default http://127.0.0.1:8086).", rich_help_panel=INFLUX),
]
InfluxDatabase = Annotated[
    str | None, typer.Option(help="Local InfluxDB database (default pm500).", rich_help_panel=INFLUX)
]
InfluxUsername = Annotated[
    str | None, typer.Option(help="Local InfluxDB user name (default: none).", rich_help_panel=INFLUX)
]
InfluxPassword = Annotated[
    str | None,
    typer.Option(
        envvar="PM500_INFLUX_PASSWORD",
        help="Local InfluxDB password (better: set $PM500_INFLUX_PASSWORD).",
        rich_help_panel=INFLUX,
    ),
]


@contextmanager
def operator_errors() -> Iterator[None]:
    """One clear red line on stderr and exit code 1 for every problem the operator can act on."""
    try:
        with aws_errors():
            yield
    except DeviceError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _issue_options(
    key_type: str, ca_cert: Path | None, ca_key: Path | None, validity_days: int
) -> IssueOptions:
    if key_type not in crypto.KEY_TYPES:
        raise DeviceError(f"--key-type {key_type!r}: expected one of {', '.join(crypto.KEY_TYPES)}")
    if (ca_cert is None) != (ca_key is None):
        raise DeviceError("--ca-cert and --ca-key go together: pass both or neither")
    ca = crypto.load_org_ca(ca_cert, ca_key) if ca_cert is not None and ca_key is not None else None
    return IssueOptions(key_type=cast(crypto.KeyType, key_type), ca=ca, validity_days=validity_days)


def _settings(
    server_ca: Path | None,
    endpoint: str | None,
    mqtt_port: int | None,
    influx_url: str | None,
    influx_database: str | None,
    influx_username: str | None,
    influx_password: str | None,
) -> BundleSettings:
    server_ca_pem = None
    if server_ca is not None:
        crypto.load_certificate_file(server_ca, "--server-ca")
        server_ca_pem = server_ca.read_bytes()
    influx = {
        k: v
        for k, v in {
            "url": influx_url,
            "database": influx_database,
            "username": influx_username,
            "password": influx_password,
        }.items()
        if v is not None
    }
    return BundleSettings(endpoint=endpoint, mqtt_port=mqtt_port, server_ca_pem=server_ca_pem, influx=influx)


def _emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        out.print_json(json.dumps(data))
    else:
        out.print(text, highlight=False)


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
    return text


@command("provision-device")
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
    influx_password: InfluxPassword = None,
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
            help="Re-issue whatever the current state; the old certificate of the bundle is deleted.",
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
            _issue_options(key_type, ca_cert, ca_key, validity_days),
            _settings(
                server_ca, endpoint, mqtt_port, influx_url, influx_database, influx_username, influx_password
            ),
            mode,
            False,
        )
    _emit(as_json, result, _describe_outcome(result))


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
    revoke_old: Annotated[
        bool, typer.Option("--revoke-old", help="Delete the old certificate instead of leaving it INACTIVE.")
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Give a provisioned collector a new key and certificate.

    Order: new certificate active and attached, new bundle in place, then the old certificate set
    INACTIVE and detached (deleted with --revoke-old). Restart the collector to pick up the new bundle.
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
            _issue_options(key_type, ca_cert, ca_key, validity_days),
            _settings(server_ca, None, None, None, None, None, None),
            "rotate",
            revoke_old,
        )
    _emit(as_json, result, _describe_outcome(result))


@command("revoke-device")
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
    """Take a collector's identity away: detach, deactivate and delete its certificates.

    The thing stays (it belongs to the stack). The collector will be refused by AWS IoT at its next
    connection; provision it again with provision-device --force.
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
        f"{target.thing_name}: revoked and deleted {', '.join(revoked)}"
        if revoked
        else f"{target.thing_name} had no certificate; nothing to do"
    )
    _emit(as_json, {"thingName": target.thing_name, "revoked": revoked}, text)


@command("list-devices")
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


@command("provision-site")
def provision_site_cmd(
    stack: Stack,
    site: Annotated[
        list[str] | None, typer.Option(help="Site to provision (repeatable; default: all).")
    ] = None,
    match: Annotated[
        str | None, typer.Option(help="Only things whose name matches this glob, e.g. 'prod:plant-a:line-*'.")
    ] = None,
    out_root: Annotated[
        Path, typer.Option(help="Bundles go to OUT_ROOT/STACK/SITE/COLLECTOR.", file_okay=False)
    ] = Path("bundles"),
    workers: Annotated[int, typer.Option(min=1, max=64, help="Devices provisioned concurrently.")] = 8,
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
    influx_password: InfluxPassword = None,
    as_json: JsonOut = False,
) -> None:
    """Provision every collector of a site (or of the stack, or matching --match), concurrently.

    Each device is all-or-nothing (a failure rolls back that device only). Re-running is safe and
    resumes: provisioned devices are skipped, the rest are done. Exit code 1 if any device failed.
    """
    with operator_errors():
        for s in site or []:
            check_name("--site", s)
        outputs = load_outputs(stack, outputs_file)
        targets = outputs.select(site or [], match)
        issue = _issue_options(key_type, ca_cert, ca_key, validity_days)
        settings = _settings(
            server_ca, endpoint, mqtt_port, influx_url, influx_database, influx_username, influx_password
        )
        iot = iot_client(region, max_pool_connections=workers)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=as_json or not err.is_terminal,
        )
        with progress:
            task = progress.add_task("provisioning", total=len(targets))
            results = provision_many(
                iot,
                outputs,
                targets,
                out_root,
                issue,
                settings,
                workers,
                on_result=lambda _: progress.advance(task),
            )
    counts = summary(results)
    if as_json:
        out.print_json(json.dumps({"summary": counts, "devices": [r.as_dict() for r in results]}))
    else:
        _print_bulk(results, counts)
    if counts["failed"]:
        raise typer.Exit(1)


def _print_bulk(results: list[BulkResult], counts: dict[str, int]) -> None:
    failed = [r for r in results if r.status == "failed"]
    if failed:
        table = Table(title="Failed devices (rolled back; re-run to retry)")
        table.add_column("thing")
        table.add_column("reason", overflow="fold")
        for r in failed:
            table.add_row(r.thing_name, r.detail)
        out.print(table)
    table = Table(title="Summary")
    for status in counts:
        table.add_column(status, justify="right")
    table.add_row(*(str(n) for n in counts.values()))
    out.print(table)


@app.command("deployer-policy")
def deployer_policy_command(
    stack: Stack,
    mode: Annotated[
        str, typer.Option(help="preview (read-only: pulumi preview/refresh) or deploy (pulumi up).")
    ] = "deploy",
    account: Annotated[str, typer.Option(help="AWS account id the stack deploys to (default *: any).")] = "*",
    json_out: JsonOut = False,
) -> None:
    """Print the least-privilege IAM policy of whoever runs `pulumi preview`/`up` for STACK, derived
    from the resources the program declares (one or more managed-policy documents)."""
    from infra.deployer_policy import DeployerPolicyError, policy_chars, stack_deployer_policy

    try:
        policy = stack_deployer_policy(stack, mode, account)
    except DeployerPolicyError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if json_out:
        print(json.dumps(list(policy.documents), indent=2))
        return
    table = Table(title=f"{stack} {mode} policy: {len(policy.actions)} actions")
    for column in ("document", "statements", "characters"):
        table.add_column(column, justify="right")
    for i, document in enumerate(policy.documents, 1):
        table.add_row(str(i), str(len(document["Statement"])), str(policy_chars(document)))
    out.print(table)
    out.print("Not included: the Pulumi state backend, the secrets provider's KMS key and edge hosts "
              "(see docs/infra.md). --json prints the documents.")


@meter_command("probe")
def meter_probe_cmd(
    host: Annotated[str, typer.Option(help="The meter's IP address or DNS name.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="EtherNet/IP TCP port.")] = 44818,
    register_map_file: Annotated[
        Path | None,
        typer.Option(
            "--map", help="Register map to check (default: the collector's bundled map).", dir_okay=False
        ),
    ] = None,
    wiring: Annotated[
        str, typer.Option(help="The meter's electrical system: 4-wire (with neutral) or 3-wire (no neutral).")
    ] = "4-wire",
    suggest_order: Annotated[
        bool,
        typer.Option(
            "--suggest", help="Search the block orders that best satisfy the physics; print the YAML change."
        ),
    ] = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Socket timeout per read (s).")
    ] = 5.0,
    as_json: JsonOut = False,
) -> None:
    """Read instances 100-108 of one meter: product info, every element next to its mapped metric,
    and the register-map consistency verdict. Nothing is written to the meter or to the map."""
    map_path = register_map_file or DEFAULT_MAP
    with operator_errors():
        if wiring not in WIRINGS:
            raise DeviceError(f"--wiring {wiring!r}: expected one of {', '.join(WIRINGS)}")
        try:
            regmap = load_register_map(map_path)
        except RegisterMapError as e:
            raise DeviceError(f"--map: {e}") from None
        driver = connect(host, port, timeout_s)
        try:
            report = probe(driver, regmap, host, port, wiring)
        finally:
            driver.close()
        suggestion = suggest(report, regmap, map_path) if suggest_order else None
    if as_json:
        body = report.as_dict()
        if suggestion is not None:
            body["suggestion"] = suggestion.as_dict()
        out.print_json(json.dumps(body))
    else:
        lines = describe(report) + (describe_suggestion(suggestion) if suggestion is not None else [])
        for line in lines:
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if report.exit_code:
        raise typer.Exit(report.exit_code)


if __name__ == "__main__":
    app()
