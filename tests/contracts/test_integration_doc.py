"""docs/integration.md is checked against the modules that define each contract, so it cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

from collector import lineprotocol, payload, topics
from collector.metrics import METRICS
from collector.reading import Reading
from infra import outputs

DOC = (Path(__file__).resolve().parents[2] / "docs" / "integration.md").read_text()
EXAMPLE_THING = "prod:plant-a:edge-01"


def _fenced(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def test_metrics_table_lists_exactly_the_metrics_the_collector_publishes():
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", DOC, flags=re.M)
    documented = [
        (name, alias, unit.strip().replace("(none)", ""), phase.strip(), field.strip())
        for name, alias, unit, phase, field in rows
    ]
    expected = [(m.name, m.alias, m.unit, m.phase or "-", m.field or "-") for m in METRICS]
    assert documented == expected


def test_ddata_example_is_what_the_payload_builder_produces():
    (example_text,) = _fenced("json")
    example = json.loads(example_text)
    reading = Reading(
        site=example["site"],
        asset=example["asset"],
        breaker="MCC-1",
        timestamp_ms=example["timestamp"],
        values={m["name"]: m["value"] for m in example["metrics"]},
    )
    assert payload.ddata(reading, EXAMPLE_THING, example["seq"]) == example


def test_line_protocol_example_uses_the_real_schema_and_every_field_of_its_rows():
    (block,) = _fenced("text")
    allowed = lineprotocol.field_names()
    for line in block.strip().splitlines():
        series, field_text, timestamp = line.split(" ")
        measurement, *tag_pairs = series.split(",")
        tags = dict(pair.split("=", 1) for pair in tag_pairs)
        fields = {pair.split("=", 1)[0] for pair in field_text.split(",")}
        assert measurement == lineprotocol.MEASUREMENT
        assert tuple(tags) == lineprotocol.TAGS
        assert fields == allowed[tags["phase"]], f"row {tags['phase']} must show every field it carries"
        assert timestamp.isdigit() and len(timestamp) == 13  # milliseconds


def test_topic_table_is_rendered_from_the_collector_templates():
    documented = set(re.findall(r"^\| `((?:spBv1\.0)/[^`]+)` \|", DOC, flags=re.M))
    sparkplug = {t for t in topics.COLLECTOR_TOPICS if t.levels[0] == topics.SPARKPLUG_NAMESPACE}
    expected = {
        "/".join("<thing>" if lvl == topics.THING else "<asset>" if lvl == topics.ASSET else lvl
                 for lvl in t.levels)
        for t in sparkplug
    }
    assert documented == expected


def test_every_stack_output_name_is_documented():
    names = {v for k, v in vars(outputs).items() if k.isupper() and isinstance(v, str)}
    missing = sorted(n for n in names if f"`{n}`" not in DOC)
    assert not missing


def test_event_example_is_what_the_event_builder_produces():
    (example_text,) = _fenced("jsonc")
    example = json.loads(example_text)
    reading = Reading(example["site"], example["asset"], example["breaker"], example["timestamp"], {})
    assert payload.status_event(example["node"], reading, example["metric"], example["active"]) == example


def test_event_topic_is_documented_as_the_collector_renders_it():
    documented = set(re.findall(r"^\| `(pm500/[^`]+)` \|", DOC, flags=re.M))
    assert documented == {topics.EVENT.render("<thing>", "<asset>")}
    assert f"subscribe to `{topics.EVENTS_NAMESPACE}/event/#`" in DOC
