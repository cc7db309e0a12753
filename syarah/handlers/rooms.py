"""joinRoom, leaveRoom, roomTyping: socket rooms and the viewing state behind push."""

from __future__ import annotations

import logging

from syarah.errors import Forbidden, Unavailable, Validation
from syarah.handlers.chats import headers_for, individual_chat
from syarah.handlers.context import Context
from syarah.handlers.messages import require_member
from syarah.protocol import inbound as dto
from syarah.protocol.outbound import JoinRoomReply, MemberJoined, Ok, RoomLeft, Typing

log = logging.getLogger("syarah.rooms")


async def join_room(ctx: Context, e: dto.JoinRoom):
    if e.user_id is not None and e.user_id != ctx.user.id:
        raise Forbidden("userId must be your own user id.")
    if e.chat_header_id is not None:
        chat = await require_member(ctx, e.chat_header_id)
    elif e.other_user_id is not None:
        chat = await individual_chat(ctx, e.other_user_id)
    else:
        raise Validation("chatHeaderId or otherUserId is required.")
    # The summary carries the friendship status too: no second lookup for it.
    summary = await ctx.services.store.chat_summary(chat.id, ctx.user.id)
    (header,) = await headers_for(ctx, [summary])
    rooms, presence = ctx.services.rooms, ctx.services.presence
    await rooms.join(ctx.sid, chat.id)
    await presence.set_viewing(ctx.user.id, ctx.sid, chat.id)
    current = next((m for m in header.members if m.user_id == ctx.user.id), None)
    status = None if chat.is_group else summary.friendship_status
    if current is not None:
        await rooms.to_chat(chat.id, "onMemberJoin", MemberJoined(chat.id, current),
                            skip_sid=ctx.sid)
    return JoinRoomReply(
        chat_header_id=chat.id, joined=True, room_members=header.members,
        current_member=current, members=header.members, friendship_status=status,
        chat_header=header)


async def leave_room(ctx: Context, e: dto.LeaveRoom):
    await require_member(ctx, e.chat_header_id)
    await ctx.services.rooms.leave(ctx.sid, e.chat_header_id)
    await ctx.services.presence.clear_viewing(ctx.user.id, ctx.sid, e.chat_header_id)
    return RoomLeft(e.chat_header_id)


async def room_typing(ctx: Context, e: dto.RoomTyping):
    # Joining required membership, and removal from a chat takes its sockets out of
    # the room, so being in the room is all the proof of membership needed.
    if not ctx.services.rooms.has_joined(ctx.sid, e.chat_header_id):
        raise Forbidden("Join the chat's room before sending typing notifications.")
    if await _blocked(ctx, e.chat_header_id):
        raise Forbidden("This conversation is blocked.")
    name = e.name if e.name else ctx.user.name
    await ctx.services.rooms.to_chat(
        e.chat_header_id, "typing",
        Typing(name=name, is_typing=e.is_typing, chat_header_id=e.chat_header_id,
               user_id=ctx.user.id),
        skip_sid=ctx.sid)
    return Ok()


async def _blocked(ctx: Context, chat_id: int) -> bool:
    """Whether typing into this chat is refused because its pair is Blocked.

    A block may come after the join, from any node, so the store is asked each time:
    one lookup by primary keys, at most as often as the typing rate limit lets a user
    through. A cache would need invalidating across nodes to refuse at once.
    """
    try:
        return await ctx.services.store.chat_blocked(chat_id)
    except Unavailable:
        # A typing notice is gone in seconds and the socket proved membership when
        # it joined: during a store outage typing goes on rather than failing.
        log.debug("store unavailable; typing in chat %s relayed unchecked", chat_id)
        return False
