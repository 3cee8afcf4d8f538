"""A second `up` that rebuilds the same sources must be able to push again (ECR in moto).

A Docker build is not reproducible byte for byte (base image tag, pip resolution, layer timestamps),
and pulumi-docker rebuilds and pushes whenever its build context digest or build inputs change
(another machine's file modes, a replaced Image resource, a changed ignored file). The content tag
covers only the files the Dockerfile copies, so the same tag then names a different manifest: an
IMMUTABLE repository refuses that push (ImageTagAlreadyExistsException) and the `up` fails. The
repository is MUTABLE and containers run the pushed repo digest, never the tag.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from tests.edge.conftest import stack_config
from tests.edge.test_edge_stack import run


def manifest(build: str) -> str:
    """A minimal image manifest whose config digest differs per build, as two real builds would."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 100,
                   "digest": "sha256:" + build * 64},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 200,
                    "digest": "sha256:" + build * 64}],
    })


def test_same_sources_rebuilt_and_pushed_twice(aws_env: dict[str, str], image_context: Path) -> None:
    mocks = run(stack_config("staging"), image_context)
    (repo,) = mocks.of_type("aws:ecr/repository:Repository")
    (image,) = mocks.of_type("docker:index/image:Image")
    tag = image.get("imageName").rsplit(":", 1)[1]
    ecr = boto3.client("ecr")
    ecr.create_repository(
        repositoryName=repo.get("name"), imageTagMutability=repo.get("imageTagMutability"),
        imageScanningConfiguration=repo.get("imageScanningConfiguration"))

    first = ecr.put_image(repositoryName=repo.get("name"), imageManifest=manifest("a"), imageTag=tag)
    second = ecr.put_image(repositoryName=repo.get("name"), imageManifest=manifest("b"), imageTag=tag)

    digests = {first["image"]["imageId"]["imageDigest"], second["image"]["imageId"]["imageDigest"]}
    assert len(digests) == 2  # both builds stay pullable by digest, which is what containers run
    [tagged] = ecr.describe_images(repositoryName=repo.get("name"),
                                   imageIds=[{"imageTag": tag}])["imageDetails"]
    assert tagged["imageDigest"] == second["image"]["imageId"]["imageDigest"]
