"""Provision many collectors at once (a site, several sites, or a thing-name glob).

Each device goes through `provision_device` unchanged, so each one is all-or-nothing on its own
(its own rollback) and a re-run is resumable for free: finished devices are "unchanged", the rest are
done. Devices run concurrently on a thread pool sharing one boto3 client (clients are thread-safe);
throttling is absorbed by the client's standard retry mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.aws import IoTClient, describe_error
from devices.bundle import default_bundle_dir
from devices.outputs import StackOutputs
from devices.provision import BundleSettings, IssueOptions, Mode, provision_device
from infra.outputs import CollectorOutput


@dataclass(frozen=True)
class BulkResult:
    thing_name: str
    status: str  # provisioned | rotated | unchanged | failed
    detail: str  # certificate id, or the one-line reason it failed (already rolled back)

    def as_dict(self) -> dict[str, Any]:
        return {"thingName": self.thing_name, "status": self.status, "detail": self.detail}


def provision_many(
    iot: IoTClient,
    outputs: StackOutputs,
    targets: list[CollectorOutput],
    out_root: Path,
    issue: IssueOptions,
    settings: BundleSettings,
    workers: int = 8,
    on_result: Callable[[BulkResult], None] = lambda _: None,
    mode: Mode = "create",
    revoke_old: bool = False,
) -> list[BulkResult]:
    """Provision (or with mode "rotate", re-issue) every target; one device's failure never stops the
    others. Results in target order."""

    def one(target: CollectorOutput) -> BulkResult:
        bundle_dir = default_bundle_dir(out_root, outputs.stack, target.site, target.collector)
        try:
            outcome = provision_device(iot, outputs, target, bundle_dir, issue, settings, mode, revoke_old)
        except Exception as exc:
            result = BulkResult(target.thing_name, "failed", describe_error(exc))
        else:
            result = BulkResult(target.thing_name, outcome.status, outcome.certificate_id)
        on_result(result)
        return result

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provision")
    futures: list[Future[BulkResult]] = [pool.submit(one, t) for t in targets]
    try:
        wait(futures)
    except KeyboardInterrupt:
        # Devices already in flight finish (or roll back) on their own; the rest wait for a re-run.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return [f.result() for f in futures]


def summary(results: list[BulkResult], done: str = "provisioned") -> dict[str, int]:
    """Devices per outcome; `done` names what a successful device became (provisioned, rotated)."""
    counts = Counter(r.status for r in results)
    return {status: counts.get(status, 0) for status in (done, "unchanged", "failed")}
