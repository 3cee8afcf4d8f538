"""CLI help as a new user sees it at 80 columns: typer's conventional labels, no `<bool>` on flags,
`devices provision`'s options grouped in panels. The snapshots in `snapshots/` are the reviewed form;
the other tests state the rules independently of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli

SNAPSHOTS = Path(__file__).with_name("snapshots")
COMMANDS = [
    "devices provision", "devices rotate-cert", "devices revoke", "devices allow-replacement", "devices list",
    "sites provision", "sites rotate-cert", "hosts provision", "meters probe", "stacks deployer-policy",
    "fleet status", "collector set",
]
GROUPS = ["", "devices", "sites", "hosts", "meters", "stacks", "fleet", "collector"]  # "": cli.py itself


def help_text(command: str) -> str:
    result = CliRunner().invoke(
        cli.app, [*command.split(), "--help"], env={"COLUMNS": "80", "TERM": "dumb"}, prog_name="cli.py"
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", "devices provision", "devices list"])
def test_help_matches_the_reviewed_snapshot(command: str) -> None:
    name = command.replace(" ", "-") or "cli"
    assert help_text(command) == (SNAPSHOTS / f"{name}-help.txt").read_text()


@pytest.mark.parametrize("command", COMMANDS + GROUPS)
def test_no_python_type_labels_and_flags_take_no_label(command: str) -> None:
    text = help_text(command)
    assert not re.search(r"<(str|int|bool|path|list\[[a-z]+\]|file|dir)>", text)
    for flag in ("--help", "--json") if command in COMMANDS else ("--help",):
        (line,) = [line for line in text.splitlines() if re.match(rf"│\s+{flag} ", line)]
        first_word = line.split(flag, 1)[1].split()[0]  # the help text itself, no label before it
        assert not first_word.startswith("<") and not first_word.isupper(), line
    assert "--no-" not in text  # plain flags, no negative twins


def test_value_options_show_conventional_labels() -> None:
    text = help_text("devices provision")
    labels = {m.group(1): m.group(2) for m in re.finditer(r"(--[a-z-]+)\s+([A-Z]+)\b", text)}
    assert labels["--stack"] == "TEXT" and labels["--mqtt-port"] == "INTEGER"
    assert labels["--ca-cert"] == "FILE" and labels["--out"] == "DIRECTORY"


def test_devices_provision_groups_its_options_in_panels() -> None:
    text = help_text("devices provision")
    panels = re.findall(r"╭─ (.+?) ─", text)
    assert panels == [
        "Options", "Which collector", "Output", "Certificate", "Bundle: broker", "Bundle: local InfluxDB"
    ]
    certificate = text.split("╭─ Certificate")[1].split("╰")[0]
    for option in ("--key-type", "--ca-cert", "--ca-key", "--validity-days", "--rotate", "--force"):
        assert option in certificate


def test_a_stack_command_files_its_stack_under_which_stack() -> None:
    """Issue 21: `deployer-policy --help` filed `--stack` under "Which collector"; it takes no collector."""
    text = help_text("stacks deployer-policy")
    assert "Which collector" not in text
    panel = text[text.index("Which stack"):]
    assert "--stack" in panel.split("╰")[0]
