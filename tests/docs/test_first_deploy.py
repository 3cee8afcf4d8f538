"""The first deploy as docs/infra.md ("First deploy, step by step") and docs/edge.md ("First deploy of an
edge site") show it, run on a clean clone of the repository: every shell block of those sections, in
order, as written. The only lines not run are the ones that need what this workplace has not (the Pulumi
CLI, an AWS account, a site's edge host) or what the suite already did (`./dev setup`): each is named
below. Placeholders (`<account id>`) get example values, as a reader would fill them in.

Then what the skipped `pulumi config set` lines would set is applied to the bootstrap program on Pulumi's
mock runtime, which must read the policy files step 1 wrote (the step that failed with "No such file or
directory" when the folder was missing: issue 21 item 5).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from preflight.mock_runtime import evaluate_stack, load_stack_config_file
from tests.docs.commands import ROOT, SHELL_LANGUAGES, fences, logical_lines, segments

SECTIONS = [(ROOT / "docs" / "infra.md", "### First deploy, step by step"),
            (ROOT / "docs" / "edge.md", "## First deploy of an edge site")]
PLACEHOLDERS = {"<account id>": "123456789012", "<owner>/<repo>": "example-org/pm500"}
# (first words of a command, why it is not run here)
NOT_RUN_HERE = [
    (("pulumi",), "needs the Pulumi CLI"),
    (("./dev", "setup"), "the suite already runs in the .venv `./dev setup` made"),
    ((".venv/bin/python", "cli.py", "sites", "provision"), "needs AWS (AWS IoT) and the stack's outputs"),
    ((".venv/bin/python", "cli.py", "devices", "provision"), "needs AWS (AWS IoT) and the stack's outputs"),
    (("rsync",), "needs the site's edge host"),
    (("docker",), "needs the site's edge host"),
]
ACCOUNT = PLACEHOLDERS["<account id>"]
PULUMI = "needs the Pulumi CLI"
SET_PATH = "pulumi config set --path 'pm500-bootstrap:"
# docs/infra.md's first deploy, line by line: what is not run here, and why.
EXPECTED_NOT_RUN = [
    ("pulumi stack init ci", PULUMI),
    ("pulumi config set pm500-bootstrap:githubRepository example-org/pm500", PULUMI),
    (f"{SET_PATH}policyFiles.preview-staging[0]' policies/staging-preview.json", PULUMI),
    (f"{SET_PATH}policyFiles.staging[0]' policies/staging-deploy.json", PULUMI),
    (f"{SET_PATH}policyFiles.preview-prod[0]' policies/prod-preview.json", PULUMI),
    (f"{SET_PATH}policyFiles.prod[0]' policies/prod-deploy.json", PULUMI),
    (f"{SET_PATH}boundaryFiles.staging[0]' policies/staging-boundary.json", PULUMI),
    (f"{SET_PATH}boundaryFiles.prod[0]' policies/prod-boundary.json", PULUMI),
    ("pulumi up", PULUMI),
    ("./dev setup", "the suite already runs in the .venv `./dev setup` made"),
    ("pulumi login", PULUMI),
    ("pulumi stack select staging", PULUMI),
    ("pulumi preview --policy-pack policy", PULUMI),
    ("pulumi up", PULUMI),
    ("pulumi stack output --json > staging-outputs.json", PULUMI),
]


def section_blocks(page: Path, heading: str) -> list[str]:
    """The shell blocks between `heading` and the next heading of the same or a higher level."""
    text = page.read_text()
    start = text.index(heading)
    body = text.index("\n", start)
    level = len(heading.split(" ")[0])
    following = re.search(rf"^#{{1,{level}}} ", text[body:], re.MULTILINE)
    end = body + following.start() if following else len(text)
    first, last = text.count("\n", 0, start) + 1, text.count("\n", 0, end) + 1
    return [f.source for f in fences(page) if f.language in SHELL_LANGUAGES and first <= f.line < last]


def why_not_run(line: str) -> str | None:
    for words in segments(line):
        for prefix, reason in NOT_RUN_HERE:
            if tuple(words[: len(prefix)]) == prefix:
                return reason
    return None


def script(blocks: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """One bash script of the blocks, the lines that cannot run here replaced by `:`; and those lines.
    Each block runs in a subshell from the repository root, where each step starts."""
    lines, skipped = ["set -euo pipefail"], []
    for block in blocks:
        lines.append("(")
        for _, line in logical_lines(block):
            for placeholder, value in PLACEHOLDERS.items():
                line = line.replace(placeholder, value)
            reason = why_not_run(line)
            if reason:
                skipped.append((line.split("#")[0].strip(), reason))
                lines.append(":")
            else:
                lines.append(line)
        lines.append(")")
    return "\n".join(lines) + "\n", skipped


def pulumi_config_set(skipped: list[tuple[str, str]]) -> dict[str, Any]:
    """What the skipped `pulumi config set [--path] KEY VALUE` lines would set (a stand-in for the CLI)."""
    config: dict[str, Any] = {}
    for line, _ in skipped:
        words = segments(line)[0]
        if words[:3] != ["pulumi", "config", "set"]:
            continue
        path, (key, value) = "--path" in words, [w for w in words[3:] if w != "--path"]
        indexed = re.fullmatch(r"([^.]+)(?:\.([^.\[]+))?\[(\d+)\]", key) if path else None
        if indexed:  # `ns:key[i]` or `ns:key.name[i]`: a list, or a map of lists
            holder = config.setdefault(indexed[1], {}) if indexed[2] else config
            items = holder.setdefault(indexed[2] or indexed[1], [])
            items.insert(int(indexed[3]), value)
        else:
            config[key] = value
    return config


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of the repository, with the suite's .venv (what `./dev setup` would make there)."""
    target = tmp_path_factory.mktemp("first-deploy") / "pm500"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=300)
    (target / ".venv").symlink_to(Path(sys.prefix))
    return target


