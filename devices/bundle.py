"""Bundle directories: what a collector mounts (config, certificate, key, broker CA) plus our manifest.

A bundle appears whole or not at all: files are written into a fresh temp dir next to the target,
fsynced, and renamed into place. The key is 0600 and the directory 0700 from the first byte on. The
manifest (`pm500-bundle.json`) marks the directory as ours and records which certificate it holds, so
a re-run can tell "already done" from "someone else's directory" and rotation knows the old
certificate.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from collector.config import CERT_FILE, CONFIG_FILE, KEY_FILE, CollectorConfig, bundle_subdir
from devices.errors import DeviceError

MANIFEST_FILE = "pm500-bundle.json"
_NEW, _OLD = "pm500-new", "pm500-old"


class Manifest(BaseModel):
    """Which device and certificate a bundle holds (no secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thing_name: str
    certificate_id: str
    certificate_arn: str
    issuer: str  # "aws" (CreateCertificateFromCsr) or "ca" (signed by --ca-cert, RegisterCertificate)
    key_type: str
    written_at: dt.datetime


@dataclass(frozen=True)
class BundleFile:
    name: str
    data: bytes
    mode: int


def default_bundle_dir(root: Path, stack: str, site: str, collector: str) -> Path:
    """`<root>/<stack>/<site>/<collector>`: the layout the edge host mounts below `edge.bundleRoot`."""
    return root / bundle_subdir(stack, site, collector)


def read_manifest(target: Path, thing: str) -> Manifest | None:
    """The manifest of our bundle for `thing` at `target`, None if nothing is there yet.

    Anything else at `target` (a file, a foreign directory, another device's bundle) is refused:
    we never overwrite what we did not write.
    """
    if not target.exists():
        return None
    if not target.is_dir():
        raise DeviceError(f"--out {target}: exists and is not a directory")
    manifest_path = target / MANIFEST_FILE
    if not manifest_path.exists():
        if any(target.iterdir()):
            raise DeviceError(f"--out {target}: exists and is not a pm500 bundle; choose another --out")
        return None
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_text())
    except (OSError, ValidationError):
        raise DeviceError(
            f"--out {target}: {MANIFEST_FILE} is unreadable; not touching this directory"
        ) from None
    if manifest.thing_name != thing:
        raise DeviceError(f"--out {target}: holds the bundle of {manifest.thing_name}, not {thing}")
    return manifest


def read_config(target: Path) -> CollectorConfig | None:
    """The config of an existing bundle as written (relative paths kept), None if absent or invalid."""
    try:
        return CollectorConfig.model_validate(yaml.safe_load((target / CONFIG_FILE).read_text()))
    except (OSError, yaml.YAMLError, ValidationError):
        return None


def bundle_is_whole(target: Path) -> bool:
    return all((target / name).is_file() for name in (CONFIG_FILE, CERT_FILE, KEY_FILE, MANIFEST_FILE))


def write_bundle(target: Path, files: list[BundleFile], manifest: Manifest) -> None:
    """Write the bundle at `target` atomically, replacing our previous bundle there if any."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(parent, target.name)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{_NEW}-", dir=parent))  # created 0700
    try:
        for f in files:
            _write_file(staging / f.name, f.data, f.mode)
        _write_file(staging / MANIFEST_FILE, manifest.model_dump_json(indent=2).encode() + b"\n", 0o644)
        _fsync_dir(staging)
        _swap_into_place(staging, target)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_into_place(staging: Path, target: Path) -> None:
    """rename(2) cannot replace a non-empty directory: move the old one aside, then the new one in."""
    if not target.exists() or not any(target.iterdir()):
        os.replace(staging, target)
        return
    aside = target.parent / f".{target.name}.{_OLD}-{uuid.uuid4().hex[:8]}"
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale(parent: Path, name: str) -> None:
    """Staging dirs left by an interrupted run (power cut, kill -9): ours by name, never mounted."""
    for stale in parent.glob(f".{name}.{_NEW}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, mode)  # the umask may have narrowed it; make it exactly what we mean


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
