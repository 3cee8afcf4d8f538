"""Malformed stack configs fail before any resource is declared, with an error naming the key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collector.validation import ConfigError
from preflight.mock_runtime import evaluate_stack, load_stack_config_file

BASE, SECRET_KEYS = load_stack_config_file("staging")
SITES: list[dict[str, Any]] = json.loads(BASE["pm500:sites"])


def _sites(**change: Any) -> str:
    sites = json.loads(json.dumps(SITES))
    site = sites[0]
    collector = site["collectors"][0]
    meter = collector["meters"][0]
    for path, value in change.items():
        target = {"site": site, "collector": collector, "meter": meter}[path.split("__")[0]]
        target[path.split("__")[1]] = value
    return json.dumps(sites)


def _duplicate_collector() -> str:
    sites = json.loads(json.dumps(SITES))
    sites[0]["collectors"].append(sites[0]["collectors"][0])
    return json.dumps(sites)


CASES = [
    ({"pm500:sites": None}, "pm500:sites: required"),
    (
        {"pm500:kinesis": json.dumps({"shards": 0})},
        "pm500:kinesis.shards: Input should be greater than or equal to 1",
    ),
    ({"pm500:kinesis": json.dumps({"capacityMode": "AUTO"})}, "pm500:kinesis.capacityMode: Input should be"),
    ({"pm500:kinesis": json.dumps({"retentionHours": 12})}, "pm500:kinesis.retentionHours"),
    ({"pm500:archive": json.dumps({"bufferSizeMb": 16})}, "pm500:archive.bufferSizeMb"),
    ({"pm500:kinesis": json.dumps({"shardz": 2})}, "pm500:kinesis.shardz: unknown field"),
    (  # issue 21 item 2: a pipe cannot batch more than its target (an event bus: 10) accepts
        {"pm500:eventPipe": json.dumps({"batchSize": 100})},
        "pm500:eventPipe.batchSize: 100: an EventBridge event bus takes at most 10 events per batch",
    ),
    ({"pm500:eventPipe": json.dumps({"batchSize": 0})}, "pm500:eventPipe.batchSize: Input should be greater"),
    ({"pm500:sitez": "[]"}, "pm500:sitez: unknown config key"),
    (
        {"pm500:sites": _sites(meter__host="not a host!")},
        "pm500:sites[0].collectors[0].meters[0].host: expected host or IP",
    ),
    ({"pm500:sites": _sites(meter__port=70000)}, "pm500:sites[0].collectors[0].meters[0].port"),
    ({"pm500:sites": _sites(site__name="Plant_A")}, "pm500:sites[0].name: String should match pattern"),
    (
        {"pm500:sites": _sites(collector__meters=[])},
        "pm500:sites[0].collectors[0].meters: List should have at least 1",
    ),
    (
        {"pm500:sites": _duplicate_collector()},
        "pm500:sites[0]: collectors[].name must be unique, repeated: edge-01",
    ),
    ({"pm500:sites": _sites(meter__asset=None)}, "pm500:sites[0].collectors[0].meters[0].asset"),
    ({"pm500:sites": '[{"name": "plant-a"'}, "pm500:sites: not valid JSON"),
    (
        {"pm500:features": json.dumps({"edge": True})},
        "features.edge is on but sites have no edge host: plant-a, plant-b",
    ),
    (
        {"pm500:provisioning": json.dumps({"preProvisioningHookLambdaArn": "my-function"})},
        "pm500:provisioning.preProvisioningHookLambdaArn",
    ),
    ({"aws:region": None}, "aws:region: required"),
    ({"aws:region": "Europe"}, "aws:region: String should match pattern"),
    (
        {"pm500:inventory": "inventory/nothing-here/*.yaml"},
        "pm500:inventory: set either pm500:sites or pm500:inventory, not both",
    ),
]


@pytest.mark.parametrize(("change", "message"), CASES, ids=[c[1].split(":")[1][:40] for c in CASES])
def test_bad_config_names_the_key(change: dict[str, str | None], message: str) -> None:
    config = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        evaluate_stack("staging", config=config, secret_keys=SECRET_KEYS)
    assert message in str(err.value)


def test_at_least_ten_distinct_keys_are_covered() -> None:
    keys = {message.split(":")[1].split(".")[0].split("[")[0].strip() for _, message in CASES}
    assert len(CASES) >= 10 and len(keys) >= 8


def test_bad_stack_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"stack name 'Staging_1'"):
        evaluate_stack("Staging_1", config=BASE, secret_keys=SECRET_KEYS)
