"""The command groups of `cli.py` (devices, sites, hosts, meters, stacks) and the flat command lines from
before them, which keep working as hidden aliases: scripts and runbooks written for them do not break.
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner, Result

import cli
from collector.topics import thing_name
from tests.cli.conftest import STACK, Stack

# Every command line of the flat layout -> the command it is now (docs/cli.md lists the same pairs).
OLD_TO_NEW = {
    "provision-device": "devices provision",
    "rotate-cert": "devices rotate-cert",
    "revoke-device": "devices revoke",
    "list-devices": "devices list",
    "provision-site": "sites provision",
    "deployer-policy": "stacks deployer-policy",
    "meter probe": "meters probe",
}
# Arguments each command rejects before it calls AWS, reads a stack or opens a socket: the old and the
# new spelling must give the same one-line error (the command's own body ran, not a usage error).
REJECTED = {
    "provision-device": ["--stack", STACK, "--site", "plant:a", "--collector", "edge-01"],
    "rotate-cert": ["--stack", STACK, "--site", "plant:a", "--collector", "edge-01"],
    "revoke-device": ["--stack", STACK, "--site", "plant:a", "--collector", "edge-01", "--yes"],
    "list-devices": ["--stack", STACK, "--site", "plant:a"],
    "provision-site": ["--stack", STACK, "--site", "plant:a"],
    "deployer-policy": ["--stack", "staging", "--mode", "apply"],
    "meter probe": ["--host", "127.0.0.1", "--wiring", "5-wire"],
}
runner = CliRunner()


def invoke(command: str, *args: str) -> Result:
    return runner.invoke(cli.app, [*command.split(), *args], env={"COLUMNS": "80", "TERM": "dumb"},
                         prog_name="cli.py")


def help_lines(command: str) -> list[str]:
    result = runner.invoke(cli.app, [*command.split(), "--help"], env={"COLUMNS": "80", "TERM": "dumb"},
                           prog_name="cli.py")
    assert result.exit_code == 0, result.output
    return [line.rstrip() for line in result.output.splitlines()]


def test_the_top_level_lists_the_groups_and_hides_the_old_spellings() -> None:
    text = "\n".join(help_lines(""))
    commands = text.split("╭─ Commands")[1]
    # Only the groups: the old spellings (provision-device, meter, ...) run but are not listed.
    groups = ["devices", "sites", "hosts", "meters", "stacks", "fleet", "collector"]
    assert re.findall(r"^│ ([a-z-]+) ", commands, re.MULTILINE) == groups


@pytest.mark.parametrize(("old", "new"), OLD_TO_NEW.items())
def test_an_old_spelling_has_the_options_and_help_of_its_new_command(old: str, new: str) -> None:
    old_help, new_help = help_lines(old), help_lines(new)
    assert old_help[1] == f" Usage: cli.py {old} [OPTIONS]"
    assert new_help[1] == f" Usage: cli.py {new} [OPTIONS]"
    assert old_help[2:] == new_help[2:]


@pytest.mark.parametrize(("old", "new"), OLD_TO_NEW.items())
def test_an_old_spelling_runs_its_command(old: str, new: str) -> None:
    before, after = invoke(old, *REJECTED[old]), invoke(new, *REJECTED[old])
    assert before.exit_code == after.exit_code == 1
    assert before.stderr == after.stderr
    assert before.stderr.startswith("error: ")


@pytest.mark.usefixtures("csr_signing")
def test_a_collectors_life_with_the_grouped_commands(stack: Stack) -> None:
    """provision, rotate, list and revoke one collector, then provision a whole site, against moto."""
    target = ["--stack", STACK, "--outputs-file", str(stack.outputs_file)]
    one = [*target, "--site", "plant-a", "--collector", "edge-01"]
    edge_01 = thing_name(STACK, "plant-a", "edge-01")

    provisioned = invoke("devices provision", *one, "--out", str(stack.bundle()), "--json")
    assert provisioned.exit_code == 0, provisioned.output
    first = json.loads(provisioned.stdout)["certificateId"]

    rotated = invoke("devices rotate-cert", *one, "--out", str(stack.bundle()), "--json")
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["retiredCertificateId"] == first

    listed = invoke("devices list", *target, "--site", "plant-a", "--json")
    assert listed.exit_code == 0, listed.output
    statuses = {d["thingName"]: [c["status"] for c in d["certificates"]] for d in json.loads(listed.stdout)}
    assert statuses[edge_01] == ["ACTIVE"]  # the rotated-out certificate was detached from the thing

    revoked = invoke("devices revoke", *one, "--yes", "--json")
    assert revoked.exit_code == 0, revoked.output
    assert len(json.loads(revoked.stdout)["revoked"]) == 1

    site = invoke("sites provision", *target, "--site", "plant-b", "--out-root", str(stack.tmp), "--json")
    assert site.exit_code == 0, site.output
    devices = json.loads(site.stdout)["devices"]
    assert [(d["thingName"], d["status"]) for d in devices] == [
        (thing_name(STACK, "plant-b", "edge-01"), "provisioned")
    ]
