"""The demo's working directory: created fresh on every run, never someone else's folder.

A run owns its folder through a marker file. A second run deletes what the first left (logs, bundle,
databases) and starts from scratch; a folder without the marker that is not empty is refused rather
than wiped, so `--workdir ~/important` can never destroy anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MARKER = ".pm500-demo"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO_ROOT / "var" / "demo"


class WorkdirError(RuntimeError):
    """The requested work directory cannot be used (not ours and not empty)."""


def prepare(path: Path) -> Path:
    """Empty (or create) `path` for a new run and mark it as the demo's; return it absolute."""
    path = path.expanduser().resolve()
    if path.exists():
        if not path.is_dir():
            raise WorkdirError(f"--workdir {path}: exists and is not a directory")
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise WorkdirError(
                f"--workdir {path}: not empty and not a previous demo folder (no {MARKER}); "
                "choose a new or empty folder"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("created by `python -m demo`; deleted and recreated by the next run\n")
    (path / "logs").mkdir()
    return path
