"""Operations: config errors and env overrides, the CLI's exit codes, the InfluxDB sink's ack rules."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.buffer import Buffer
from collector.config import ENV_PREFIX, InfluxConfig, load_config
from collector.influx_sink import InfluxSink
from collector.reading import Reading
from collector.validation import ConfigError
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import CollectorProcess, wait_until, write_bundle

CONFIG = {
    "stack": "test",
    "site": "plant-a",
    "collector": "edge-01",
    "thing_name": "test:plant-a:edge-01",
    "meters": [{"asset": "m1", "breaker": "F1", "host": "meter.example"}],
    "mqtt": {"endpoint": "broker.example"},
}


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_env_overrides_nested_fields_and_list_items(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    env = {
        "PM500C_INFLUX__URL": "http://influx.example:8086",
        "PM500C_INFLUX__PASSWORD": "0123",  # stays a string, not the number 123
        "PM500C_BUFFER__PATH": "/data/buffer.sqlite",
        "PM500C_POLL_INTERVAL_S": "5",
        "PM500C_METERS__0__PORT": "2222",
        "HOME": "/root",
    }
    cfg = load_config(path, env)
    assert cfg.influx.url == "http://influx.example:8086"
    assert cfg.influx.password is not None and cfg.influx.password.get_secret_value() == "0123"
    assert cfg.buffer.path == Path("/data/buffer.sqlite")
    assert cfg.poll_interval_s == 5.0 and cfg.meters[0].port == 2222
    assert load_config(path).influx.url == "http://127.0.0.1:8086"  # no environ: file only


def test_collector_prefix_is_its_own() -> None:
    # The CLI's and the tools' variables (docs/cli.md, docs/sandbox.md, docs/edge.md) start with PM500_:
    # the collector's overrides must be a namespace none of them can fall into.
    assert ENV_PREFIX == "PM500C_"
    assert not "PM500_INFLUX_PASSWORD".startswith(ENV_PREFIX)


def test_cli_and_tool_variables_are_not_overrides(tmp_path: Path) -> None:
    """The variables the docs tell operators to export must not stop the collector (issue 21, item 6)."""
    path = write_config(tmp_path, CONFIG)
    env = {"PM500_INFLUX_PASSWORD": "s3cret", "PM500_CA_KEY_PASSWORD": "k3y",
           "PM500_CACHE_DIR": "/var/cache/x"}
    cfg = load_config(path, env)
    assert cfg.influx.password is None and cfg.influx.url == "http://127.0.0.1:8086"


def test_env_override_errors_name_field_and_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    with pytest.raises(ConfigError) as e:
        load_config(path, {"PM500C_INFLUX__URL": "influx:8086", "PM500C_BUFFER__SIZE": "1"})
    lines = str(e.value).splitlines()
    assert any("influx.url" in line and "(set by PM500C_INFLUX__URL)" in line for line in lines)
    assert any("buffer.size" in line and "PM500C_BUFFER__SIZE" in line for line in lines)


@pytest.mark.parametrize(("variable", "expected"), [
    ("PM500C_METERS__1__HOST", "index 1 is past the end of meters (1 item)"),
    ("PM500C_METERS__X__HOST", "meters: expected a list index"),
    ("PM500C_MQTT__NO_SUCH", "mqtt.no_such: unknown field"),
    ("PM500C_", "no field named"),
])
def test_env_override_that_points_nowhere_is_an_error_naming_it(
    tmp_path: Path, variable: str, expected: str
) -> None:
    path = write_config(tmp_path, CONFIG)
    with pytest.raises(ConfigError) as e:
        load_config(path, {variable: "meter2.example"})
    assert variable in str(e.value) and expected in str(e.value)


def test_override_past_the_meters_list_exits_78(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PM500C_METERS__3__HOST": "meter4.example"}
    result = run_cli("--healthcheck", "--config", str(write_config(tmp_path, CONFIG)), env=env)
    assert result.returncode == 78
    assert "PM500C_METERS__3__HOST" in result.stderr and "Traceback" not in result.stderr


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_bad_config_exits_78_with_one_line_per_problem(tmp_path: Path) -> None:
    bad = {**CONFIG, "poll_interval_s": 0, "meters": [{"asset": "M 1", "breaker": "F1", "host": "x y"}]}
    result = run_cli("--config", str(write_config(tmp_path, bad)))
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("config error: ") for line in lines)
    assert any("poll_interval_s" in line for line in lines)
    assert any("meters[0].asset" in line for line in lines)
    assert any("meters[0].host" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_missing_bundle_files_exit_78_naming_the_field(tmp_path: Path) -> None:
    result = run_cli("--config", str(write_config(tmp_path, CONFIG)))
    assert result.returncode == 78
    assert "mqtt.cert_file: cannot read" in result.stderr and "Traceback" not in result.stderr


def test_healthcheck_fails_when_nothing_listens(tmp_path: Path) -> None:
    data = {**CONFIG, "health": {"port": 1}}
    assert run_cli("--config", str(write_config(tmp_path, data)), "--healthcheck").returncode == 1


class FakeInflux:
    """A real HTTP server answering /write with scripted status codes, recording bodies and headers."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def fake_influx() -> Iterator[FakeInflux]:
    server = FakeInflux([503, 204, 400])
    yield server
    server.server.shutdown()


