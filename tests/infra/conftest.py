"""Both real stacks and the generated longest-names stack, evaluated once per test session on Pulumi's
mock runtime."""

from __future__ import annotations

import pytest

from preflight.mock_runtime import EvaluatedStack, evaluate_stack
from tests.infra.longest_stack import STACK, longest_config


@pytest.fixture(scope="session")
def staging() -> EvaluatedStack:
    return evaluate_stack("staging")


@pytest.fixture(scope="session")
def prod() -> EvaluatedStack:
    return evaluate_stack("prod")


@pytest.fixture(scope="session", params=["staging", "prod"])
def stack(request: pytest.FixtureRequest, staging: EvaluatedStack, prod: EvaluatedStack) -> EvaluatedStack:
    return {"staging": staging, "prod": prod}[request.param]


@pytest.fixture(scope="session")
def longest() -> EvaluatedStack:
    """The generated stack at the longest accepted names, every feature on, mixed encodings
    (tests/infra/longest_stack.py)."""
    return evaluate_stack(STACK, config=longest_config())
