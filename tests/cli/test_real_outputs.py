"""The CLI against the outputs the real program produces for `Pulumi.staging.yaml` (Pulumi mock runtime).

moto holds the whole stack, replayed from the program's plan with the provider's requests
(`sandbox.plan_replay`), so a rename of an output, a change of the collectors' shape or a resource the
CLI needs but the program does not create breaks this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from collector.config import load_config
from infra.outputs import COLLECTOR_POLICY_NAME, COLLECTORS, IOT_ENDPOINT
from preflight.mock_runtime import EvaluatedStack, evaluate_stack
from preflight.provider_requests import stack_requests
from sandbox.plan_replay import moto_clients, replay
from tests.cli.conftest import moto_iot_client

pytestmark = pytest.mark.usefixtures("csr_signing")
runner = CliRunner()


@pytest.fixture(scope="module")
def staging() -> EvaluatedStack:
    return evaluate_stack("staging")


def test_staging_outputs_provision_every_collector(
    staging: EvaluatedStack, aws_env: dict[str, str], tmp_path: Path
) -> None:
    outputs = json.loads(json.dumps(staging.outputs))  # exactly what `pulumi stack output --json` prints
    iot = moto_iot_client()
    replay(stack_requests(staging), moto_clients(aws_env, staging.config["aws:region"]))
    outputs_file = tmp_path / "staging.json"
    outputs_file.write_text(json.dumps(outputs))

    result = runner.invoke(
        cli.app,
        [
            "provision-site",
            "--stack",
            "staging",
            "--outputs-file",
            str(outputs_file),
            "--out-root",
            str(tmp_path / "bundles"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["provisioned"] == len(outputs[COLLECTORS])

    for thing, entry in outputs[COLLECTORS].items():
        config = load_config(
            tmp_path / "bundles" / "staging" / entry["site"] / entry["collector"] / "config.yaml"
        )
        assert config.thing_name == thing and config.mqtt.endpoint == outputs[IOT_ENDPOINT]
        assert [m.model_dump(mode="json") for m in config.meters] == entry["meters"]
        [arn] = iot.list_thing_principals(thingName=thing)["principals"]
        policies = [p["policyName"] for p in iot.list_attached_policies(target=arn)["policies"]]
        assert policies == [outputs[COLLECTOR_POLICY_NAME]]
