"""`cli.py fleet ...`: the whole fleet at a glance (presence, health, certificates), problems first."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from commands.console import operator_errors, out
from commands.help_format import command_group
from commands.options import JsonOut, OutputsFile, Region, WholeStack
from devices.aws import aws_client
from devices.errors import DeviceError
from devices.fleet import (
    CERT_EXPIRED,
    CERT_EXPIRING,
    DEGRADED,
    FAILING,
    NEVER_SEEN,
    OFFLINE,
    OK,
    RANK_NAMES,
    SCAN_SEGMENTS,
    FleetRow,
    fleet_status,
    parse_duration,
    read_fleet_table,
)
from devices.outputs import check_name, load_outputs

# Exit codes for scripts: 0 every collector connected and healthy, 3 some need attention, 1 an error.
ATTENTION_EXIT = 3

app, command = command_group(
    "The whole fleet at a glance: who is offline and why, whose certificate expires, problems first."
)


def _ago(ms: int | None, now: dt.datetime) -> str:
    if ms is None:
        return ""
    seconds = max(0, int(now.timestamp() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _table(rows: list[FleetRow], now: dt.datetime, title: str) -> Table:
    """Three columns, so that 80 characters hold it: the collector, its state and since when, then why
    (first line) and what it reported (second line: last data, certificate, version, backlog)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, show_lines=False)
    table.add_column("collector", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("why / what it reported", overflow="fold", ratio=1)
    colours = {OFFLINE: "red", NEVER_SEEN: "red", CERT_EXPIRED: "red", FAILING: "red",
               CERT_EXPIRING: "yellow", DEGRADED: "yellow"}
    for r in rows:
        state, colour = RANK_NAMES[r.rank], colours.get(r.rank)
        since = f" {_ago(r.since_ms, now)}" if r.since_ms is not None else ""
        last = f"last disconnect: {r.disconnect_reason}" if r.disconnect_reason else ""
        reported = [f"last data {_ago(r.last_ddata_ms, now)}" if r.last_ddata_ms else "",
                    f"certificate {r.certificate_not_after[:10]}" if r.certificate_not_after else "",
                    r.version or "", f"backlog {r.backlog}" if r.backlog is not None else "",
                    f"map {r.register_map}" if r.register_map else ""]
        details = "\n".join(part for part in ("; ".join(r.attention) or last,
                                               " · ".join(p for p in reported if p)) if part)
        table.add_row(f"{r.site}/{r.collector}", f"[{colour}]{state}[/{colour}]{since}" if colour
                      else f"{state}{since}", details)
    return table


@command("status")
def status_cmd(
    stack: WholeStack,
    site: Annotated[list[str] | None, typer.Option(help="Only this site (repeatable).")] = None,
    expiring_within: Annotated[
        str, typer.Option(help="Flag certificates that expire within this time: 30d, 12h, 2w.")
    ] = "30d",
    show_all: Annotated[
        bool, typer.Option("--all", help="List healthy collectors too (default: those needing attention).")
    ] = False,
    outputs_file: OutputsFile = None,
    region: Region = None,
    as_json: JsonOut = False,
) -> None:
    """One row per collector: connected or not (since when, last disconnect reason), last DDATA,
    certificate expiry, version, backlog, register-map verdict, problems first.

    Reads the stack's fleet table (presence from AWS IoT lifecycle events, each collector's report from
    its named shadow) in one parallel scan. Exit code 0 when every collector is connected and healthy,
    3 when some need attention (offline, never connected, certificate expired or expiring, failing,
    degraded), 1 on an error.
    """
    with operator_errors():
        for s in site or []:
            check_name("--site", s)
        window = parse_duration("--expiring-within", expiring_within)
        outputs = load_outputs(stack, outputs_file)
        if not outputs.fleet_table:
            raise DeviceError(f"stack {stack!r} has no fleet table output (fleetTableName): deploy it with "
                              "features.fleet on (the default) first")
        targets = outputs.select(site or [], None)
        fleet = read_fleet_table(aws_client("dynamodb", region, SCAN_SEGMENTS), outputs.fleet_table)
    now = dt.datetime.now(dt.UTC)
    rows = fleet_status(targets, fleet, now, window)
    attention = [r for r in rows if r.rank < OK]
    counts = {name: sum(1 for r in rows if RANK_NAMES[r.rank] == name) for name in RANK_NAMES}
    if as_json:
        body = {"stack": stack, "summary": counts, "collectors": [r.as_dict() for r in rows]}
        out.print_json(json.dumps(body))
    else:
        shown = rows if show_all else attention
        if shown:
            out.print(_table(shown, now, f"Collectors of stack {stack}" + ("" if show_all else
                                                                           " needing attention")))
        noun = "collector" if len(rows) == 1 else "collectors"
        out.print(f"{len(rows)} {noun}: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n),
                  highlight=False)
    if attention:
        raise typer.Exit(ATTENTION_EXIT)
