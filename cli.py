"""pm500 operator CLI: `.venv/bin/python cli.py GROUP COMMAND [OPTIONS]`.

The groups follow what the operator is doing: `devices` (one collector's identity in AWS IoT), `sites`
(every collector of a site at once), `hosts` (a Sparkplug host application's identity), `meters`
(commissioning a meter), `stacks` (what a stack needs before `pulumi up`), `fleet` (the whole fleet
at a glance), `collector` (a running collector's settings, remotely). The commands live in
`commands/`, thin over the plain functions of `devices/` and
`preflight/`. Every domain error is one red line on stderr and exit code 1; nothing is left half-done
in AWS or on disk.

The command lines of the flat layout before the groups keep working as hidden aliases
(`cli.py provision-device ...` runs `cli.py devices provision ...`), so scripts written for them do
not break.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from commands import collector, devices, fleet, hosts, meters, sites, stacks
from commands.help_format import ConventionalHelpCommand, ConventionalHelpGroup

app = typer.Typer(
    help="Provision pm500 collectors in AWS IoT, manage their certificates, commission meters and "
    "derive a stack's deployer policy.",
    no_args_is_help=True,
    cls=ConventionalHelpGroup,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(devices.app, name="devices")
app.add_typer(sites.app, name="sites")
app.add_typer(hosts.app, name="hosts")
app.add_typer(meters.app, name="meters")
app.add_typer(stacks.app, name="stacks")
app.add_typer(fleet.app, name="fleet")
app.add_typer(collector.app, name="collector")

# Old spelling -> the command it now runs.
ALIASES: dict[str, Callable[..., Any]] = {
    "provision-device": devices.provision_device_cmd,
    "rotate-cert": devices.rotate_cert_cmd,
    "revoke-device": devices.revoke_device_cmd,
    "list-devices": devices.list_devices_cmd,
    "provision-site": sites.provision_site_cmd,
    "deployer-policy": stacks.deployer_policy_command,
}
for old_name, run in ALIASES.items():
    app.command(old_name, hidden=True, cls=ConventionalHelpCommand)(run)
app.add_typer(meters.app, name="meter", hidden=True)  # `cli.py meter probe`

if __name__ == "__main__":
    app()
