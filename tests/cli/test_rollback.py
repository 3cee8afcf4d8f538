"""Failure injection: every AWS call of the sequence (and every bundle file write) fails in turn.

Afterwards moto must hold no certificate and no attachment, and nothing may be left on disk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import cli
from collector.config import CA_FILE, CERT_FILE, CONFIG_FILE, KEY_FILE
from devices import bundle
from sandbox.ca import DevCA
from tests.cli.conftest import Hook, Stack, fail_with

runner = CliRunner()
CSR_SEQUENCE = ["ListThingPrincipals", "CreateCertificateFromCsr", "AttachPolicy", "AttachThingPrincipal"]
CA_SEQUENCE = ["ListThingPrincipals", "RegisterCertificate", "AttachPolicy", "AttachThingPrincipal"]


def assert_nothing_left(stack: Stack) -> None:
    assert stack.certificates() == []
    assert stack.attachments() == ([], [])
    assert not (stack.tmp / "bundles").exists() or not any(
        p.is_file() for p in (stack.tmp / "bundles").rglob("*")
    )


def run_failing(stack: Stack, *extra: str) -> str:
    result = runner.invoke(cli.app, [*stack.args("provision-device"), *extra])
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.usefixtures("csr_signing")
@pytest.mark.parametrize("operation", CSR_SEQUENCE)
def test_each_call_failing_leaves_nothing(
    stack: Stack, inject: Callable[[str, Hook], None], operation: str
) -> None:
    inject(f"before-call.iot.{operation}", fail_with("InternalFailure", operation))
    assert f"{operation} failed: InternalFailure" in run_failing(stack)
    assert_nothing_left(stack)


@pytest.mark.usefixtures("csr_signing")
@pytest.mark.parametrize("operation", ["AttachPolicy", "AttachThingPrincipal"])
def test_call_applied_but_answer_lost_is_rolled_back(
    stack: Stack, inject: Callable[[str, Hook], None], operation: str
) -> None:
    """The service did the attach, the client saw an error (timeout after the fact): still undone."""
    inject(f"after-call.iot.{operation}", fail_with("InternalFailure", operation))
    run_failing(stack)
    assert_nothing_left(stack)


@pytest.mark.parametrize("operation", CA_SEQUENCE)
def test_byo_ca_sequence_failing_leaves_nothing(
    stack: Stack, inject: Callable[[str, Hook], None], dev_ca: DevCA, operation: str
) -> None:
    stack.iot.register_ca_certificate(caCertificate=dev_ca.cert_pem.decode(), setAsActive=True)
    inject(f"before-call.iot.{operation}", fail_with("InternalFailure", operation))
    run_failing(stack, "--ca-cert", str(dev_ca.cert_path), "--ca-key", str(dev_ca.key_path))
    assert_nothing_left(stack)


@pytest.mark.usefixtures("csr_signing")
@pytest.mark.parametrize("failing_file", [CONFIG_FILE, CERT_FILE, KEY_FILE, CA_FILE, bundle.MANIFEST_FILE])
def test_bundle_write_failing_leaves_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, failing_file: str
) -> None:
    real = bundle._write_file

    def disk_full(path: Path, data: bytes, mode: int) -> None:
        if path.name == failing_file:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data, mode)

    monkeypatch.setattr(bundle, "_write_file", disk_full)
    assert "No space left on device" in run_failing(stack)
    assert_nothing_left(stack)
    assert not list(stack.bundle().parent.glob(".*"))  # no staging dir either


@pytest.mark.usefixtures("csr_signing")
def test_ctrl_c_during_provisioning_rolls_back(stack: Stack, inject: Callable[[str, Hook], None]) -> None:
    def interrupt(**_: Any) -> None:
        raise KeyboardInterrupt

    inject("before-call.iot.AttachThingPrincipal", interrupt)
    result = runner.invoke(cli.app, stack.args("provision-device"))
    assert result.exit_code != 0
    assert_nothing_left(stack)


def test_unpatched_moto_is_caught_as_a_mismatch_and_rolled_back(stack: Stack) -> None:
    """moto signs a fresh key instead of the CSR's: the product's strict check must catch it."""
    error = run_failing(stack)
    assert "certificate/key mismatch" in error
    assert_nothing_left(stack)


@pytest.mark.usefixtures("csr_signing")
def test_incomplete_rollback_names_the_certificate_left_behind(
    stack: Stack, inject: Callable[[str, Hook], None]
) -> None:
    inject("before-call.iot.AttachThingPrincipal", fail_with("InternalFailure", "AttachThingPrincipal"))
    inject("before-call.iot.DeleteCertificate", fail_with("InternalFailure", "DeleteCertificate"))
    error = run_failing(stack)
    [cert] = stack.certificates()
    assert f"rollback incomplete: certificate {cert['certificateId']} is left in AWS IoT" in error
    assert cert["status"] == "INACTIVE"  # it was at least deactivated and detached
    assert stack.attachments() == ([], [])
    assert not stack.bundle().exists()


@pytest.mark.usefixtures("csr_signing")
@pytest.mark.parametrize("operation", ["CreateCertificateFromCsr", "AttachPolicy", "AttachThingPrincipal"])
def test_failed_rotation_keeps_the_old_identity_working(
    stack: Stack, inject: Callable[[str, Hook], None], operation: str
) -> None:
    first = runner.invoke(cli.app, stack.args("provision-device"))
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in stack.bundle().iterdir()}
    [old] = stack.certificates()
    attachments = stack.attachments()

    inject(f"before-call.iot.{operation}", fail_with("InternalFailure", operation))
    result = runner.invoke(cli.app, stack.args("rotate-cert"))
    assert result.exit_code == 1
    assert stack.certificates() == [old] and old["status"] == "ACTIVE"
    assert stack.attachments() == attachments
    assert {p.name: p.read_bytes() for p in stack.bundle().iterdir()} == before
