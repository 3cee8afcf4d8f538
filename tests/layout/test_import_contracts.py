"""The import rules of docs/ENGINEERING.md ("Layout"), kept true by import-linter (`lint-imports`).

The contracts live in pyproject.toml ([tool.importlinter]). The first test runs them over the code as
it is; the others add one import the issue forbids (infra importing what judges or uses it, a room
importing a room above it, a cycle) to the real import graph and expect the contracts to catch it,
so a contract loosened by mistake fails here too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter import configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.layers import LayersContract

REPO = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["type"]: c for c in SETTINGS["contracts"]}
configuration.configure()


def test_cli_py_imports_only_the_command_groups() -> None:
    """`cli.py` is a module, not a package, so import-linter cannot hold it: read its imports here."""
    tree = ast.parse((REPO / "cli.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    ours = {name for name in imported if name.split(".")[0] in SETTINGS["root_packages"]}
    assert ours and {name.split(".")[0] for name in ours} == {"commands"}, ours


def test_the_code_keeps_every_import_contract() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([lint_imports, "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Contracts: {len(SETTINGS['contracts'])} kept, 0 broken." in done.stdout


Contract = type[LayersContract | AcyclicSiblingsContract]


def kept(contract_class: Contract, extra: tuple[str, str] | None) -> bool:
    """Whether the pyproject contract of this type holds on the real graph plus the `extra` import."""
    graph = grimp.build_graph(*SETTINGS["root_packages"], cache_dir=None)
    if extra is not None:
        graph.add_import(importer=extra[0], imported=extra[1])
    options = {k: v for k, v in CONTRACTS[contract_class.type_name].items() if k not in ("name", "type")}
    session = {"root_packages": SETTINGS["root_packages"]}
    contract = contract_class(name="under test", session_options=session, contract_options=options)
    return bool(contract.check(graph, verbose=False).kept)


def test_the_real_graph_keeps_the_contracts_without_an_added_import() -> None:
    assert kept(LayersContract, None) and kept(AcyclicSiblingsContract, None)


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        # issue 23: `infra` never imports preflight, devices, sandbox, demo or bench
        ("infra.config", "preflight.mock_runtime"),
        ("infra.registry", "devices.outputs"),
        ("infra.edge", "sandbox.docker_engine"),
        ("infra.naming", "demo.stack"),
        ("infra.images", "bench.image_size"),
        # and no room imports a room above it
        ("collector.config", "infra.config"),
        ("preflight.deployer_policy", "sandbox.plan_replay"),
        ("devices.provision", "commands.options"),
        ("infra.iam", "policy.validators"),
        ("sandbox.moto", "demo.run"),
    ],
)
def test_an_import_from_a_lower_floor_upwards_breaks_the_floors(importer: str, imported: str) -> None:
    assert not kept(LayersContract, (importer, imported))


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("devices.outputs", "sandbox.moto"),
        ("demo.stack", "bench.mutants"),
        ("policy.validators", "preflight.iam_reference"),
    ],
)
def test_rooms_on_one_floor_do_not_import_each_other(importer: str, imported: str) -> None:
    assert not kept(LayersContract, (importer, imported))


def test_a_cycle_inside_a_package_breaks_the_acyclic_contract() -> None:
    # demo.run imports demo.inspect; the reverse closes the cycle the demo used to have.
    assert not kept(AcyclicSiblingsContract, ("demo.inspect", "demo.run"))
