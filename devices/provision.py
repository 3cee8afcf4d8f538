"""Give one collector its identity: key here, certificate from AWS IoT (or the org's CA), bundle on disk.

The order is chosen so that a failure at any step leaves nothing behind:
1. everything that can be checked locally is checked (names, outputs, bundle dir, config) before AWS
   is called at all;
2. the certificate is created, checked (our public key, CN = thing name), attached to the IoT policy
   and to the thing, and the bundle is written atomically;
3. any failure (or Ctrl-C) during step 2 rolls the certificate back: detach policy, detach thing,
   INACTIVE, delete (it never left this machine).
Rotation reuses the same path, and retires the old certificate only once the new bundle is in place:
INACTIVE, or REVOKED with `revoke_old`. `--force` revokes every certificate the thing held before,
the bundle's and any other (another host may hold it), so no unknown identity stays active.
A revoked certificate is kept in the registry as REVOKED: deleted, one signed by the operator's CA
could be registered again (AWS IoT refuses to register a certificate it already has).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from collector.config import CA_FILE, CERT_FILE, CONFIG_FILE, KEY_FILE, CollectorConfig
from collector.validation import describe
from devices import crypto
from devices.aws import IoTClient, describe_error, is_not_found, retry_conflicts
from devices.bundle import BundleFile, Manifest, bundle_is_whole, read_config, read_manifest, write_bundle
from devices.errors import DeviceError
from devices.outputs import StackOutputs
from infra.outputs import CollectorOutput

Mode = Literal["create", "rotate", "force"]
Status = Literal["provisioned", "unchanged", "rotated"]


@dataclass(frozen=True)
class IssueOptions:
    """Who signs the certificate: AWS IoT (CSR) by default, or the organisation's CA (`ca`)."""

    key_type: crypto.KeyType = "ec-p256"
    ca: crypto.OrgCA | None = None
    validity_days: int = 3650  # only for certificates signed by `ca`; AWS sets its own validity


@dataclass(frozen=True)
class BundleSettings:
    """Bundle config choices. None/absent = keep the current bundle's value, or the default if new."""

    endpoint: str | None = None
    mqtt_port: int | None = None
    server_ca_pem: bytes | None = None
    influx: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    thing_name: str
    bundle_dir: Path
    status: Status
    certificate_id: str
    retired_certificate_id: str | None = None
    retired: Literal["deactivated", "revoked"] | None = None
    revoked_others: tuple[str, ...] = ()  # --force: certificates on the thing that no bundle here held

    def as_dict(self) -> dict[str, Any]:
        return {
            "thingName": self.thing_name,
            "bundleDir": str(self.bundle_dir),
            "status": self.status,
            "certificateId": self.certificate_id,
            "retiredCertificateId": self.retired_certificate_id,
            "retired": self.retired,
            "revokedCertificateIds": list(self.revoked_others),
        }


@dataclass(frozen=True)
class _Issued:
    certificate_id: str
    arn: str
    pem: str


def provision_device(
    iot: IoTClient,
    outputs: StackOutputs,
    target: CollectorOutput,
    bundle_dir: Path,
    issue: IssueOptions = IssueOptions(),
    settings: BundleSettings = BundleSettings(),
    mode: Mode = "create",
    revoke_old: bool = False,
) -> Outcome:
    """Provision (or, with mode rotate/force, re-issue) one collector; see the module docstring."""
    thing = target.thing_name
    crypto.subject_for(thing)  # CN length: refuse before anything happens
    manifest = read_manifest(bundle_dir, thing)
    if manifest is not None and mode == "create":
        return _unchanged(iot, manifest, bundle_dir)
    if manifest is None and mode == "rotate":
        raise DeviceError(
            f"nothing to rotate: no bundle of {thing} at {bundle_dir}; run provision-device first"
        )
    previous = read_config(bundle_dir) if manifest is not None else None
    config = build_config(outputs, target, settings, previous)
    server_ca = _server_ca(settings, bundle_dir if previous is not None else None)

    attached = thing_certificates(iot, thing, outputs.stack)
    if manifest is None and attached and mode == "create":
        raise DeviceError(
            f"{thing} already has {len(attached)} certificate(s) in AWS IoT but no bundle at {bundle_dir}: "
            "another host may hold its identity; revoke it with revoke-device, or pass --force to add one"
        )

    key = crypto.generate_key(issue.key_type)
    issued = issue_certificate(iot, crypto.build_csr(key, thing), issue)
    policy = outputs.collector_policy_name
    try:
        cert = crypto.check_certificate(issued.pem, key, thing)
        if issue.ca is not None:
            crypto.check_issued_by(cert, issue.ca)
        iot.attach_policy(policyName=policy, target=issued.arn)
        iot.attach_thing_principal(thingName=thing, principal=issued.arn)
        files = [
            BundleFile(CONFIG_FILE, config.to_yaml().encode(), 0o600),  # may hold the InfluxDB password
            BundleFile(CERT_FILE, issued.pem.encode(), 0o644),
            BundleFile(KEY_FILE, crypto.private_key_pem(key), 0o600),
            BundleFile(CA_FILE, server_ca, 0o644),
        ]
        write_bundle(
            bundle_dir,
            files,
            issued_manifest(thing, issued, issue),
        )
    except BaseException as exc:
        undo_issue(iot, issued, policy, thing, exc)
        raise

    others = _revoke_others(iot, attached, manifest, issued, thing, bundle_dir) if mode == "force" else ()
    if manifest is None or manifest.certificate_id == issued.certificate_id:
        return Outcome(thing, bundle_dir, "provisioned", issued.certificate_id, revoked_others=others)
    revoke = revoke_old or mode == "force"
    problem = retire_certificate(iot, manifest.certificate_id, manifest.certificate_arn, thing, revoke=revoke)
    if problem:
        raise DeviceError(
            f"new certificate {issued.certificate_id} is in place in {bundle_dir}, but retiring the old "
            f"certificate {manifest.certificate_id} failed ({problem}); finish with revoke-device "
            f"--certificate-id {manifest.certificate_id}"
        )
    return Outcome(
        thing,
        bundle_dir,
        "rotated",
        issued.certificate_id,
        manifest.certificate_id,
        "revoked" if revoke else "deactivated",
        others,
    )


