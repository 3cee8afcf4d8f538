"""The cloud side, locally: the `local` stack's outputs from the real program, its whole plan replayed
into moto (`sandbox.plan_replay`) after the bootstrap's for it (its data key: the account as the first
deploy leaves it), and `cli.py devices provision` run against moto exactly as an operator runs it
against AWS.

`pulumi up -s local` cannot run here (no Pulumi CLI, no AWS), so the program in `infra/` is evaluated
on Pulumi's mock runtime for `Pulumi.local.yaml`: the thing names, policy name and policy document
are the ones that same code would create in AWS. moto then holds those resources, and the CLI finds
them by the names in the outputs file, as it would after a real `pulumi up`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap.plan import bootstrap_requests
from collector.config import DEFAULT_CIP_PORT, DEFAULT_ENCODING, Encoding
from demo.workdir import REPO_ROOT
from infra.outputs import COLLECTOR_POLICY_NAME, COLLECTORS
from preflight.provider_requests import ApiRequest, stack_requests
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import MotoServer
from sandbox.net import LOOPBACK, free_port
from sandbox.plan_replay import moto_clients, replay

STACK = "local"
# The Sparkplug Primary Host Application of the demo (`--encoding sparkplug-b`): the collector waits for
# its STATE; `sandbox.sparkplug_host` plays it with the identity `cli.py hosts provision` gives it.
HOST_ID = "pm500-demo-host"
IOT_POLICY_TYPE = "aws:iot/policy:Policy"
SITES_KEY = "pm500:sites"
CLI = REPO_ROOT / "cli.py"
PROVISION_TIMEOUT_S = 120


class StackError(RuntimeError):
    """The local stack could not be evaluated or provisioned; the message says which step and why."""


@dataclass(frozen=True)
class LocalStack:
    outputs: dict[str, Any]
    policy_document: str
    outputs_file: Path
    region: str
    requests: list[ApiRequest]  # what the bootstrap's, then the stack's `pulumi up` would send to AWS

    @property
    def collector(self) -> dict[str, Any]:
        """The one collector the local stack declares (thing name -> its outputs entry)."""
        collectors: dict[str, Any] = self.outputs[COLLECTORS]
        if len(collectors) != 1:
            raise StackError(f"Pulumi.{STACK}.yaml must declare one collector, found {len(collectors)}")
        return next(iter(collectors.values()))


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_meter_ports(config: dict[str, str]) -> list[str]:
    """Move meters whose port is taken on this machine to free ports, in the config the program gets.

    `Pulumi.local.yaml` puts the simulated meters on ports 14818 and 14819: below Linux's ephemeral
    range (32768+), so no outgoing connection can be holding them (EtherNet/IP's own 44818 is inside
    it). When something else already listens there, the demo still runs. Returns one note per moved
    meter.
    """
    sites = json.loads(config[SITES_KEY])
    notes = []
    for site in sites:
        for collector in site["collectors"]:
            for meter in collector["meters"]:
                port = meter.get("port", DEFAULT_CIP_PORT)
                if not _bindable(meter["host"], port):
                    meter["port"] = free_port()
                    notes.append(f"{meter['asset']}: port {port} is in use here, using {meter['port']}")
    config[SITES_KEY] = json.dumps(sites)
    return notes


def evaluate(directory: Path, encoding: Encoding = DEFAULT_ENCODING) -> tuple[LocalStack, list[str]]:
    """Run `infra/` on the mock runtime for the local stack; save its outputs as `outputs.json`.

    `encoding` is set as the stack's `pm500:encoding` (as an operator would in Pulumi.local.yaml), so
    it reaches the collector the way it does in a real deployment: outputs -> CLI -> bundle. With
    `sparkplug-b` the stack also names its Primary Host Application (`pm500:primaryHostId` = HOST_ID).
    Returns the stack and notes on any meter moved to a free port (see `free_meter_ports`).
    """
    from preflight.mock_runtime import evaluate_stack, load_stack_config_file

    config, secret_keys = load_stack_config_file(STACK)
    notes = free_meter_ports(config)
    config["pm500:encoding"] = encoding
    if encoding == "sparkplug-b":
        config["pm500:primaryHostId"] = HOST_ID
    result = evaluate_stack(STACK, config=config, secret_keys=secret_keys)
    collector_policy = result.outputs[COLLECTOR_POLICY_NAME]  # (host policies too with a primary host)
    policy = next(r.inputs["policy"] for r in result.of_type(IOT_POLICY_TYPE)
                  if r.inputs["name"] == collector_policy)
    document = policy if isinstance(policy, str) else json.dumps(policy)
    directory.mkdir(parents=True, exist_ok=True)
    outputs_file = directory / "outputs.json"
    outputs_file.write_text(json.dumps(result.outputs, indent=2) + "\n")
    (directory / "collector-policy.json").write_text(json.dumps(json.loads(document), indent=2) + "\n")
    region = config["aws:region"]
    requests = [*bootstrap_requests(result), *stack_requests(result)]
    return LocalStack(dict(result.outputs), document, outputs_file, region, requests), notes


def offline_after_s() -> int:
    """`presence.offlineAfterS` of the local stack: how long the demo waits for the offline event."""
    from infra.config import PresenceSpec
    from preflight.mock_runtime import load_stack_config_file

    config, _ = load_stack_config_file(STACK)
    presence = json.loads(config.get("pm500:presence", "{}"))
    return PresenceSpec.model_validate(presence).offline_after_s


def seed(moto: MotoServer, stack: LocalStack, ca: DevCA) -> None:
    """Create the whole stack in moto (its plan, replayed) and register the dev CA (BYO CA)."""
    client = moto_clients(moto.aws_env(), stack.region)
    replay(stack.requests, client)
    client("iot").register_ca_certificate(caCertificate=ca.cert_pem.decode(), setAsActive=True,
                                          allowAutoRegistration=False)


def provision_command(stack: LocalStack, ca: DevCA, broker: MosquittoBroker, influx: InfluxServer,
                      bundle_dir: Path) -> list[str]:
    """`cli.py devices provision` as an operator types it, pointed at the local stand-ins."""
    entry = stack.collector
    return [
        sys.executable, str(CLI), "devices", "provision",
        "--stack", STACK, "--site", entry["site"], "--collector", entry["collector"],
        "--outputs-file", str(stack.outputs_file),
        "--ca-cert", str(ca.cert_path), "--ca-key", str(ca.key_path),
        "--server-ca", str(ca.cert_path),
        "--endpoint", LOOPBACK, "--mqtt-port", str(broker.port),
        "--influx-url", influx.url,
        "--out", str(bundle_dir),
    ]


def provision_host_command(stack: LocalStack, ca: DevCA, broker: MosquittoBroker,
                           bundle_dir: Path) -> list[str]:
    """`cli.py hosts provision` for the demo's Primary Host Application, pointed at the local stand-ins."""
    return [
        sys.executable, str(CLI), "hosts", "provision", "--stack", STACK, "--host-id", HOST_ID,
        "--outputs-file", str(stack.outputs_file),
        "--ca-cert", str(ca.cert_path), "--ca-key", str(ca.key_path),
        "--server-ca", str(ca.cert_path),
        "--endpoint", LOOPBACK, "--mqtt-port", str(broker.port),
        "--out", str(bundle_dir),
    ]


def provision(stack: LocalStack, moto: MotoServer, ca: DevCA, broker: MosquittoBroker, influx: InfluxServer,
              bundle_dir: Path, log: Path) -> None:
    """Run the CLI as a subprocess (its output goes to `log`); raise `StackError` with it on failure."""
    run_cli(provision_command(stack, ca, broker, influx, bundle_dir), moto, log)


def run_cli(command: list[str], moto: MotoServer, log: Path) -> None:
    """Run a `cli.py` command line against moto, output to `log`; `StackError` with its tail on failure."""
    env = {**clean_env(), **moto.aws_env()}
    with log.open("w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                              timeout=PROVISION_TIMEOUT_S, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise StackError(f"cli.py {' '.join(command[2:4])} exited {done.returncode}; see {log}\n{tail}")


def clean_env() -> dict[str, str]:
    """Our environment without settings that could send the CLI to a real AWS account."""
    import os

    from sandbox.moto import overriding_aws_vars

    drop = set(overriding_aws_vars())
    return {k: v for k, v in os.environ.items() if k not in drop}
