"""Every Edge Node assertion of the Sparkplug 3.0 specification, and pm500's verdict on each.

`spec_assertions.tsv` lists all the specification's `[tck-testable ...]` ids (vendored, source named in
its header). An id binds an Edge Node unless it binds only Host Applications or MQTT Servers (`HOST_OR_SERVER`
prefixes). Each Edge Node id is either met, and then judged by the test named after it
(`test_tck_id_<id with '_' for '-'>` in tests/sparkplug), or listed below as not applicable or, for two
SHOULDs, not followed, with the reason. docs/integration.md shows the table `render_table()` makes.
"""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).parent
SPEC_FILE = HERE / "spec_assertions.tsv"

# Ids that bind Host Applications or MQTT Servers only (the edge node's side of them is judged under the
# Edge Node ids: e.g. the STATE an edge node reads, the NCMD it accepts).
HOST_OR_SERVER = (
    "tck-id-conformance-",  # MQTT Server and Host Application conformance profiles
    "tck-id-intro-sparkplug-host-state",
    "tck-id-components-ph-state",
    "tck-id-host-topic-",
    "tck-id-message-flow-phid-",
    "tck-id-message-flow-hid-",
    "tck-id-operational-behavior-host-",
    "tck-id-operational-behavior-edge-node-termination-host-action-",  # how hosts mark nodes offline
    "tck-id-payloads-state-",
)
HOST_ONLY_IDS = {"tck-id-operational-behavior-primary-application-state-with-multiple-servers-state"}

_MQTT5 = "The collector speaks MQTT 3.1.1 (AWS IoT and the sandbox broker take it); the 3.1.1 rule is met"
_TEMPLATES = "The collector publishes no Template metrics"
_DATASETS = "The collector publishes no DataSet metrics"
_DCMD = "PM500 meters have no writable outputs: no device metric is writable, so no DCMD"
_HOST_NCMD = "Binds the host that sends an NCMD; the collector takes NCMD at any QoS, retained or not"

NOT_APPLICABLE: dict[str, str] = {
    "tck-id-principles-persistence-clean-session-50": _MQTT5,
    "tck-id-payloads-ndeath-will-message-publisher-disconnect-mqtt50": _MQTT5,
    "tck-id-topics-nbirth-templates": _TEMPLATES,
    "tck-id-message-flow-device-dcmd-subscribe": _DCMD + " subscription (the TCK demands one "
    "unconditionally; the specification only if the device supports writing to outputs)",
    "tck-id-topics-dcmd-topic": _DCMD,
    "tck-id-topics-dcmd-mqtt": _DCMD,
    "tck-id-topics-dcmd-timestamp": _DCMD,
    "tck-id-topics-dcmd-payload": _DCMD,
    "tck-id-payloads-dcmd-timestamp": _DCMD,
    "tck-id-payloads-dcmd-seq": _DCMD,
    "tck-id-payloads-dcmd-qos": _DCMD,
    "tck-id-payloads-dcmd-retain": _DCMD,
    "tck-id-operational-behavior-data-commands-dcmd-verb": _DCMD,
    "tck-id-operational-behavior-data-commands-dcmd-metric-name": _DCMD,
    "tck-id-operational-behavior-data-commands-dcmd-metric-value": _DCMD,
    "tck-id-topics-ncmd-mqtt": _HOST_NCMD,
    "tck-id-topics-ncmd-timestamp": _HOST_NCMD,
    "tck-id-topics-ncmd-payload": _HOST_NCMD,
    "tck-id-payloads-ncmd-timestamp": _HOST_NCMD,
    "tck-id-payloads-ncmd-seq": _HOST_NCMD,
    "tck-id-payloads-ncmd-qos": _HOST_NCMD,
    "tck-id-payloads-ncmd-retain": _HOST_NCMD,
    **{i: _TEMPLATES for i in (
        "tck-id-payloads-template-dataset-value",
        "tck-id-payloads-template-definition-nbirth-only",
        "tck-id-payloads-template-definition-is-definition",
        "tck-id-payloads-template-definition-ref",
        "tck-id-payloads-template-definition-members",
        "tck-id-payloads-template-definition-nbirth",
        "tck-id-payloads-template-definition-parameters",
        "tck-id-payloads-template-definition-parameters-default",
        "tck-id-payloads-template-instance-is-definition",
        "tck-id-payloads-template-instance-ref",
        "tck-id-payloads-template-instance-members",
        "tck-id-payloads-template-instance-members-birth",
        "tck-id-payloads-template-instance-members-data",
        "tck-id-payloads-template-instance-parameters",
        "tck-id-payloads-template-version",
        "tck-id-payloads-template-ref-definition",
        "tck-id-payloads-template-ref-instance",
        "tck-id-payloads-template-is-definition",
        "tck-id-payloads-template-is-definition-definition",
        "tck-id-payloads-template-is-definition-instance",
        "tck-id-payloads-template-parameter-name-required",
        "tck-id-payloads-template-parameter-name-type",
        "tck-id-payloads-template-parameter-value-type",
        "tck-id-payloads-template-parameter-type-value",
        "tck-id-payloads-template-parameter-type-req",
        "tck-id-payloads-template-parameter-value",
    )},
    **{i: _DATASETS for i in (
        "tck-id-payloads-dataset-column-size",
        "tck-id-payloads-dataset-column-num-headers",
        "tck-id-payloads-dataset-types-def",
        "tck-id-payloads-dataset-types-num",
        "tck-id-payloads-dataset-types-type",
        "tck-id-payloads-dataset-types-value",
        "tck-id-payloads-dataset-parameter-type-req",
    )},
}

_EVERY_POLL = ("SHOULD, not followed: every poll is published (a DDATA per reading), because the cloud "
               "archive, the line protocol and the loss-free guarantee keep every reading")
NOT_FOLLOWED: dict[str, str] = {
    "tck-id-principles-rbe-recommended": _EVERY_POLL,
    "tck-id-operational-behavior-data-publish-dbirth-change": _EVERY_POLL,
}


def spec_ids() -> list[str]:
    rows = [line.split("\t") for line in SPEC_FILE.read_text().splitlines() if not line.startswith("#")]
    return [row[1] for row in rows]


def edge_node_ids() -> list[str]:
    return [i for i in spec_ids() if not i.startswith(HOST_OR_SERVER) and i not in HOST_ONLY_IDS]


def test_name(tck_id: str) -> str:
    return "test_" + tck_id.replace("-", "_")


def judged() -> dict[str, str]:
    """test function name -> its module, over tests/sparkplug/test_*.py."""
    out = {}
    for module in sorted(HERE.glob("test_*.py")):
        for node in ast.parse(module.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_tck_id_"):
                out[node.name] = module.name
    return out


def verdicts() -> list[tuple[str, str, str]]:
    """(tck-id, verdict, where judged or why) for every Edge Node id, in the specification's order."""
    tests = judged()
    rows = []
    for tck_id in edge_node_ids():
        if tck_id in NOT_APPLICABLE:
            rows.append((tck_id, "not applicable", NOT_APPLICABLE[tck_id]))
        elif tck_id in NOT_FOLLOWED:
            rows.append((tck_id, "not followed", NOT_FOLLOWED[tck_id]))
        else:
            module = tests.get(test_name(tck_id), "")
            rows.append((tck_id, "met" if module else "NOT JUDGED", f"judged in `tests/sparkplug/{module}`"))
    return rows


def render_table() -> str:
    lines = ["| tck-id | verdict | judged by / why |", "|---|---|---|"]
    lines += [f"| `{i}` | {v} | {w} |" for i, v, w in verdicts()]
    return "\n".join(lines)
