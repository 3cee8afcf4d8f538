"""Rotate the certificates of many collectors: a selection (sites, a name glob, certificates expiring
within a window), each device through the one-device path, resumable.

Each device goes through `devices.provision.provision_device(mode="rotate")` unchanged, so each is
all-or-nothing with its own rollback, exactly like `devices rotate-cert`. The selection reads the
certificate each bundle holds (what the collector runs), so it needs no AWS call.

Resumable: the run's selection and start time are kept in `<out root>/<stack>/rotate-cert.json` until
every selected device is done. Run the same command again after an interruption (Ctrl-C, a failure, a
lost connection): a device whose bundle was written after the run started is already rotated and is
skipped, the others are done. A run of another selection is refused while one is unfinished.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from collector.config import CERT_FILE
from devices.aws import IoTClient
from devices.bulk import BulkResult, provision_many
from devices.bundle import default_bundle_dir, read_manifest
from devices.errors import DeviceError
from devices.outputs import StackOutputs
from devices.provision import BundleSettings, IssueOptions
from infra.outputs import CollectorOutput

JOURNAL = "rotate-cert.json"


@dataclass(frozen=True)
class Selection:
    sites: tuple[str, ...]
    match: str | None
    expiring_within_s: int | None  # None: every selected collector, whatever its certificate's expiry


def bundle_not_after(out_root: Path, stack: str, target: CollectorOutput) -> dt.datetime | None:
    """The expiry of the certificate in the collector's bundle (None: no bundle or no certificate)."""
    path = default_bundle_dir(out_root, stack, target.site, target.collector) / CERT_FILE
    try:
        return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
    except (OSError, ValueError):
        return None


def select(outputs: StackOutputs, selection: Selection, out_root: Path, now: dt.datetime,
           ) -> list[CollectorOutput]:
    """The collectors of `selection`; with a window, only those whose bundle certificate expires in it
    (a collector without a bundle is kept: rotating it fails and says so)."""
    targets = outputs.select(list(selection.sites), selection.match)
    if selection.expiring_within_s is None:
        return targets
    horizon = now + dt.timedelta(seconds=selection.expiring_within_s)
    chosen = []
    for target in targets:
        not_after = bundle_not_after(out_root, outputs.stack, target)
        if not_after is None or not_after <= horizon:
            chosen.append(target)
    return chosen


class Journal:
    """The unfinished run of a stack: its selection and start time, in a file next to the bundles."""

    def __init__(self, out_root: Path, stack: str) -> None:
        self.path = out_root / stack / JOURNAL

    def begin(self, selection: Selection, now: dt.datetime) -> dt.datetime:
        """The start of the run to continue with `selection` (now for a new one)."""
        if self.path.exists():
            recorded = json.loads(self.path.read_text())
            if recorded["selection"] != _plain(selection):
                raise DeviceError(
                    f"an unfinished rotation of another selection ({recorded['selection']}) is recorded in "
                    f"{self.path}: finish it by running it again with the same options, or delete the file"
                )
            return dt.datetime.fromisoformat(recorded["started_at"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{JOURNAL}.tmp")
        tmp.write_text(json.dumps({"selection": _plain(selection), "started_at": now.isoformat()}))
        os.replace(tmp, self.path)
        return now

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def _plain(selection: Selection) -> dict[str, Any]:
    return {**asdict(selection), "sites": sorted(selection.sites)}


def rotate_selection(
    iot: IoTClient,
    outputs: StackOutputs,
    selection: Selection,
    out_root: Path,
    issue: IssueOptions,
    settings: BundleSettings,
    workers: int = 8,
    revoke_old: bool = False,
    now: dt.datetime | None = None,
    on_selected: Callable[[int], None] = lambda n: None,
    on_result: Callable[[BulkResult], None] = lambda _: None,
) -> list[BulkResult]:
    """Rotate every collector of the selection not rotated yet in this run; results in thing order."""
    now = now or dt.datetime.now(dt.UTC)
    journal = Journal(out_root, outputs.stack)
    started = journal.begin(selection, now)
    # The expiry window is judged at the run's start: a resumed run selects what the first one did.
    targets = select(outputs, selection, out_root, started)
    done, todo = [], []
    for target in targets:
        bundle = default_bundle_dir(out_root, outputs.stack, target.site, target.collector)
        manifest = read_manifest(bundle, target.thing_name) if bundle.exists() else None
        if manifest is not None and manifest.written_at >= started:
            done.append(BulkResult(target.thing_name, "unchanged", f"rotated earlier in this run: "
                                   f"{manifest.certificate_id}"))
        else:
            todo.append(target)
    on_selected(len(todo))
    results = provision_many(iot, outputs, todo, out_root, issue, settings, workers, on_result,
                             mode="rotate", revoke_old=revoke_old)
    if not any(r.status == "failed" for r in results):
        journal.finish()
    return sorted(done + results, key=lambda r: r.thing_name)
