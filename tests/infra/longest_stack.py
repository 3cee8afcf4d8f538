"""The one generated stack at the longest names `infra.config` accepts, with every feature on.

The real stacks use short names; AWS limits bite at the long end (a 24-character stack name, the
longest the provisioning template name `pm500-<stack>-claim` holds; a 32-character site and a collector
bringing the thing name to 64, the certificate CN limit; the longest region). Mixed encodings: the
first site's collector publishes JSON, the second's Sparkplug B, so the decode bucket, its descriptor
object and the decode rule exist too; the Sparkplug collector waits for a Primary Host Application with
the longest host id (its STATE policy, thing attribute and the host's own policy). Checks that must
hold for any accepted config run over this one (names, service models, IAM reference, deployer policy,
moto replay); `conftest.longest` evaluates it.
"""

from __future__ import annotations

import json

STACK = "longest-stack-checks-024"  # 24 characters: 36 - len("pm500--claim")
SITE = "longest-site-name-for-checks--32"  # 32 characters: the most NAME_PATTERN accepts
SPARKPLUG_SITE = "longest-site-name-for-checks--31"
COLLECTOR = "edge-1"  # 24 + 1 + 32 + 1 + 6 = 64 characters of thing name
HOST_ID = "primary-host-application-id-at-the-longest-that-is-accepted--064"  # 64: the longest host id
REGION = "ap-southeast-2"
FEATURES = {"eventBridgePipe": True, "latestValueTable": True, "alarmEvents": True, "edge": True}


def longest_config() -> dict[str, str]:
    """`PULUMI_CONFIG`-style config (namespace:key -> text) for `preflight.mock_runtime.evaluate_stack`."""
    meters = [{"asset": f"meter-asset-name-for-checks-{i:04d}", "breaker": "B" * 64,
               "host": f"pm500-{i}.site.example"} for i in range(2)]
    sites = [{"name": site, "collectors": [{"name": COLLECTOR, "meters": meters, "encoding": encoding}],
              "edge": {"dockerHost": f"ssh://pm500@edge-{n}.site.example"}}
             for n, (site, encoding) in enumerate(((SITE, "json"), (SPARKPLUG_SITE, "sparkplug-b")))]
    sites[1]["collectors"][0]["primaryHostId"] = HOST_ID  # its STATE policy, thing attribute, host policy
    return {
        "aws:region": REGION,
        "pm500:environment": STACK,
        "pm500:sites": json.dumps(sites),
        "pm500:features": json.dumps(FEATURES),
        "pm500:provisioning": json.dumps({"fleet": True}),  # the stack's own hook (a Lambda in the stack)
        "pm500:kinesis": json.dumps({"capacityMode": "PROVISIONED", "shards": 500, "retentionHours": 8760}),
        "pm500:deletionProtection": "true",
    }
