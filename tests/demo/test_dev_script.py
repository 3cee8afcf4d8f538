"""`./dev setup` says what it is about to do before the long, noisy apt/pip steps of a first run.

Runs a copy of the real script in an empty folder with stand-ins for apt-get, dpkg, python3 and npm
on PATH (they print what they were asked): the order of the output is what a new user sees. npm is
there to show that setup no longer needs node (actionlint comes as a Python wheel).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from demo.workdir import REPO_ROOT

SHIMS = {
    "dpkg": "exit 1",  # every package missing: a first run
    "apt-get": 'echo "APT $*"',
    "npm": 'echo "NPM $*"',
    "python3": (
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; '
        "printf '#!/bin/sh\\necho PIP \"$@\"\\n' > \"$3/bin/python\"; chmod +x \"$3/bin/python\"; fi"
    ),
}


def test_first_run_announces_each_long_step_before_its_output(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "dev", tmp_path / "dev")
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in SHIMS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    done = subprocess.run(
        ["bash", str(tmp_path / "dev"), "setup"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout
    out = [line for line in done.stdout.splitlines() if line]
    said = [i for i, line in enumerate(out) if line.startswith("./dev: ")]

    def first(prefix: str) -> int:
        return next(i for i, line in enumerate(out) if line.startswith(prefix))

    assert "./dev: installing Debian packages" in out[said[0]] and said[0] < first("APT")
    pip_note = next(i for i in said if "Python packages" in out[i])
    assert pip_note < first("PIP")
    assert not [line for line in out if line.startswith("NPM")]