def _revoke_others(iot: IoTClient, attached: list[str], manifest: Manifest | None, issued: _Issued,
                   thing: str, bundle_dir: Path) -> tuple[str, ...]:
    """--force: revoke every certificate the thing held that is not the bundle's (that one is retired
    by the caller), once the new bundle is in place; a clear error names any left active."""
    own = {issued.arn} | ({manifest.certificate_arn} if manifest is not None else set())
    revoked: list[str] = []
    for arn in attached:
        if arn in own:
            continue
        certificate_id = arn.rsplit("/", 1)[-1]
        problem = retire_certificate(iot, certificate_id, arn, thing, revoke=True)
        if problem:
            raise DeviceError(
                f"new certificate {issued.certificate_id} is in place in {bundle_dir}, but revoking "
                f"certificate {certificate_id} that was on {thing} failed ({problem}); finish with "
                f"revoke-device --certificate-id {certificate_id}"
            )
        revoked.append(certificate_id)
    return tuple(revoked)


def build_config(
    outputs: StackOutputs, target: CollectorOutput, settings: BundleSettings, previous: CollectorConfig | None
) -> CollectorConfig:
    """The collector's config: meters from the stack; broker and InfluxDB from options or the old bundle."""
    mqtt: dict[str, Any] = {"endpoint": outputs.iot_endpoint, "encoding": target.encoding}
    if target.primary_host_id is not None:
        mqtt["primary_host_id"] = target.primary_host_id
    if previous is not None:
        mqtt.update(
            endpoint=previous.mqtt.endpoint, port=previous.mqtt.port, keepalive_s=previous.mqtt.keepalive_s
        )
    if settings.endpoint is not None:
        mqtt["endpoint"] = settings.endpoint
    if settings.mqtt_port is not None:
        mqtt["port"] = settings.mqtt_port
    influx = previous.influx.model_dump() if previous is not None else {}
    influx.update(settings.influx)
    data: dict[str, Any] = {
        "stack": outputs.stack,
        "site": target.site,
        "collector": target.collector,
        "thing_name": target.thing_name,
        "poll_interval_s": target.poll_interval_s,
        "meters": [m.model_dump() for m in target.meters],
        "mqtt": mqtt,
        "influx": influx,
    }
    if previous is not None:
        data.update(buffer=previous.buffer.model_dump(), health=previous.health.model_dump())
    try:
        return CollectorConfig.model_validate(data)
    except ValidationError as e:
        raise DeviceError(describe(e, "bundle config").splitlines()[0]) from None


def _server_ca(settings: BundleSettings, previous_bundle: Path | None) -> bytes:
    if settings.server_ca_pem is not None:
        return settings.server_ca_pem
    if previous_bundle is not None and (previous_bundle / CA_FILE).is_file():
        return (previous_bundle / CA_FILE).read_bytes()
    return crypto.amazon_root_ca_pem()


def _unchanged(iot: IoTClient, manifest: Manifest, bundle_dir: Path) -> Outcome:
    """A re-run after success: fine if the bundle is whole and its certificate still ACTIVE in AWS."""
    if not bundle_is_whole(bundle_dir) or not crypto.cert_matches_key(
        (bundle_dir / CERT_FILE).read_bytes(), (bundle_dir / KEY_FILE).read_bytes()
    ):
        raise DeviceError(
            f"{bundle_dir}: bundle is incomplete or its key does not match; re-run with --force"
        )
    try:
        status = iot.describe_certificate(certificateId=manifest.certificate_id)["certificateDescription"][
            "status"
        ]
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        status = "deleted"
    if status != "ACTIVE":
        raise DeviceError(
            f"{bundle_dir} holds certificate {manifest.certificate_id}, which AWS IoT reports as {status}; "
            "re-run with --force to issue a new one"
        )
    return Outcome(manifest.thing_name, bundle_dir, "unchanged", manifest.certificate_id)


