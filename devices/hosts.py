"""Give a Sparkplug Host Application of a stack its identity: key here, certificate from AWS IoT (or the
organisation's CA), a bundle on disk, like a collector's (`devices.provision`).

The host (Ignition's MQTT Engine, a HiveMQ bridge, a Tahu application) connects with client id = its
host id = the certificate's CN; the stack's host policy (`infra.iam.host_iot_policy`) lets it read
every edge node of the stack, send them NCMD and publish its own retained STATE. The bundle holds the
key (0600), the certificate, the server CA and `host.yaml`: what to configure in the host application.
Any failure after the certificate was created rolls it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from collector.config import CA_FILE, CERT_FILE, KEY_FILE
from collector.topics import GROUP_ID, NCMD, SPARKPLUG_NAMESPACE, STATE, stack_thing_prefix
from devices import crypto
from devices.aws import IoTClient
from devices.bundle import BundleFile, read_manifest, write_bundle
from devices.errors import DeviceError
from devices.outputs import StackOutputs
from devices.provision import BundleSettings, IssueOptions, issue_certificate, issued_manifest, undo_issue

HOST_FILE = "host.yaml"
MQTT_PORT = 8883


def host_settings(outputs: StackOutputs, host_id: str, settings: BundleSettings) -> dict[str, Any]:
    """`host.yaml`: the broker, the identity and the Sparkplug topics the host uses, as a host's settings
    screen asks for them."""
    return {
        "stack": outputs.stack,
        "host_id": host_id,
        "mqtt": {
            "endpoint": settings.endpoint or outputs.iot_endpoint,
            "port": settings.mqtt_port or MQTT_PORT,
            "client_id": host_id,  # the IoT policy allows this client id only
            "ca_file": CA_FILE,
            "cert_file": CERT_FILE,
            "key_file": KEY_FILE,
        },
        "sparkplug": {
            "state_topic": STATE.render("", host=host_id),  # QoS 1, retained, with a will (spec 5.x)
            "subscribe": [f"{SPARKPLUG_NAMESPACE}/{GROUP_ID}/#"],
            "edge_nodes": f"{stack_thing_prefix(outputs.stack)}*",
            "ncmd_topic": NCMD.render("<edge node id>"),
        },
    }


def provision_host(
    iot: IoTClient,
    outputs: StackOutputs,
    host_id: str,
    bundle_dir: Path,
    issue: IssueOptions,
    settings: BundleSettings,
) -> dict[str, Any]:
    """Create the host's certificate, attach the stack's host policy and write its bundle."""
    policy = outputs.sparkplug_host_policy_names.get(host_id)
    if policy is None:
        known = ", ".join(sorted(outputs.sparkplug_host_policy_names)) or "none"
        raise DeviceError(
            f"--host-id {host_id!r}: stack {outputs.stack!r} has no such Sparkplug host application (hosts: "
            f"{known}); name it as pm500:primaryHostId (or a collector's primaryHostId) and run pulumi up"
        )
    crypto.subject_for(host_id)  # CN length: refuse before anything happens
    if read_manifest(bundle_dir, host_id) is not None:
        raise DeviceError(f"--out {bundle_dir}: {host_id} already has a bundle there; move it away first")
    key = crypto.generate_key(issue.key_type)
    issued = issue_certificate(iot, crypto.build_csr(key, host_id), issue)
    try:
        cert = crypto.check_certificate(issued.pem, key, host_id)
        if issue.ca is not None:
            crypto.check_issued_by(cert, issue.ca)
        iot.attach_policy(policyName=policy, target=issued.arn)
        server_ca = settings.server_ca_pem or crypto.amazon_root_ca_pem()
        document = yaml.safe_dump(host_settings(outputs, host_id, settings), sort_keys=False).encode()
        write_bundle(
            bundle_dir,
            [
                BundleFile(HOST_FILE, document, 0o644),
                BundleFile(CERT_FILE, issued.pem.encode(), 0o644),
                BundleFile(KEY_FILE, crypto.private_key_pem(key), 0o600),
                BundleFile(CA_FILE, server_ca, 0o644),
            ],
            issued_manifest(host_id, issued, issue),
        )
    except BaseException as exc:
        undo_issue(iot, issued, policy, None, exc)  # a host is no thing
        raise
    return {"hostId": host_id, "bundleDir": str(bundle_dir), "certificateId": issued.certificate_id,
            "policyName": policy}
