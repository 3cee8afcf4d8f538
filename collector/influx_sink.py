"""Forward buffered readings to InfluxDB 1.x: batched line protocol on `/write?precision=ms`.

Its own thread and cursor: InfluxDB being down never holds up MQTT. The buffer holds each reading's
lines ready to send (encoded when it was appended). HTTP 204 acknowledges the batch.
Connection errors, 5xx and auth/database errors (401/403/404, fixable by the operator) are retried with
backoff and jitter, keeping the rows. A 400 means InfluxDB will never accept those lines: the batch is
counted as rejected, logged with InfluxDB's message and acknowledged, so one bad reading cannot stall the
historian forever. Credentials go in a Basic auth header, never in the URL or a log line.

Retries back off up to RETRY_CAP_S only: the historian usually runs on the same host, and the 30 s cap
that keeps a fleet from reconnecting to the cloud in lockstep left the sink idle for up to 19 s after
InfluxDB was back. Each failure is classified (`collector.sink_errors`) into `last_error`: a 401 is
not a refused connection is not a missing database.
"""

from __future__ import annotations

import base64
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request

from collector.backoff import Backoff
from collector.buffer import Buffer
from collector.config import InfluxConfig
from collector.sink_errors import LastError, http_kind, network_kind

log = logging.getLogger(__name__)

SINK = "influx"
_TIMEOUT_S = 10.0
RETRY_BASE_S = 0.25
RETRY_CAP_S = 2.0  # a failed write is retried at least this often: a local historian is back in seconds


class InfluxWriteError(Exception):
    """A /write that did not return 204; `retry` says whether the same lines may succeed later, `kind`
    what went wrong (`collector.sink_errors.KINDS`)."""

    def __init__(self, message: str, retry: bool, kind: str) -> None:
        super().__init__(message)
        self.retry = retry
        self.kind = kind


class InfluxClient:
    """Minimal InfluxDB 1.x `/write` client (stdlib HTTP: one endpoint needs no extra dependency)."""

    def __init__(self, cfg: InfluxConfig) -> None:
        query = urllib.parse.urlencode({"db": cfg.database, "precision": "ms"})
        self.url = f"{cfg.url.rstrip('/')}/write?{query}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.username is not None:
            secret = cfg.password.get_secret_value() if cfg.password is not None else ""
            token = base64.b64encode(f"{cfg.username}:{secret}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def write(self, body: bytes) -> None:
        # The URL scheme is validated as http(s) by InfluxConfig.url.
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as e:
            detail = e.read(300).decode(errors="replace").strip()
            message, kind = f"HTTP {e.code}: {detail}", http_kind(e.code)
            raise InfluxWriteError(message, retry=e.code != 400, kind=kind) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            kind = network_kind(reason) if isinstance(reason, BaseException) else "network"
            message = f"cannot reach InfluxDB at {self.url}: {reason}"
            raise InfluxWriteError(message, retry=True, kind=kind) from None
        if status != 204:
            raise InfluxWriteError(f"unexpected HTTP {status}", retry=True, kind="http")


class InfluxSink:
    def __init__(self, cfg: InfluxConfig, buffer: Buffer, client: InfluxClient | None = None) -> None:
        self._cfg = cfg
        self._cursor = buffer.cursor(SINK)
        self._client = client or InfluxClient(cfg)
        self._backoff = Backoff(base_s=RETRY_BASE_S, cap_s=RETRY_CAP_S)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_problem: str | None = None
        self.last_error = LastError()
        self.stats = {"written_points": 0, "written_batches": 0, "rejected_readings": 0, "write_errors": 0}
        self.healthy = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="influx-sink", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=_TIMEOUT_S + 1)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        self._wake.set()

    def status(self) -> dict[str, object]:
        return {"reachable": self.healthy, **self.stats, "last_error": self.last_error.as_dict()}

    def _run(self) -> None:
        while not self._stopping.is_set():
            entries = self._cursor.next_batch(self._cfg.batch_size)
            if not entries:
                # Nothing pending: wait for the next reading (or the flush interval as a safety net).
                self._wake.wait(self._cfg.flush_interval_s)
                self._wake.clear()
                continue
            body = b"\n".join(e.payload for e in entries)
            try:
                self._client.write(body)
            except InfluxWriteError as e:
                self.stats["write_errors"] += 1
                self.last_error.set(e.kind, str(e))
                if e.retry:
                    self.healthy = False
                    self._problem(str(e))
                    self._cursor.rewind(entries[0].id - 1)
                    self._stopping.wait(self._backoff.next_delay())
                    continue
                self.stats["rejected_readings"] += len(entries)
                log.error(
                    "InfluxDB rejected a batch; dropping it from the historian queue",
                    extra={"reason": str(e), "readings": len(entries), "first_seq": entries[0].seq},
                )
            else:
                self.stats["written_batches"] += 1
                self.stats["written_points"] += body.count(b"\n") + 1
                if not self.healthy:
                    log.info("influxdb writes succeeding", extra={"database": self._cfg.database})
                self.healthy = True
                self._last_problem = None
                self._backoff.reset()
            self._cursor.ack([e.id for e in entries])

    def _problem(self, text: str) -> None:
        if text != self._last_problem:
            log.warning("influxdb write failed; keeping readings buffered", extra={"reason": text})
            self._last_problem = text
