"""`cli.py hosts ...`: the identity of a Sparkplug Host Application of a stack (Ignition, a bridge...)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands.console import emit, operator_errors
from commands.help_format import command_group
from commands.options import (
    OUTPUT,
    STACK_HELP,
    CaCert,
    CaKey,
    Endpoint,
    JsonOut,
    KeyType,
    MqttPort,
    Region,
    ServerCa,
    ValidityDays,
    bundle_settings,
    issue_options,
)
from devices.aws import iot_client
from devices.hosts import provision_host
from devices.outputs import load_outputs

app, command = command_group(
    "Sparkplug Host Applications of a stack: give one its certificate and a bundle to configure it."
)

HOST = "Which host application"
Stack = Annotated[str, typer.Option(help=STACK_HELP, rich_help_panel=HOST)]
HostId = Annotated[
    str,
    typer.Option(help="The host application's Sparkplug host id, as in pm500:primaryHostId (or a "
                 "collector's primaryHostId); also its MQTT client id and certificate CN.",
                 rich_help_panel=HOST),
]
OutputsFile = Annotated[
    Path | None,
    typer.Option(help="Saved `pulumi stack output --json --stack STACK`; use it where no Pulumi CLI is "
                 "installed.", dir_okay=False, rich_help_panel=HOST),
]
Out = Annotated[
    Path | None,
    typer.Option("--out", file_okay=False, rich_help_panel=OUTPUT,
                 help="Bundle directory to write (default: bundles/STACK/hosts/HOST_ID). Created 0700."),
]


@command("provision")
def provision_host_cmd(
    stack: Stack,
    host_id: HostId,
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
    as_json: JsonOut = False,
) -> None:
    """Create the host application's certificate (its own IoT policy: read every edge node of the stack,
    send them NCMD, publish its retained STATE) and write its bundle (key, certificate, CA, host.yaml).

    The private key is generated on this machine and never leaves it: AWS IoT only receives a CSR.
    """
    with operator_errors():
        outputs = load_outputs(stack, outputs_file)
        bundle_dir = out_dir or Path("bundles") / stack / "hosts" / host_id
        result = provision_host(
            iot_client(region), outputs, host_id, bundle_dir,
            issue_options(key_type, ca_cert, ca_key, validity_days),
            bundle_settings(server_ca, endpoint, mqtt_port, None, None, None, None),
        )
    emit(as_json, result, f"host application {host_id}: certificate {result['certificateId']} active "
                          f"(policy {result['policyName']}), bundle written to {result['bundleDir']}")
