"""The sandbox's Primary Host Application (`python -m sandbox.sparkplug_host`, the demo's host): its STATE
session as the Sparkplug spec describes it, and its rebirth request read by the independent decoder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from collector.config import CA_FILE, CERT_FILE, KEY_FILE
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import Recorder
from sandbox.procs import ManagedProcess
from tests.collector.sparkplug_reader import compile_payload_class

HOST = "plant-scada"
STATE = f"spBv1.0/STATE/{HOST}"


def _bundle(broker: MosquittoBroker, ca: DevCA, directory: Path) -> Path:
    """What `cli.py hosts provision` writes (tests/cli/test_hosts.py checks that), for this broker."""
    cert, key = ca.issue(HOST, directory)
    cert.rename(directory / CERT_FILE)
    key.rename(directory / KEY_FILE)
    (directory / CA_FILE).write_bytes(ca.cert_pem)
    settings = {
        "host_id": HOST,
        "mqtt": {"endpoint": broker.host, "port": broker.port, "client_id": HOST, "ca_file": CA_FILE,
                 "cert_file": CERT_FILE, "key_file": KEY_FILE},
        "sparkplug": {"state_topic": STATE, "subscribe": ["spBv1.0/pm500/#"]},
    }
    (directory / "host.yaml").write_text(yaml.safe_dump(settings))
    return directory


def test_online_state_after_subscribing_offline_with_the_same_timestamp_and_a_rebirth_request(
    dev_ca: DevCA, tmp_path: Path
) -> None:
    with MosquittoBroker(tmp_path / "broker", dev_ca, primary_hosts=[HOST]) as broker:
        bundle = _bundle(broker, dev_ca, tmp_path / "host")
        cert, key = broker.observer_credentials(tmp_path / "observer")
        ready, rebirth = tmp_path / "ready", tmp_path / "rebirth.pb"
        with Recorder(broker.host, broker.port, broker.ca_file, cert, key, topic_filter=[STATE]) as observer:
            host = ManagedProcess([sys.executable, "-m", "sandbox.sparkplug_host", "--bundle", str(bundle),
                                   "--ready-file", str(ready), "--rebirth-file", str(rebirth)],
                                  tmp_path / "host.log").start()
            try:
                online = json.loads(observer.wait_for_topic(STATE)[0].payload)
            finally:
                assert host.stop() == 0  # SIGTERM: the offline STATE first, then DISCONNECT
            states = [json.loads(m.payload) for m in observer.wait_for_topic(STATE, count=2)]
    assert online == {"online": True, "timestamp": int(ready.read_text())}
    assert states == [online, {"online": False, "timestamp": online["timestamp"]}]
    log = (tmp_path / "host.log").read_text()
    assert f"STATE {HOST} " in log  # it read its own STATE back (subscribed before announcing)

    payload_class: Any = compile_payload_class(tmp_path / "tahu")
    request = payload_class.FromString(rebirth.read_bytes())
    rebirth_metric = ("Node Control/Rebirth", 11, True)  # 11: Boolean
    assert [(m.name, m.datatype, m.boolean_value) for m in request.metrics] == [rebirth_metric]
    assert request.HasField("timestamp") and not request.HasField("seq")
