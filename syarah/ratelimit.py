"""Per-user and per-address limits on what a client can make the server do.

Token buckets in this process's memory: a bucket holds up to ``count`` tokens and
refills at ``count / seconds`` per second, so a client may burst ``count`` actions and
then keep up the average. With several nodes each keeps its own buckets; a client
spread over N nodes may reach N times the rate, which is still bounded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from syarah.errors import RateLimited

# Buckets that have refilled completely carry no information; they are dropped once
# this many keys are held, so an address scan cannot grow memory without bound.
PRUNE_ABOVE = 10_000


@dataclass(frozen=True)
class Rate:
    count: float
    seconds: float

    @staticmethod
    def parse(spec: str, name: str) -> "Rate | None":
        """``"30/10"``: 30 actions per 10 seconds. Empty or ``0`` turns the limit off."""
        spec = (spec or "").strip()
        if spec in ("", "0"):
            return None
        try:
            count, _, seconds = spec.partition("/")
            rate = Rate(float(count), float(seconds or 1))
        except ValueError:
            raise ValueError(f"{name} must look like COUNT/SECONDS, e.g. 30/10, not {spec!r}")
        if rate.count < 1 or rate.seconds <= 0:
            raise ValueError(f"{name} needs COUNT >= 1 and SECONDS > 0, not {spec!r}")
        return rate


class TokenBuckets:
    def __init__(self, rate: Rate, clock=time.monotonic):
        self.capacity = rate.count
        self.refill = rate.count / rate.seconds
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> bool:
        """Spend one token of ``key``'s bucket; False when it is empty."""
        now = self.clock()
        held = self._buckets.get(key)
        tokens = self.capacity if held is None else min(
            self.capacity, held[0] + (now - held[1]) * self.refill)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > PRUNE_ABOVE:
            self._prune(now)
        return True

    def _prune(self, now: float):
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.refill >= self.capacity]
        for k in full:
            del self._buckets[k]

    def __len__(self):
        return len(self._buckets)


# The limited actions, the words used in replies, options and metrics.
ACTIONS = {
    "createMessage": ("rate_create_message_user", "rate_create_message_address"),
    "roomTyping": ("rate_room_typing_user", "rate_room_typing_address"),
    "connect": ("rate_connect_user", "rate_connect_address"),
}


class Limits:
    """The configured buckets; ``check`` raises RateLimited when one is empty."""

    def __init__(self, settings, on_limited=None):
        self.buckets: dict[tuple[str, str], TokenBuckets] = {}
        for action, names in ACTIONS.items():
            for scope, name in zip(("user", "address"), names):
                rate = Rate.parse(getattr(settings, name), name)
                if rate is not None:
                    self.buckets[(action, scope)] = TokenBuckets(rate)
        self.max_sockets_per_user = settings.max_sockets_per_user
        self.max_rooms_per_socket = settings.max_rooms_per_socket
        self.max_tokenless_per_address = settings.max_tokenless_sockets_per_address
        self.on_limited = on_limited or (lambda action, scope: None)

    def limits(self, action: str) -> bool:
        return (action, "user") in self.buckets or (action, "address") in self.buckets

    def check(self, action: str, *, user_id: str | None = None,
              address: str | None = None) -> None:
        # The address is checked first: it is known before anything is decoded or
        # verified, so a flood from one place is turned away at the lowest cost.
        for scope, key in (("address", address), ("user", user_id)):
            bucket = self.buckets.get((action, scope))
            if bucket is None or key is None:
                continue
            if not bucket.take(key):
                self.on_limited(action, scope)
                what = "this address" if scope == "address" else "you"
                raise RateLimited(f"Too many {action} requests from {what}; "
                                  "slow down and try again in a moment.")
