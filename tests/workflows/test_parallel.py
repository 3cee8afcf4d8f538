"""CI's `pulumi up`/`preview` run with the bounded parallelism docs/infra.md designs the fleet-scale
`up` around (IoT registry API rates); pulumi/actions' `parallel` defaults to unbounded (2147483647)."""

from __future__ import annotations

import re

import yaml

from tests.workflows.test_permissions import ROOT, WORKFLOWS


def test_every_up_and_preview_step_passes_the_documented_parallelism() -> None:
    [documented] = set(re.findall(r"`pulumi up --parallel (\d+)`", (ROOT / "docs" / "infra.md").read_text()))
    assert documented == "16"
    steps = [(path.name, step["with"]) for path in sorted(WORKFLOWS.glob("*.yml"))
             for job in yaml.safe_load(path.read_text())["jobs"].values()
             for step in job.get("steps", []) if str(step.get("uses", "")).startswith("pulumi/actions@")
             and (step.get("with") or {}).get("command") in ("up", "preview")]
    assert sorted(name for name, _ in steps) == ["pull-request.yml", "pulumi-up.yml"]
    for name, inputs in steps:
        assert (name, str(inputs.get("parallel"))) == (name, documented)
