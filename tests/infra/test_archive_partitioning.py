"""The Firehose partitioning query, run with Debian's jq 1.6 (Firehose's engine is "JQ-1.6") over real
DDATA payloads built by the collector's own builder, as the IoT rule hands them to Firehose."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime

from collector.payload import ddata
from collector.reading import Reading
from collector.topics import thing_name
from infra import archive_layout
from preflight.mock_runtime import EvaluatedStack

# No skip when jq is missing: `./dev setup` installs Debian's jq, and a silently skipped check proves nothing.
JQ = shutil.which("jq")


def _jq(query: str, records: list[dict[str, object]]) -> list[dict[str, str]]:
    assert JQ is not None, "jq not found: run ./dev setup (Debian package jq)"
    stdin = "\n".join(json.dumps(r) for r in records)
    done = subprocess.run([JQ, "-c", query], input=stdin, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def _rule_record(stack: str, site: str, collector: str, asset: str, when: datetime) -> dict[str, object]:
    """What the topic rule (`SELECT *, topic(4) AS thing`) forwards for one published DDATA."""
    thing = thing_name(stack, site, collector)
    reading = Reading(
        site=site,
        asset=asset,
        breaker="MCC-1 F7",
        timestamp_ms=int(when.timestamp() * 1000),
        values={"realPower": 41.5, "voltageAN": 277.1, "energy": 123456.0},
    )
    return {**ddata(reading, thing, seq=7, buffer_id="3f2a6c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b"), "thing": thing}


def test_version_matches_firehose_engine() -> None:
    assert JQ is not None, "jq not found: run ./dev setup (Debian package jq)"
    version = subprocess.run([JQ, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert version == "jq-1.6" and archive_layout.JQ_ENGINE == "JQ-1.6"


def test_keys_per_payload() -> None:
    cases = [
        (
            ("staging", "plant-a", "edge-01", "main-incomer", datetime(2024, 4, 23, 18, 40, 0, tzinfo=UTC)),
            {"site": "plant-a", "year": "2024", "month": "04", "day": "23"},
        ),
        # One millisecond before midnight UTC stays on the 31st; the reading's own time decides.
        (
            (
                "prod",
                "warehouse-east",
                "edge-01",
                "chargers",
                datetime(2023, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
            ),
            {"site": "warehouse-east", "year": "2023", "month": "12", "day": "31"},
        ),
        (
            ("prod", "plant-north", "edge-03", "hvac-roof", datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)),
            {"site": "plant-north", "year": "2025", "month": "01", "day": "01"},
        ),
    ]
    records = [_rule_record(*args) for args, _ in cases]
    assert _jq(archive_layout.PARTITION_QUERY, records) == [keys for _, keys in cases]


def test_site_comes_from_the_authenticated_thing_name_not_the_payload() -> None:
    record = _rule_record("staging", "plant-a", "edge-01", "m1", datetime(2024, 1, 2, tzinfo=UTC))
    record["site"] = "plant-b"  # a collector cannot write into another site's partition
    assert _jq(archive_layout.PARTITION_QUERY, [record])[0]["site"] == "plant-a"


def test_deployed_query_and_prefix_are_the_tested_ones(stack: EvaluatedStack) -> None:
    s3 = stack.one("aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream").inputs[
        "extendedS3Configuration"
    ]
    extraction = next(
        p for p in s3["processingConfiguration"]["processors"] if p["type"] == "MetadataExtraction"
    )
    params = {p["parameterName"]: p["parameterValue"] for p in extraction["parameters"]}
    assert params == {
        "JsonParsingEngine": "JQ-1.6",
        "MetadataExtractionQuery": archive_layout.PARTITION_QUERY,
    }
    keys = _jq(
        params["MetadataExtractionQuery"],
        [_rule_record(stack.stack, "plant-a", "edge-01", "m1", datetime(2024, 2, 29, 12, tzinfo=UTC))],
    )[0]
    prefix = s3["prefix"]
    for key, value in keys.items():
        prefix = prefix.replace(f"!{{partitionKeyFromQuery:{key}}}", value)
    assert prefix == "site=plant-a/year=2024/month=02/day=29/" == archive_layout.object_prefix(keys)
