"""Both real stacks evaluated once per test session on Pulumi's mock runtime."""

from __future__ import annotations

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
