"""Topic templates against literal topics: the collector, the IoT policy and the broker ACL all render
them, so a broken template must fail here, not be compared with its own output."""

from __future__ import annotations

import dataclasses

import pytest

from collector.topics import (
    COLLECTOR_TOPICS,
    DBIRTH,
    DDATA,
    DDEATH,
    DELIVERY_CHECK,
    EVENT,
    EVENT_THING_LEVEL,
    HOST_ID_PATTERN,
    HOST_ID_RULE,
    MAX_THING_NAME_LENGTH,
    NAME_PATTERN,
    NAME_RULE,
    NBIRTH,
    NCMD,
    NDATA,
    NDEATH,
    PRIMARY_HOST_ATTRIBUTE,
    SHADOW,
    SHADOW_ANSWERS,
    SHADOW_GET,
    SHADOW_UPDATE,
    STATE,
    check_thing_name_length,
    collector_state_topic,
    ddata_filter,
    event_filter,
    host_mosquitto_acl,
    host_topics,
    iot_policy_topics,
    mosquitto_acl_patterns,
    shadow_topic,
    stack_thing_prefix,
    thing_name,
)

THING = "prod:plant-a:edge-01"
VAR = "${iot:Connection.Thing.ThingName}"


def test_collector_topics_are_the_sparkplug_topics() -> None:
    assert NBIRTH.render(THING) == "spBv1.0/pm500/NBIRTH/prod:plant-a:edge-01"
    assert NDEATH.render(THING) == "spBv1.0/pm500/NDEATH/prod:plant-a:edge-01"
    assert NDATA.render(THING) == "spBv1.0/pm500/NDATA/prod:plant-a:edge-01"
    assert STATE.render(THING, host="scada-1") == "spBv1.0/STATE/scada-1"
    assert DELIVERY_CHECK.render(THING) == "pm500/delivery-check/prod:plant-a:edge-01"
    assert NCMD.render(THING) == "spBv1.0/pm500/NCMD/prod:plant-a:edge-01"
    assert DBIRTH.render(THING, "meter-1") == "spBv1.0/pm500/DBIRTH/prod:plant-a:edge-01/meter-1"
    assert DDATA.render(THING, "meter-1") == "spBv1.0/pm500/DDATA/prod:plant-a:edge-01/meter-1"
    assert DDEATH.render(THING, "meter-1") == "spBv1.0/pm500/DDEATH/prod:plant-a:edge-01/meter-1"
    shadow = "$aws/things/prod:plant-a:edge-01/shadow/name/pm500"
    assert SHADOW_UPDATE.render(THING) == f"{shadow}/update"
    assert SHADOW_GET.render(THING) == f"{shadow}/get"
    assert SHADOW.render(THING) == f"{shadow}/#"
    assert [shadow_topic(THING, a) for a in SHADOW_ANSWERS] == [
        f"{shadow}/update/rejected",
        f"{shadow}/update/delta",
        f"{shadow}/get/accepted",
        f"{shadow}/get/rejected",
    ]
    assert EVENT.render(THING, "meter-1") == "pm500/event/prod:plant-a:edge-01/meter-1"
    assert NBIRTH.render(THING, "ignored") == "spBv1.0/pm500/NBIRTH/prod:plant-a:edge-01"


def test_the_state_topic_needs_a_host_id() -> None:
    with pytest.raises(ValueError, match="needs a host application id"):
        STATE.render(THING)


def test_host_id_pattern() -> None:
    """One topic level, and nothing an IoT policy or an ACL line reads as a wildcard or variable."""
    for good in ("a", "Ignition-Primary", "scada_1.plant", "A" * 64):
        assert HOST_ID_PATTERN.match(good), good
    for bad in ("", "a/b", "a+", "a#", "a*", "a?", "${x}", "a b", "-a", "A" * 65):
        assert not HOST_ID_PATTERN.match(bad), bad


def test_device_topic_without_an_asset_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an asset"):
        DDATA.render(THING)
    with pytest.raises(ValueError, match="needs an asset"):
        EVENT.render(THING)


def test_rule_filter_is_every_collectors_ddata() -> None:
    assert ddata_filter() == "spBv1.0/pm500/DDATA/+/+"


def test_rule_filter_is_every_collectors_events_with_the_thing_at_level_3() -> None:
    assert event_filter() == "pm500/event/+/+"
    assert EVENT_THING_LEVEL == 3  # IoT SQL topic(n) counts from 1: pm500 / event / <thing>


def test_thing_name_holds_64_characters_not_65() -> None:
    """The thing name is the certificate CN; X.509 caps a CN at 64 characters."""
    assert MAX_THING_NAME_LENGTH == 64
    check_thing_name_length("a" * 64)
    with pytest.raises(ValueError, match=r"^thing name 'a{65}' is 65 characters; .* at most 64: shorten"):
        check_thing_name_length("a" * 65)


def test_thing_name_and_stack_prefix() -> None:
    assert thing_name("prod", "plant-a", "edge-01") == THING
    assert stack_thing_prefix("prod") == "prod:"
    assert THING.startswith(stack_thing_prefix("prod"))
    assert not thing_name("prod-2", "a", "b").startswith(stack_thing_prefix("prod"))


@pytest.mark.parametrize(
    ("stack", "site", "collector", "field"),
    [("pr:od", "a", "b", "stack"), ("prod", "pl:ant", "b", "site"), ("prod", "a", "edge:01", "collector")],
)
def test_colon_in_a_thing_name_part_is_refused(stack: str, site: str, collector: str, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field} name '.*' must not contain ':'$"):
        thing_name(stack, site, collector)


