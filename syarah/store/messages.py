from __future__ import annotations

from syarah import types
from syarah.errors import Forbidden, NotFound
from syarah.store import rows, sync
from syarah.store.rows import MESSAGE_COLUMNS, MESSAGE_WIDTH
from syarah.types import FriendshipStatus

_SELECT = f"SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.user_id"


class _Refused(Exception):
    """The author may not write to the chat; the reason is looked up afterwards."""


def _paged(engine) -> str:
    """_SELECT for keyset pages of one chat: a range on (chat_header_id, id)."""
    return (f"SELECT {MESSAGE_COLUMNS} FROM messages m{engine.use_index('ix_messages_chat')}"
            " LEFT JOIN users u ON u.id = m.user_id")


class Duplicate(Exception):
    """The author already sent a message with this clientMessageId."""

    def __init__(self, existing: types.Message):
        self.existing = existing


class MessageStore:
    db = None

    async def add_message(self, chat_id: int, author: types.User, text: str,
                          message_type: int, caption: str | None,
                          client_message_id: str | None, now_ms: int,
                          after_insert=None) -> types.Message:
        """Store a message and make it the chat's last message, in one transaction.

        The insert only happens when the author is a member and the individual chat is
        not blocked, so the message path needs no separate membership query.
        ``after_insert(txn, message)`` runs in the same transaction (the push outbox).
        Raises Duplicate for a repeated clientMessageId.
        """
        engine = self.db.engine

        async def txn_fn(txn):
            # The chat's row is locked first: concurrent senders to one chat then
            # queue here instead of each taking a shared lock through the insert's
            # checks and deadlocking on the header update that follows.
            locked = await txn.execute(
                "UPDATE chat_headers SET last_message_ms = ?, activity_ms = ?,"
                " message_count = message_count + 1 WHERE id = ?", now_ms, now_ms, chat_id)
            if locked.rowcount == 0:
                raise NotFound("That chat does not exist.")
            result = await txn.execute(
                "INSERT INTO messages (chat_header_id, user_id, message, message_type,"
                " caption, client_message_id, creation_ms)"
                " SELECT ?, ?, ?, ?, ?, ?, ? FROM chat_members cm"
                " WHERE cm.chat_header_id = ? AND cm.user_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM chat_headers ch JOIN friendships f"
                "   ON f.user_id = ch.user_low AND f.other_user_id = ch.user_high"
                "   WHERE ch.id = cm.chat_header_id AND f.status = 3)",
                chat_id, author.id, text, message_type, caption, client_message_id,
                now_ms, chat_id, author.id)
            if result.rowcount == 0:
                raise _Refused()   # rolls the header update back
            message = types.Message(
                id=result.lastrowid, chat_header_id=chat_id, user_id=author.id,
                message=text, message_type=message_type, caption=caption,
                creation_ms=now_ms, last_modification_ms=None,
                client_message_id=client_message_id, author=author)
            await txn.execute(
                "UPDATE chat_headers SET last_message_id = ? WHERE id = ?",
                message.id, chat_id)
            if after_insert is not None:
                await after_insert(txn, message)
            return message

        try:
            return await self.db.run(txn_fn)
        except _Refused:
            await self._explain_refused_insert(chat_id, author.id)
        except Exception as exc:
            if client_message_id is not None and engine.is_unique_violation(exc):
                existing = await self.get_message_by_client_id(author.id, client_message_id)
                if existing is not None:
                    raise Duplicate(existing) from None
            raise

    async def _explain_refused_insert(self, chat_id: int, user_id: str):
        row = await self.db.fetchone(
            "SELECT ch.id, cm.user_id, f.status FROM chat_headers ch"
            " LEFT JOIN chat_members cm ON cm.chat_header_id = ch.id AND cm.user_id = ?"
            " LEFT JOIN friendships f ON f.user_id = ch.user_low"
            "  AND f.other_user_id = ch.user_high WHERE ch.id = ?", user_id, chat_id)
        if row is None:
            raise NotFound("That chat does not exist.")
        if row[1] is None:
            raise Forbidden("You are not a member of this chat.")
        raise Forbidden("This conversation is blocked; messages cannot be sent.")

    async def get_message(self, message_id: int) -> types.Message | None:
        row = await self.db.fetchone(_SELECT + " WHERE m.id = ?", message_id)
        return rows.message(row) if row else None

    async def get_message_by_client_id(self, user_id: str, client_message_id: str):
        row = await self.db.fetchone(
            _SELECT + " WHERE m.user_id = ? AND m.client_message_id = ?",
            user_id, client_message_id)
        return rows.message(row) if row else None

    async def message_page(self, chat_id: int, before_id: int | None, skip: int,
                           limit: int) -> tuple[list[types.Message], int]:
        """Newest first; with ``before_id`` only older messages (keyset paging on the
        (chat_header_id, id) index). Returns the page and the chat's message count."""
        async def txn_fn(txn):
            found = await txn.fetchall(
                _paged(self.db.engine) + " WHERE m.chat_header_id = ? AND m.id < ?"
                " ORDER BY m.id DESC LIMIT ? OFFSET ?",
                chat_id, before_id or rows_max_id(), limit, skip)
            total = await txn.fetchone(
                "SELECT message_count FROM chat_headers WHERE id = ?", chat_id)
            return [rows.message(r) for r in found], (total[0] if total else 0)
        return await self.db.run(txn_fn)

    async def update_message(self, message_id: int, chat_id: int, user_id: str,
                             text: str, caption: str | None, now_ms: int,
                             check=None, after_update=None) -> types.Message:
        """Change a message's text and caption; only its author may.

        ``check(message)`` may refuse the change (media paths) before anything is
        written; ``after_update(txn, message, previous_text)`` runs in the same
        transaction.
        """
        async def txn_fn(txn):
            # The friendship of an individual chat comes along: no extra round trip.
            row = await txn.fetchone(
                f"SELECT {MESSAGE_COLUMNS}, f.status FROM messages m"
                " LEFT JOIN users u ON u.id = m.user_id"
                " JOIN chat_headers ch ON ch.id = m.chat_header_id"
                " LEFT JOIN friendships f ON f.user_id = ch.user_low"
                "  AND f.other_user_id = ch.user_high"
                " WHERE m.id = ?", message_id)
            if row is None or row[1] != chat_id:
                raise NotFound("That message does not exist in this chat.")
            message = rows.message(row)
            if message.user_id != user_id:
                raise Forbidden("Only the author may edit a message.")
            if row[MESSAGE_WIDTH] == FriendshipStatus.BLOCKED:
                raise Forbidden("This conversation is blocked; messages cannot be edited.")
            if check is not None:
                await check(message)
            new_caption = caption if caption is not None else message.caption
            await txn.execute(
                "UPDATE messages SET message = ?, caption = ?, last_modification_ms = ?"
                " WHERE id = ?", text, new_caption, now_ms, message_id)
            previous = message.message
            message.message, message.caption = text, new_caption
            message.last_modification_ms = now_ms
            if after_update is not None:
                await after_update(txn, message, previous)
            return message
        return await self.db.run(txn_fn)

    async def delete_messages(self, chat_id: int, user_id: str, ids: list[int],
                              after_delete=None) -> list[int]:
        """Delete all of ``ids`` or none: each must be in the chat and the user's own.

        ``after_delete(txn, paths)`` runs in the same transaction with the upload paths
        that the deleted media messages carried (one entry per message).
        """
        async def txn_fn(txn):
            # Header first, as add_message does, so the two never lock in opposite
            # orders; a refusal below rolls the count back.
            await txn.execute(
                "UPDATE chat_headers SET message_count = message_count - ? WHERE id = ?",
                len(ids), chat_id)
            found = await txn.fetchall(
                "SELECT id, chat_header_id, user_id,"
                " CASE WHEN message_type <> 0 THEN message END FROM messages"
                f" WHERE id IN ({rows.in_list(ids)})", *ids)
            by_id = {r[0]: r for r in found}
            missing = [i for i in ids if i not in by_id or by_id[i][1] != chat_id]
            if missing:
                raise NotFound(
                    f"Message {missing[0]} does not exist in this chat; nothing was deleted.")
            foreign = [i for i in ids if by_id[i][2] != user_id]
            if foreign:
                raise Forbidden(
                    f"Only the author may delete message {foreign[0]}; nothing was deleted.")
            # The record that outlives the rows tells clients that held them.
            await sync.record_deletions(txn, ids)
            await txn.execute(
                f"DELETE FROM messages WHERE id IN ({rows.in_list(ids)})", *ids)
            # The header's last message may be among them: point it at what is left.
            last = await txn.fetchone(
                "SELECT id, creation_ms FROM messages WHERE chat_header_id = ?"
                " ORDER BY id DESC LIMIT 1", chat_id)
            await txn.execute(
                "UPDATE chat_headers SET last_message_id = ?, last_message_ms = ?,"
                " activity_ms = COALESCE(?, creation_ms) WHERE id = ?",
                last[0] if last else None, last[1] if last else None,
                last[1] if last else None, chat_id)
            if after_delete is not None:
                paths = [by_id[i][3] for i in ids if by_id[i][3] is not None]
                if paths:
                    await after_delete(txn, paths)
            return ids
        return await self.db.run(txn_fn)

    async def mark_read(self, chat_id: int, user_id: str) -> int:
        """Move the member's read marker to the chat's last message (never back)."""
        async def txn_fn(txn):
            row = await txn.fetchone(
                "SELECT ch.last_message_id, cm.last_read_message_id FROM chat_headers ch"
                " JOIN chat_members cm ON cm.chat_header_id = ch.id AND cm.user_id = ?"
                " WHERE ch.id = ?", user_id, chat_id)
            if row is None:
                raise Forbidden("You are not a member of this chat.")
            last_read = max(row[0] or 0, row[1] or 0)
            if last_read != row[1]:
                await txn.execute(
                    "UPDATE chat_members SET last_read_message_id = ?"
                    " WHERE chat_header_id = ? AND user_id = ?", last_read, chat_id, user_id)
            return last_read
        return await self.db.run(txn_fn)


def rows_max_id() -> int:
    # Above any id either engine will hand out: "no upper bound" for keyset paging.
    return 2**63 - 1
