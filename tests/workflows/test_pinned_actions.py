"""Actions run with the job's credentials, so each is pinned to a commit, not a tag a maintainer (or
whoever takes over their account) can move: `owner/repo@<40-hex commit> # <the tag it was>`.
Judged by zizmor (the GitHub Actions security linter, pinned in pyproject's dev extra), which
`./dev lint` runs with its default ("regular") audits offline, as well as by the literal rule below.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.workflows.test_permissions import ROOT, WORKFLOWS, write

ZIZMOR = shutil.which("zizmor", path=str(Path(sys.executable).parent))
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$")
PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
VERSION_COMMENT = re.compile(r"\s+# v\d+(\.\d+){0,2}\s*$")


def uses_lines() -> list[tuple[str, str, str]]:
    """(file, action reference, rest of the line) of every `uses:` in the workflows."""
    return [(p.name, m[1], m[2]) for p in sorted(WORKFLOWS.glob("*.yml"))
            for line in p.read_text().splitlines() if (m := USES.match(line))]


def test_every_action_is_pinned_by_commit_with_its_tag_in_a_comment() -> None:
    external = [(name, ref, rest) for name, ref, rest in uses_lines() if not ref.startswith(("$/", "./"))]
    assert len(external) >= 10
    for name, ref, rest in external:
        assert PINNED.fullmatch(ref) and VERSION_COMMENT.fullmatch(rest), (name, ref, rest)
    # one commit per action across the files, so an upgrade is one decision
    commits: dict[str, set[str]] = {}
    for _, ref, rest in external:
        commits.setdefault(ref.split("@")[0], set()).add(ref.split("@")[1] + rest)
    assert all(len(v) == 1 for v in commits.values()), commits


def zizmor(*inputs: Path) -> subprocess.CompletedProcess[str]:
    assert ZIZMOR, "zizmor is not installed in the venv (pyproject dev extra)"
    return subprocess.run([ZIZMOR, "--offline", "--format", "json", "--no-progress", *map(str, inputs)],
                          capture_output=True, text=True, timeout=300, check=False)


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    done = zizmor(WORKFLOWS)
    assert (done.returncode, json.loads(done.stdout)) == (0, []), done.stdout[-3000:] + done.stderr[-2000:]


def test_zizmor_refuses_a_tag_pin_and_a_blanket_secret_pass(tmp_path: Path) -> None:
    """What the workflows had before (issue 24): the linter `./dev lint` runs would have failed."""
    path = write(tmp_path, "old.yml", """
on: push
permissions: {contents: read}
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v6
  b:
    uses: octo/other/.github/workflows/x.yml@0123456789abcdef0123456789abcdef01234567 # v1
    secrets: inherit
""")
    done = zizmor(path)
    found = {f["ident"] for f in json.loads(done.stdout)}
    assert done.returncode != 0 and {"unpinned-uses", "secrets-inherit", "artipacked"} <= found, found


def test_zizmor_is_pinned_and_run_by_dev_lint() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert any(re.fullmatch(r"zizmor==\d+\.\d+\.\d+", d) for d in dev)
    lint = (ROOT / "dev").read_text().split("cmd_lint()")[1].split("\n}")[0]
    assert '"$VENV/bin/zizmor" --offline .github/workflows' in lint
