"""getMyFriendships, and the REST friendship endpoints."""

from __future__ import annotations

from syarah.errors import NotFound, Validation
from syarah.handlers.context import Context
from syarah.protocol import inbound as dto
from syarah.protocol.outbound import Friendship, FriendshipRecord
from syarah.types import FriendshipStatus

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
    status = await store.change_friendship(ctx.user.id, other_id, action, ctx.now_ms())
    return {"userId": other_id, "status": status}
