"""Real processes for the collector's end-to-end tests: simulator, bundle, `python -m collector`."""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from collector.config import CollectorConfig
from collector.simulator.control import SimulatorControl
from collector.topics import thing_name
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Message
from sandbox.net import free_port
from sandbox.procs import ManagedProcess

STACK, SITE, NODE = "test", "plant-a", "edge-01"
THING = thing_name(STACK, SITE, NODE)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class Simulator:
    """`python -m collector.simulator` as a child process; `.ports` and `.control` once ready."""

    def __init__(self, workdir: Path, meters: int) -> None:
        self.process = ManagedProcess(
            [sys.executable, "-m", "collector.simulator", "--meters", str(meters), "--base-port", "0"],
            workdir / "simulator.log",
        )
        self.ports: list[int] = []
        self.control: SimulatorControl | None = None

    def start(self) -> Simulator:
        self.process.start()

        def ready() -> dict[str, Any] | None:
            for line in self.process.log_path.read_text().splitlines():
                if line.startswith('{"control"'):
                    parsed: dict[str, Any] = json.loads(line)
                    return parsed
            if not self.process.running:
                raise RuntimeError(f"simulator exited:\n{self.process.log_tail()}")
            return None

        info = wait_until(ready, 30, "simulator ready line")
        self.ports = [m["port"] for m in info["meters"]]
        self.control = SimulatorControl(info["control"])
        return self

    def stop(self) -> None:
        self.process.stop()


def write_bundle(
    directory: Path,
    ca: DevCA,
    broker: MosquittoBroker,
    meter_ports: Iterable[int],
    influx_url: str | None,
    influx_db: str = "pm500",
    **overrides: Any,
) -> Path:
    """A device bundle like `cli.py devices provision` writes: certificate, key, CA, config.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue(THING, directory)
    cert.rename(directory / "device.pem.crt")
    key.rename(directory / "private.pem.key")
    (directory / "root-ca.pem").write_bytes(broker.ca_file.read_bytes())
    data: dict[str, Any] = {
        "stack": STACK,
        "site": SITE,
        "collector": NODE,
        "thing_name": THING,
        "poll_interval_s": 0.2,
        "meters": [
            {"asset": f"meter-{i}", "breaker": f"F{i}", "host": "127.0.0.1", "port": port}
            for i, port in enumerate(meter_ports)
        ],
        "mqtt": {"endpoint": "127.0.0.1", "port": broker.port},
        "influx": {
            "enabled": influx_url is not None,
            "url": influx_url or "http://127.0.0.1:8086",
            "database": influx_db,
            "flush_interval_s": 0.2,
        },
        "buffer": {"path": str(directory.parent / "state" / "buffer.sqlite")},
        "health": {"port": free_port()},
    }
    for key_path, value in overrides.items():
        node = data
        *parents, leaf = key_path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    CollectorConfig.model_validate(data)  # the test's own bundle must be valid
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class CollectorProcess:
    """`python -m collector --config <bundle>/config.yaml` as a child process."""

    def __init__(
        self, config: Path, workdir: Path, args: Iterable[str] = (), env: dict[str, str] | None = None
    ):
        self.config = config
        cfg = yaml.safe_load(config.read_text())
        self.health_url = f"http://127.0.0.1:{cfg['health']['port']}/health"
        self.buffer_path = Path(cfg["buffer"]["path"])
        self.process = ManagedProcess(
            [sys.executable, "-m", "collector", "--config", str(config), *args],
            workdir / "collector.log",
            env=env,
        )

    def start(self) -> CollectorProcess:
        self.process.start()
        wait_until(self.health, 30, f"collector health endpoint\n{self.process.log_tail()}")
        return self

    def health(self) -> dict[str, Any] | None:
        if not self.process.running:
            raise RuntimeError(f"collector exited ({self.process.returncode}):\n{self.process.log_tail()}")
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:  # noqa: S310 (loopback)
                body: dict[str, Any] = json.load(response)
                return body
        except OSError:
            return None

    def stop(self) -> int | None:
        return self.process.stop(timeout=15)

    def kill9(self) -> None:
        self.process.kill9()


def ddata_by_asset(messages: Iterable[Message]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in messages:
        if m.topic.startswith(f"spBv1.0/pm500/DDATA/{THING}/"):
            payload = json.loads(m.payload)
            out.setdefault(m.topic.rsplit("/", 1)[1], []).append(payload)
    return out


def assert_no_gaps(messages: Iterable[Message]) -> dict[str, list[int]]:
    """Every seq from the first to the last is present per asset (duplicates allowed, gaps not)."""
    seqs = {
        asset: sorted({p["seq"] for p in payloads}) for asset, payloads in ddata_by_asset(messages).items()
    }
    for asset, values in seqs.items():
        missing = sorted(set(range(values[0], values[-1] + 1)) - set(values))
        assert not missing, f"{asset}: seq gaps {missing[:20]} (of {len(missing)})"
    return seqs


class PersistentObserver:
    """Observer with a persistent session (clean_session=False) on a broker with persistence.

    The broker queues QoS 1 messages for it while it is disconnected, so a broker restart cannot make
    the observer miss what the collector replays before the observer is back: a gap it reports is a
    gap the collector made.
    """

    def __init__(
        self, broker: MosquittoBroker, workdir: Path, subscriptions: tuple[str, ...] = ("spBv1.0/#",)
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        cert, key = broker.observer_credentials(workdir / "observer")
        self._messages: list[Message] = []
        self._subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="pm500-observer-chaos", clean_session=False
        )
        client.tls_set(ca_certs=str(broker.ca_file), certfile=str(cert), keyfile=str(key))
        client.reconnect_delay_set(0.1, 0.5)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe([(topic, 1) for topic in subscriptions])
        client.on_subscribe = lambda *a: self._subscribed.set()
        client.on_message = lambda c, u, msg: self._messages.append(
            Message(msg.topic, bytes(msg.payload), time.time())
        )
        client.connect(broker.host, broker.port)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(20):
            raise TimeoutError("observer not subscribed")

    def messages(self) -> list[Message]:
        return list(self._messages)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def max_seqs(messages: Iterable[Message]) -> dict[str, int]:
    return {a: max(p["seq"] for p in ps) for a, ps in ddata_by_asset(messages).items()}
