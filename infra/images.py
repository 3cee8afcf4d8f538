"""The collector image: an ECR repository and the image built from the repo and pushed there.

Tags are content-addressed: the tag is a hash of exactly the files the Dockerfile copies (plus the
Dockerfile itself), so a code change makes a new tag and a new push, while an unchanged tree makes the
same tag. Containers never run a tag: they run the pushed repo digest (`repository@sha256:...`), which
is what makes a code change roll them and a no-op `up` leave them alone.

Tags are MUTABLE on purpose. A Docker build is not reproducible byte for byte (base image, pip
resolution, layer timestamps), and pulumi-docker rebuilds and pushes whenever its build-context digest
or build inputs change, which can happen with unchanged sources (another machine's file modes, a
replaced Image resource). The same tag then names a new manifest, which an IMMUTABLE repository
refuses (`ImageTagAlreadyExistsException`): the `up` would fail. Pinning by digest gives what
immutability was for: a container never silently changes image.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_DOCKERFILE = "collector/Dockerfile"
IMAGE_PLATFORM = "linux/amd64"  # the edge boxes' architecture; the build host may differ
# Files that never belong in an image however a COPY pattern is written.
_NEVER_COPIED = ("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache", ".pytest_cache", ".ruff_cache")


class DockerfileError(ValueError):
    """The Dockerfile cannot be read or copies a source that does not exist."""


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: continuations joined, comments dropped."""
    logical = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, args = logical.partition(" ")
        yield keyword.upper(), args.strip()
        logical = ""


def copy_sources(dockerfile_text: str) -> list[str]:
    """Context-relative sources of every COPY/ADD that reads the build context (not `--from=` stages)."""
    sources: list[str] = []
    for keyword, args in _instructions(dockerfile_text):
        if keyword not in ("COPY", "ADD"):
            continue
        words = [str(w) for w in json.loads(args)] if args.startswith("[") else shlex.split(args)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources += paths[:-1]  # the last word is the destination
    return sources


def _skipped(path: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in path.parts for pattern in _NEVER_COPIED)


def context_files(context: Path, dockerfile: str) -> list[Path]:
    """The Dockerfile and every file its COPY/ADD instructions take from `context`, sorted."""
    docker_path = context / dockerfile
    try:
        text = docker_path.read_text()
    except OSError as e:
        raise DockerfileError(f"{dockerfile}: cannot read the collector Dockerfile: {e.strerror}") from None
    files = {docker_path}
    for source in copy_sources(text):
        matches = glob.glob(str(context / source))
        if not matches:
            raise DockerfileError(f"{dockerfile}: COPY source {source!r} matches nothing in {context}")
        for match in map(Path, matches):
            found = [p for p in match.rglob("*") if p.is_file()] if match.is_dir() else [match]
            files.update(p for p in found if not _skipped(p.relative_to(context)))
    return sorted(files)


def content_tag(context: Path, dockerfile: str) -> str:
    """`src-<12 hex>`: sha256 over (relative path, bytes) of every file that goes into the image."""
    digest = hashlib.sha256()
    for path in context_files(context, dockerfile):
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"src-{digest.hexdigest()[:12]}"


def lifecycle_policy(keep: int) -> str:
    """ECR lifecycle policy: expire everything but the `keep` most recently pushed images."""
    return json.dumps({
        "rules": [{
            "rulePriority": 1,
            "description": f"keep the last {keep} collector images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
            "action": {"type": "expire"},
        }]
    })


class CollectorImage(pulumi.ComponentResource):
    """ECR repository (scan on push, mutable tags, lifecycle) and the collector image pushed to it.

    `registry_auth` is what each edge host's Docker provider needs to pull: the ECR proxy endpoint
    and a short-lived token (both read at deploy time, the token kept secret).
    """

    repository: aws.ecr.Repository
    image: docker.Image
    repo_digest: pulumi.Output[str]
    registry_auth: docker.ProviderRegistryAuthArgs

    def __init__(self, name: str, *, repository_name: str, keep_images: int, context: Path = REPO_ROOT,
                 dockerfile: str = COLLECTOR_DOCKERFILE, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pm500:edge:CollectorImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tag = content_tag(context, dockerfile)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=repository_name,
            image_tag_mutability="MUTABLE",  # containers are pinned by digest (module docstring)
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            opts=child,
        )
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=self.repository.name,
                                policy=lifecycle_policy(keep_images), opts=child)
        token = aws.ecr.get_authorization_token_output(registry_id=self.repository.registry_id,
                                                       opts=pulumi.InvokeOutputOptions(parent=self))
        password: pulumi.Output[str] = pulumi.Output.secret(token.password)
        self.image = docker.Image(
            f"{name}-image",
            image_name=pulumi.Output.concat(self.repository.repository_url, ":", tag),
            build=docker.DockerBuildArgs(context=str(context), dockerfile=str(context / dockerfile),
                                         platform=IMAGE_PLATFORM),
            registry=docker.RegistryArgs(server=self.repository.repository_url, username=token.user_name,
                                         password=password),
            opts=child,
        )
        self.repo_digest = self.image.repo_digest
        self.registry_auth = docker.ProviderRegistryAuthArgs(
            address=token.proxy_endpoint, username=token.user_name, password=password)
        self.register_outputs({
            "repositoryUrl": self.repository.repository_url,
            "imageName": self.image.image_name,
            "repoDigest": self.repo_digest,
        })
