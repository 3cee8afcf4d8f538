"""docs/ENVIRONMENT.md lists every environment variable the project's programs read, one prefix each."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from collector.config import ENV_PREFIX
from devices.crypto import CA_KEY_PASSWORD_ENV
from infra import edge

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "ENVIRONMENT.md"
NAME = re.compile(r"\bPM500[A-Z]?_[A-Z][A-Z0-9_]*")
# Names of the PM500 shape that are no environment variable.
NOT_VARIABLES = {"PM500_DEMO_SUMMARY"}  # demo/run.py: the prefix of the child's summary line on stdout


def documented() -> set[str]:
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)[`\[<]", row.split("|")[1])}


def read_by_code() -> set[str]:
    files = subprocess.run(["git", "ls-files", "--", "*.py", "*.yaml", "*.yml", "*.sh", "*Dockerfile"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names: set[str] = set()
    for name in files:
        if not name.startswith(("tests/", "docs/")) and (ROOT / name).is_file():
            names |= set(NAME.findall((ROOT / name).read_text()))
    return names - NOT_VARIABLES


def test_every_variable_the_code_reads_is_in_the_table() -> None:
    table = documented()
    for name in read_by_code():
        covered = (name.startswith(ENV_PREFIX) and f"{ENV_PREFIX}" in table) or name in table
        assert covered, f"{name}: read by the code, missing from docs/ENVIRONMENT.md"


def test_every_pm500_variable_in_the_table_is_read() -> None:
    code = read_by_code()
    for name in (n for n in documented() if n.startswith("PM500")):
        assert name == ENV_PREFIX or name in code, f"docs/ENVIRONMENT.md lists {name}, which nothing reads"


def test_one_prefix_per_program() -> None:
    cli_and_tools = {CA_KEY_PASSWORD_ENV, "PM500_INFLUX_PASSWORD", "PM500_CACHE_DIR"}
    grafana = {edge.GRAFANA_ENV_INFLUX_URL, edge.GRAFANA_ENV_INFLUX_DATABASE, edge.GRAFANA_ENV_INFLUX_USER,
               edge.GRAFANA_ENV_INFLUX_PASSWORD}
    prefixes = {"collector": {ENV_PREFIX},
                "tools": {n.split("_")[0] + "_" for n in cli_and_tools},
                "grafana": {n.split("_")[0] + "_" for n in grafana}}
    assert all(len(p) == 1 for p in prefixes.values()), prefixes
    firsts = [next(iter(p)) for p in prefixes.values()]
    assert len(set(firsts)) == 3
    # No program's prefix is a prefix of another's: no variable can fall into two namespaces.
    assert not any(a != b and b.startswith(a) for a in firsts for b in firsts)
