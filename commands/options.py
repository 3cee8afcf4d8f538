"""Options shared by several command groups, and how they become the settings `devices` takes.

Help panels group a command's many options into a few short blocks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, cast

import typer

from devices import crypto
from devices.errors import DeviceError
from devices.provision import BundleSettings, IssueOptions

TARGET = "Which collector"
CERTIFICATE = "Certificate"
BUNDLE = "Bundle: broker"
INFLUX = "Bundle: local InfluxDB"
OUTPUT = "Output"

STACK_HELP = "Pulumi stack name, e.g. staging or prod."
Stack = Annotated[str, typer.Option(help=STACK_HELP, rich_help_panel=TARGET)]
# Commands about a whole stack (no collector in them) file it under its own panel.
WholeStack = Annotated[str, typer.Option("--stack", help=STACK_HELP, rich_help_panel="Which stack")]
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
RevokeOld = Annotated[
    bool, typer.Option("--revoke-old", help="Leave the old certificate REVOKED instead of INACTIVE.")
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
# The local InfluxDB password never comes as an argument: argv is in `ps` for every local user and in
# the shell's history. From a file, a prompt, or $PM500_INFLUX_PASSWORD (docs/ENVIRONMENT.md).
INFLUX_PASSWORD_ENV = "PM500_INFLUX_PASSWORD"  # noqa: S105 - a variable name
InfluxPasswordFile = Annotated[
    Path | None,
    typer.Option(
        "--influx-password-file",
        help=f"File holding the local InfluxDB password (its first line); or ${INFLUX_PASSWORD_ENV}.",
        dir_okay=False,
        rich_help_panel=INFLUX,
    ),
]
AskInfluxPassword = Annotated[
    bool,
    typer.Option("--ask-influx-password", help="Prompt for the local InfluxDB password (not echoed).",
                 rich_help_panel=INFLUX),
]
# Accepted only to refuse it with the way out (typer's own error would not name one).
InfluxPasswordArgument = Annotated[str | None, typer.Option("--influx-password", hidden=True)]


def influx_password(file: Path | None, ask: bool, argument: str | None) -> str | None:
    """The local InfluxDB password for the bundle, from exactly one of: the file, the prompt,
    $PM500_INFLUX_PASSWORD; None when none is given."""
    if argument is not None:
        raise DeviceError(
            "--influx-password: a password on the command line is visible in `ps` and kept in the shell "
            f"history; use --influx-password-file FILE, --ask-influx-password or ${INFLUX_PASSWORD_ENV}")
    if file is not None and ask:
        raise DeviceError("--influx-password-file and --ask-influx-password: pass one of them")
    if file is not None:
        try:
            lines = file.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DeviceError(f"--influx-password-file {file}: cannot read it ({e})") from None
        if not lines or not lines[0]:
            raise DeviceError(f"--influx-password-file {file}: its first line is empty (the password)")
        return lines[0]
    if ask:
        return str(typer.prompt("Local InfluxDB password", hide_input=True, confirmation_prompt=True))
    return os.environ.get(INFLUX_PASSWORD_ENV) or None


def issue_options(
    key_type: str, ca_cert: Path | None, ca_key: Path | None, validity_days: int
) -> IssueOptions:
    if key_type not in crypto.KEY_TYPES:
        raise DeviceError(f"--key-type {key_type!r}: expected one of {', '.join(crypto.KEY_TYPES)}")
    if (ca_cert is None) != (ca_key is None):
        raise DeviceError("--ca-cert and --ca-key go together: pass both or neither")
    ca = crypto.load_org_ca(ca_cert, ca_key) if ca_cert is not None and ca_key is not None else None
    return IssueOptions(key_type=cast(crypto.KeyType, key_type), ca=ca, validity_days=validity_days)


def bundle_settings(
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