def test_infra_first_deploy_runs_as_written_where_it_can(clone: Path) -> None:
    text, skipped = script(section_blocks(*SECTIONS[0]))
    result = subprocess.run(["bash", "-c", text], cwd=clone, capture_output=True, text=True, timeout=1200,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # step 1 wrote the six policy files the bootstrap program reads
    policies = clone / "bootstrap" / "policies"
    for name in ("staging-preview", "staging-deploy", "staging-boundary", "prod-preview", "prod-deploy",
                 "prod-boundary"):
        documents = json.loads((policies / f"{name}.json").read_text())
        assert documents and all("Statement" in d for d in documents)
        assert all(f"::{ACCOUNT}:" in json.dumps(d) or ":iam::" not in json.dumps(d) for d in documents)
    # the mock runtime's JSON report of `.venv/bin/python -m preflight.mock_runtime staging`
    assert '"resourceCounts"' in result.stdout
    assert skipped == EXPECTED_NOT_RUN

    # The bootstrap program with what the skipped `pulumi config set` lines set: it reads those files.
    settings = pulumi_config_set(skipped)
    config, secret = load_stack_config_file("ci", clone / "bootstrap")
    config.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()})
    stack = evaluate_stack("ci", clone / "bootstrap", config=config, secret_keys=secret,
                           program_dir=clone / "bootstrap")
    managed = {p.inputs["name"] for p in stack.of_type("aws:iam/policy:Policy")}
    assert {"pm500-ci-preview-staging-1", "pm500-ci-deploy-staging-1", "pm500-ci-preview-prod-1",
            "pm500-ci-deploy-prod-1", "pm500-staging-boundary", "pm500-prod-boundary"} <= managed


def test_edge_first_deploy_needs_aws_and_the_edge_host_for_every_step() -> None:
    """docs/edge.md's steps: provisioning calls AWS IoT, the copy goes to the edge host (both run against
    stand-ins in tests/docker/test_edge_deploy.py); here their command lines are named, and their flags
    are checked by tests/docs/test_commands.py."""
    _, skipped = script(section_blocks(*SECTIONS[1]))
    assert [(" ".join(line.split()[2:4]) if line.startswith(".venv") else line.split()[0], reason)
            for line, reason in skipped] == [
        ("sites provision", "needs AWS (AWS IoT) and the stack's outputs"),
        ("rsync", "needs the site's edge host"),
    ]
