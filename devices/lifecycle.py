"""What the fleet holds in AWS IoT (list-devices) and taking a device's identity away (revoke-device)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from cryptography import x509

from devices.aws import IoTClient, is_not_found
from devices.errors import DeviceError
from devices.outputs import StackOutputs
from devices.provision import retire_certificate, thing_certificates
from infra.outputs import CollectorOutput
from infra.provisioning_hook_code.handler import REPLACE_UNTIL_ATTRIBUTE


@dataclass(frozen=True)
class CertificateInfo:
    certificate_id: str
    status: str
    not_after: dt.datetime | None
    policies: tuple[str, ...]


@dataclass(frozen=True)
class DeviceInfo:
    thing_name: str
    site: str
    collector: str
    in_aws: bool
    certificates: tuple[CertificateInfo, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "thingName": self.thing_name,
            "site": self.site,
            "collector": self.collector,
            "inAws": self.in_aws,
            "certificates": [
                {
                    "certificateId": c.certificate_id,
                    "status": c.status,
                    "notAfter": c.not_after.isoformat() if c.not_after else None,
                    "policies": list(c.policies),
                }
                for c in self.certificates
            ],
        }


def list_devices(
    iot: IoTClient, outputs: StackOutputs, sites: list[str], workers: int = 8
) -> list[DeviceInfo]:
    """Every collector of the stack (or of `sites`) with its certificates, status, expiry and policy.

    AWS calls: one ListThingPrincipals per thing, one DescribeCertificate per certificate (status and
    expiry), and the stack policy's targets listed once (ListTargetsForPolicy, paginated) instead of
    ListAttachedPolicies per certificate: ~2 calls per device at 10,000 devices instead of ~3.
    `policies` therefore names the stack's collector policy when it is attached (the one policy
    provisioning attaches), not policies attached by hand.
    """
    targets = outputs.select(sites, None)
    policy = outputs.collector_policy_name
    with_policy = _policy_targets(iot, policy)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda t: _device(iot, t, policy, with_policy), targets))


def _policy_targets(iot: IoTClient, policy: str) -> set[str]:
    """Certificates the stack policy is attached to; none when the policy does not exist in this region
    (another region than the stack's, or a stack not deployed): each thing is then reported missing."""
    try:
        pages = iot.get_paginator("list_targets_for_policy").paginate(policyName=policy)
        return {arn for page in pages for arn in page.get("targets", [])}
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        return set()


def _device(iot: IoTClient, target: CollectorOutput, policy: str, with_policy: set[str]) -> DeviceInfo:
    try:
        pages = iot.get_paginator("list_thing_principals").paginate(thingName=target.thing_name)
        arns = [p for page in pages for p in page.get("principals", []) if ":cert/" in p]
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        return DeviceInfo(target.thing_name, target.site, target.collector, False, ())
    certs = tuple(_certificate(iot, arn, (policy,) if arn in with_policy else ()) for arn in arns)
    return DeviceInfo(target.thing_name, target.site, target.collector, True, certs)


def _certificate(iot: IoTClient, arn: str, policies: tuple[str, ...]) -> CertificateInfo:
    certificate_id = arn.rsplit("/", 1)[-1]
    description = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]
    return CertificateInfo(certificate_id, description["status"], _not_after(description), policies)


def _not_after(description: dict[str, Any]) -> dt.datetime | None:
    """Expiry from the certificate itself (authoritative), else from the service's validity field."""
    pem = description.get("certificatePem")
    if pem:
        try:
            return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
        except ValueError:
            pass
    value = description.get("validity", {}).get("notAfter")
    return value if isinstance(value, dt.datetime) else None


def revoke_device(
    iot: IoTClient, outputs: StackOutputs, target: CollectorOutput, certificate_id: str | None = None
) -> list[str]:
    """Detach the collector's certificates (or just `certificate_id`) and leave them REVOKED.

    Revoked, not deleted: AWS IoT refuses to register a certificate it already holds, so one signed by
    the operator's CA cannot come back. The thing itself stays: it belongs to the stack and `pulumi up`
    manages it.
    """
    arns = thing_certificates(iot, target.thing_name, outputs.stack)
    if certificate_id is not None:
        arns = [a for a in arns if a.rsplit("/", 1)[-1] == certificate_id]
        if not arns:
            raise DeviceError(f"--certificate-id {certificate_id}: not attached to {target.thing_name}")
    revoked: list[str] = []
    for arn in arns:
        cert_id = arn.rsplit("/", 1)[-1]
        problem = retire_certificate(iot, cert_id, arn, target.thing_name, revoke=True)
        if problem:
            done = f" (revoked before it: {', '.join(revoked)})" if revoked else ""
            raise DeviceError(
                f"revoking certificate {cert_id} of {target.thing_name} failed: {problem}{done}"
            )
        revoked.append(cert_id)
    return revoked


MAX_REPLACEMENT_MINUTES = 24 * 60


def allow_replacement(iot: IoTClient, thing: str, minutes: int, now: float | None = None) -> int:
    """Let fleet provisioning give `thing` a new certificate for `minutes`, although it holds a live
    one (a collector's host replaced, its key lost). Returns the end of the window (UTC epoch seconds).

    The stack's hook refuses a claim for a thing with a live certificate otherwise; the window is a
    thing attribute (UpdateThing, merged with the others), so it needs no other state.
    """
    if not 1 <= minutes <= MAX_REPLACEMENT_MINUTES:
        raise DeviceError(f"--minutes {minutes}: expected 1 to {MAX_REPLACEMENT_MINUTES}")
    until = int(now if now is not None else dt.datetime.now(dt.UTC).timestamp()) + minutes * 60
    try:
        iot.update_thing(thingName=thing, attributePayload={
            "attributes": {REPLACE_UNTIL_ATTRIBUTE: str(until)}, "merge": True})
    except ClientError as exc:
        if is_not_found(exc):
            raise DeviceError(f"thing {thing} does not exist in AWS IoT") from None
        raise
    return until
