"""The commands to look at each piece yourself while the demo runs (printed before the live view)."""

from __future__ import annotations

import shlex
from pathlib import Path

from rich.console import Console

from collector.config import CA_FILE, CERT_FILE, CONFIG_FILE, KEY_FILE, CollectorConfig
from collector.lineprotocol import MEASUREMENT
from collector.topics import GROUP_ID, NCMD, SPARKPLUG_NAMESPACE
from demo.pipeline import Pipeline

# Plain identifiers: the query fits in a double-quoted shell word without escaping.
LATEST_ROWS = f"SELECT * FROM {MEASUREMENT} WHERE phase = 'total' ORDER BY time DESC LIMIT 4"  # noqa: S608


def health_url(bundle: CollectorConfig) -> str:
    return f"http://{bundle.health.host}:{bundle.health.port}/health"


def aws_commands(endpoint_url: str, env: dict[str, str], outputs_file: Path) -> list[tuple[str, str]]:
    """The operator CLI and the AWS CLI against moto. The region is set the way each one reads it:
    cli.py honours AWS_REGION; the AWS CLI v1 in .venv (botocore) reads only AWS_DEFAULT_REGION, so it
    gets `--region`."""
    creds = " ".join(f"{k}={env[k]}" for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    region = env["AWS_REGION"]
    return [
        ("the AWS stand-in (moto), with the operator CLI: thing, certificate, policy",
         f"AWS_ENDPOINT_URL={endpoint_url} {creds} AWS_REGION={region} .venv/bin/python cli.py devices list "
         f"--stack local --outputs-file {shlex.quote(str(outputs_file))}"),
        ("the same with the AWS CLI",
         f"{creds} .venv/bin/aws --endpoint-url {endpoint_url} --region {region} iot list-things"),
    ]


def commands(p: Pipeline) -> list[tuple[str, str]]:
    """(what, shell command) pairs; paths are absolute so they work from any folder."""
    assert p.broker and p.ca and p.observer and p.bundle and p.bundle_dir and p.influx and p.moto
    assert p.outputs_file
    q = shlex.quote
    cert, key = p.observer
    db = p.bundle.influx.database
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
        *aws_commands(p.moto.endpoint_url, p.moto.aws_env(), p.outputs_file),
        *host_commands(p),
        ("every log", f"tail -F {q(str(p.logs))}/*.log {_server_logs(p)}"),
    ]


def rebirth_command(p: Pipeline) -> str:
    """Publish the Primary Host's NCMD `Node Control/Rebirth` = true to the collector (QoS 0, as the spec
    sends NCMD), with the host's certificate; mosquitto_pub's own client id, so the host stays online."""
    assert p.broker and p.host_bundle_dir and p.rebirth_file and p.bundle
    q, host = shlex.quote, p.host_bundle_dir
    return (f"mosquitto_pub -h 127.0.0.1 -p {p.broker.port} --cafile {q(str(host / CA_FILE))} "
            f"--cert {q(str(host / CERT_FILE))} --key {q(str(host / KEY_FILE))} -q 0 "
            f"-t '{NCMD.render(p.bundle.thing_name)}' -f {q(str(p.rebirth_file))}")


def host_commands(p: Pipeline) -> list[tuple[str, str]]:
    """With a Primary Host (--encoding sparkplug-b): ask for a rebirth as the host would, see it arrive."""
    if p.host_bundle_dir is None:
        return []
    return [
        ("ask the collector to rebirth, as its Primary Host would (NCMD Node Control/Rebirth): a new "
         "NBIRTH and DBIRTHs follow (births in the view, the host's log)", rebirth_command(p)),
        ("what the Primary Host Application receives", f"tail -F {shlex.quote(str(p.logs / 'host.log'))}"),
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
