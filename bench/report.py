"""Write one benchmark's section of docs/BENCHMARKS.md, leaving the other benchmarks' sections alone."""

from __future__ import annotations

import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Each section is written by the benchmark itself, with the command that produced it. Targets are\n"
    "ratios against a baseline measured in the same run on the same machine (2 shared cores): absolute\n"
    "times are context, not targets.\n"
)


def write_section(name: str, body: str, report: Path = REPORT) -> None:
    """Replace (or append) the section `name`, stamped with the command line and the machine."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "-m", _module(), *sys.argv[1:]])
    stamp = (
        f"Command: `{command}`  \n"
        f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}\n\n"
    )
    section = f"{begin}\n{stamp}{body.strip()}\n{end}"
    text = report.read_text() if report.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)


def _module() -> str:
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem
