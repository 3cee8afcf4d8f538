"""Step Functions state machines (the fleet's presence state machine, infra/presence.py)."""

from __future__ import annotations

from collections.abc import Callable

from preflight.provider_requests.base import ApiRequest, Resolved, compact, label, physical_name, tag_list


def _state_machine(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("stepfunctions", "CreateStateMachine", compact({
        "name": physical_name(r),
        "definition": r.inputs["definition"],
        "roleArn": r.inputs["roleArn"],
        "type": r.inputs.get("type"),
        "tags": tag_list(r.inputs.get("tags"), key="key", value="value"),
    }), label(r), {"definition": "json"})]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:sfn/stateMachine:StateMachine": _state_machine,
}
