"""Create in moto the AWS IoT resources a stack's `pulumi up` would have created, from its outputs.

Tests, benchmarks and the demo need the things, thing groups and collector policy to exist before the
CLI provisions devices; this builds them from the same outputs dict the CLI reads (and the same policy
document the program renders), so the CLI is exercised against the real outputs shape.

`moto_signs_csr_key()` fixes one moto gap: its CreateCertificateFromCsr signs a fresh key instead of
the CSR's. The product's strict certificate/key check would (rightly) reject that; the patch makes
moto behave like AWS for tests and benchmarks. It patches the in-process backend, so it affects a
`ThreadedMotoServer` running in this process.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from collector.config import MeterConfig
from collector.topics import PRIMARY_HOST_ATTRIBUTE
from infra.iam import host_iot_policy
from infra.outputs import (
    COLLECTOR_POLICY_NAME,
    COLLECTORS,
    ENVIRONMENT,
    IOT_ENDPOINT,
    ROOT_THING_GROUP,
    SITE_THING_GROUPS,
    SPARKPLUG_HOST_POLICIES,
    STACK,
    THING_TYPE_NAME,
    collector_output,
)
from infra.presence import HASH_KEY, RANGE_KEY

EXAMPLE_ENDPOINT = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com"
MOTO_ACCOUNT = "123456789012"  # moto's default account id


def example_outputs(
    stack: str,
    sites: Mapping[str, list[str]],
    meters_per_collector: int = 2,
    primary_host_id: str | None = None,
) -> dict[str, Any]:
    """Outputs shaped like `pulumi stack output --json` for a synthetic fleet (tests, benchmarks).

    Per-collector entries come from the program's own `infra.outputs.collector_output`. With
    `primary_host_id`, every collector publishes Sparkplug B and waits for that Primary Host, and the
    stack has the host's IoT policy.
    """
    collectors = {}
    for site, names in sites.items():
        for i, name in enumerate(names):
            meters = [
                MeterConfig(asset=f"pm-{i}-{j}", breaker=f"MCC-{j}", host=f"pm{j}.{site}.example")
                for j in range(meters_per_collector)
            ]
            entry = (collector_output(stack, site, name, meters, 1.0) if primary_host_id is None else
                     collector_output(stack, site, name, meters, 1.0, "sparkplug-b", primary_host_id))
            collectors[entry["thingName"]] = entry
    return {
        STACK: stack,
        ENVIRONMENT: stack,
        IOT_ENDPOINT: EXAMPLE_ENDPOINT,
        COLLECTOR_POLICY_NAME: f"{stack}-collector",
        THING_TYPE_NAME: f"{stack}-pm500-collector",
        ROOT_THING_GROUP: f"{stack}-pm500",
        SITE_THING_GROUPS: {site: f"{stack}-{site}" for site in sites},
        COLLECTORS: collectors,
        SPARKPLUG_HOST_POLICIES: {h: f"{stack}-host-{h}" for h in [primary_host_id] if h is not None},
    }


def seed_stack(
    iot: Any, outputs: Mapping[str, Any], policy_document: str | Mapping[str, Any], ca_pem: str | None = None
) -> None:
    """Thing type, thing groups, things (with the program's `site`/`env` attributes, and `primaryHostId`),
    the collector policy, the Sparkplug host applications' policies (the program's documents), and
    optionally a registered ACTIVE CA certificate (bring-your-own-CA)."""
    environment = outputs.get(ENVIRONMENT, outputs[STACK])
    thing_type = outputs.get(THING_TYPE_NAME)
    if thing_type:
        iot.create_thing_type(thingTypeName=thing_type)
    root_group = outputs.get(ROOT_THING_GROUP)
    if root_group:
        iot.create_thing_group(thingGroupName=root_group)
    site_groups: Mapping[str, str] = outputs.get(SITE_THING_GROUPS) or {}
    for group in site_groups.values():
        extra = {"parentGroupName": root_group} if root_group else {}
        iot.create_thing_group(thingGroupName=group, **extra)
    for thing, entry in outputs[COLLECTORS].items():
        attributes = {"site": entry["site"], "env": environment}
        if entry.get("primaryHostId"):
            attributes[PRIMARY_HOST_ATTRIBUTE] = entry["primaryHostId"]
        extra = {"thingTypeName": thing_type} if thing_type else {}
        iot.create_thing(thingName=thing, attributePayload={"attributes": attributes}, **extra)
        if entry["site"] in site_groups:
            iot.add_thing_to_thing_group(thingGroupName=site_groups[entry["site"]], thingName=thing)
    document = policy_document if isinstance(policy_document, str) else json.dumps(policy_document)
    iot.create_policy(policyName=outputs[COLLECTOR_POLICY_NAME], policyDocument=document)
    for host, policy in (outputs.get(SPARKPLUG_HOST_POLICIES) or {}).items():
        host_document = host_iot_policy("aws", iot.meta.region_name, MOTO_ACCOUNT, outputs[STACK], host)
        iot.create_policy(policyName=policy, policyDocument=json.dumps(host_document))
    if ca_pem is not None:
        iot.register_ca_certificate(caCertificate=ca_pem, setAsActive=True, allowAutoRegistration=False)


_ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moto IoT CA (sandbox)")])


def create_fleet_table(ddb: Any, name: str) -> None:
    """The stack's fleet table (presence and report items per thing) as `infra.presence` declares it."""
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": HASH_KEY, "KeyType": "HASH"},
                   {"AttributeName": RANGE_KEY, "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": HASH_KEY, "AttributeType": "S"},
                              {"AttributeName": RANGE_KEY, "AttributeType": "S"}])


@contextmanager
def moto_signs_csr_key() -> Iterator[None]:
    """Within the block, moto's CreateCertificateFromCsr certifies the CSR's own public key, like AWS."""
    from moto.iot.models import IoTBackend

    issuer_key = ec.generate_private_key(ec.SECP256R1())

    def create_certificate_from_csr(self: IoTBackend, csr: str, set_as_active: bool) -> Any:
        request = x509.load_pem_x509_csr(csr.encode())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(request.subject)
            .issuer_name(_ISSUER)
            .public_key(request.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(issuer_key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return self.register_certificate(
            pem, ca_certificate_pem=None, set_as_active=set_as_active, status="INACTIVE"
        )

    with mock.patch.object(IoTBackend, "create_certificate_from_csr", create_certificate_from_csr):
        yield
