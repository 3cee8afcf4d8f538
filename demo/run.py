"""Bring the local pipeline up in dependency order, watch data flow, tear everything down by pid.

Order: stack (real program on the mock runtime) -> moto seeded with it -> dev CA -> InfluxDB ->
Mosquitto and AWS IoT's services around it (lifecycle events, shadows, topic rules) -> `cli.py
devices provision` (bundle) -> meter simulators -> observer subscriber -> [sparkplug-b: `cli.py hosts
provision` and the Primary Host Application] -> collector (from the bundle), then the fleet tour
(`demo.fleet_tour`: a remote setting applied live, the collector offline and back). The observer
subscribes before the collector connects, so it sees the collector's births, not only its data. Every
child process is a `sandbox.procs.ManagedProcess` in its own process group; the teardown stops them in
reverse order, then checks that none of their pids is alive.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.live import Live
from rich.text import Text

from collector.config import CONFIG_FILE, DEFAULT_ENCODING, ENV_PREFIX, Encoding, load_config
from demo import fleet_tour, inspect, observe, stack, view
from demo.pipeline import Pipeline
from demo.signals import Shutdown, SignalGuard
from demo.verdict import Verdict, judge
from demo.workdir import record_pids
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.iot_core import IotCoreServices
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import MotoServer
from sandbox.mqtt import Recorder
from sandbox.net import LOOPBACK, free_port, wait_for_port
from sandbox.procs import ManagedProcess
from sandbox.server import ChildServer

SUMMARY_PREFIX = "PM500_DEMO_SUMMARY "
LEAVE_OUT = ("meters", "influxdb")  # pieces `--without` can leave out, to see a leg fail
REFRESH_S = 1.0
PLAIN_STATUS_EVERY_S = 5.0
PROCESS_START_TIMEOUT_S = 60.0

EXIT_OK = 0
EXIT_NO_DATA = 1
EXIT_PIECE_FAILED = 2

S = TypeVar("S", bound=ChildServer)


class PieceError(RuntimeError):
    """A piece of the pipeline did not start, or stopped on its own; the message names it and its log."""


def python_module(module: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def _child_env() -> dict[str, str]:
    # Unbuffered output: a log file shows what a child did up to the moment it was stopped.
    return {"PYTHONUNBUFFERED": "1"}


class Demo:
    """One run of the demo against one fresh work directory."""

    def __init__(self, console: Console, workdir: Path, duration_s: float | None,
                 without: frozenset[str] = frozenset(), encoding: Encoding = DEFAULT_ENCODING) -> None:
        self.console = console
        self.encoding = encoding
        self.duration_s = duration_s
        self.without = without
        self.pipeline = Pipeline(workdir)
        # The bundle is used unchanged; like the edge container, the host-specific settings the CLI
        # does not write (buffer file, health port) come from the collector's own variables.
        self.collector_env = {
            f"{ENV_PREFIX}BUFFER__PATH": str(workdir / "collector" / "buffer.sqlite"),
            f"{ENV_PREFIX}HEALTH__PORT": str(free_port()),
        }
        self._teardown = ExitStack()
        self._processes: list[tuple[str, ManagedProcess | ChildServer]] = []
        self._collector: ManagedProcess | None = None
        self._local: stack.LocalStack | None = None
        # What has been observed so far: kept here, so a Ctrl-C can still judge and report it.
        self.snapshot: observe.Snapshot | None = None
        self.fleet_steps: dict[str, bool] = {}
        self.elapsed_s = 0.0

    # --- console --------------------------------------------------------------------------

    @contextmanager
    def _step(self, label: str) -> Iterator[None]:
        started = time.monotonic()
        with self.console.status(label):
            yield
        self.console.print(f"[green]✓[/] {label} [dim]({time.monotonic() - started:.1f}s)[/]")

    def _track(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self.pipeline.pids[name] = pid
            record_pids(self.pipeline.workdir, self.pipeline.pids)

    # --- bring-up -------------------------------------------------------------------------

    def start(self) -> None:
        p = self.pipeline
        with self._step("local stack: the real Pulumi program evaluated on Pulumi's mock runtime "
                        "(stand-in for `pulumi up -s local`)"):
            local, notes = stack.evaluate(p.workdir / "stack", self.encoding)
        p.outputs_file = local.outputs_file
        self._local = local
        for note in notes:
            self.console.print(f"  [yellow]note[/] {note}")
        with self._step("dev CA (the plant's own CA, on the CLI's bring-your-own-CA path)"):
            p.ca = DevCA.create(p.workdir / "ca")
        with self._step("moto server (stand-in for the AWS APIs) seeded with the stack's things, groups, "
                        "IoT policy and the registered dev CA"):
            p.moto = MotoServer()
            p.moto.start()
            self._teardown.callback(p.moto.stop)
            p.moto.execute_state_machines()  # the presence state machine runs (sandbox.iot_core)
            stack.seed(p.moto, local, p.ca)
        influx = InfluxServer(p.workdir / "influxdb")
        if "influxdb" in self.without:
            self.console.print(f"[yellow]-[/] InfluxDB left out (--without influxdb): {influx.url} refuses")
        else:
            with self._step("InfluxDB 1.x (the site's edge historian)"):
                self._server(influx)
        p.influx = influx
        hosts = [stack.HOST_ID] if self.encoding == "sparkplug-b" else []
        with self._step("Mosquitto, mutual TLS + ACL from collector.topics (stand-in for the IoT Core "
                        "endpoint)"):
            p.broker = self._server(MosquittoBroker(p.workdir / "mosquitto", p.ca, primary_hosts=hosts))
            p.observer = p.broker.observer_credentials(p.workdir / "observer")
        with self._step("AWS IoT's services around the broker: lifecycle events from its connection "
                        "records, the named shadows served by moto, the stack's topic rules run"):
            services = IotCoreServices(p.broker, p.moto, local.region, p.workdir / "iot-core").start()
            self._teardown.callback(services.stop)
        with self._step("cli.py devices provision: key generated locally, CSR signed by the dev CA, "
                        "certificate registered in moto, bundle written"):
            p.bundle_dir = p.workdir / "bundle"
            stack.provision(local, p.moto, p.ca, p.broker, influx, p.bundle_dir, p.logs / "provision.log")
            p.bundle = load_config(p.bundle_dir / CONFIG_FILE, self.collector_env)
            if influx.running:
                influx.create_database(p.bundle.influx.database)
        if "meters" in self.without:
            self.console.print("[yellow]-[/] meter simulators left out (--without meters)")
        else:
            with self._step(f"{len(p.bundle.meters)} simulated PM500 meters (cpppo EtherNet/IP)"):
                for m in p.bundle.meters:
                    self._process(
                        f"meter {m.asset}",
                        python_module("collector.simulator", "--meters", "1", "--base-port", str(m.port)),
                        p.logs / f"meter-{m.asset}.log",
                        listens_on=(m.host, m.port),
                    )
        with self._step("observer subscriber on spBv1.0/pm500/# (what reached the \"cloud\"), "
                        "before the collector so it sees its births"):
            cert, key = p.observer
            p.recorder = Recorder(LOOPBACK, p.broker.port, p.ca.cert_path, cert, key, "spBv1.0/pm500/#")
            p.recorder.start()
            self._teardown.callback(p.recorder.stop)
        if hosts:
            self._start_host(local)
        with self._step("collector, from the bundle as the CLI wrote it"):
            (p.workdir / "collector").mkdir(exist_ok=True)
            self._collector = self._process(
                "collector",
                python_module("collector", "--config", p.bundle_dir / CONFIG_FILE),
                p.logs / "collector.log",
                env=self.collector_env,
                listens_on=(p.bundle.health.host, p.bundle.health.port),  # its health endpoint
            )

    def fleet_tour(self) -> None:
        """Issue 22's questions for the local collector: a setting changed remotely, offline and back."""
        p = self.pipeline
        assert p.moto and p.bundle and p.outputs_file and self._local and self._collector
        collector, bundle = self._collector, p.bundle
        tour = fleet_tour.Tour(self.console, p.moto, self._local.region, stack.STACK, bundle.thing_name,
                               p.outputs_file, inspect.health_url(bundle), stack.offline_after_s())
        tour.subscribe()

        def start_collector() -> None:
            collector.start()
            self._track("collector", collector.pid)
            wait_for_port(bundle.health.host, bundle.health.port, PROCESS_START_TIMEOUT_S,
                          alive=lambda: collector.running)

        try:
            tour.run(stop_collector=collector.kill9, start_collector=start_collector)
        except fleet_tour.TourError as exc:
            raise PieceError(str(exc)) from None
        finally:
            self.fleet_steps = dict(tour.steps)

    def _start_host(self, local: stack.LocalStack) -> None:
        """The Sparkplug Primary Host Application the collector waits for: its identity from the CLI,
        then `sandbox.sparkplug_host` online (retained STATE) before the collector connects."""
        p = self.pipeline
        assert p.ca is not None and p.moto is not None and p.broker is not None
        with self._step(f"cli.py hosts provision: the Primary Host Application {stack.HOST_ID}'s "
                        "certificate and its host policy, bundle written"):
            p.host_bundle_dir = p.workdir / "host"
            command = stack.provision_host_command(local, p.ca, p.broker, p.host_bundle_dir)
            stack.run_cli(command, p.moto, p.logs / "provision-host.log")
        with self._step(f"Primary Host Application {stack.HOST_ID} online (retained STATE; the collector "
                        "publishes its births only then)"):
            ready = p.workdir / "host-online"
            p.rebirth_file = p.workdir / "rebirth-ncmd.pb"
            self._process(
                "primary host",
                python_module("sandbox.sparkplug_host", "--bundle", p.host_bundle_dir, "--ready-file", ready,
                              "--rebirth-file", p.rebirth_file),
                p.logs / "host.log",
                ready=ready.exists,
            )

    def _server(self, server: S) -> S:
        server.start()
        self._teardown.callback(server.stop)
        self._processes.append((server.name, server))
        self._track(server.name, server.pid)
        return server

    def _process(self, name: str, args: list[str], log: Path, *, listens_on: tuple[str, int] | None = None,
                 ready: Callable[[], bool] | None = None,
                 env: dict[str, str] | None = None) -> ManagedProcess:
        """Start a child and wait until it accepts connections on `listens_on`, or `ready()` (or it died
        trying)."""
        proc = ManagedProcess(args, log, env={**_child_env(), **(env or {})}, cwd=self.pipeline.workdir)
        proc.start()
        self._teardown.callback(proc.stop)
        self._processes.append((name, proc))
        self._track(name, proc.pid)
        try:
            if listens_on is not None:
                wait_for_port(*listens_on, PROCESS_START_TIMEOUT_S, alive=lambda: proc.running)
            elif ready is not None:
                _wait_until(ready, PROCESS_START_TIMEOUT_S, alive=lambda: proc.running)
        except Exception as exc:
            raise PieceError(f"{name} did not become ready: {exc}\n--- {log} (tail) ---\n{proc.log_tail()}") \
                from exc
        if not proc.running:
            raise PieceError(f"{name} exited with status {proc.returncode}\n--- {log} (tail) ---\n"
                             f"{proc.log_tail()}")
        return proc

    # --- watching -------------------------------------------------------------------------

    def watch(self) -> observe.Snapshot:
        """Refresh the view every second until `duration_s` has passed (or forever until a signal)."""
        p = self.pipeline
        assert p.bundle is not None and p.recorder is not None and p.influx is not None
        thing = p.bundle.thing_name
        meters = [(m.asset, m.breaker) for m in p.bundle.meters]
        snapshot = self.snapshot = observe.new_snapshot(thing, meters)
        health_url = inspect.health_url(p.bundle)
        seen = 0
        started = time.monotonic()
        last_plain = started

        def refresh() -> float:
            nonlocal seen
            messages = p.recorder.messages() if p.recorder else []
            observe.count_messages(snapshot, thing, ((m.topic, m.payload) for m in messages[seen:]))
            seen = len(messages)
            observe.count_points(snapshot, p.influx.url if p.influx else "", p.bundle.influx.database)  # type: ignore[union-attr]
            observe.read_health(snapshot, health_url)
            self._check_alive()
            self.elapsed_s = time.monotonic() - started
            return self.elapsed_s

        def finished(elapsed: float) -> bool:
            return self.duration_s is not None and elapsed >= self.duration_s

        if self.console.is_terminal:
            with Live(console=self.console, refresh_per_second=4, transient=False) as live:
                while True:
                    elapsed = refresh()
                    live.update(view.render(snapshot, elapsed, self.duration_s))
                    if finished(elapsed):
                        return snapshot
                    time.sleep(REFRESH_S)
        while True:
            elapsed = refresh()
            if finished(elapsed):
                self.console.print(view.status_line(snapshot, elapsed))
                return snapshot
            if time.monotonic() - last_plain >= PLAIN_STATUS_EVERY_S:
                last_plain = time.monotonic()
                self.console.print(view.status_line(snapshot, elapsed))
            time.sleep(REFRESH_S)

    def _check_alive(self) -> None:
        """A piece that died mid-run is reported at once, with the end of its log."""
        for name, proc in self._processes:
            if not proc.running:
                raise PieceError(f"{name} stopped unexpectedly\n--- {proc.log_path} (tail) ---\n"
                                 f"{log_tail(proc.log_path)}")

    # --- teardown -------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop everything started, newest first; return the names of any process still alive."""
        self._teardown.close()
        return [f"{name} (pid {pid})" for name, pid in self.pipeline.pids.items() if pid_alive(pid)]