def test_name_pattern() -> None:
    for good in ("a", "prod", "plant-a", "a" * 32, "0-9"):
        assert NAME_PATTERN.match(good), good
    for bad in ("", "-a", "a-", "A", "a:b", "a_b", "a" * 33):
        assert not NAME_PATTERN.match(bad), bad


def test_iot_policy_topics_literal() -> None:
    assert iot_policy_topics("publish") == [
        f"spBv1.0/pm500/NBIRTH/{VAR}",
        f"spBv1.0/pm500/NDEATH/{VAR}",
        f"spBv1.0/pm500/NDATA/{VAR}",
        f"spBv1.0/pm500/DBIRTH/{VAR}/*",
        f"spBv1.0/pm500/DDATA/{VAR}/*",
        f"spBv1.0/pm500/DDEATH/{VAR}/*",
        f"$aws/things/{VAR}/shadow/name/pm500/update",
        f"$aws/things/{VAR}/shadow/name/pm500/get",
        f"pm500/event/{VAR}/*",
    ]
    assert iot_policy_topics("subscribe") == [
        f"spBv1.0/pm500/NCMD/{VAR}",
        f"$aws/things/{VAR}/shadow/name/pm500/*",
    ]
    assert iot_policy_topics("publish", "T") == [
        "spBv1.0/pm500/NBIRTH/T",
        "spBv1.0/pm500/NDEATH/T",
        "spBv1.0/pm500/NDATA/T",
        "spBv1.0/pm500/DBIRTH/T/*",
        "spBv1.0/pm500/DDATA/T/*",
        "spBv1.0/pm500/DDEATH/T/*",
        "$aws/things/T/shadow/name/pm500/update",
        "$aws/things/T/shadow/name/pm500/get",
        "pm500/event/T/*",
    ]


def test_mosquitto_acl_literal() -> None:
    assert mosquitto_acl_patterns() == [
        "pattern write spBv1.0/pm500/NBIRTH/%u",
        "pattern write spBv1.0/pm500/NDEATH/%u",
        "pattern write spBv1.0/pm500/NDATA/%u",
        "pattern write spBv1.0/pm500/DBIRTH/%u/+",
        "pattern write spBv1.0/pm500/DDATA/%u/+",
        "pattern write spBv1.0/pm500/DDEATH/%u/+",
        "pattern read spBv1.0/pm500/NCMD/%u",
        "pattern write $aws/things/%u/shadow/name/pm500/update",
        "pattern write $aws/things/%u/shadow/name/pm500/get",
        "pattern read $aws/things/%u/shadow/name/pm500/#",
        "pattern write pm500/event/%u/+",
    ]
    assert mosquitto_acl_patterns([NCMD]) == ["pattern read spBv1.0/pm500/NCMD/%u"]


def test_host_id_rule_says_what_the_pattern_accepts() -> None:
    assert HOST_ID_RULE == ("1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-', "
                            "starting with a letter or digit")


def test_primary_host_templates_literal() -> None:
    """What the collector reads of its Primary Host, and how the IoT policy names that host."""
    assert (STATE.message_type, STATE.direction) == ("STATE", "subscribe")
    assert (DELIVERY_CHECK.message_type, DELIVERY_CHECK.direction) == ("DELIVERY_CHECK", "unsubscribe")
    assert PRIMARY_HOST_ATTRIBUTE == "primaryHostId"  # the thing attribute infra/iam.py's policy reads
    assert collector_state_topic("${v}") == "spBv1.0/STATE/${v}"


def test_host_application_topics_literal() -> None:
    """By IoT policy action; `prod:*` stands for every edge node of stack prod."""
    assert host_topics("scada", "prod:*") == {
        "subscribe": ["spBv1.0/#", "spBv1.0/pm500/#", "spBv1.0/STATE/scada"],
        "receive": ["spBv1.0/pm500/*/prod:*", "spBv1.0/STATE/scada"],
        "publish": ["spBv1.0/pm500/NCMD/prod:*", "spBv1.0/STATE/scada"],
        "retain": ["spBv1.0/STATE/scada"],
    }


def test_host_application_acl_literal() -> None:
    """The sandbox broker's host identity, from the same `host_topics` as the host's IoT policy."""
    assert host_mosquitto_acl("scada") == [
        "pattern read spBv1.0/STATE/scada",
        "user scada",
        "topic read spBv1.0/#",
        "topic read spBv1.0/pm500/#",
        "topic read spBv1.0/STATE/scada",
        "topic write spBv1.0/pm500/NCMD/+",
        "topic write spBv1.0/STATE/scada",
    ]


def test_name_rule_says_what_the_pattern_accepts() -> None:
    """The one sentence every config error about a name quotes."""
    assert NAME_RULE == "1-32 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"


def test_templates_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DDATA.levels = ("x",)  # type: ignore[misc]


def test_message_types_in_order() -> None:
    """infra/outputs.py keys a stack output by message type: these names are part of the contract."""
    assert [t.message_type for t in COLLECTOR_TOPICS] == [
        "NBIRTH", "NDEATH", "NDATA", "DBIRTH", "DDATA", "DDEATH", "NCMD",
        "SHADOW_UPDATE", "SHADOW_GET", "SHADOW", "EVENT",
    ]
