"""Figures docs/infra.md states about the stacks, held to what the program declares."""

from __future__ import annotations

import re
from pathlib import Path

from preflight.mock_runtime import EvaluatedStack

PAGE = Path(__file__).resolve().parents[2] / "docs" / "infra.md"


def test_topic_rule_counts(staging: EvaluatedStack, prod: EvaluatedStack, longest: EvaluatedStack) -> None:
    row = next(line for line in PAGE.read_text().splitlines() if line.startswith("| Topic rules per account"))
    stated = re.search(r"Staging has (\d+), prod (\d+), the longest-names stack \(every feature, both "
                       r"encodings\) (\d+)\.", row)
    assert stated
    counts = [len(s.of_type("aws:iot/topicRule:TopicRule")) for s in (staging, prod, longest)]
    assert [int(n) for n in stated.groups()] == counts
    bounds = re.search(r"a stack uses (\d+) to (\d+)", row)
    assert bounds and (int(bounds[1]), int(bounds[2])) == (2, max(counts))


def test_iot_policy_size() -> None:
    import json

    from infra.iam import collector_iot_policy

    lines = PAGE.read_text().splitlines()
    row = next(line for line in lines if line.startswith("| IoT policy document size"))
    match = re.search(r"policy variables \(([\d,]+) characters", row)
    assert match
    stated = int(match[1].replace(",", ""))
    document = collector_iot_policy("aws", "eu-west-1", "123456789012")
    assert stated == len(re.sub(r"\s", "", json.dumps(document)))
