"""The demo's working directory: created fresh on every run, never someone else's folder.

A run owns its folder through a marker file. A second run deletes what the first left (logs, bundle,
databases) and starts from scratch; a folder without the marker that is not empty is refused rather
than wiped, so `--workdir ~/important` can never destroy anything.

Each run also records the pids it starts in `pids.json` as it goes. Only a SIGKILL of the demo can
leave its children running (nothing in-process runs then); the next run in the same folder finds them
there and stops them before starting from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

MARKER = ".pm500-demo"
PIDS_FILE = "pids.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO_ROOT / "var" / "demo"


class WorkdirError(RuntimeError):
    """The requested work directory cannot be used (not ours and not empty)."""


def record_pids(path: Path, pids: dict[str, int]) -> None:
    tmp = path / f".{PIDS_FILE}.tmp"
    tmp.write_text(json.dumps(pids))
    os.replace(tmp, path / PIDS_FILE)


def _runs_in(pid: int, folder: Path) -> bool:
    """True if `pid` is a live process whose command line or working directory is inside `folder`
    (so a recycled pid of an unrelated process is never touched)."""
    proc = Path("/proc") / str(pid)
    try:
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        cwd = os.readlink(proc / "cwd")
    except OSError:
        return False
    return str(folder) in cmdline or Path(cwd).is_relative_to(folder)


def stop_leftovers(path: Path) -> list[str]:
    """SIGKILL the process groups a previous, killed run left in `path`; return what was stopped."""
    try:
        pids: dict[str, int] = json.loads((path / PIDS_FILE).read_text())
    except (OSError, ValueError):
        return []
    stopped = []
    for name, pid in pids.items():
        if _runs_in(pid, path):
            try:
                os.killpg(pid, signal.SIGKILL)  # each child leads its own process group
            except ProcessLookupError:
                continue
            stopped.append(f"{name} ({pid})")
    return stopped


def prepare(path: Path) -> tuple[Path, list[str]]:
    """Empty (or create) `path` for a new run and mark it as the demo's.

    Returns the absolute folder and the leftovers of a killed previous run that were stopped.
    """
    path = path.expanduser().resolve()
    leftovers: list[str] = []
    if path.exists():
        if not path.is_dir():
            raise WorkdirError(f"--workdir {path}: exists and is not a directory")
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise WorkdirError(
                f"--workdir {path}: not empty and not a previous demo folder (no {MARKER}); "
                "choose a new or empty folder"
            )
        leftovers = stop_leftovers(path)
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("created by `python -m demo`; deleted and recreated by the next run\n")
    (path / "logs").mkdir()
    return path, leftovers
