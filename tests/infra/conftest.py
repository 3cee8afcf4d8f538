"""Both real stacks evaluated once per test session on Pulumi's mock runtime."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.mock_runtime import EvaluatedStack, evaluate_stack


@pytest.fixture(scope="session")
def staging() -> EvaluatedStack:
    return evaluate_stack("staging")


@pytest.fixture(scope="session")
def prod() -> EvaluatedStack:
    return evaluate_stack("prod")


@pytest.fixture(scope="session", params=["staging", "prod"])
def stack(request: pytest.FixtureRequest, staging: EvaluatedStack, prod: EvaluatedStack) -> EvaluatedStack:
    return {"staging": staging, "prod": prod}[request.param]


# The longest names the config accepts (written out, not derived from the code under test): a stack of
# 24 characters (the provisioning template `pm500-<stack>-claim` holds 36), a site of 32, and the
# collector that brings the thing name `<stack>:<site>:<collector>` to 64 (the certificate CN limit).
LONG_STACK = "s" * 23 + "1"
LONG_SITE = "site-" + "x" * 27
LONG_COLLECTOR = "edge-1"
METER = {"asset": "main", "breaker": "MCC-1", "host": "pm500.plant.example"}


@pytest.fixture(scope="session")
def longest() -> EvaluatedStack:
    """A generated stack at the longest stack, site and thing names the config accepts, every optional
    cloud feature on (so every role exists at the longest names)."""
    sites = [{"name": name, "collectors": [{"name": collector, "meters": [METER]}]}
             for name, collector in ((LONG_SITE, LONG_COLLECTOR), ("b", "c"))]
    features = {"eventBridgePipe": True, "latestValueTable": True, "alarmEvents": True}
    config: dict[str, Any] = {"aws:region": "eu-west-1", "pm500:sites": json.dumps(sites),
                              "pm500:features": json.dumps(features)}
    return evaluate_stack(LONG_STACK, config=config)