def thing_certificates(iot: IoTClient, thing: str, stack: str) -> list[str]:
    """ARNs of the certificates attached to `thing`; a clear error if the thing is not in AWS IoT."""
    try:
        pages = iot.get_paginator("list_thing_principals").paginate(thingName=thing)
        return [p for page in pages for p in page.get("principals", []) if ":cert/" in p]
    except ClientError as exc:
        if is_not_found(exc):
            raise DeviceError(
                f"thing {thing} does not exist in AWS IoT: has `pulumi up` run for stack {stack!r} "
                "in this account and region?"
            ) from None
        raise


def issue_certificate(iot: IoTClient, csr: str, issue: IssueOptions) -> _Issued:
    """A certificate for `csr`: from AWS IoT, or signed by the organisation's CA and registered."""
    if issue.ca is None:
        r = iot.create_certificate_from_csr(certificateSigningRequest=csr, setAsActive=True)
        return _Issued(r["certificateId"], r["certificateArn"], r["certificatePem"])
    pem = issue.ca.sign(csr, issue.validity_days)
    r = iot.register_certificate(certificatePem=pem, caCertificatePem=issue.ca.cert_pem, status="ACTIVE")
    return _Issued(r["certificateId"], r["certificateArn"], pem)


def _attempt(steps: list[tuple[str, Callable[[], object]]]) -> str | None:
    """Run every step (a failed one does not stop the next); 'already gone' counts as done."""
    problems = []
    for what, call in steps:
        try:
            call()
        except (ClientError, BotoCoreError) as exc:
            if not is_not_found(exc):
                problems.append(f"could not {what}: {describe_error(exc)}")
    return "; ".join(problems) or None


def issued_manifest(name: str, issued: _Issued, issue: IssueOptions) -> Manifest:
    """The bundle manifest of the certificate just issued to `name` (a thing, or a host application)."""
    return Manifest(
        thing_name=name,
        certificate_id=issued.certificate_id,
        certificate_arn=issued.arn,
        issuer="aws" if issue.ca is None else "ca",
        key_type=issue.key_type,
        written_at=dt.datetime.now(dt.UTC),
    )


def undo_issue(iot: IoTClient, issued: _Issued, policy: str, thing: str | None, exc: BaseException) -> None:
    """After `exc`, roll back the certificate just issued; a DeviceError if that is left half-done (the
    caller re-raises `exc` otherwise)."""
    leftover = rollback(iot, issued.certificate_id, issued.arn, policy, thing)
    if leftover:
        raise DeviceError(f"{describe_error(exc)}; rollback incomplete: {leftover}") from exc


def rollback(iot: IoTClient, certificate_id: str, arn: str, policy: str, thing: str | None) -> str | None:
    """Undo a certificate we created (for `thing`, or none: a host application's). Returns what could not
    be undone (with the ID to clean up), or None."""
    steps = _retire_steps(iot, certificate_id, arn, [policy], thing, "INACTIVE")
    steps.append(("delete it",
                  lambda: retry_conflicts(lambda: iot.delete_certificate(certificateId=certificate_id))))
    problem = _attempt(steps)
    return f"certificate {certificate_id} is left in AWS IoT ({problem})" if problem else None


def retire_certificate(
    iot: IoTClient, certificate_id: str, arn: str, thing: str, *, revoke: bool
) -> str | None:
    """Detach every policy and the thing from a certificate and set it INACTIVE, or REVOKED if asked
    (kept in the registry: never deleted, so it cannot be registered again)."""
    try:
        policies = [
            p["policyName"]
            for page in iot.get_paginator("list_attached_policies").paginate(target=arn)
            for p in page.get("policies", [])
        ]
    except ClientError as exc:
        if not is_not_found(exc):
            return describe_error(exc)
        policies = []
    status: Literal["INACTIVE", "REVOKED"] = "REVOKED" if revoke else "INACTIVE"
    return _attempt(_retire_steps(iot, certificate_id, arn, policies, thing, status))


def _retire_steps(
    iot: IoTClient, certificate_id: str, arn: str, policies: list[str], thing: str | None,
    status: Literal["INACTIVE", "REVOKED"],
) -> list[tuple[str, Callable[[], object]]]:
    steps: list[tuple[str, Callable[[], object]]] = [
        (f"detach policy {p}", partial(iot.detach_policy, policyName=p, target=arn))
        for p in policies
    ]
    if thing is not None:
        detach = partial(iot.detach_thing_principal, thingName=thing, principal=arn)
        steps.append(("detach the thing", detach))
    steps.append(
        (f"set it {status}", lambda: iot.update_certificate(certificateId=certificate_id, newStatus=status)))
    return steps
