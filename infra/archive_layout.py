"""Where the Firehose archive puts each record: `site=<site>/year=YYYY/month=MM/day=DD/`.

The site comes from the thing name the IoT rule adds (`topic(4) AS thing`), not from the payload: the
thing name in the topic is enforced by the IoT policy, so a collector cannot write into another
site's partition. Dates come from the reading's own timestamp (ms since epoch, UTC), so data a
collector buffered through an outage lands on the day it was measured, not the day it arrived.
Firehose evaluates the query with jq 1.6 (the "JQ-1.6" engine), the same version the tests run.
"""

from __future__ import annotations

JQ_ENGINE = "JQ-1.6"

PARTITION_QUERY = (
    '{site: (.thing | split(":") | .[1]),'
    ' year: (.timestamp / 1000 | floor | strftime("%Y")),'
    ' month: (.timestamp / 1000 | floor | strftime("%m")),'
    ' day: (.timestamp / 1000 | floor | strftime("%d"))}'
)
PARTITION_KEYS = ("site", "year", "month", "day")

DATA_PREFIX = "".join(f"{k}=!{{partitionKeyFromQuery:{k}}}/" for k in PARTITION_KEYS)
ERROR_PREFIX = (
    "errors/!{firehose:error-output-type}/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
)


def object_prefix(keys: dict[str, str]) -> str:
    """The S3 prefix Firehose writes a record to, given its extracted partition keys."""
    return "".join(f"{k}={keys[k]}/" for k in PARTITION_KEYS)