def test_influx_sink_retries_keeps_rows_and_acks_only_204(tmp_path: Path, fake_influx: FakeInflux) -> None:
    buffer = Buffer(tmp_path / "b.sqlite", 16 * 1024 * 1024, "test:plant-a:edge-01", sinks=("influx",))
    cfg = InfluxConfig(url=fake_influx.url, database="db1", username="u", password="s3cret", batch_size=3)  # type: ignore[arg-type]
    buffer.append_many(Reading("plant-a", "m1", "F1", 1000 + i, {"frequency": 50.0}) for i in range(4))
    sink = InfluxSink(cfg, buffer)
    sink.start()
    try:
        wait_until(lambda: buffer.depth("influx") == 0, 30, "influx depth 0")
    finally:
        sink.stop()
    paths = [p for p, _, _ in fake_influx.requests]
    bodies = [b.decode().splitlines() for _, _, b in fake_influx.requests]
    assert paths[0] == "/write?db=db1&precision=ms"
    # 503: the same 3 readings are sent again; 204 acks them; 400 on the 4th is counted and dropped.
    assert bodies[0] == bodies[1] and len(bodies[0]) == 3 and bodies[2][0].endswith(" 1003")
    assert sink.stats == {
        "written_points": 3,
        "written_batches": 1,
        "rejected_readings": 1,
        "write_errors": 2,
    }
    assert all(h["Authorization"].startswith("Basic ") for _, h, _ in fake_influx.requests)
    assert all("s3cret" not in p for p in paths)


def test_container_mode_waits_for_a_fixed_bundle_instead_of_crash_looping(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker
) -> None:
    """The image's CMD passes --wait-for-valid-config: a broken bundle is reported once and waited on."""
    bundle = tmp_path / "bundle"
    valid = write_bundle(bundle, dev_ca, mqtt_broker, [free_port()], influx_url=None)
    good_text = valid.read_text()
    broken = yaml.safe_load(good_text)
    broken["poll_interval_s"] = 0  # below the 0.1 s minimum
    valid.write_text(yaml.safe_dump(broken))

    waiting = ["--wait-for-valid-config", "--config-recheck-s", "0.1"]
    collector = CollectorProcess(valid, tmp_path, args=waiting)
    collector.process.start()
    log = collector.process.log_path
    wait_until(lambda: "config error: " in log.read_text(), 30, "the config error to be reported")
    checks_before = log.read_text().count("config error: ")
    time.sleep(1.0)  # ten re-checks of the still-broken file
    assert collector.process.running and collector.health() is None
    assert log.read_text().count("config error: ") == checks_before == 1  # reported once, not per re-check

    valid.write_text(good_text)  # the operator fixes the bundle
    wait_until(collector.health, 30, f"collector to start once the config is valid\n{log.read_text()}")
    assert collector.process.stop() == 0
