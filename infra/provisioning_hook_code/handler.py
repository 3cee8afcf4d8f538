"""The stack's pre-provisioning hook: AWS IoT calls it on every fleet-provisioning `RegisterThing`, and
provisions the device only when it answers `{"allowProvisioning": true}` (AWS IoT developer guide,
"Pre-provisioning hooks"; it must answer within 5 seconds, and a failure refuses the request).

A claim certificate is shared by a whole batch of devices and may be copied off any edge host, so
the device's own word (`Site`, `Collector`) is checked against what the operator declared:
- the pair must be a collector of this stack's inventory (`collectors.json`, packaged with this file
  by the Pulumi program: site -> collector -> thing name);
- its thing must not already hold a live certificate (one that is not INACTIVE, REVOKED or
  REGISTER_INACTIVE): provisioning would attach a second identity to a working collector, knocking it
  off and letting the claimant publish its readings and read its commands. Unless the operator asked
  for a replacement: `cli.py devices allow-replacement` sets the thing attribute `replaceCertificateUntil`
  (UTC epoch seconds) and the hook allows a claim until then.

Runs on the Lambda Python runtime (stdlib + boto3 only); `decide` takes the IoT client so tests run it
against moto.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

REPLACE_UNTIL_ATTRIBUTE = "replaceCertificateUntil"
DEAD_STATUSES = frozenset({"INACTIVE", "REVOKED", "REGISTER_INACTIVE"})
INVENTORY_FILE = Path(__file__).with_name("collectors.json")


def load_inventory(path: Path = INVENTORY_FILE) -> dict[str, dict[str, str]]:
    collectors = json.loads(path.read_text())["collectors"]
    return {str(site): {str(c): str(t) for c, t in things.items()} for site, things in collectors.items()}


def _live_certificates(iot: Any, thing: str) -> list[str]:
    """Ids of the certificates attached to `thing` that can still connect (or be switched back on)."""
    live = []
    try:
        pages = iot.get_paginator("list_thing_principals").paginate(thingName=thing)
        principals = [p for page in pages for p in page.get("principals", [])]
    except iot.exceptions.ResourceNotFoundException:
        return []  # no thing yet: the template creates it
    for principal in principals:
        if ":cert/" not in principal:
            continue
        certificate_id = principal.rsplit("/", 1)[1]
        status = iot.describe_certificate(certificateId=certificate_id)["certificateDescription"]["status"]
        if status not in DEAD_STATUSES:
            live.append(certificate_id)
    return live


def _replacement_allowed(iot: Any, thing: str, now: float) -> bool:
    attributes = iot.describe_thing(thingName=thing).get("attributes") or {}
    until = attributes.get(REPLACE_UNTIL_ATTRIBUTE, "")
    return until.isdigit() and now < int(until)


def decide(event: dict[str, Any], inventory: dict[str, dict[str, str]], iot: Any,
           now: float) -> tuple[bool, str]:
    """(allow, reason) for one pre-provisioning hook input."""
    parameters = event.get("parameters") or {}
    site, collector = parameters.get("Site"), parameters.get("Collector")
    if not (isinstance(site, str) and isinstance(collector, str)):
        return False, "Site and Collector are required"
    thing = inventory.get(site, {}).get(collector)
    if thing is None:
        return False, f"{site}/{collector} is not a collector of this stack's inventory"
    live = _live_certificates(iot, thing)
    if live and not _replacement_allowed(iot, thing, now):
        return False, (f"{thing} already has a live certificate ({live[0]}); the operator allows a "
                       f"replacement with `cli.py devices allow-replacement`")
    return True, f"{thing}: " + ("replacement allowed by the operator" if live else "first certificate")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    import boto3  # the Lambda runtime's; imported here so `decide` needs none

    allow, reason = decide(event, load_inventory(), boto3.client("iot"), time.time())
    # One line per decision in the function's log group (no certificate PEM, no secret).
    print(json.dumps({"allowProvisioning": allow, "reason": reason, "clientId": event.get("clientId"),
                      "claimCertificateId": event.get("claimCertificateId"),
                      "certificateId": event.get("certificateId")}))
    return {"allowProvisioning": allow}
