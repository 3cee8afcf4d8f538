"""moto's threaded server as the local stand-in for the AWS APIs (IoT, S3, ...), on 127.0.0.1.

Clients reach it through the standard `AWS_ENDPOINT_URL` variable, so the CLI and infra code run
unmodified: `aws_env()` is the environment to give them. The server runs in a thread of this
process; state is shared by every client until `reset()`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Self

import requests
from moto.server import ThreadedMotoServer

from sandbox.net import LOOPBACK, free_port, wait_for_port

REGION = "eu-west-1"
FAKE_ACCESS_KEY_ID = "testing"  # moto accepts any credentials; these are obviously not real ones
FAKE_SECRET_ACCESS_KEY = "testing"  # noqa: S105
_START_TIMEOUT = 30.0
# Settings that would override AWS_ENDPOINT_URL or the fake credentials if inherited from the shell.
_OVERRIDING_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
                    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
_OVERRIDING_PREFIX = "AWS_ENDPOINT_URL_"  # per-service endpoints beat the global one


def overriding_aws_vars(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Names in `environ` that would send boto3 elsewhere than the moto server; unset them."""
    return sorted(k for k in environ if k in _OVERRIDING_VARS or k.startswith(_OVERRIDING_PREFIX))


class MotoServer:
    """`moto.server.ThreadedMotoServer` on 127.0.0.1:`port` (a free port unless given)."""

    host = LOOPBACK

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def aws_env(self) -> dict[str, str]:
        """Environment for boto3/AWS CLI clients: this endpoint, fake credentials, eu-west-1.

        Shared config/credential files are pointed at /dev/null so a developer's ~/.aws cannot leak
        in; also unset the names `overriding_aws_vars()` reports.
        """
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def start(self) -> Self:
        if self._server is not None:
            return self
        # moto logs every request through werkzeug at INFO; keep test output and the demo view clean.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        # ThreadedMotoServer.start() waits forever if its thread fails to bind; bound the wait.
        starter = threading.Thread(target=server.start, daemon=True, name="moto-start")
        starter.start()
        starter.join(_START_TIMEOUT)
        if starter.is_alive():
            raise RuntimeError(f"moto server did not start on {self.host}:{self.port} (port taken?)")
        wait_for_port(self.host, self.port, _START_TIMEOUT)
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def execute_state_machines(self) -> None:
        """Let moto run Step Functions executions (its ASL interpreter) instead of only recording them.

        Call it before creating state machines: moto keeps them in the interpreter's own backend, and
        those created before the switch are not found by it.

        Its service integrations (DynamoDB, EventBridge...) call back into this server on `localhost` at
        `MOTO_PORT`, which moto reads from this process's environment: it is set to this server's port.
        """
        os.environ["MOTO_PORT"] = str(self.port)
        resp = requests.post(f"{self.endpoint_url}/moto-api/config",
                             json={"stepfunctions": {"execute_state_machine": True}}, timeout=30)
        resp.raise_for_status()

    def reset(self) -> None:
        """Forget every resource in every service (moto's `/moto-api/reset`)."""
        resp = requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30)
        resp.raise_for_status()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
