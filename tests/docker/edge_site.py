"""An edge stack as an operator has it: the real program's declarations, outputs, and CLI bundles.

`pulumi up` cannot run here, so the program in `infra/` is evaluated on Pulumi's mock runtime with a
generated edge config (meters on the simulator's loopback ports, the site's `dockerHost` = the test
engine, `bundleRoot` = a folder standing in for the edge host's). moto is seeded with what the same
`up` creates in AWS IoT, `cli.py devices provision` runs through typer's CliRunner exactly as an
operator types it (bring-your-own-CA with the dev CA, broker = Mosquitto), and bundles are copied to
the "edge host" with the command docs/edge.md gives.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

import cli
from infra.outputs import COLLECTORS
from preflight.mock_runtime import EvaluatedStack, evaluate_stack, mock_state
from sandbox.aws_seed import seed_stack
from sandbox.ca import DevCA
from sandbox.docker_deploy import CONTAINER, IMAGE, NETWORK, REMOTE_IMAGE, VOLUME, Declared, plain
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import LOOPBACK

STACK = "dockertest"
REGION = "eu-west-1"
CONTAINER_UID = "10001"  # the collector image's USER
DOCKER_TYPES = (CONTAINER, VOLUME, NETWORK, IMAGE, REMOTE_IMAGE)
# docs/edge.md, first deploy, step 3 (run here with a local destination instead of <edge host>:).
COPY_BUNDLES = ["rsync", "-a", f"--chown={CONTAINER_UID}:{CONTAINER_UID}"]


@dataclass
class EdgeSite:
    name: str
    meter_ports: list[int]
    bind_address: str = LOOPBACK
    collectors: tuple[str, ...] = ("edge-01",)
    tls: dict[str, str] | None = None  # `edge.tls`: PEM paths on the (here: this) host


@dataclass
class DeployedStack:
    """What `pulumi up` of an edge stack leaves an operator with (here: from the mock runtime)."""

    evaluated: EvaluatedStack
    operator_dir: Path  # the operator's machine: outputs.json, bundles/<stack>/<site>/<collector>
    bundle_root: Path  # `edge.bundleRoot` on the edge host

    @property
    def outputs_file(self) -> Path:
        return self.operator_dir / "outputs.json"

    def docker_resources(self, site: str) -> list[Declared]:
        """The site's edge host resources plus the stack's image build, as the provider receives them."""
        by_urn = self.evaluated.by_urn()
        host = [r for r in self.evaluated.of_type("pm500:edge:EdgeHost") if r.name.endswith(f"-{site}")]
        assert len(host) == 1, f"one EdgeHost for {site}, found {[r.name for r in host]}"

        def on_host(urn: str | None) -> bool:
            while urn:
                if urn == host[0].urn:
                    return True
                urn = by_urn[urn].parent if urn in by_urn else None
            return False

        return [
            Declared(r.type, r.name, plain(r.inputs))
            for r in self.evaluated.resources
            if r.type in DOCKER_TYPES and (r.type == IMAGE or on_host(r.parent))
        ]

    def remote_image_id(self, remote: Declared) -> str:
        """The image id the (mock) provider reports for a RemoteImage: what containers reference."""
        return str(mock_state(REMOTE_IMAGE, remote.name, remote.inputs, REGION)[1]["imageId"])


def edge_config(sites: list[EdgeSite], docker_host: str, bundle_root: Path) -> dict[str, str]:
    """Stack config as the engine hands it to the program (`namespace:key`, objects as JSON)."""
    declared = [{
        "name": site.name,
        "edge": {"dockerHost": docker_host, "bundleRoot": str(bundle_root), "bindAddress": site.bind_address,
                 **({"tls": site.tls} if site.tls else {})},
        "collectors": [{
            "name": collector,
            "pollIntervalS": 0.5,
            "meters": [{"asset": f"meter-{i + 1}", "breaker": f"F{i + 1}", "host": LOOPBACK, "port": port}
                       for i, port in enumerate(site.meter_ports)],
        } for collector in site.collectors],
    } for site in sites]
    return {
        "aws:region": REGION,
        "pm500:environment": STACK,
        "pm500:sites": json.dumps(declared),
        "pm500:features": json.dumps({"edge": True, "grafana": False}),
    }


def pulumi_up(tmp: Path, sites: list[EdgeSite], docker_host: str) -> DeployedStack:
    """Evaluate the program for an edge stack and save its outputs where the operator keeps them."""
    operator = tmp / "operator"
    operator.mkdir(parents=True)
    bundle_root = tmp / "edge-host" / "opt" / "pm500" / "bundles"
    evaluated = evaluate_stack(STACK, config=edge_config(sites, docker_host, bundle_root), secret_keys=[])
    (operator / "outputs.json").write_text(json.dumps(evaluated.outputs, indent=2))
    return DeployedStack(evaluated, operator, bundle_root)


def seed_aws(stack: DeployedStack, aws_env: dict[str, str], ca: DevCA) -> None:
    """moto holds what the same `up` creates in AWS IoT; the dev CA is registered (BYO CA)."""
    iot = boto3.client("iot", endpoint_url=aws_env["AWS_ENDPOINT_URL"], region_name=REGION,
                       aws_access_key_id=aws_env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=aws_env["AWS_SECRET_ACCESS_KEY"])
    policy: Any = stack.evaluated.one("aws:iot/policy:Policy").inputs["policy"]
    seed_stack(iot, stack.evaluated.outputs, policy, ca_pem=ca.cert_pem.decode())


def provision_device(stack: DeployedStack, site: str, collector: str, ca: DevCA, broker: MosquittoBroker,
                     monkeypatch: pytest.MonkeyPatch, *influx: str) -> Path:
    """`cli.py devices provision` as the operator types it, in the operator's folder (default --out)."""
    assert any(e["site"] == site for e in stack.evaluated.outputs[COLLECTORS].values())
    monkeypatch.chdir(stack.operator_dir)
    result = CliRunner().invoke(cli.app, [
        "devices", "provision", "--stack", STACK, "--site", site, "--collector", collector,
        "--outputs-file", str(stack.outputs_file),
        "--ca-cert", str(ca.cert_path), "--ca-key", str(ca.key_path), "--server-ca", str(ca.cert_path),
        "--endpoint", LOOPBACK, "--mqtt-port", str(broker.port), *influx,
    ])
    assert result.exit_code == 0, result.output
    bundle = stack.operator_dir / "bundles" / STACK / site / collector
    assert (bundle / "config.yaml").is_file(), result.output
    return bundle


def copy_bundles(stack: DeployedStack, site: str) -> None:
    """docs/edge.md's copy step: the site's bundle tree into `<bundleRoot>/<stack>/<site>/`, owned by
    the container's user, each collector's folder kept (a bind mount holds the folder itself)."""
    source = stack.operator_dir / "bundles" / STACK / site
    target = stack.bundle_root / STACK / site
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run([*COPY_BUNDLES, f"{source}/", f"{target}/"], check=True, capture_output=True)
