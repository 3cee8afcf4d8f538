"""Evaluate the edge component on Pulumi's mock runtime and record every resource it declares.

The mocks answer like the real providers would for what the program reads back: the ECR repository
URL, the pushed image's repo digest (derived from the image name, so a new content tag gives a new
digest), a RemoteImage's image id (derived from what it pulls), and the ECR auth token. Inputs are
recorded as the engine receives them, secret markers included, so tests can check what is secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from infra.config import StackConfig

ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
ECR_TOKEN = "ecr-token-from-get-authorization-token"
_SIG = rpc._special_sig_key
_SECRET = rpc._special_secret_sig


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SIG) == _SECRET


def plain(value: Any) -> Any:
    """The value with every secret marker removed (what the provider would finally receive)."""
    if is_secret(value):
        return plain(value["value"])
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@dataclass
class Declared:
    typ: str
    name: str
    inputs: dict[str, Any]  # raw: secret values still wrapped
    provider: str
    outputs: dict[str, Any]

    def get(self, key: str) -> Any:
        return plain(self.inputs.get(key))

    @property
    def provider_name(self) -> str:
        """Logical name of the explicit provider, '' for the default provider."""
        return self.provider.split("::")[-2] if self.provider else ""


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.declared: list[Declared] = []
        self.calls: list[str] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = plain(args.inputs)
        out: dict[str, Any] = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            out["result"] = f"generated-{args.name}"
        elif args.typ == "aws:ecr/repository:Repository":
            out.update(repositoryUrl=f"{REGISTRY}/{inputs['name']}", registryId=ACCOUNT,
                       arn=f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/{inputs['name']}")
        elif args.typ == "docker:index/image:Image":
            repo = inputs["imageName"].rsplit(":", 1)[0]
            out["repoDigest"] = f"{repo}@sha256:{_sha(inputs['imageName'])}"
        elif args.typ == "docker:index/remoteImage:RemoteImage":
            out["imageId"] = f"sha256:{_sha(inputs['name'])}"
        self.declared.append(Declared(args.typ, args.name, args.inputs, args.provider or "", out))
        return f"{args.name}-id", out

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append(args.token)
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": ECR_TOKEN, "proxyEndpoint": f"https://{REGISTRY}",
                    "authorizationToken": "QVdTOnRva2Vu", "expiresAt": "2030-01-01T00:00:00Z",
                    "id": "eu-west-1", "registryId": ACCOUNT}, []
        return {}, []

    # Queries used by the tests.
    def of_type(self, typ: str) -> list[Declared]:
        return [d for d in self.declared if d.typ == typ]

    def named(self, name: str) -> Declared:
        found = [d for d in self.declared if d.name == name]
        assert len(found) == 1, f"expected one resource named {name!r}, found {[d.typ for d in found]}"
        return found[0]

    def docker(self) -> list[Declared]:
        return [d for d in self.declared if d.typ.startswith(("docker:", "pulumi:providers:docker"))]


def evaluate(build: Callable[[], Any], stack: str) -> RecordingMocks:
    """Run `build` (declares resources) as a Pulumi program on the mock runtime; wait for every RPC."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="pm500", stack=stack, preview=False)

    @pulumi.runtime.test  # type: ignore[misc]
    def program() -> None:
        build()

    program()
    return mocks


TEST_DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml ./
COPY collector ./collector
RUN pip install --no-cache-dir .[collector]
CMD ["python", "-m", "collector", "--config", "/bundle/config.yaml"]
"""


@pytest.fixture
def image_context(tmp_path: Path) -> Path:
    """A small build context shaped like the repo: a Dockerfile, pyproject.toml and a package."""
    root = tmp_path / "context"
    (root / "collector").mkdir(parents=True)
    (root / "collector" / "Dockerfile").write_text(TEST_DOCKERFILE)
    (root / "collector" / "__init__.py").write_text('"""collector"""\n')
    (root / "pyproject.toml").write_text('[project]\nname = "pm500"\nversion = "0.1.0"\n')
    (root / "docs").mkdir()
    (root / "docs" / "notes.md").write_text("not copied into the image\n")
    return root


def stack_config(stack: str, *, sites: int = 1, grafana: bool = True, edge: bool = True) -> StackConfig:
    """A validated stack config with `sites` sites, two collectors on the first, edge hosts everywhere."""
    def site(i: int) -> dict[str, Any]:
        def meter(n: int, m: int) -> dict[str, str]:
            return {"asset": f"mcc-{n}{m}", "breaker": f"CB-{n}{m}", "host": f"meter-{n}{m}.plant.example"}

        collectors = [{"name": f"edge-{n:02d}", "meters": [meter(n, 1), meter(n, 2)]}
                      for n in range(1, 3 if i == 0 else 2)]
        return {"name": f"plant-{chr(ord('a') + i)}", "collectors": collectors,
                "edge": {"dockerHost": f"ssh://pm500@edge-{i}.{stack}.example", "bindAddress": "127.0.0.1"}}

    return StackConfig.model_validate({
        "stack": stack, "environment": stack,
        "sites": [site(i) for i in range(sites)],
        "features": {"edge": edge, "grafana": grafana},
    })


@pytest.fixture
def no_pulumi_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    yield
