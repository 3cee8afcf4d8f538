"""One decoded poll of one meter: the unit that the buffer stores and every sink consumes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reading:
    site: str
    asset: str
    breaker: str
    timestamp_ms: int
    values: dict[str, float] = field(default_factory=dict)  # metric name (collector.metrics) -> value
