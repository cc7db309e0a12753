"""Who the caller is, as the store knows them: token claims applied to the users table."""

from __future__ import annotations

from syarah.clock import SYSTEM, Clock
from syarah.types import User

# How long a user's stored name and avatar are trusted without a look at the store: a
# rename through the service API on another node shows here within this time.
PROFILE_TTL_SECONDS = 60.0


class UserDirectory:
    """Keeps the users table in step with token claims without a write per event, and
    answers who the caller is as the store knows them (a rename through the service
    API wins over the claims of a token issued before it)."""

    def __init__(self, store, clock: Clock = SYSTEM):
        self.store = store
        self.clock = clock
        # user id -> (the claims last applied, the stored profile, when to look again)
        self._seen: dict[str, tuple[User, User, float]] = {}

    async def ensure(self, user: User, issued_at: float | None = None) -> User:
        """The caller's profile as stored, after applying the token's claims."""
        seen = self._seen.get(user.id)
        if seen is not None and seen[0] == user and seen[2] > self.clock.monotonic():
            return seen[1]
        issued_ms = int(issued_at * 1000) if issued_at is not None else None
        stored = await self.store.update_user_from_claims(
            user, self.clock.now_ms(), issued_ms)
        if len(self._seen) >= 100_000:
            self._seen.clear()
        self._seen[user.id] = (user, stored, self.clock.monotonic() + PROFILE_TTL_SECONDS)
        return stored

    def renamed(self, user: User):
        """The service API changed a profile: later events show it at once."""
        seen = self._seen.get(user.id)
        if seen is not None:
            self._seen[user.id] = (seen[0], user, seen[2])
