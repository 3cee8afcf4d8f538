"""docs/integration.md is checked against the modules that define each contract, so it cannot drift."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from collector import lineprotocol, payload, quality, topics
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
    example_text, _ = _fenced("json")
    example = json.loads(example_text)
    reading = Reading(
        site=example["site"],
        asset=example["asset"],
        breaker="MCC-1",
        timestamp_ms=example["timestamp"],
        values={m["name"]: m["value"] for m in example["metrics"]},
    )
    assert payload.ddata(reading, EXAMPLE_THING, example["seq"], buffer_id=example["buffer_id"]) == example


def test_bad_value_example_is_what_the_payload_builder_sends_for_infinity():
    _, bad_text = _fenced("json")
    bad = json.loads(bad_text)
    reading = Reading("plant-a", "m1", "F1", 0, {bad["name"]: math.inf})
    (sent,) = payload.ddata(reading, EXAMPLE_THING, 1, buffer_id="b")["metrics"]
    assert sent == bad


def test_plausible_ranges_table_is_the_one_the_collector_applies():
    rows = re.findall(r"^\| (`[^`]*`|\(none\)) \| (\S+) \| (\S+) \|$", DOC, flags=re.M)
    documented = {
        unit.strip("`").replace("(none)", ""): (float(low), float(high)) for unit, low, high in rows
    }
    assert documented == quality.PLAUSIBLE_RANGE_BY_UNIT
    assert {m.unit for m in METRICS} == set(documented)  # every published unit has a range


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
    placeholders = {topics.THING: "<thing>", topics.ASSET: "<asset>", topics.HOST: "<host id>"}
    expected = {
        "/".join(placeholders.get(lvl, lvl) for lvl in t.levels) for t in {*sparkplug, topics.STATE}
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


def test_the_page_names_the_outputs_the_cli_reads() -> None:
    """Issue 21: the page said `cli.py` reads every output; it reads the ones devices/outputs.py imports."""
    import ast
    import re
    from pathlib import Path

    import infra.outputs

    root = Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "devices" / "outputs.py").read_text())
    imported = {a.name for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module == "infra.outputs" for a in n.names}
    values = {name: getattr(infra.outputs, name) for name in imported}
    read = {v for v in values.values() if isinstance(v, str)}
    text = (root / "docs" / "integration.md").read_text()
    sentence = re.search(r"`cli\.py` reads (\w+) of them: ([^;]+);", text.replace("\n", " "))
    assert sentence, "the page says which outputs cli.py reads"
    assert set(re.findall(r"`(\w+)`", sentence[2])) == read
    assert sentence[1] == {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}[len(read)]
