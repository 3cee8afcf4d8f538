import os

import boto3
import pytest

from sandbox.moto import MotoServer, overriding_aws_vars


def test_boto3_reaches_moto_through_aws_endpoint_url(aws_env: dict[str, str],
                                                     moto_server: MotoServer) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == moto_server.endpoint_url == aws_env["AWS_ENDPOINT_URL"]
    assert moto_server.endpoint_url.startswith("http://127.0.0.1:")
    iot = boto3.client("iot")  # no endpoint_url, no region: all from the environment
    assert iot.meta.region_name == "eu-west-1"
    iot.create_thing(thingName="staging:plant-a:edge-01")
    assert [t["thingName"] for t in iot.list_things()["things"]] == ["staging:plant-a:edge-01"]
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert endpoint.endswith(".amazonaws.com")


def test_aws_env_resets_state_between_tests(aws_env: dict[str, str]) -> None:
    assert boto3.client("iot").list_things()["things"] == []


def test_reset_forgets_everything(aws_env: dict[str, str], moto_server: MotoServer) -> None:
    iot = boto3.client("iot")
    iot.create_policy(policyName="p", policyDocument='{"Version": "2012-10-17", "Statement": []}')
    assert len(iot.list_policies()["policies"]) == 1
    moto_server.reset()
    assert iot.list_policies()["policies"] == []


def test_overriding_variables_are_reported() -> None:
    env = {"AWS_PROFILE": "prod", "AWS_ENDPOINT_URL_IOT": "https://x.example", "AWS_REGION": "us-east-1",
           "HOME": "/root"}
    assert overriding_aws_vars(env) == ["AWS_ENDPOINT_URL_IOT", "AWS_PROFILE"]


def test_aws_env_fixture_unsets_them(monkeypatch: pytest.MonkeyPatch, moto_server: MotoServer,
                                     request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_IOT", "https://elsewhere.example")
    monkeypatch.setenv("AWS_PROFILE", "prod")
    request.getfixturevalue("aws_env")
    assert "AWS_ENDPOINT_URL_IOT" not in os.environ and "AWS_PROFILE" not in os.environ
    assert boto3.client("iot").list_things()["things"] == []  # reached moto, not elsewhere.example
