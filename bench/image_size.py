"""Size of the collector image built from collector/Dockerfile, against its base image in the same engine.

`python -m bench.image_size` starts a private Docker engine (`sandbox.docker_engine`), loads the local
stand-in for the Dockerfile's `FROM` image, builds the collector image exactly as the tests do, and
writes both sizes and the layers the Dockerfile adds to docs/BENCHMARKS.md. The base here is Debian's
Python (the stand-in), not the official image, so the number to compare across machines is what the
Dockerfile adds on top of its base; the official `python:3.11.7-slim-bookworm` adds the same layers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.report import write_section
from sandbox.docker_engine import DockerEngine, image_size
from sandbox.docker_images import BASE_IMAGE_ARG, dockerfile_base, load_python_base

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "pm500-collector"
BUILD = ["build", "--network", "host", "-f", "collector/Dockerfile", "-t", IMAGE, "."]
GOAL_ADDED_MB = 100  # what the Dockerfile may add on top of its base (the collector and its pinned deps)


def _mb(size: int) -> float:
    return size / 1_000_000


def measure() -> tuple[str, int, int]:
    with DockerEngine() as engine:
        base = dockerfile_base(ROOT / "collector" / "Dockerfile")
        standin = load_python_base(engine, base)
        engine.cli([*BUILD[:-1], "--build-arg", f"{BASE_IMAGE_ARG}={standin}", BUILD[-1]], cwd=ROOT)
        return base, image_size(engine, standin), image_size(engine, IMAGE)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None).parse_args(argv)
    base, base_size, image = measure()
    added = image - base_size
    verdict = "PASS" if _mb(added) <= GOAL_ADDED_MB else "FAIL"
    body = f"""
## Collector image size

`collector/Dockerfile` built on a private Docker engine (`docker build --network host`), sizes as
`docker image inspect` reports them (uncompressed, all layers). The base is the tests' local stand-in
for `{base}` (Debian bookworm's Python 3.11 from `debootstrap --variant=minbase`), so the comparable
number is what the Dockerfile adds on top of its base.

| | MB |
|---|---:|
| base (stand-in for `{base}`) | {_mb(base_size):.1f} |
| `pm500-collector` | {_mb(image):.1f} |
| **added by collector/Dockerfile** (goal <= {GOAL_ADDED_MB} MB) | **{_mb(added):.1f}**: {verdict} |
| ratio image / base | {image / base_size:.2f} |
"""
    write_section("image_size", body)
    print(body)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
