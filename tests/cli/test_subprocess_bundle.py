"""`python cli.py ...` as an operator runs it (a subprocess, AWS_ENDPOINT_URL -> moto), and the bundle
it writes connecting to Mosquitto (TLS, require_certificate, ACL) with the bring-your-own-CA path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.config import load_config
from collector.topics import DDATA, thing_name
from sandbox.ca import DevCA
from sandbox.mosquitto import MosquittoBroker
from sandbox.mqtt import MqttError, Recorder, close_client, tls_client
from tests.cli.conftest import STACK, Stack

ROOT = Path(__file__).resolve().parents[2]
THING = thing_name(STACK, "plant-a", "edge-01")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=ROOT,
        check=False,
    )


@pytest.fixture
def byo_stack(stack: Stack, dev_ca: DevCA) -> Stack:
    """The stack with the dev CA registered in AWS IoT, as a plant with its own PKI would have it."""
    registered = stack.iot.register_ca_certificate(caCertificate=dev_ca.cert_pem.decode(), setAsActive=True)
    stack.ca_certificate_id = registered["certificateId"]
    return stack


def test_byo_ca_bundle_connects_and_publishes_to_its_own_topic(
    byo_stack: Stack,
    aws_env: dict[str, str],
    dev_ca: DevCA,
    mqtt_broker: MosquittoBroker,
    mqtt_observer: Recorder,
) -> None:
    done = run_cli(
        [
            *byo_stack.args("provision-device"),
            "--ca-cert",
            str(dev_ca.cert_path),
            "--ca-key",
            str(dev_ca.key_path),
            "--server-ca",
            str(dev_ca.cert_path),
            "--endpoint",
            mqtt_broker.host,
            "--mqtt-port",
            str(mqtt_broker.port),
            "--json",
        ],
        aws_env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    [cert] = byo_stack.certificates()
    assert cert["certificateId"] == result["certificateId"] and cert["status"] == "ACTIVE"
    by_ca = byo_stack.iot.list_certificates_by_ca(caCertificateId=byo_stack.ca_certificate_id)["certificates"]
    assert [c["certificateId"] for c in by_ca] == [cert["certificateId"]]  # registered under the plant's CA

    config = load_config(byo_stack.bundle() / "config.yaml")
    client = tls_client(
        config.mqtt.endpoint,
        config.mqtt.port,
        config.mqtt.ca_file,
        config.mqtt.cert_file,
        config.mqtt.key_file,
        client_id=config.thing_name,
    )
    try:
        asset = config.meters[0].asset
        client.publish(DDATA.render(config.thing_name, asset), b"bundle works", qos=1).wait_for_publish(10)
    finally:
        close_client(client)
    [message] = mqtt_observer.wait_for_topic(DDATA.render(THING, asset))
    assert message.payload == b"bundle works"


def test_bundle_is_refused_by_a_broker_that_trusts_another_ca(
    byo_stack: Stack,
    aws_env: dict[str, str],
    dev_ca: DevCA,
    mqtt_broker: MosquittoBroker,
    tmp_path: Path,
) -> None:
    """Negative control: a bundle signed by a different CA cannot connect to the sandbox broker."""
    other = DevCA.create(tmp_path / "other-ca", name="another plant CA")
    byo_stack.iot.register_ca_certificate(caCertificate=other.cert_pem.decode(), setAsActive=True)
    done = run_cli(
        [
            *byo_stack.args("provision-device"),
            "--ca-cert",
            str(other.cert_path),
            "--ca-key",
            str(other.key_path),
            "--server-ca",
            str(dev_ca.cert_path),
            "--endpoint",
            mqtt_broker.host,
            "--mqtt-port",
            str(mqtt_broker.port),
        ],
        aws_env,
    )
    assert done.returncode == 0, done.stderr
    config = load_config(byo_stack.bundle() / "config.yaml")
    with pytest.raises((MqttError, OSError)):
        close_client(
            tls_client(
                config.mqtt.endpoint,
                config.mqtt.port,
                config.mqtt.ca_file,
                config.mqtt.cert_file,
                config.mqtt.key_file,
                client_id=config.thing_name,
                timeout=5,
            )
        )


def test_subprocess_bad_input_is_one_line_and_exit_1(stack: Stack, aws_env: dict[str, str]) -> None:
    done = run_cli(stack.args("provision-device", "plant-a", "edge-77"), aws_env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --collector 'edge-77': site 'plant-a' of stack 'test' has no such collector "
        "(collectors: edge-01, edge-02)"
    ]
    assert stack.certificates() == []


def test_help_is_written_for_operators() -> None:
    done = run_cli(["provision-device", "--help"], {})
    assert done.returncode == 0
    for words in ("private key is generated on this machine", "--outputs-file", "--ca-cert", "--server-ca"):
        assert words in done.stdout