def _wait_until(ready: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not alive():
            raise RuntimeError("it exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready within {timeout:g}s")
        time.sleep(0.1)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie is already dead, just not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def summary(demo: Demo, verdict: Verdict | None, snapshot: observe.Snapshot | None,
            stray: list[str], reason: str) -> dict[str, Any]:
    p = demo.pipeline
    return {
        "ok": bool(verdict and verdict.ok and not stray),
        "reason": reason,
        "encoding": p.bundle.mqtt.encoding if p.bundle else None,
        "failures": list(verdict.failures) if verdict else [],
        "workdir": str(p.workdir),
        "pids": p.pids,
        "stray_processes": stray,
        "fleet": demo.fleet_steps,
        "births": snapshot.births if snapshot else 0,
        "deaths": snapshot.deaths if snapshot else 0,
        "assets": {
            a.asset: {"mqtt_messages": a.mqtt_messages, "influx_points": a.influx_points,
                      "last_seq": a.last_seq}
            for a in (snapshot.assets.values() if snapshot else [])
        },
        "influx": {
            "data_dir": str(p.influx.workdir) if p.influx else None,
            "database": p.bundle.influx.database if p.bundle else None,
        },
    }


def run(console: Console, workdir: Path, duration_s: float | None, guard: SignalGuard,
        without: frozenset[str] = frozenset(), encoding: Encoding = DEFAULT_ENCODING) -> int:
    """The whole demo; returns the process exit status."""
    demo = Demo(console, workdir, duration_s, without, encoding)
    snapshot: observe.Snapshot | None = None
    verdict: Verdict | None = None
    code, reason = EXIT_OK, "completed"
    try:
        demo.start()
        inspect.print_commands(console, demo.pipeline)
        demo.fleet_tour()
        snapshot = demo.watch()
        verdict = judge(snapshot)
    except Shutdown as stop:
        reason = str(stop)
        console.print(f"\n[yellow]{reason}[/]: stopping everything the demo started")
        # Ctrl-C is how an interactive run ends: judge and report what was observed up to now.
        snapshot = demo.snapshot
        if snapshot is not None:
            verdict = judge(snapshot)
            console.print(view.status_line(snapshot, demo.elapsed_s), markup=False, highlight=False)
    except PieceError as exc:
        code, reason = EXIT_PIECE_FAILED, str(exc).splitlines()[0]
        console.print(f"✗ {exc}", style="red", markup=False, highlight=False)
    except Exception as exc:  # any failure while starting a piece: say which, then clean up
        code, reason = EXIT_PIECE_FAILED, f"{type(exc).__name__}: {exc}".splitlines()[0]
        console.print(f"✗ {type(exc).__name__}: {exc}", style="red", markup=False, highlight=False)
    finally:
        with guard.shielded(), console.status("stopping every process the demo started"):
            stray = demo.stop()
    if stray:
        console.print(f"[red]✗ still running after teardown: {', '.join(stray)}[/]")
    else:
        console.print(f"[green]✓[/] stopped {len(demo.pipeline.pids)} processes: "
                      + ", ".join(f"{n} ({pid})" for n, pid in demo.pipeline.pids.items()))
    if verdict is not None:
        if verdict.ok:
            console.print("[green bold]✓ data flowed end to end[/]: "
                          "readings of every meter reached the broker and InfluxDB")
        else:
            code = EXIT_NO_DATA
            for line in verdict.failures:
                console.print(Text.assemble(("✗ leg failed ", "red bold"), line))
    elif duration_s is not None and code == EXIT_OK:
        code = EXIT_NO_DATA  # interrupted before the verdict: --duration promised one
    if stray and code == EXIT_OK:
        code = EXIT_PIECE_FAILED
    result = summary(demo, verdict, snapshot, stray, reason)
    (workdir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"logs, bundle and databases kept in {workdir}")
    print(SUMMARY_PREFIX + json.dumps(result, separators=(",", ":")), flush=True)
    return code
