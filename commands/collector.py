"""`cli.py collector ...`: change a running collector's settings without touching its host."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from commands.console import emit, err, operator_errors
from commands.help_format import command_group
from commands.options import TARGET, JsonOut, OutputsFile, Region, Stack
from devices.aws import aws_client
from devices.errors import DeviceError
from devices.fleet import await_report, check_settings, desire, parse_assignments, withdraw
from devices.outputs import StackOutputs, load_outputs

# Exit codes: 0 applied, 1 refused (or an error), 3 stored but not yet reported within --timeout.
PENDING_EXIT = 3
# Set when the CLI talks to a stand-in (tests, the demo): then botocore's endpoint settings decide.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_IOT_DATA")

app, command = command_group(
    "A running collector's settings (poll interval, meters in or out of service, debug), remotely."
)


def shadow_client(outputs: StackOutputs, region: str | None) -> Any:
    """The Device Shadow API on the stack's own AWS IoT data endpoint (the `iotEndpoint` output), unless
    the environment points botocore at a stand-in."""
    stand_in = any(os.environ.get(v) for v in ENDPOINT_VARIABLES)
    return aws_client("iot-data", region, endpoint_url=None if stand_in else f"https://{outputs.iot_endpoint}")


@command("set")
def set_cmd(
    stack: Stack,
    thing: Annotated[str, typer.Option(help="The collector's thing name, STACK:SITE:COLLECTOR.",
                                       rich_help_panel=TARGET)],
    settings: Annotated[list[str], typer.Argument(
        metavar="KEY=VALUE...",
        help="poll_interval_s=5, debug=true, meters.<asset>.in_service=false (values read as JSON).",
        show_default=False)],
    timeout: Annotated[int, typer.Option(min=0, max=3600, help="Seconds to wait for the collector to "
                                         "report the new values.")] = 60,
    outputs_file: OutputsFile = None,
    region: Region = None,
    as_json: JsonOut = False,
) -> None:
    """Write settings to the collector's named shadow (desired state) and wait until it reports them.

    The values are checked first with the collector's own rules (nothing is written if one is refused).
    The collector applies them through the same mechanism as every other channel, keeps them across
    restarts and reports them back. Exit code 0 applied, 1 refused (the reason per key; the refused
    values are taken out of the desired state), 3 not reported within --timeout (the desired state
    stays: the collector applies it when it is back).
    """
    with operator_errors():
        outputs = load_outputs(stack, outputs_file)
        target = outputs.collectors.get(thing)
        if target is None:
            raise DeviceError(f"--thing {thing!r}: not a collector of stack {stack!r} "
                              "(cli.py fleet status lists them)")
        changes = parse_assignments(settings)
        check_settings(target, changes)
        client = shadow_client(outputs, region)
        version = desire(client, thing, changes)
        if not as_json:
            err.print(f"desired state written (version {version}); waiting for {thing} to report it...",
                      highlight=False)
        outcome = await_report(client, thing, changes, version, timeout_s=timeout)
        if outcome.result == "refused":
            withdraw(client, thing, changes)
    result = {"thing": thing, "result": outcome.result, "version": version, "settings": changes,
              "reasons": outcome.reasons}
    if outcome.result == "applied":
        applied = ", ".join(f"{k}={v}" for k, v in outcome.reported.items())
        emit(as_json, result, f"{thing}: applied {applied}")
        return
    if outcome.result == "refused":
        reasons = "; ".join(f"{k}: {v}" for k, v in outcome.reasons.items())
        emit(as_json, result, f"{thing}: refused by the collector: {reasons} "
                              "(taken out of the desired state)")
        raise typer.Exit(1)
    emit(as_json, result, f"{thing}: not reported within {timeout} s; the desired state stays and the "
                          "collector applies it when it is back (`fleet status` shows whether it is online)")
    raise typer.Exit(PENDING_EXIT)
