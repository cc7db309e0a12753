"""getMyFriendships, and the REST friendship endpoints."""

from __future__ import annotations

from syarah.errors import Conflict, Forbidden, NotFound, RateLimited, Validation
from syarah.handlers.context import Context
from syarah.protocol import inbound as dto
from syarah.protocol.outbound import Friendship, FriendshipChanged, FriendshipRecord
from syarah.ratelimit import in_words
from syarah.types import FriendshipRow, FriendshipStatus

ACTIONS = ("request", "accept", "reject", "block", "unblock", "delete")


async def visible_online(ctx: Context, user_ids) -> set[str]:
    """Those of ``user_ids`` whom the caller may see online: online, and not one side
    of a blocked pair with the caller. Every read that shows isOnline asks here."""
    online = await ctx.services.presence.online(list(dict.fromkeys(user_ids)))
    if online:
        online -= await ctx.services.store.blocked_among(ctx.user.id, online)
    return online


async def get_my_friendships(ctx: Context, e: dto.GetMyFriendships):
    friends = await ctx.services.store.list_friendships(
        ctx.user.id, int(FriendshipStatus.ACCEPTED))
    online = await visible_online(ctx, [f.user.id for f in friends])
    return [Friendship(f.user.id, f.user.name, f.user.avatar, f.user.id in online,
                       f.chat_header_id) for f in friends]


async def list_friendships(ctx: Context):
    friends = await ctx.services.store.list_friendships(ctx.user.id)
    online = await visible_online(ctx, [f.user.id for f in friends])
    return [FriendshipRecord(f.user.id, f.user.name, f.user.avatar, f.status,
                             f.requested_by, f.user.id in online, f.chat_header_id)
            for f in friends]


def next_friendship(user_id: str, other_id: str, action: str,
                    row: FriendshipRow | None) -> FriendshipRow | None:
    """The friendship state machine: what ``user_id``'s ``action`` makes of the pair's
    ``row`` (None: no friendship, before or after), or the error refusing it."""
    S = FriendshipStatus
    status, requested_by = (row.status, row.requested_by) if row else (None, None)
    if status == S.BLOCKED and action != "unblock":
        raise Forbidden("This friendship is blocked.")
    if action == "request":
        if status == S.ACCEPTED:
            raise Conflict("You are already friends.")
        if status == S.PENDING and requested_by == other_id:
            # Both asked: that is an acceptance.
            return FriendshipRow(S.ACCEPTED, requested_by)
        if status == S.PENDING:
            raise Conflict("A friend request is already pending.")
        return FriendshipRow(S.PENDING, user_id)
    if action in ("accept", "reject"):
        if status != S.PENDING or requested_by == user_id:
            raise NotFound("There is no friend request from this user to answer.")
        return FriendshipRow(S.ACCEPTED if action == "accept" else S.REJECTED,
                             requested_by)
    if action == "block":
        return FriendshipRow(S.BLOCKED, requested_by or user_id, user_id)
    if action in ("unblock", "delete"):
        if row is None:
            raise NotFound("There is no friendship with this user.")
        if status == S.BLOCKED and row.blocked_by != user_id:
            raise Forbidden("Only the user who blocked may unblock.")
        if action == "unblock" and status != S.BLOCKED:
            raise Conflict("This friendship is not blocked.")
        return None
    raise ValueError(action)


async def change_friendship(ctx: Context, other_id: str, action: str):
    if action not in ACTIONS:
        raise NotFound(f"Unknown friendship action {action!r}.")
    if other_id == ctx.user.id:
        raise Validation("You cannot be your own friend.")
    store = ctx.services.store
    # Asking and blocking create rows for the pair; for anybody else they would be
    # rows about nobody. The other actions need an existing friendship anyway.
    if action in ("request", "block") and await store.get_user(other_id) is None:
        raise NotFound("That user does not exist.")
    now = ctx.clock.now_ms()
    if action == "request":
        await _refuse_too_soon(ctx, other_id, now)
    new = await store.change_friendship(
        ctx.user.id, other_id,
        lambda row: next_friendship(ctx.user.id, other_id, action, row), now)
    if action == "reject":
        # A reject succeeds only on a request the other user made.
        await store.note_rejection(other_id, ctx.user.id, now)
    return FriendshipChanged(other_id, int(new.status) if new is not None else None)


async def _refuse_too_soon(ctx: Context, other_id: str, now: int) -> None:
    """A user whose request was rejected may not ask the same person again for a
    while, so a refusal cannot be answered with the same request over and over. The
    other person may still ask; asking back then is an acceptance, never refused."""
    cooldown_ms = ctx.services.settings.friend_request_cooldown_hours * 3_600_000
    store = ctx.services.store
    rejected = await store.rejected_at(ctx.user.id, other_id) if cooldown_ms > 0 else None
    if rejected is None or now - rejected >= cooldown_ms:
        return
    if await store.friendship_status(ctx.user.id, other_id) == FriendshipStatus.PENDING:
        return   # their request to the caller, or the caller's own (the store says so)
    wait = (rejected + cooldown_ms - now) / 1000
    raise RateLimited("This user declined your friend request; you can ask again in "
                      f"{in_words(wait)}.", retry_after=wait)
