"""`cli.py sites ...`: every collector of a site (or of the stack) at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from commands.console import err, operator_errors, out
from commands.help_format import command_group
from commands.options import (
    AskInfluxPassword,
    CaCert,
    CaKey,
    Endpoint,
    InfluxDatabase,
    InfluxPasswordArgument,
    InfluxPasswordFile,
    InfluxUrl,
    InfluxUsername,
    JsonOut,
    KeyType,
    MqttPort,
    OutputsFile,
    Region,
    RevokeOld,
    ServerCa,
    Stack,
    ValidityDays,
    bundle_settings,
    influx_password,
    issue_options,
)
from devices.aws import iot_client
from devices.bulk import BulkResult, provision_many, summary
from devices.fleet import parse_duration
from devices.outputs import check_name, load_outputs
from devices.rotation import Selection, rotate_selection

app, command = command_group(
    "Every collector of a site, or of the whole stack, at once: provision, rotate certificates."
)

Match = Annotated[
    str | None, typer.Option(help="Only things whose name matches this glob, e.g. 'prod:plant-a:line-*'.")
]


@command("provision")
def provision_site_cmd(
    stack: Stack,
    site: Annotated[
        list[str] | None, typer.Option(help="Site to provision (repeatable; default: all).")
    ] = None,
    match: Match = None,
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
    influx_password_file: InfluxPasswordFile = None,
    ask_influx_password: AskInfluxPassword = False,
    influx_password_argument: InfluxPasswordArgument = None,
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
        issue = issue_options(key_type, ca_cert, ca_key, validity_days)
        password = influx_password(influx_password_file, ask_influx_password, influx_password_argument)
        settings = bundle_settings(
            server_ca, endpoint, mqtt_port, influx_url, influx_database, influx_username, password
        )
        iot = iot_client(region, max_pool_connections=workers)
        progress = _progress(as_json)
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
    _report(results, counts, as_json)


def _progress(as_json: bool) -> Progress:
    """A progress bar on stderr, off for --json and when stderr is not a terminal."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=as_json or not err.is_terminal,
    )


def _report(results: list[BulkResult], counts: dict[str, int], as_json: bool) -> None:
    """Print the outcome (JSON or tables); exit code 1 if any device failed."""
    if as_json:
        out.print_json(json.dumps({"summary": counts, "devices": [r.as_dict() for r in results]}))
    else:
        _print_bulk(results, counts)
    if counts["failed"]:
        raise typer.Exit(1)


def _print_bulk(results: list[BulkResult], counts: dict[str, int]) -> None:
    failed = [r for r in results if r.status == "failed"]
    if failed:
        table = Table(title="Failed devices (rolled back; run the same command again to retry)")
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


@command("rotate-cert")
def rotate_site_cmd(
    stack: Stack,
    site: Annotated[list[str] | None, typer.Option(help="Site to rotate (repeatable; default: all).")] = None,
    match: Match = None,
    expiring_within: Annotated[
        str | None,
        typer.Option(help="Only collectors whose bundle certificate expires within this time: 30d, 12h, 2w."),
    ] = None,
    out_root: Annotated[
        Path, typer.Option(help="Bundles are in OUT_ROOT/STACK/SITE/COLLECTOR.", file_okay=False)
    ] = Path("bundles"),
    workers: Annotated[int, typer.Option(min=1, max=64, help="Devices rotated concurrently.")] = 8,
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
    """Give many provisioned collectors a new key and certificate: a site, a name glob, certificates
    expiring soon.

    Each device is rotated exactly like `devices rotate-cert` (new certificate active and attached, new
    bundle in place, then the old certificate retired; a failure rolls back that device only). Resumable:
    after an interruption, run the same command again; devices rotated in this run are skipped
    (the run is recorded in OUT_ROOT/STACK/rotate-cert.json until it completes). Restart each collector
    to pick up its new bundle. Exit code 1 if any device failed.
    """
    with operator_errors():
        for s in site or []:
            check_name("--site", s)
        window = parse_duration("--expiring-within", expiring_within) if expiring_within else None
        selection = Selection(tuple(site or []), match, int(window.total_seconds()) if window else None)
        outputs = load_outputs(stack, outputs_file)
        issue = issue_options(key_type, ca_cert, ca_key, validity_days)
        settings = bundle_settings(server_ca, None, None, None, None, None, None)
        iot = iot_client(region, max_pool_connections=workers)
        progress = _progress(as_json)
        with progress:
            task = progress.add_task("rotating", total=None)
            results = rotate_selection(
                iot, outputs, selection, out_root, issue, settings, workers, revoke_old,
                on_selected=lambda n: progress.update(task, total=n),
                on_result=lambda _: progress.advance(task),
            )
    counts = summary(results, done="rotated")
    _report(results, counts, as_json)
