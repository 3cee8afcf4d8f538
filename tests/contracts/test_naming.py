"""Every AWS name of a stack, literally: two stacks must never share one, rules allow only [A-Za-z0-9_]."""

from __future__ import annotations

import dataclasses

import pytest

from infra.naming import MAX_STACK_NAME_LENGTH, PRODUCT, STACK_TAG, Names


def test_names_of_a_stack() -> None:
    names = Names("prod-eu")
    assert PRODUCT == "pm500"
    assert names.prefix == "pm500-prod-eu"
    assert names.resource("stream") == "pm500-prod-eu-stream"
    assert names.thing_type == "pm500-prod-eu-collector"
    assert names.root_group == "pm500-prod-eu"
    assert names.site_group("plant-a") == "pm500-prod-eu:plant-a"
    assert names.site_group_prefix == "pm500-prod-eu:"
    assert names.thing("plant-a", "edge-01") == "prod-eu:plant-a:edge-01"
    assert names.collector_policy == "pm500-prod-eu-collector"
    assert names.collector_state_policy == "pm500-prod-eu-collector-host-state"  # Sparkplug host STATE
    assert names.host_policy("scada-1") == "pm500-prod-eu-host-scada-1"
    assert names.provisioning_template == "pm500-prod-eu-claim"
    assert names.permissions_boundary == "pm500-prod-eu-boundary"  # made by the bootstrap (issue 24)
    assert names.data_key_alias == "alias/pm500-prod-eu-data"  # the bootstrap's key, looked up by the stack
    assert STACK_TAG == "pm500:stack"
    assert names.rule("archive") == "pm500_prod_eu_archive"
    assert names.edge("plant-a") == "pm500_prod-eu_plant-a"
    assert names.edge("plant-a", "influxdb") == "pm500_prod-eu_plant-a_influxdb"


def test_stack_names_hold_24_characters() -> None:
    """The provisioning template name `pm500-<stack>-claim` is capped at 36 by AWS IoT: 36 - 12 = 24."""
    assert MAX_STACK_NAME_LENGTH == 24


def test_thing_name_parts_cannot_hold_the_separator() -> None:
    with pytest.raises(ValueError, match="site name 'plant:a' must not contain ':'"):
        Names("prod").thing("plant:a", "edge-01")


def test_names_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Names("prod").stack = "staging"  # type: ignore[misc]
