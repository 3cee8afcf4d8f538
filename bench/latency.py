"""Where a reading's time goes between its poll and its PUBACK being committed (bench/drain.py fleet run).

Stages, each on one clock (`time.perf_counter`) in the collector's own process:

- `round_trip`: the meter request(s) of the poll (a timing wrapper around the poller's driver);
- `decode_append`: reply received -> decoded, Reading built, committed to the buffer (on_reading returned);
- `append_publish`: committed -> handed to paho by the MQTT sink;
- `publish_puback`: handed to paho -> PUBACK received (paho's network thread; includes the broker);
- `puback_commit`: PUBACK received -> the ack committed to the buffer;
- `append_committed` = the last three: the part of the pipeline the latency goal is about.

Readings are matched across threads by (asset, poll timestamp), which is unique per asset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from collector.config import MeterConfig
from collector.consistency import Verdict
from collector.meter import MeterDriver, pycomm_driver
from collector.mqtt_sink import Delivery
from collector.poller import Poller
from collector.reading import Reading
from collector.service import PollerLike

STAGES = (
    "round_trip",
    "decode_append",
    "append_publish",
    "publish_puback",
    "puback_commit",
    "append_committed",
)


class TimedDriver:
    """The real driver, noting when this thread's last poll request started and got its reply."""

    def __init__(self, inner: MeterDriver, local: threading.local) -> None:
        self._inner, self._local = inner, local

    def read_attribute(self, instance: int, attribute: int) -> bytes:
        start = time.perf_counter()
        try:
            return self._inner.read_attribute(instance, attribute)
        finally:
            self._local.round_trip = (start, time.perf_counter())

    def read_multiple(self, requests: Sequence[tuple[int, int]]) -> bytes:
        start = time.perf_counter()
        try:
            return self._inner.read_multiple(requests)
        finally:
            self._local.round_trip = (start, time.perf_counter())

    def close(self) -> None:
        self._inner.close()


class StageClock:
    def __init__(self) -> None:
        self.measuring = False
        self.samples: dict[str, list[float]] = {stage: [] for stage in STAGES}  # milliseconds
        self._local = threading.local()
        self._appended: dict[tuple[str, int], float] = {}

    def poller_factory(
        self,
        site: str,
        meters: Sequence[MeterConfig],
        interval_s: float,
        on_reading: Callable[[Reading], None],
        on_verdict: Callable[[str, Verdict], None] | None = None,
    ) -> PollerLike:
        """A `collector.service.PollerFactory`: the default Poller, with the timing wrappers."""

        def driver(meter: MeterConfig, timeout_s: float) -> MeterDriver:
            return TimedDriver(pycomm_driver(meter, timeout_s), self._local)

        def timed_on_reading(reading: Reading) -> None:
            on_reading(reading)
            appended = time.perf_counter()
            self._appended[(reading.asset, reading.timestamp_ms)] = appended
            if self.measuring:
                start, replied = self._local.round_trip
                self.samples["round_trip"].append(1000 * (replied - start))
                self.samples["decode_append"].append(1000 * (appended - replied))

        return Poller(
            site, meters, interval_s, timed_on_reading, driver_factory=driver, on_verdict=on_verdict
        )

    def on_timed(self, deliveries: Sequence[Delivery], committed: float) -> None:
        """`MqttSink.on_timed`."""
        for entry, published, acked in deliveries:
            appended = self._appended.pop((entry.asset, entry.timestamp_ms), None)
            if appended is None or not self.measuring:
                continue
            self.samples["append_publish"].append(1000 * (published - appended))
            self.samples["publish_puback"].append(1000 * (acked - published))
            self.samples["puback_commit"].append(1000 * (committed - acked))
            self.samples["append_committed"].append(1000 * (committed - appended))
