"""Local stand-ins for the upstream images no registry can give us here, built from Debian's packages.

No image registry is reachable from the test machines, so the two upstream images the product uses
are replaced, under their own names, by images built from Debian bookworm's packages:

- `python:<tag>` (the collector Dockerfile's `FROM`): a `debootstrap --variant=minbase` root with
  `python3`, `python3-venv` and `python3-pip`, imported with `docker import`. Like the official image
  it has `python` and `pip` on PATH and lets `pip install` write system-wide (Debian's
  `EXTERNALLY-MANAGED` marker is removed). Its Python is Debian's 3.11, not the official build. It
  trusts the CA certificates this machine trusts (the host's bundle replaces Debian's), so `pip`
  inside a build reaches the package registry exactly as the host's `pip` does.
- `influxdb:1.8` (the edge stack's `edge.influxImage`): the python stand-in plus Debian's `influxdb`
  1.6 and `curl`, with an entrypoint that does what the official image's init does on an empty data
  volume (database, admin, write and read users from the same `INFLUXDB_*` variables).

Real users keep the official images; only the tests use these. Both are cached between runs on the
same machine (`cache_dir()`, outside the repository) under a key that changes with their recipe, so a
clean machine (CI) builds them once, in about the time debootstrap and apt take to download.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.docker_engine import DockerEngine, DockerEngineError, remove_unless_mounted

SUITE = "bookworm"
PYTHON_PACKAGES = ("python3", "python3-venv", "python3-pip")
INFLUXDB_CONTEXT = Path(__file__).resolve().parent / "docker" / "influxdb"
_APT_SOURCES = Path("/etc/apt")
_CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"  # Debian's path, on the host and in the image
_BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)


def cache_dir() -> Path:
    """`$PM500_CACHE_DIR`, else `$XDG_CACHE_HOME/pm500`, else `~/.cache/pm500`; `docker/` inside it."""
    root = os.environ.get("PM500_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pm500")
    path = Path(root) / "docker"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def _cache_lock() -> Iterator[None]:
    """One builder at a time per machine (two test sessions may want the same stand-in)."""
    with (cache_dir() / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def debian_mirror(apt_dir: Path = _APT_SOURCES) -> str:
    """The Debian archive this machine's apt already uses for `SUITE` (deb822 or one-line sources)."""
    candidates: list[str] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for block in path.read_text().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", block, flags=re.MULTILINE))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                candidates += fields.get("URIs", "").split()
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                candidates.append(words[1])
    if not candidates:
        raise DockerEngineError(f"no apt source for Debian {SUITE} in {apt_dir}: cannot debootstrap")
    return candidates[0]


def _recipe_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _host_ca_bundle() -> bytes:
    path = Path("/") / _CA_BUNDLE
    return path.read_bytes() if path.exists() else b""


def _python_key() -> str:
    return _recipe_key(SUITE, "minbase", *PYTHON_PACKAGES, *_BASE_CHANGES, _host_ca_bundle(), "v1")


def python_rootfs_tar() -> Path:
    """The cached root filesystem tarball of the python stand-in; built with debootstrap if missing."""
    target = cache_dir() / f"python-{SUITE}-{_python_key()}.tar"
    with _cache_lock():
        if target.exists():
            return target
        work = Path(tempfile.mkdtemp(prefix="pm500-rootfs-", dir=cache_dir()))
        try:
            rootfs = work / "rootfs"
            done = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(PYTHON_PACKAGES)}",
                 SUITE, str(rootfs), debian_mirror()],
                capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise DockerEngineError(f"debootstrap exited {done.returncode}:\n{done.stdout[-3000:]}"
                                        f"\n{done.stderr[-3000:]}")
            _like_the_official_image(rootfs)
            partial = work / "rootfs.tar"
            subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
                           check=True, capture_output=True)
            os.replace(partial, target)
        finally:
            remove_unless_mounted(work)  # debootstrap mounts /proc (and may bind /dev) inside it
    return target


def _like_the_official_image(rootfs: Path) -> None:
    """`python`/`pip` on PATH, system-wide pip allowed, the host's CAs trusted, no services started
    by package installs."""
    local_bin = rootfs / "usr" / "local" / "bin"
    local_bin.mkdir(parents=True, exist_ok=True)
    for name, target in (("python", "/usr/bin/python3"), ("pip", "/usr/bin/pip3")):
        link = local_bin / name
        if not link.exists():
            link.symlink_to(target)
    for marker in rootfs.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    host_cas = _host_ca_bundle()
    if host_cas:
        (rootfs / _CA_BUNDLE).write_bytes(host_cas)
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()


def dockerfile_base(dockerfile: Path) -> str:
    """The image a Dockerfile builds `FROM` (its first FROM), a `${ARG}` resolved to the ARG's default."""
    defaults: dict[str, str] = {}
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "ARG" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            defaults[name] = value
        if words and words[0].upper() == "FROM":
            base = next(w for w in words[1:] if not w.startswith("--"))
            return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m[1] or m[2]], base)
    raise DockerEngineError(f"{dockerfile}: no FROM instruction")


def standin_reference(reference: str) -> str:
    """The name the local stand-in of `reference` gets: without its digest. An image imported here has
    no registry digest, so a build resolves a digest-pinned `FROM` through a build argument instead
    (`collector/Dockerfile`'s PYTHON_IMAGE)."""
    return reference.split("@", 1)[0]


BASE_IMAGE_ARG = "PYTHON_IMAGE"  # the collector Dockerfile's ARG naming its base


def load_python_base(engine: DockerEngine, reference: str) -> str:
    """Import the python stand-in into `engine` for `reference` (e.g. `python:3.11.16-slim-bookworm@
    sha256:...`); returns the name it has there (`standin_reference`)."""
    changes = [arg for change in _BASE_CHANGES for arg in ("--change", change)]
    name = standin_reference(reference)
    engine.cli(["import", *changes, str(python_rootfs_tar()), name])
    return name


def _influx_key(reference: str, base: str) -> str:
    files = sorted(p for p in INFLUXDB_CONTEXT.rglob("*") if p.is_file())
    return _recipe_key(_python_key(), reference, base, *(p.read_bytes() for p in files))


def load_influxdb_standin(engine: DockerEngine, reference: str, base: str) -> None:
    """Make `reference` (e.g. `influxdb:1.8`) the Debian-built InfluxDB stand-in in `engine`.

    `base` must already be loaded (`load_python_base`). The built image is saved to the cache
    (`docker save`, tag included) and loaded from there on later runs.
    """
    saved = cache_dir() / f"influxdb-{_influx_key(reference, base)}.tar"
    with _cache_lock():
        if not saved.exists():
            engine.cli(["build", "--network", "host", "--build-arg", f"BASE={base}", "-t", reference,
                        str(INFLUXDB_CONTEXT)])
            partial = saved.with_suffix(".partial")
            engine.cli(["save", "-o", str(partial), reference])
            os.replace(partial, saved)
            return
    engine.cli(["load", "-i", str(saved)])
