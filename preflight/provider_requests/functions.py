"""Lambda functions (the stack's pre-provisioning hook): `CreateFunction` with the code as the zip the
provider builds from the program's `AssetArchive`."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from preflight.provider_requests.base import (
    ApiRequest,
    Resolved,
    UnmappedResource,
    compact,
    label,
    physical_name,
)

# A fixed timestamp: the same archive gives the same bytes (and the same request) every run.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def archive_zip(archive: Any, where: str) -> bytes:
    """The zip of an `AssetArchive` of `FileAsset`s and `StringAsset`s (what the provider uploads)."""
    if not isinstance(archive, pulumi.AssetArchive):
        raise UnmappedResource(f"{where}: code is {type(archive).__name__}, only an AssetArchive is mapped")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, asset in sorted(archive.assets.items()):
            if isinstance(asset, pulumi.FileAsset):
                content = Path(str(asset.path)).read_bytes()
            elif isinstance(asset, pulumi.StringAsset):
                content = str(asset.text).encode()
            else:
                raise UnmappedResource(f"{where}: archive member {name} is {type(asset).__name__}")
            zf.writestr(zipfile.ZipInfo(name, _ZIP_TIME), content)
    return buffer.getvalue()


def _function(r: Resolved) -> list[ApiRequest]:
    return [ApiRequest("lambda", "CreateFunction", compact({
        "FunctionName": physical_name(r), "Role": r.inputs["role"], "Runtime": r.inputs.get("runtime"),
        "Handler": r.inputs.get("handler"), "Description": r.inputs.get("description"),
        "Timeout": r.inputs.get("timeout"), "MemorySize": r.inputs.get("memorySize"),
        "Architectures": r.inputs.get("architectures"), "Tags": dict(r.inputs.get("tags") or {}),
        "Code": {"ZipFile": archive_zip(r.inputs.get("code"), label(r))},
    }), label(r))]


MAPPINGS: dict[str, Callable[[Resolved], list[ApiRequest]]] = {
    "aws:lambda/function:Function": _function,
}
