"""findAllChatHeaders, getMyChats, and the REST chat and group endpoints."""

from __future__ import annotations

from syarah import types
from syarah.errors import Forbidden, NotFound, Validation
from syarah.handlers.context import Context
from syarah.handlers.friendships import visible_online
from syarah.protocol import inbound as dto
from syarah.protocol.inbound import PAGE_MAX
from syarah.protocol.outbound import (ChatHeader, ChatMessage, Member, MemberJoined, MemberRemoved,
                                      MyChat, Page, Time)


async def headers_for(ctx: Context, summaries: list[types.ChatSummary],
                      sync: dict[int, int] | None = None) -> list[ChatHeader]:
    """ChatHeader objects for a user's chats: members and presence in one query each."""
    store = ctx.services.store
    members = await store.get_members([s.chat.id for s in summaries])
    missed = {}
    if sync:
        wanted = {s.chat.id: sync[s.chat.id] for s in summaries if s.chat.id in sync}
        missed = await store.sync_chats(wanted, PAGE_MAX)
    online = await visible_online(ctx, [m.user.id for ms in members.values() for m in ms])
    headers = []
    for s in summaries:
        chat = s.chat
        name, avatar = chat.name, chat.avatar
        if not chat.is_group and s.other_user is not None:
            # An individual chat is shown under the other person's name and picture.
            name, avatar = s.other_user.name, s.other_user.avatar
        header = ChatHeader(
            id=chat.id, is_group=chat.is_group, name=name, avatar=avatar,
            creation_time=Time(chat.creation_ms),
            last_message=ChatMessage.of(s.last_message) if s.last_message else None,
            last_message_time=(Time(chat.last_message_ms)
                               if chat.last_message_ms is not None else None),
            unread_count=s.unread_count,
            members=[Member.of(m, m.user.id in online) for m in members[chat.id]])
        found = missed.get(chat.id)
        if found is not None:
            header.new_messages = [ChatMessage.of(m) for m in found.new_messages]
            header.has_more_new_messages = found.more_new_messages
            header.updated_messages = [ChatMessage.of(m) for m in found.updated_messages]
            header.has_more_updated_messages = found.more_updated_messages
            header.deleted_message_ids = found.deleted_message_ids
            header.has_more_deleted_message_ids = found.more_deleted_message_ids
        headers.append(header)
    return headers


async def find_all_chat_headers(ctx: Context, e: dto.FindAllChatHeaders):
    if e.user_id is not None and e.user_id != ctx.user.id:
        raise Forbidden("UserId must be your own user id.")
    store = ctx.services.store
    summaries = await store.chat_summaries(
        ctx.user.id, skip=e.skip_count, limit=e.max_result_count)
    total = await store.count_chats(ctx.user.id)
    sync = None
    if e.rooms_with_last_message_ids:
        sync = {r.chat_header_id: r.last_message_id for r in e.rooms_with_last_message_ids}
    return Page(await headers_for(ctx, summaries, sync), total)


async def get_my_chats(ctx: Context, e: dto.GetMyChats):
    chats = await ctx.services.store.my_chats(ctx.user.id)
    online = await visible_online(ctx, [c.user_id for c in chats if c.user_id])
    return [MyChat.wire(c, c.user_id in online) for c in chats]


async def individual_chat(ctx: Context, other_user_id: str) -> types.Chat:
    """Get or create the one individual chat of the caller and another user."""
    if other_user_id == ctx.user.id:
        raise Validation("You cannot open a chat with yourself.")
    store = ctx.services.store
    # The main backend owns the users: one the server has not met yet is created.
    now = ctx.clock.now_ms()
    await store.ensure_users([other_user_id], now)
    return await store.get_or_create_individual_chat(ctx.user.id, other_user_id, now)


async def chat_header(ctx: Context, chat_id: int) -> ChatHeader:
    summary = await ctx.services.store.chat_summary(chat_id, ctx.user.id)
    return (await headers_for(ctx, [summary]))[0]


async def get_chat_header(ctx: Context, user1_id: str, user2_id: str) -> ChatHeader:
    """GET /api/chat/getChatHeaderAsync: the caller must be one of the two."""
    if ctx.user.id not in (user1_id, user2_id):
        raise Forbidden("You can only open chats of your own.")
    other = user2_id if user1_id == ctx.user.id else user1_id
    chat = await individual_chat(ctx, other)
    return await chat_header(ctx, chat.id)


async def create_group(ctx: Context, e: dto.CreateGroup) -> ChatHeader:
    store = ctx.services.store
    member_ids = [m for m in (e.member_ids or []) if m != ctx.user.id]
    await _refuse_blocked(ctx, member_ids)
    await store.ensure_users(member_ids, ctx.clock.now_ms())
    chat = await store.create_group(e.name, e.avatar, ctx.user.id, member_ids, ctx.clock.now_ms())
    return await chat_header(ctx, chat.id)


async def _refuse_blocked(ctx: Context, user_ids) -> None:
    """Nobody brings into a group a user with whom they are a blocked pair: the group
    would carry the messages the block stops."""
    if await ctx.services.store.blocked_among(ctx.user.id, user_ids):
        raise Forbidden("You cannot add to a group someone you have blocked or who "
                        "has blocked you.")


async def _group_for_member(ctx: Context, chat_id: int) -> types.Chat:
    chat, member = await ctx.services.store.get_chat_for_member(chat_id, ctx.user.id)
    if chat is None or not chat.is_group:
        raise NotFound("That group does not exist.")
    if not member:
        raise Forbidden("You are not a member of this group.")
    return chat


async def add_group_members(ctx: Context, chat_id: int, e: dto.AddGroupMembers):
    store = ctx.services.store
    await _group_for_member(ctx, chat_id)
    await _refuse_blocked(ctx, e.user_ids)
    await store.ensure_users(e.user_ids, ctx.clock.now_ms())
    added = await store.add_members(chat_id, e.user_ids, ctx.clock.now_ms())
    if added:
        members = (await store.get_members([chat_id]))[chat_id]
        online = await ctx.services.presence.online(added)
        for m in members:
            if m.user.id in added:
                await ctx.services.rooms.to_chat(
                    chat_id, "onMemberJoin",
                    MemberJoined(chat_id, Member.of(m, m.user.id in online)))
    return await chat_header(ctx, chat_id)


async def remove_group_member(ctx: Context, chat_id: int, user_id: str):
    chat = await _group_for_member(ctx, chat_id)
    if user_id != ctx.user.id and chat.creator_id != ctx.user.id:
        raise Forbidden("Only the group's creator may remove other members.")
    if not await ctx.services.store.remove_member(chat_id, user_id):
        raise NotFound("That user is not a member of this group.")
    # A former member must not go on hearing the room, nor count as viewing it, on
    # any node.
    await evict_member(ctx.services, user_id, chat_id)
    await ctx.services.presence.removed_from_chat(user_id, chat_id)
    return MemberRemoved(chat_id, user_id)


async def evict_member(services, user_id: str, chat_id: int) -> None:
    """Take a former member's sockets on this node out of the chat's room and its
    viewers; another node's removal runs this here too. One who is a member again (a
    removal heard late) keeps them."""
    _, member = await services.store.get_chat_for_member(chat_id, user_id)
    if member:
        return
    for sid in await services.rooms.evict(user_id, chat_id):
        await services.presence.clear_viewing(user_id, sid, chat_id)
