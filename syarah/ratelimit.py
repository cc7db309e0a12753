"""Per-user and per-address limits on what a client can make the server do.

Token buckets in this process's memory: a bucket holds up to ``count`` tokens and
refills at ``count / seconds`` per second, so a client may burst ``count`` actions and
then keep up the average. With several nodes on one Redis the per-user limits and the
socket caps hold across them (syarah.ratelimit_redis); the per-address rates stay
each node's own.
"""

from __future__ import annotations

import math
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

    def give_back(self, key: str) -> None:
        """Return the token ``take`` just spent (the shared bucket refused)."""
        held = self._buckets.get(key)
        if held is not None:
            self._buckets[key] = (min(self.capacity, held[0] + 1), held[1])

    def wait(self, key: str) -> float:
        """Seconds until ``key``'s bucket holds a whole token again."""
        held = self._buckets.get(key)
        if held is None:
            return 0.0
        tokens = held[0] + (self.clock() - held[1]) * self.refill
        return max(0.0, (1 - tokens) / self.refill)

    def _prune(self, now: float):
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.refill >= self.capacity]
        for k in full:
            del self._buckets[k]

    def __len__(self):
        return len(self._buckets)


# The limited actions, the words used in replies, options and metrics: the option of
# each scope, None where that scope has none. Every event of the route table must
# be here (a test walks the table); REST actions use the names below the events.
ACTIONS = {
    "createMessage": ("rate_create_message_user", "rate_create_message_address"),
    "roomTyping": ("rate_room_typing_user", "rate_room_typing_address"),
    "connect": ("rate_connect_user", "rate_connect_address"),
    "findAllMessages": ("rate_find_all_messages_user", None),
    "findAllChatHeaders": ("rate_find_all_chat_headers_user", None),
    "getMyChats": ("rate_get_my_chats_user", None),
    "getMyFriendships": ("rate_get_my_friendships_user", None),
    "joinRoom": ("rate_join_room_user", None),
    "leaveRoom": ("rate_leave_room_user", None),
    "readMessage": ("rate_read_message_user", None),
    "updateMessage": ("rate_update_message_user", None),
    "removeMessage": ("rate_remove_message_user", None),
    "friendRequest": ("rate_friend_request_user", None),
    "friendshipChange": ("rate_friendship_change_user", None),
    "groupCreate": ("rate_group_create_user", None),
    "groupMembers": ("rate_group_members_user", None),
    "device": ("rate_device_user", None),
}

# How a refusal names the REST actions; events go by their own name.
ACTION_WORDS = {
    "friendRequest": "friend requests",
    "friendshipChange": "friendship changes",
    "groupCreate": "new groups",
    "groupMembers": "group member changes",
    "device": "device registrations",
}


def in_words(seconds: float) -> str:
    """A wait as a person says it: 40 seconds, 3 minutes, 5 hours."""
    seconds = max(1, math.ceil(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds > 1 else ''}"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600)} hours"


class Limits:
    """The configured buckets; ``check`` raises RateLimited when one is empty."""

    def __init__(self, settings, on_limited=None):
        self.buckets: dict[tuple[str, str], TokenBuckets] = {}
        for action, names in ACTIONS.items():
            for scope, name in zip(("user", "address"), names):
                if name is None:
                    continue
                rate = Rate.parse(getattr(settings, name), name)
                if rate is not None:
                    self.buckets[(action, scope)] = TokenBuckets(rate)
        self.max_sockets_per_user = settings.max_sockets_per_user
        self.max_rooms_per_socket = settings.max_rooms_per_socket
        self.max_tokenless_per_address = settings.max_tokenless_sockets_per_address
        self.on_limited = on_limited or (lambda action, scope: None)
        # syarah.ratelimit_redis.SharedLimits when nodes share a Redis, else None.
        self.shared = None

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
                self.refuse(action, scope, bucket.wait(key))

    def refuse(self, action: str, scope: str, wait: float):
        self.on_limited(action, scope)
        what = "this address" if scope == "address" else "you"
        words = ACTION_WORDS.get(action, f"{action} requests")
        raise RateLimited(f"Too many {words} from {what}; slow down and try "
                          f"again in {in_words(wait)}.", retry_after=wait)

    async def check_user(self, action: str, user_id: str, *, here: bool = True) -> None:
        """The per-user limit of ``action``, across nodes when they share a Redis.

        The node's own bucket decides first (its refusal needs no one else). A user
        spread over several nodes, or one who holds no socket here (``here`` False: a
        REST call may come to any node), also spends a token of the shared bucket."""
        self.check(action, user_id=user_id)
        shared = self.shared
        if shared is None or (here and user_id not in shared.spread):
            return
        bucket = self.buckets.get((action, "user"))
        if bucket is None:
            return
        wait, _ = await shared.take(action, user_id, bucket.capacity, bucket.refill)
        if wait is not None:
            bucket.give_back(user_id)
            self.refuse(action, "user", wait)

    async def connect_shared(self, user_id: str, sid: str, here: int) -> tuple[int, bool]:
        """At a token-proven connect, after the node's own checks: spend the user's
        shared connect bucket and, under the socket cap, count the socket across the
        nodes in the same step (``here``: the user's sockets on this node). Returns
        the user's sockets on the other nodes and whether the cap refused the socket.
        One round trip, whoever the user is."""
        bucket = self.buckets.get(("connect", "user"))
        wait, elsewhere, over = await self.shared.connect(
            user_id, sid, bucket.capacity if bucket else 0,
            bucket.refill if bucket else 0, self.max_sockets_per_user, here)
        if wait is not None:
            bucket.give_back(user_id)
            self.refuse("connect", "user", wait)
        return elsewhere, over
