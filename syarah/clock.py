"""The one source of the current time, so that tests can move it instead of sleeping."""

from __future__ import annotations

import time


class Clock:
    """Wall time for what is stored and compared with tokens, monotonic time for
    intervals."""

    def time(self) -> float:
        return time.time()

    def now_ms(self) -> int:
        return int(self.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock(Clock):
    """A clock that stands still until told to move (tests)."""

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else start
        self._mono = 1000.0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


SYSTEM = Clock()

# Module-level spelling for code that has no clock of its own to ask.
now_ms = SYSTEM.now_ms
