"""`cli.py meters ...`: commissioning PowerMonitor 500 meters on the plant network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from collector.consistency import WIRINGS
from collector.registers import DEFAULT_MAP, RegisterMapError, load_register_map
from commands.console import operator_errors, out
from commands.help_format import command_group
from commands.options import JsonOut
from devices.errors import DeviceError
from devices.map_suggest import describe_suggestion, suggest
from devices.meter_probe import connect, describe, probe

app, command = command_group("Commission PowerMonitor 500 meters on the plant network.")


@command("probe")
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
    """Read instances 100-108 of one meter and check the register map against them.

    Product info, every element next to its mapped metric, and the register-map consistency verdict.
    Nothing is written to the meter or to the map."""
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
    if report.exit_code:  # an instance of the map could not be checked (docs/meter.md)
        raise typer.Exit(report.exit_code)
