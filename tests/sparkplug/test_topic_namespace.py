"""Sparkplug IDs and the topic namespace (spec chapters 1 and 4), judged on the captured `session` run
and on the configuration rules that make the IDs (collector/topics.py, collector/config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config import parse_config
from collector.topics import GROUP_ID, NAME_PATTERN, SPARKPLUG_NAMESPACE
from collector.validation import ConfigError
from tests.collector.harness import THING
from tests.sparkplug.scenarios import ASSETS, Run

pytestmark = pytest.mark.slow

RESERVED = set("+/#")
DEVICE_TYPES = {"DBIRTH", "DDEATH", "DDATA", "DCMD"}
NODE_TYPES = {"NBIRTH", "NDEATH", "NDATA", "NCMD", "STATE"}


def levels(run: Run) -> list[list[str]]:
    return [m.topic.split("/") for m in run.capture.published]


def ids(run: Run, level: int) -> set[str]:
    return {t[level] for t in levels(run) if len(t) > level}


def _valid_id(value: str) -> bool:
    value.encode("utf-8")  # a str is UTF-8 encodable unless it holds lone surrogates
    return bool(value) and not RESERVED & set(value)


def test_tck_id_topic_structure(session_run: Run) -> None:
    """namespace/group_id/message_type/edge_node_id[/device_id]."""
    for t in levels(session_run):
        assert len(t) in (4, 5) and t[2] in NODE_TYPES | DEVICE_TYPES


def test_tck_id_topic_structure_namespace_a(session_run: Run) -> None:
    assert ids(session_run, 0) == {"spBv1.0"} == {SPARKPLUG_NAMESPACE}


def test_tck_id_intro_group_id_string(session_run: Run) -> None:
    assert ids(session_run, 1) == {GROUP_ID} and all(_valid_id(g) for g in ids(session_run, 1))


def test_tck_id_intro_group_id_chars(session_run: Run) -> None:
    assert all(_valid_id(g) for g in ids(session_run, 1))


def test_tck_id_topic_structure_namespace_valid_group_id(session_run: Run) -> None:
    assert all(_valid_id(g) for g in ids(session_run, 1))


def test_tck_id_intro_edge_node_id_string(session_run: Run) -> None:
    assert ids(session_run, 3) == {THING} and all(_valid_id(e) for e in ids(session_run, 3))


def test_tck_id_intro_edge_node_id_chars(session_run: Run) -> None:
    assert all(_valid_id(e) for e in ids(session_run, 3))


def test_tck_id_topic_structure_namespace_valid_edge_node_id(session_run: Run) -> None:
    assert all(_valid_id(e) for e in ids(session_run, 3))


def test_tck_id_intro_device_id_string(session_run: Run) -> None:
    assert ids(session_run, 4) == set(ASSETS) and all(_valid_id(d) for d in ids(session_run, 4))


def test_tck_id_intro_device_id_chars(session_run: Run) -> None:
    """Device ids are asset names: NAME_PATTERN admits a-z, 0-9 and '-' only."""
    assert all(_valid_id(d) for d in ids(session_run, 4))
    assert not any(NAME_PATTERN.match(f"a{c}b") for c in RESERVED)


def test_tck_id_topic_structure_namespace_valid_device_id(session_run: Run) -> None:
    assert all(_valid_id(d) for d in ids(session_run, 4))


def test_tck_id_topic_structure_namespace_device_id_associated_message_types(session_run: Run) -> None:
    assert all(len(t) == 5 for t in levels(session_run) if t[2] in DEVICE_TYPES)


def test_tck_id_topic_structure_namespace_device_id_non_associated_message_types(session_run: Run) -> None:
    assert all(len(t) == 4 for t in levels(session_run) if t[2] in NODE_TYPES)


def test_tck_id_intro_edge_node_id_uniqueness(session_run: Run) -> None:
    """The edge node id is the thing name, which is also the MQTT client id: AWS IoT (and the sandbox
    broker) admit one connection per client id, and the registry one thing per name."""
    assert {c.client_id for c in session_run.capture.connects()} == ids(session_run, 3) == {THING}


def test_tck_id_topic_structure_namespace_unique_edge_node_descriptor(session_run: Run) -> None:
    test_tck_id_intro_edge_node_id_uniqueness(session_run)


def test_tck_id_payloads_nbirth_edge_node_descriptor(session_run: Run) -> None:
    test_tck_id_intro_edge_node_id_uniqueness(session_run)


def test_tck_id_topic_structure_namespace_unique_device_id(tmp_path: Path) -> None:
    """Device ids (asset names) are unique within a collector: the config refuses a repeated one."""
    meter = {"asset": "m1", "breaker": "F1", "host": "127.0.0.1"}
    data = {"stack": "s", "site": "a", "collector": "c", "thing_name": "s:a:c",
            "meters": [meter, {**meter, "breaker": "F2"}], "mqtt": {"endpoint": "127.0.0.1"}}
    with pytest.raises(ConfigError, match="asset ids must be unique, repeated: m1"):
        parse_config(data, "test")


def test_tck_id_topic_structure_namespace_duplicate_device_id_across_edge_node(tmp_path: Path) -> None:
    """MAY: two collectors can both have a meter `m1` (their edge node ids differ)."""
    meter = {"asset": "m1", "breaker": "F1", "host": "127.0.0.1"}
    for collector in ("c1", "c2"):
        cfg = parse_config({"stack": "s", "site": "a", "collector": collector,
                            "thing_name": f"s:a:{collector}", "meters": [meter],
                            "mqtt": {"endpoint": "127.0.0.1"}}, "test")
        assert [m.asset for m in cfg.meters] == ["m1"]


def test_tck_id_case_sensitivity_sparkplug_ids(session_run: Run) -> None:
    """SHOULD: no two IDs equal in lower case. Stack, site, collector and asset names are lower case by
    rule (NAME_PATTERN), so such a pair cannot exist."""
    for value in ids(session_run, 3) | ids(session_run, 4):
        assert value == value.lower()
    assert not NAME_PATTERN.match("Meter-1")


def test_tck_id_payloads_name_cmd_requirement(session_run: Run, payload_class: object) -> None:
    """MAY: a timestamp on NCMD metrics. The host's commands carried none, and were acted upon."""
    ncmds = session_run.capture.delivered_to_edge(f"spBv1.0/pm500/NCMD/{THING}")
    decoded = [payload_class.FromString(p.payload) for p in ncmds]  # type: ignore[attr-defined]
    assert decoded and not any(m.HasField("timestamp") for d in decoded for m in d.metrics)
    assert len(session_run.capture.of("NBIRTH")) >= 2 and session_run.capture.of("NDATA")


def _rebirth_request_answered(run: Run, payload_class: object) -> None:
    """These bind the host that asks (NCMD, `Node Control/Rebirth`, true). The edge node's side: a
    request in exactly that form gets a new birth sequence on the same connection."""
    (first, *_) = run.capture.delivered_to_edge(f"spBv1.0/pm500/NCMD/{THING}")
    (metric,) = payload_class.FromString(first.payload).metrics  # type: ignore[attr-defined]
    assert (metric.name, metric.boolean_value) == ("Node Control/Rebirth", True)
    assert any(m.packet.at > first.at and m.packet.connection == first.connection
               for m in run.capture.of("NBIRTH"))


def test_tck_id_operational_behavior_data_commands_ncmd_rebirth_verb(
    session_run: Run, payload_class: object
) -> None:
    _rebirth_request_answered(session_run, payload_class)


def test_tck_id_operational_behavior_data_commands_ncmd_rebirth_name(
    session_run: Run, payload_class: object
) -> None:
    _rebirth_request_answered(session_run, payload_class)


def test_tck_id_operational_behavior_data_commands_ncmd_rebirth_value(
    session_run: Run, payload_class: object
) -> None:
    _rebirth_request_answered(session_run, payload_class)
