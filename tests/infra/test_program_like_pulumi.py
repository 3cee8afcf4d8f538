"""Run the program the way Pulumi's Python language host does: the project's `.venv` interpreter, cwd
`infra/` (the project's `main`), the program folder run with `runpy`, and the repo root NOT on sys.path
(the project is importable only because it is installed in the venv)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from preflight.mock_runtime import PROJECT_DIR

RUNNER = """
import json, pathlib, sys
repo = pathlib.Path(sys.argv[1]).resolve()
on_path = [p for p in sys.path if p and pathlib.Path(p).resolve() == repo]
from preflight.mock_runtime import evaluate_stack
evaluated = evaluate_stack("staging", program_dir=pathlib.Path.cwd())
print(json.dumps({"repo_on_path": on_path, "things": evaluated.outputs["thingNames"],
                  "types": sorted({r.type for r in evaluated.resources})}))
"""


def test_program_runs_from_its_folder_with_absolute_imports(tmp_path: Path) -> None:
    runner = tmp_path / "runner.py"  # sys.path[0] is then tmp_path, not the repo
    runner.write_text(RUNNER)
    python = PROJECT_DIR / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python if python.exists() else Path(sys.executable)), str(runner), str(PROJECT_DIR)],
        cwd=PROJECT_DIR / "infra",
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["repo_on_path"] == []
    assert result["things"]["plant-b"] == {
        "edge-01": "staging:plant-b:edge-01",
        "edge-02": "staging:plant-b:edge-02",
    }
    assert "aws:iot/topicRule:TopicRule" in result["types"]


def test_program_modules_shadow_no_stdlib_module() -> None:
    """The host puts `infra/` itself on sys.path: a module named like a stdlib one would shadow it."""
    names = {p.stem for p in (PROJECT_DIR / "infra").glob("*.py")} - {"__init__", "__main__"}
    assert not names & set(sys.stdlib_module_names)


def test_program_uses_only_absolute_imports() -> None:
    for path in (PROJECT_DIR / "infra").glob("*.py"):
        for line in path.read_text().splitlines():
            assert not line.startswith("from ."), f"{path.name}: {line}"
