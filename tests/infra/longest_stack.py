"""A stack config at the longest names `infra.config` accepts, with every feature on.

The real stacks use short names; AWS limits bite at the long end (a 32-character stack name, site
and collector names of 32, the longest region). Checks that must hold for any accepted config run
over this one too (service models, moto replay).
"""

from __future__ import annotations

import json

# 32 characters each: the most NAME_PATTERN accepts.
STACK = "longest-stack-name-for-checks-32"
SITE = "longest-site-name-for-checks--32"
COLLECTOR = "longest-collector-name-checks-32"
REGION = "ap-southeast-2"
HOOK_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:pm500-claim-hook"


def longest_config() -> dict[str, str]:
    """`PULUMI_CONFIG`-style config (namespace:key -> text) for `infra.mock_runtime.evaluate_stack`."""
    meters = [{"asset": f"meter-asset-name-for-checks-{i:04d}", "breaker": "B" * 64,
               "host": f"pm500-{i}.site.example"} for i in range(2)]
    sites = [{"name": SITE[:-1] + str(n), "collectors": [{"name": COLLECTOR, "meters": meters}],
              "edge": {"dockerHost": f"ssh://pm500@edge-{n}.site.example"}} for n in range(2)]
    return {
        "aws:region": REGION,
        "pm500:environment": STACK,
        "pm500:sites": json.dumps(sites),
        "pm500:features": json.dumps({"eventBridgePipe": True, "latestValueTable": True, "edge": True}),
        "pm500:provisioning": json.dumps({"preProvisioningHookLambdaArn": HOOK_ARN}),
        "pm500:kinesis": json.dumps({"capacityMode": "PROVISIONED", "shards": 500, "retentionHours": 8760}),
        "pm500:deletionProtection": "true",
    }
