"""What a model node reports about itself: achieved rates, and why it is publishing nothing."""

from __future__ import annotations

import time
from collections import deque


class RateMeter:
    """Events per second over the last ``window`` seconds (monotonic clock)."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self.times: deque[float] = deque()

    def tick(self, t: float | None = None) -> None:
        self.times.append(time.monotonic() if t is None else t)

    def rate(self) -> float:
        now = time.monotonic()
        while self.times and now - self.times[0] > self.window:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(now - self.times[0], 1e-6)


class ReasonLog:
    """Logs each reason for publishing nothing once (not per step) until publishing resumes."""

    def __init__(self, logger):
        self.logger, self.reason = logger, None
        self.last: str | None = None  # the latest reason, kept after publishing resumes (diagnostics' last error)
        self._logged: set[str] = set()

    def idle(self, reason: str) -> None:
        self.reason = self.last = reason
        if reason not in self._logged:  # a set, so two alternating reasons do not flood the log either
            self.logger.warning(f"publishing nothing: {reason}")
            self._logged.add(reason)

    def ok(self) -> None:
        if self.reason is not None:
            self.logger.info(f"publishing again (was: {self.reason})")
        self.reason = None
        self._logged.clear()
