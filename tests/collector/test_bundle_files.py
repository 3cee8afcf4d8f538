"""Defects: a group/world-readable key started silently; TLS errors named no file; a certificate issued
for another thing was only found out by the broker dropping the connection.

Startup checks every bundle file itself and names the field, the file and the fix in one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import load_config
from collector.service import check_files
from collector.validation import ConfigError
from sandbox.ca import DevCA

THING = "test:plant-a:edge-01"


def make_bundle(directory: Path, ca: DevCA, cn: str = THING) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = ca.issue(cn, directory)
    cert.rename(directory / "device.pem.crt")
    key.rename(directory / "private.pem.key")
    (directory / "root-ca.pem").write_bytes(ca.cert_pem)
    data: dict[str, Any] = {
        "stack": "test", "site": "plant-a", "collector": "edge-01", "thing_name": THING,
        "meters": [{"asset": "m1", "breaker": "F1", "host": "127.0.0.1"}],
        "mqtt": {"endpoint": "127.0.0.1"},
        "influx": {"enabled": False},
        "buffer": {"path": str(directory.parent / "state" / "buffer.sqlite")},
    }
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as error:
        check_files(load_config(config))
    return str(error.value).splitlines()


def test_a_good_bundle_passes(tmp_path: Path, dev_ca: DevCA) -> None:
    check_files(load_config(make_bundle(tmp_path / "bundle", dev_ca)))


@pytest.mark.parametrize("mode", [0o644, 0o666, 0o640, 0o604, 0o660])
def test_a_key_readable_by_group_or_others_is_refused_with_the_fix(tmp_path: Path, dev_ca: DevCA, mode: int):
    config = make_bundle(tmp_path / "bundle", dev_ca)
    key = config.parent / "private.pem.key"
    key.chmod(mode)
    assert problems(config) == [
        f"mqtt.key_file: {key} is accessible by group or others (mode {mode:04o}); "
        f"a private key must be readable by its owner only: chmod 600 {key}"
    ]


def test_a_garbage_key_is_named(tmp_path: Path, dev_ca: DevCA) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca)
    key = config.parent / "private.pem.key"
    marker = b"PRIVATE " + b"KEY-----"  # split: no key-like text in the repo
    key.write_bytes(b"-----BEGIN " + marker + b"\nnot base64 at all\n-----END " + marker + b"\n")
    (line,) = problems(config)
    assert line.startswith(f"mqtt.key_file: {key} is not a PEM private key")


def test_a_key_that_does_not_match_the_certificate_is_named(tmp_path: Path, dev_ca: DevCA) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca)
    _, other_key = dev_ca.issue(THING, tmp_path / "other")
    os.replace(other_key, config.parent / "private.pem.key")
    assert problems(config) == [
        f"mqtt.key_file: {config.parent / 'private.pem.key'} does not belong to the certificate "
        f"{config.parent / 'device.pem.crt'} (mqtt.cert_file); use the key generated with that certificate"
    ]


def test_a_garbage_certificate_is_named(tmp_path: Path, dev_ca: DevCA) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca)
    cert = config.parent / "device.pem.crt"
    cert.write_text("hello\n")
    (line,) = problems(config)
    assert line.startswith(f"mqtt.cert_file: {cert} is not a PEM certificate")


def test_a_garbage_ca_is_named(tmp_path: Path, dev_ca: DevCA) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca)
    ca = config.parent / "root-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (line,) = problems(config)
    assert line.startswith(f"mqtt.ca_file: {ca} is not a PEM CA certificate")


def test_a_certificate_for_another_thing_names_both(tmp_path: Path, dev_ca: DevCA) -> None:
    config = make_bundle(tmp_path / "bundle", dev_ca, cn="test:plant-a:edge-02")
    assert problems(config) == [
        f"mqtt.cert_file: {config.parent / 'device.pem.crt'} is issued to CN 'test:plant-a:edge-02' but "
        f"thing_name is '{THING}'; the broker would drop the connection (use this thing's bundle)"
    ]


def test_the_container_command_refuses_an_open_key_in_one_line(tmp_path: Path, dev_ca: DevCA) -> None:
    """The image's CMD (--wait-for-valid-config) reports the open key once, naming file and fix."""
    config = make_bundle(tmp_path / "bundle", dev_ca)
    key = config.parent / "private.pem.key"
    key.chmod(0o644)
    process = subprocess.Popen(
        [sys.executable, "-m", "collector", "--config", str(config), "--wait-for-valid-config"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a collector that ignores SIGTERM must not outlive the test
            process.kill()
            process.wait()
    assert first == (
        f"config error: mqtt.key_file: {key} is accessible by group or others (mode 0644); "
        f"a private key must be readable by its owner only: chmod 600 {key}\n"
    )
