"""`python -m bench.<module> --help` prints help and does nothing else: no benchmark run, no rewrite of
docs/BENCHMARKS.md (issue 21: `bench.infra_eval --help` ran the whole benchmark)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def runnable() -> list[str]:
    """Every bench module meant to be run with `python -m` (a `__main__` guard). `bench/synthetic_fleet`
    is no command: it is a Pulumi program folder the mock runtime runs (`bench.fleet_scale`)."""
    return sorted(p.stem for p in BENCH.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def test_the_runnable_modules_are_found() -> None:
    assert {"infra_eval", "drain", "mutants", "polling", "image_size"} <= set(runnable())


@pytest.mark.parametrize("module", runnable())
def test_help_only_prints_help(module: str) -> None:
    report = ROOT / "docs" / "BENCHMARKS.md"
    before = report.read_bytes()
    result = subprocess.run([sys.executable, "-m", f"bench.{module}", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
    assert report.read_bytes() == before
