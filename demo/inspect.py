"""The commands to look at each piece yourself while the demo runs (printed before the live view)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from collector.config import CONFIG_FILE, CollectorConfig
from collector.lineprotocol import MEASUREMENT
from collector.topics import GROUP_ID, SPARKPLUG_NAMESPACE

if TYPE_CHECKING:
    from demo.run import Pipeline

# Plain identifiers: the query fits in a double-quoted shell word without escaping.
LATEST_ROWS = f"SELECT * FROM {MEASUREMENT} WHERE phase = 'total' ORDER BY time DESC LIMIT 4"  # noqa: S608


def health_url(bundle: CollectorConfig) -> str:
    return f"http://{bundle.health.host}:{bundle.health.port}/health"


def commands(p: Pipeline) -> list[tuple[str, str]]:
    """(what, shell command) pairs; paths are absolute so they work from any folder."""
    assert p.broker and p.ca and p.observer and p.bundle and p.bundle_dir and p.influx and p.moto
    assert p.outputs_file
    q = shlex.quote
    cert, key = p.observer
    db = p.bundle.influx.database
    env = p.moto.aws_env()
    aws_env = " ".join(f"{k}={env[k]}" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"))
    return [
        ("MQTT as the cloud sees it (observer certificate; the ACL lets only it read everything)",
         f"mosquitto_sub -h 127.0.0.1 -p {p.broker.port} --cafile {q(str(p.ca.cert_path))} "
         f"--cert {q(str(cert))} --key {q(str(key))} -t '{SPARKPLUG_NAMESPACE}/{GROUP_ID}/#' -v"),
        ("InfluxDB with the influx shell",
         f'influx -host 127.0.0.1 -port {p.influx.port} -database {q(db)} -execute "{LATEST_ROWS}"'),
        ("InfluxDB over the v1 HTTP API",
         f"curl -sG http://127.0.0.1:{p.influx.port}/query --data-urlencode db={q(db)} "
         f'--data-urlencode "q={LATEST_ROWS}"'),
        ("collector health: per-meter state, buffer depth per sink, counters",
         f"curl -s {health_url(p.bundle)}"),
        ("the bundle cli.py wrote (the collector reads it unchanged)",
         f"ls -l {q(str(p.bundle_dir))} && cat {q(str(p.bundle_dir / CONFIG_FILE))}"),
        ("the AWS stand-in (moto), with the operator CLI: thing, certificate, policy",
         f"AWS_ENDPOINT_URL={p.moto.endpoint_url} {aws_env} .venv/bin/python cli.py list-devices "
         f"--stack local --outputs-file {q(str(p.outputs_file))}"),
        ("the same with the AWS CLI",
         f"{aws_env} .venv/bin/aws --endpoint-url {p.moto.endpoint_url} iot list-things"),
        ("every log", f"tail -F {q(str(p.logs))}/*.log {_server_logs(p)}"),
    ]


def _server_logs(p: Pipeline) -> str:
    logs: list[Path] = [s.log_path for s in (p.influx, p.broker) if s is not None and s.log_path.exists()]
    return " ".join(shlex.quote(str(path)) for path in logs)


def print_commands(console: Console, p: Pipeline) -> None:
    console.rule("inspect each piece while the demo runs (from the repository folder)")
    for what, command in commands(p):
        console.print(f"[bold]# {what}[/]")
        console.print(command, soft_wrap=True, markup=False, highlight=False)
    console.rule()
