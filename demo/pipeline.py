"""What the demo has running: enough to observe it, print how to inspect it, and prove it all stopped.

Its own module so that `demo.run` (which fills it in) and `demo.inspect` (which prints commands from it)
both import it, and neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from collector.config import CollectorConfig
from sandbox.ca import DevCA
from sandbox.influx import InfluxServer
from sandbox.mosquitto import MosquittoBroker
from sandbox.moto import MotoServer
from sandbox.mqtt import Recorder


@dataclass
class Pipeline:
    """What is running: enough to observe it, print how to inspect it, and prove it all stopped."""

    workdir: Path
    moto: MotoServer | None = None
    ca: DevCA | None = None
    influx: InfluxServer | None = None
    broker: MosquittoBroker | None = None
    observer: tuple[Path, Path] | None = None
    bundle: CollectorConfig | None = None
    bundle_dir: Path | None = None
    outputs_file: Path | None = None
    recorder: Recorder | None = None
    # --encoding sparkplug-b: the Primary Host Application's bundle and its rebirth request payload
    host_bundle_dir: Path | None = None
    rebirth_file: Path | None = None
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"
