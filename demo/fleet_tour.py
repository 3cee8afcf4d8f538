"""The fleet part of the demo (issue 22): the operator's fleet commands against the local stack.

Once the collector runs, the demo changes its poll interval through the named shadow
(`cli.py collector set`, applied live: the collector's health shows it), then stops the collector the
hard way (kill -9, as a crash or a power cut would) and shows it offline in `cli.py fleet status`,
receives the `pm500.collector.offline` event through the EventBridge rule docs/integration.md shows for
SNS or ticketing, starts the collector again and shows it connected, with `pm500.collector.recovered`.
The commands run exactly as an operator types them (the CLI as a subprocess, against moto).
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from demo.stack import clean_env
from devices.fleet import fleet_status, parse_duration, read_fleet_table
from devices.outputs import read_outputs_file
from infra.outputs import EVENT_BUS_NAME
from infra.presence import offline_rule_pattern
from sandbox.moto import MotoServer
from sandbox.plan_replay import moto_clients

CLI = Path(__file__).resolve().parents[1] / "cli.py"
POLL_INTERVAL_S = 2.0  # the change the tour makes (the bundle says 1 s)
WAIT_S = 90.0
RULE = "demo-collector-offline"


class TourError(RuntimeError):
    """A step of the tour did not happen in time; the message says which."""


@dataclass
class Tour:
    console: Console
    moto: MotoServer
    region: str
    stack: str
    thing: str
    outputs_file: Path
    health_url: str
    offline_after_s: int
    steps: dict[str, bool] = field(default_factory=dict)

    def _cli(self, *args: str) -> tuple[int, str]:
        command = [sys.executable, str(CLI), *args, "--stack", self.stack,
                   "--outputs-file", str(self.outputs_file)]
        shown = "cli.py " + " ".join(shlex.quote(a) for a in [*args, "--stack", self.stack])
        self.console.print(f"[bold]$[/] {shown}", highlight=False)
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**clean_env(), **self.moto.aws_env()}, timeout=WAIT_S, check=False)
        output = (done.stderr + done.stdout).rstrip()  # the CLI's progress lines come first
        if output:
            self.console.print(output, markup=False, highlight=False)
        self.console.print(f"[dim](exit code {done.returncode})[/]")
        return done.returncode, done.stdout

    def _row(self) -> dict[str, Any]:
        """The collector's fleet status row (through the CLI's own functions, quietly, for waiting)."""
        outputs = read_outputs_file(self.outputs_file, self.stack)
        client = moto_clients(self.moto.aws_env(), self.region)
        fleet = read_fleet_table(client("dynamodb"), outputs.fleet_table or "")
        [row] = fleet_status(outputs.select([], None), fleet, dt.datetime.now(dt.UTC),
                             parse_duration("--expiring-within", "30d"))
        return row.as_dict()

    def _settled(self, since_ms: int) -> Callable[[], bool]:
        """Connected, reported after `since_ms`, no meter still starting (what a collector looks like
        once it runs, whatever else it reports: a missing historian, say)."""
        def settled() -> bool:
            row = self._row()
            return bool(row["connected"] and (row["reportedMs"] or 0) > since_ms
                        and not any("starting" in reason for reason in row["attention"]))

        return settled

    def _wait(self, what: str, done: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            value = done()
            if value:
                return value
            time.sleep(0.5)
        raise TourError(f"fleet tour: {what} did not happen within {WAIT_S:g} s")

    def _bus_events(self) -> list[dict[str, Any]]:
        sqs = moto_clients(self.moto.aws_env(), self.region)("sqs")
        url = sqs.get_queue_url(QueueName=RULE)["QueueUrl"]
        found = []
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            found.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return found

    def subscribe(self) -> None:
        """The example rule of docs/integration.md on the stack's bus, an SQS queue standing in for SNS."""
        client = moto_clients(self.moto.aws_env(), self.region)
        bus = json.loads(self.outputs_file.read_text())[EVENT_BUS_NAME]
        sqs = client("sqs")
        url = sqs.create_queue(QueueName=RULE)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        client("events").put_rule(Name=RULE, EventBusName=bus,
                                  EventPattern=json.dumps(offline_rule_pattern(self.stack)))
        client("events").put_targets(Rule=RULE, EventBusName=bus, Targets=[{"Id": "ops", "Arn": arn}])

    def run(self, stop_collector: Callable[[], object], start_collector: Callable[[], object]) -> None:
        self.console.rule("fleet: which collector is down and why, and its settings, from one place")
        self._wait("the collector's first report in the fleet table", self._settled(0))
        first, _ = self._cli("fleet", "status", "--all")
        code, _ = self._cli("collector", "set", "--thing", self.thing, f"poll_interval_s={POLL_INTERVAL_S:g}")
        health = _health(self.health_url)
        self.steps["applied"] = code == 0 and health.get("poll_interval_s") == POLL_INTERVAL_S
        source = (health.get("settings", {}).get("history") or [{}])[-1].get("source")
        self.console.print(f"collector /health now: poll_interval_s = {health.get('poll_interval_s')} "
                           f"(last change from: {source})", highlight=False)
        self._wait("the collector's report after the change", self._settled(_now_ms()))
        stop_collector()
        self.console.print("[yellow]collector killed (kill -9), as a crash or a power cut would[/]")
        self._wait("the collector shown offline", lambda: self._row()["connected"] is False)
        code, _ = self._cli("fleet", "status")
        self.steps["offline"] = code == 3
        self.console.print(f"waiting for pm500.collector.offline (presence.offlineAfterS = "
                           f"{self.offline_after_s} s in Pulumi.local.yaml)...", highlight=False)
        offline = self._wait("the offline event on the bus", self._bus_events)
        self._show_events(offline)
        self.steps["offline_event"] = [e["detail-type"] for e in offline] == ["pm500.collector.offline"]
        restarted = _now_ms()
        start_collector()
        self.console.print("[green]collector started again[/]")
        self._wait("the collector shown connected again, with a new report", self._settled(restarted))
        code, _ = self._cli("fleet", "status", "--all")
        self.steps["back"] = code == first  # as it was before it went away
        recovered = self._wait("the recovered event on the bus", self._bus_events)
        self._show_events(recovered)
        self.steps["recovered_event"] = [e["detail-type"] for e in recovered] == ["pm500.collector.recovered"]
        failed = [step for step, ok in self.steps.items() if not ok]
        if failed:
            raise TourError(f"fleet tour: {', '.join(failed)} not as expected (see the output above)")

    def _show_events(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            self.console.print(f"on the stack's bus: [bold]{e['detail-type']}[/] {json.dumps(e['detail'])}",
                               highlight=False)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (the loopback health endpoint)
        body: dict[str, Any] = json.load(response)
        return body

