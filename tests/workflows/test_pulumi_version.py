"""CI runs the Pulumi CLI version that matches the pinned `pulumi` Python SDK (docs/infra.md says the same).

pulumi/actions installs the latest CLI unless told otherwise; a CLI newer than the SDK may speak a
protocol the SDK does not know, and a silent upgrade changes previews under review.
"""

from __future__ import annotations

import re
import tomllib

import yaml

from tests.workflows.test_permissions import ROOT, WORKFLOWS


def pinned_sdk() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["infra"]
    [pin] = [d for d in deps if d.startswith("pulumi==")]
    return pin.removeprefix("pulumi==")


def test_every_pulumi_action_step_pins_the_sdks_cli_version() -> None:
    steps = [(path.name, step) for path in sorted(WORKFLOWS.glob("*.yml"))
             for job in yaml.safe_load(path.read_text())["jobs"].values()
             for step in job.get("steps", []) if str(step.get("uses", "")).startswith("pulumi/actions@")]
    assert len(steps) == 3
    for name, step in steps:
        assert (name, (step.get("with") or {}).get("pulumi-version")) == (name, pinned_sdk())


def test_the_docs_name_the_same_version() -> None:
    docs = (ROOT / "docs" / "infra.md").read_text()
    assert re.search(rf"Pulumi CLI \*\*v?{re.escape(pinned_sdk())}\*\*", docs)
