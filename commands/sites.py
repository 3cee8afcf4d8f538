"""`cli.py sites ...`: every collector of a site (or of the stack) at once."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from commands.console import err, operator_errors, out
from commands.help_format import ConventionalHelpCommand, ConventionalHelpGroup
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
    ServerCa,
    Stack,
    ValidityDays,
    bundle_settings,
    influx_password,
    issue_options,
)
from devices.aws import iot_client
from devices.bulk import BulkResult, provision_many, summary
from devices.outputs import check_name, load_outputs

app = typer.Typer(
    help="Every collector of a site, or of the whole stack, at once.",
    no_args_is_help=True,
    cls=ConventionalHelpGroup,
)
command = partial(app.command, cls=ConventionalHelpCommand)


@command("provision")
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
