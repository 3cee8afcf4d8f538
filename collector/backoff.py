"""Exponential backoff with full jitter, so a fleet of collectors does not reconnect in lockstep."""

from __future__ import annotations

import random


class Backoff:
    """Delays `uniform(0, min(cap, base * 2**attempt))`, with a floor so a retry never spins."""

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, floor_s: float = 0.1) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.floor_s = floor_s
        self._attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return max(self.floor_s, random.uniform(0, ceiling))

    def reset(self) -> None:
        self._attempt = 0
