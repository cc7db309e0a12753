"""createMessage, findAllMessages, updateMessage, removeMessage, readMessage."""

from __future__ import annotations

from syarah.errors import ChatError, Forbidden, NotFound, Validation
from syarah.handlers.context import Context
from syarah.protocol import inbound as dto
from syarah.protocol.media import parse_media_path
from syarah.protocol.outbound import (ChatMessage, MessageReply, MessagesDeleted, Page,
                                      ReadMarker, to_wire)
from syarah.store import Duplicate, Refused
from syarah.types import FriendshipStatus, MessageType

# What the store's refusals mean to the person whose change it was.
_REFUSED = {
    "no_chat": (NotFound, "That chat does not exist."),
    "not_member": (Forbidden, "You are not a member of this chat."),
    "blocked": (Forbidden, "This conversation is blocked; messages cannot be sent."),
    "no_message": (NotFound, "That message does not exist in this chat."),
    "upload_gone": (Validation, "That upload is no longer available; upload it again."),
}


def explain(refused: Refused) -> ChatError:
    error, text = _REFUSED[refused.reason]
    return error(text)


async def check_media(ctx: Context, message_type: int, path: str) -> None:
    if message_type == MessageType.TEXT:
        return
    # Shape, file, record and owner: the path's shape is checked there first.
    await ctx.services.media.check_message_path(ctx.user.id, message_type, path)


# Every path uploadFile returns starts with this.
UPLOAD_PREFIX = "/uploads/"


def sent_type(message_type: int, message: str) -> int:
    """The type a new message is stored with. The API document's own ChatClient
    sends text with messageType 1 (its sendMessage default): a media message whose
    message is no upload path at all is text. Anything shaped like an upload path
    keeps its type and every check on it."""
    if message_type != MessageType.TEXT and not message.startswith(UPLOAD_PREFIX):
        return MessageType.TEXT
    return message_type


async def create_message(ctx: Context, e: dto.CreateMessage):
    e.message_type = sent_type(e.message_type, e.message)
    await check_media(ctx, e.message_type, e.message)
    push = ctx.services.push
    plan = await push.plan(e.chat_header_id, ctx.user.id) if push is not None else None
    reply = None

    async def committed(message):
        nonlocal reply
        # Serialised once for the broadcast and the ack alike.
        reply = to_wire(MessageReply(message.chat_header_id, ChatMessage.of(message)))
        if plan is not None:
            push.queued(plan)
        await ctx.services.rooms.to_chat(message.chat_header_id, "message", reply)

    try:
        message = await ctx.services.store.add_message(
            e.chat_header_id, ctx.user, e.message, e.message_type, e.caption,
            e.client_message_id, ctx.clock.now_ms(),
            # Marked used in the message's own transaction, so the orphan sweep keeps it.
            upload=e.message if e.message_type != MessageType.TEXT else None,
            pushes=plan.pushes if plan is not None else (), after_commit=committed)
    except Duplicate as dup:
        # A retry of a message that was stored: answer as the first time, but the
        # room already has it, so nothing is broadcast again.
        return MessageReply(dup.existing.chat_header_id, ChatMessage.of(dup.existing))
    except Refused as refused:
        raise explain(refused) from None
    return reply or MessageReply(message.chat_header_id, ChatMessage.of(message))


async def require_member(ctx: Context, chat_id: int):
    chat, member = await ctx.services.store.get_chat_for_member(chat_id, ctx.user.id)
    if chat is None:
        raise NotFound("That chat does not exist.")
    if not member:
        raise Forbidden("You are not a member of this chat.")
    return chat


async def find_all_messages(ctx: Context, e: dto.FindAllMessages):
    await require_member(ctx, e.chat_header_id)
    items, total = await ctx.services.store.message_page(
        e.chat_header_id, e.last_message_id, e.skip_count, e.max_result_count)
    return Page([ChatMessage.of(m) for m in items], total)


async def update_message(ctx: Context, e: dto.UpdateMessage):
    # The author may have left the chat since; only members change it.
    await require_member(ctx, e.chat_header_id)
    store = ctx.services.store
    # The media check reads the store, so it runs before the update's transaction
    # (SQLite has one connection); the message's type is looked up for it first.
    existing = await store.get_message(e.id)
    if (existing is not None and existing.chat_header_id == e.chat_header_id
            and existing.user_id == ctx.user.id):
        await check_media(ctx, existing.message_type, e.message)

    async def decide(current, friendship_status):
        # Inside the transaction, on the locked row: no I/O here.
        if current.user_id != ctx.user.id:
            raise Forbidden("Only the author may edit a message.")
        if friendship_status == FriendshipStatus.BLOCKED:
            raise Forbidden("This conversation is blocked; messages cannot be edited.")
        if current.message_type != MessageType.TEXT:
            parse_media_path(e.message, current.message_type)

    async def committed(message, released):
        await ctx.services.rooms.to_chat(e.chat_header_id, "messageUpdated",
                                         ChatMessage.of(message))
        await ctx.services.media.forget_released(released)

    try:
        message = await store.update_message(
            e.id, e.chat_header_id, ctx.user.id, e.message, e.caption, ctx.clock.now_ms(),
            decide, after_commit=committed)
    except Refused as refused:
        raise explain(refused) from None
    return MessageReply(e.chat_header_id, ChatMessage.of(message))


async def remove_message(ctx: Context, e: dto.RemoveMessage):
    ids = e.target_ids
    if not ids:
        raise Validation("id or ids is required.")
    await require_member(ctx, e.chat_header_id)

    async def check(found):
        # All or none: each must be in the chat and the caller's own.
        missing = [i for i in ids if found.get(i, (None,))[0] != e.chat_header_id]
        if missing:
            raise NotFound(
                f"Message {missing[0]} does not exist in this chat; nothing was deleted.")
        foreign = [i for i in ids if found[i][1] != ctx.user.id]
        if foreign:
            raise Forbidden(
                f"Only the author may delete message {foreign[0]}; nothing was deleted.")

    async def committed(deleted, released):
        for message_id in deleted:
            await ctx.services.rooms.to_chat(e.chat_header_id, "messageDeleted",
                                             message_id)
        await ctx.services.media.forget_released(released)

    deleted = await ctx.services.store.delete_messages(
        e.chat_header_id, ids, check, after_commit=committed)
    return MessagesDeleted(e.chat_header_id, deleted)


async def read_message(ctx: Context, e: dto.ReadMessage):
    await require_member(ctx, e.chat_header_id)
    try:
        last_read = await ctx.services.store.mark_read(e.chat_header_id, ctx.user.id)
    except Refused as refused:
        raise explain(refused) from None
    await ctx.services.rooms.to_chat(e.chat_header_id, "messageHasBeenRead",
                                     e.chat_header_id)
    return ReadMarker(e.chat_header_id, last_read)
