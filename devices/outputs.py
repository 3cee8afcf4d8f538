"""The stack outputs the CLI needs, read from `pulumi stack output --json` or from a saved copy of it.

Only the outputs named in `infra.outputs` are read, by name; others (rule ARNs, bucket names, ...)
are ignored so that the program can grow outputs without breaking the CLI.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from collector.topics import NAME_PATTERN, NAME_RULE
from collector.validation import describe
from devices.errors import DeviceError
from infra.outputs import (
    COLLECTOR_POLICY_NAME,
    COLLECTORS,
    FLEET_TABLE,
    IOT_ENDPOINT,
    SPARKPLUG_HOST_POLICIES,
    STACK,
    CollectorOutput,
)

PULUMI_TIMEOUT_S = 120


class StackOutputs(BaseModel):
    """The subset of a stack's outputs that device provisioning depends on."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    stack: str = Field(alias=STACK)
    iot_endpoint: str = Field(alias=IOT_ENDPOINT)
    collector_policy_name: str = Field(alias=COLLECTOR_POLICY_NAME)
    collectors: dict[str, CollectorOutput] = Field(alias=COLLECTORS)
    fleet_table: str | None = Field(None, alias=FLEET_TABLE)  # features.fleet; none in older stacks
    # {host id: IoT policy} (absent in stacks from before Sparkplug host identities: none)
    sparkplug_host_policy_names: dict[str, str] = Field(default_factory=dict, alias=SPARKPLUG_HOST_POLICIES)

    def collector(self, site: str, collector: str) -> CollectorOutput:
        """The collector `site`/`collector`, or an error that lists what the stack does have."""
        found = [c for c in self.collectors.values() if c.site == site and c.collector == collector]
        if found:
            return found[0]
        sites = sorted({c.site for c in self.collectors.values()})
        if site not in sites:
            raise DeviceError(
                f"--site {site!r}: stack {self.stack!r} has no such site (sites: {', '.join(sites)})"
            )
        names = sorted(c.collector for c in self.collectors.values() if c.site == site)
        raise DeviceError(
            f"--collector {collector!r}: site {site!r} of stack {self.stack!r} has no such collector "
            f"(collectors: {_preview(names)})"
        )

    def select(self, sites: list[str], match: str | None) -> list[CollectorOutput]:
        """Collectors of the given sites (all sites if none) whose thing name matches the glob `match`."""
        known = {c.site for c in self.collectors.values()}
        unknown = [s for s in sites if s not in known]
        if unknown:
            raise DeviceError(
                f"--site {unknown[0]!r}: stack {self.stack!r} has no such site "
                f"(sites: {', '.join(sorted(known))})"
            )
        chosen = [
            c
            for c in self.collectors.values()
            if (not sites or c.site in sites) and (match is None or fnmatch.fnmatchcase(c.thing_name, match))
        ]
        if not chosen:
            raise DeviceError(f"--match {match!r}: no collector of stack {self.stack!r} matches")
        return sorted(chosen, key=lambda c: c.thing_name)


def _preview(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def check_name(option: str, value: str) -> str:
    """Reject a stack/site/collector name before it reaches AWS (which would reject it, or worse, not)."""
    if not NAME_PATTERN.match(value):
        raise DeviceError(f"{option} {value!r}: expected {NAME_RULE}")
    return value


def parse_outputs(data: Any, source: str, stack: str) -> StackOutputs:
    """Validate raw outputs JSON and check that they belong to `stack`."""
    if not isinstance(data, dict):
        raise DeviceError(f"{source}: expected a JSON object of stack outputs")
    try:
        outputs = StackOutputs.model_validate(data)
    except ValidationError as e:
        raise DeviceError(describe(e, source).splitlines()[0]) from None
    if outputs.stack != stack:
        raise DeviceError(
            f"{source}: these are the outputs of stack {outputs.stack!r}, not --stack {stack!r}"
        )
    return outputs


def read_outputs_file(path: Path, stack: str) -> StackOutputs:
    try:
        text = path.read_text()
    except OSError as e:
        raise DeviceError(f"--outputs-file {path}: cannot read it: {e.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DeviceError(f"--outputs-file {path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    return parse_outputs(data, str(path), stack)


def pulumi_outputs(stack: str, cwd: Path | None = None) -> StackOutputs:
    """`pulumi stack output --json --stack STACK`, run in the project folder (secrets stay hidden)."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise DeviceError(
            "the Pulumi CLI is not installed here; pass --outputs-file FILE with the output of "
            f"`pulumi stack output --json --stack {stack}` saved on a machine that has it"
        )
    try:
        done = subprocess.run(
            [pulumi, "stack", "output", "--json", "--stack", stack, "--non-interactive"],
            capture_output=True,
            text=True,
            timeout=PULUMI_TIMEOUT_S,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DeviceError(f"`pulumi stack output` did not answer within {PULUMI_TIMEOUT_S} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise DeviceError(f"--stack {stack!r}: `pulumi stack output` failed: {reason}")
    try:
        data = json.loads(done.stdout)
    except json.JSONDecodeError as e:
        raise DeviceError(f"`pulumi stack output --json` printed invalid JSON: {e.msg}") from None
    return parse_outputs(data, f"stack {stack} outputs", stack)


def load_outputs(stack: str, outputs_file: Path | None) -> StackOutputs:
    check_name("--stack", stack)
    if outputs_file is not None:
        return read_outputs_file(outputs_file, stack)
    return pulumi_outputs(stack)
