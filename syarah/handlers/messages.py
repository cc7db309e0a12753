"""createMessage, findAllMessages, updateMessage, removeMessage, readMessage."""

from __future__ import annotations

from syarah.errors import Forbidden, NotFound, Validation
from syarah.handlers.context import Context
from syarah.protocol import inbound as dto
from syarah.protocol.media import parse_media_path
from syarah.protocol.outbound import ChatMessage, MessageReply, Page, to_wire
from syarah.store import Duplicate
from syarah.types import MessageType


async def check_media(ctx: Context, message_type: int, path: str) -> None:
    if message_type == MessageType.TEXT:
        return
    if ctx.services.media is None:
        parse_media_path(path, message_type)
    else:
        # Shape, file, record and owner: the path's shape is checked there first.
        await ctx.services.media.check_message_path(ctx.user.id, message_type, path)


def in_transaction(*hooks):
    """One ``(txn, message)`` hook running each given hook in turn (None: skipped)."""
    hooks = [h for h in hooks if h is not None]
    if not hooks:
        return None

    async def run_all(txn, message):
        for hook in hooks:
            await hook(txn, message)
    return run_all


def media_hook(ctx: Context, message_type: int, path: str):
    """Marks the upload as used in the message's own transaction (so the orphan sweep
    keeps it); refuses the message when the sweep removed it meanwhile."""
    media = ctx.services.media
    if message_type == MessageType.TEXT or media is None:
        return None
    return media.use_in_message(ctx.user.id, path)


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
    after_insert = in_transaction(
        push.outbox_writer(ctx) if push is not None else None,
        media_hook(ctx, e.message_type, e.message))
    try:
        message = await ctx.services.store.add_message(
            e.chat_header_id, ctx.user, e.message, e.message_type, e.caption,
            e.client_message_id, ctx.now_ms(), after_insert=after_insert)
    except Duplicate as dup:
        # A retry of a message that was stored: answer as the first time, but the
        # room already has it, so nothing is broadcast again.
        return MessageReply(dup.existing.chat_header_id, ChatMessage.of(dup.existing))
    # Serialised once for the broadcast and the ack alike.
    reply = to_wire(MessageReply(message.chat_header_id, ChatMessage.of(message)))
    await ctx.services.rooms.to_chat(message.chat_header_id, "message", reply)
    if push is not None:
        push.wake()
    return reply


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

    async def check(current):
        # Shape only, no I/O: inside the transaction.
        if current.message_type != MessageType.TEXT:
            parse_media_path(e.message, current.message_type)

    media = ctx.services.media
    release = media.releaser() if media is not None else None

    async def after_update(txn, message, previous):
        if message.message_type == MessageType.TEXT or previous == message.message:
            return
        # Another file: the new one is carried, the old one released.
        await media_hook(ctx, message.message_type, message.message)(txn, message)
        await release.in_transaction(txn, [previous])

    message = await store.update_message(
        e.id, e.chat_header_id, ctx.user.id, e.message, e.caption, ctx.now_ms(), check=check,
        after_update=after_update if media is not None else None)
    chat_message = ChatMessage.of(message)
    await ctx.services.rooms.to_chat(e.chat_header_id, "messageUpdated", chat_message)
    if release is not None:
        await release.after_commit()
    return MessageReply(e.chat_header_id, chat_message)


async def remove_message(ctx: Context, e: dto.RemoveMessage):
    ids = e.target_ids
    if not ids:
        raise Validation("id or ids is required.")
    await require_member(ctx, e.chat_header_id)
    media = ctx.services.media
    release = media.releaser() if media is not None else None
    deleted = await ctx.services.store.delete_messages(
        e.chat_header_id, ctx.user.id, ids,
        after_delete=release.in_transaction if release is not None else None)
    for message_id in deleted:
        await ctx.services.rooms.to_chat(e.chat_header_id, "messageDeleted", message_id)
    if release is not None:
        await release.after_commit()
    return {"chatHeaderId": e.chat_header_id, "deletedIds": deleted}


async def read_message(ctx: Context, e: dto.ReadMessage):
    await require_member(ctx, e.chat_header_id)
    last_read = await ctx.services.store.mark_read(e.chat_header_id, ctx.user.id)
    await ctx.services.rooms.to_chat(e.chat_header_id, "messageHasBeenRead",
                                     e.chat_header_id)
    return {"chatHeaderId": e.chat_header_id, "lastReadMessageId": last_read}
