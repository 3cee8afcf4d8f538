"""Defect 7: the smaller ones (health on all interfaces, published < acked, four lines per YAML error)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import yaml

from collector.config import load_config
from collector.mqtt_link import MqttLink
from collector.service import config_warnings
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.net import free_port
from tests.collector.harness import wait_until, write_bundle

CONFIG = {
    "stack": "test", "site": "plant-a", "collector": "edge-01", "thing_name": "test:plant-a:edge-01",
    "meters": [{"asset": "m1", "breaker": "F1", "host": "meter.example"}],
    "mqtt": {"endpoint": "broker.example"},
}


def _config(tmp_path: Path, **health: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "health": health}))
    return path


def test_a_health_endpoint_on_every_interface_is_warned_about(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, host="0.0.0.0", port=8081))
    assert config_warnings(cfg) == [
        "health.host: 0.0.0.0 exposes the health endpoint (no authentication) beyond this host on port "
        "8081; use 127.0.0.1 unless a monitoring system must reach it"
    ]


def test_loopback_health_endpoints_are_fine(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        assert config_warnings(load_config(_config(tmp_path, host=host))) == []
    assert ipaddress.ip_address("127.0.0.1").is_loopback  # what "loopback" means above


def test_a_yaml_syntax_error_is_one_config_error_line(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("stack: test\nmeters: [\n  - asset: m1\n")
    result = subprocess.run(
        [sys.executable, "-m", "collector", "--config", str(path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 78
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"config error: {path}: not valid YAML: ")
    assert "line 3" in line or "line 4" in line


def test_published_counts_births_so_acked_never_exceeds_it(
    tmp_path: Path, dev_ca: DevCA, mqtt_broker: MosquittoBroker
) -> None:
    cfg = load_config(write_bundle(tmp_path / "bundle", dev_ca, mqtt_broker, [free_port()], influx_url=None))
    link = MqttLink(cfg, on_puback=lambda mid: None)
    link.start()
    try:
        wait_until(lambda: link.stats["acked"] >= 1, 30, "the NBIRTH's PUBACK")
        assert link.stats["published"] == link.stats["acked"] == 1
        link.publish("spBv1.0/pm500/DDATA/test:plant-a:edge-01/meter-0", b"{}")
        wait_until(lambda: link.stats["acked"] >= 2, 30, "the DDATA's PUBACK")
        assert link.stats["published"] == link.stats["acked"] == 2
    finally:
        link.stop(timeout_s=2)


def test_a_cip_error_at_startup_is_counted_as_cip_status_not_size_mismatch(simulator) -> None:
    """The meter answers every request, attribute 4 (size) included, with CIP status 0x08."""
    from collector.config import MeterConfig
    from collector.poller import Poller

    assert simulator.control is not None
    simulator.control.set_faults(0, cip_status=8)
    meter = MeterConfig(asset="m0", breaker="F0", host="127.0.0.1", port=simulator.ports[0])
    poller = Poller("plant-a", [meter], 0.1, lambda reading: None)
    poller.start()
    try:
        wait_until(lambda: poller.status()["m0"].consecutive_failures >= 2, 30, "two failed polls")
    finally:
        poller.stop()
    status = poller.status()["m0"]
    assert status.errors["cip_status"] >= 2
    assert status.errors["size_mismatch"] == 0
    assert status.last_error is not None and "CIP status 0x08" in status.last_error
