from __future__ import annotations

from syarah import types
from syarah.store import rows, sync
from syarah.store.rows import MESSAGE_COLUMNS, MESSAGE_WIDTH
from syarah.types import FriendshipStatus, MessageType

_SELECT = f"SELECT {MESSAGE_COLUMNS} FROM messages m LEFT JOIN users u ON u.id = m.user_id"


class Refused(Exception):
    """Nothing was written; ``reason`` names the fact that stopped it, for the handler
    to explain: ``no_chat``, ``not_member``, ``blocked``, ``no_message`` (not in that
    chat, or gone), ``upload_gone`` (not the author's upload, or swept meanwhile)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _NotInserted(Exception):
    """The insert's conditions failed; which one is looked up afterwards."""


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
                          client_message_id: str | None, now_ms: int, *,
                          upload: str | None = None, pushes=(),
                          after_commit=None) -> types.Message:
        """Store a message and make it the chat's last message, in one transaction.

        The insert only happens when the author is a member and the individual chat is
        not blocked (else Refused), so the message path needs no separate membership
        query. In the same transaction: ``upload``, the author's upload the message
        carries, counts one message more (Refused ``upload_gone`` when it cannot), and
        the ``(user_id, token)`` rows of ``pushes`` join the push outbox.
        ``after_commit(message)`` runs once the message is committed. Raises Duplicate
        for a repeated clientMessageId.
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
                raise Refused("no_chat")
            result = await txn.execute(
                "INSERT INTO messages (chat_header_id, user_id, message, message_type,"
                " caption, client_message_id, creation_ms)"
                " SELECT ?, ?, ?, ?, ?, ?, ? FROM chat_members cm"
                " WHERE cm.chat_header_id = ? AND cm.user_id = ?"
                " AND NOT EXISTS (SELECT 1 FROM chat_headers ch JOIN friendships f"
                "   ON f.user_id = ch.user_low AND f.other_user_id = ch.user_high"
                "   WHERE ch.id = cm.chat_header_id AND f.status = ?)",
                chat_id, author.id, text, message_type, caption, client_message_id,
                now_ms, chat_id, author.id, int(FriendshipStatus.BLOCKED))
            if result.rowcount == 0:
                raise _NotInserted()   # rolls the header update back
            message = types.Message(
                id=result.lastrowid, chat_header_id=chat_id, user_id=author.id,
                message=text, message_type=message_type, caption=caption,
                creation_ms=now_ms, last_modification_ms=None,
                client_message_id=client_message_id, author=author)
            await txn.execute(
                "UPDATE chat_headers SET last_message_id = ? WHERE id = ?",
                message.id, chat_id)
            if upload is not None and not await self.use_upload(
                    txn, upload, author.id, now_ms):
                raise Refused("upload_gone")
            await self.add_pushes(txn, message, pushes, now_ms)
            if after_commit is not None:
                txn.call_after(after_commit, message)
            return message

        try:
            return await self.db.run(txn_fn)
        except _NotInserted:
            raise Refused(await self._why_not_inserted(chat_id, author.id)) from None
        except Exception as exc:
            if client_message_id is not None and engine.is_unique_violation(exc):
                existing = await self.get_message_by_client_id(author.id, client_message_id)
                if existing is not None:
                    raise Duplicate(existing) from None
            raise

    async def _why_not_inserted(self, chat_id: int, user_id: str) -> str:
        row = await self.db.fetchone(
            "SELECT ch.id, cm.user_id, f.status FROM chat_headers ch"
            " LEFT JOIN chat_members cm ON cm.chat_header_id = ch.id AND cm.user_id = ?"
            " LEFT JOIN friendships f ON f.user_id = ch.user_low"
            "  AND f.other_user_id = ch.user_high WHERE ch.id = ?", user_id, chat_id)
        if row is None:
            return "no_chat"
        if row[1] is None:
            return "not_member"
        return "blocked"

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
                             text: str, caption: str | None, now_ms: int, decide,
                             after_commit=None) -> types.Message:
        """Change a message's text and caption, in one transaction.

        The message is read under a row lock, so a concurrent removeMessage waits for
        this change (or this one finds the message gone: Refused ``no_message``).
        ``decide(message, friendship_status)`` may refuse the change (by raising)
        before anything is written; the status is that of an individual chat's pair.
        A media message given another path carries the author's new upload (Refused
        ``upload_gone`` when it cannot) and releases the old one;
        ``after_commit(message, released_paths)`` runs once the change is committed.
        """
        async def txn_fn(txn):
            # The friendship of an individual chat comes along: no extra round trip.
            row = await txn.fetchone(
                f"SELECT {MESSAGE_COLUMNS}, f.status FROM messages m"
                " LEFT JOIN users u ON u.id = m.user_id"
                " JOIN chat_headers ch ON ch.id = m.chat_header_id"
                " LEFT JOIN friendships f ON f.user_id = ch.user_low"
                "  AND f.other_user_id = ch.user_high"
                " WHERE m.id = ?" + self.db.engine.for_update, message_id)
            if row is None or row[1] != chat_id:
                raise Refused("no_message")
            message = rows.message(row)
            await decide(message, row[MESSAGE_WIDTH])
            new_caption = caption if caption is not None else message.caption
            # MariaDB counts changed rows, not matched ones: a modification time that
            # always moves on makes the count say whether the message was there.
            modified = max(now_ms, (message.last_modification_ms or 0) + 1)
            result = await txn.execute(
                "UPDATE messages SET message = ?, caption = ?, last_modification_ms = ?"
                " WHERE id = ?", text, new_caption, modified, message_id)
            if result.rowcount != 1:
                raise Refused("no_message")
            released = []
            if message.message_type != MessageType.TEXT and text != message.message:
                # Another file: the new one is carried, the old one released.
                if not await self.use_upload(txn, text, user_id, now_ms):
                    raise Refused("upload_gone")
                await self.release_upload(txn, message.message)
                released.append(message.message)
            message.message, message.caption = text, new_caption
            message.last_modification_ms = modified
            if after_commit is not None:
                txn.call_after(after_commit, message, released)
            return message
        return await self.db.run(txn_fn)

    async def delete_messages(self, chat_id: int, ids: list[int], check,
                              after_commit=None) -> list[int]:
        """Delete all of ``ids`` or none, in one transaction.

        ``check(found)`` may refuse (by raising) before anything is deleted; ``found``
        maps each id that exists to its (chat_header_id, user_id), read under a row
        lock so that a concurrent updateMessage cannot change them meanwhile. Each
        deleted media message releases its upload; ``after_commit(ids, paths)`` runs
        once the deletion is committed, with the upload paths released (one entry
        per message).
        """
        async def txn_fn(txn):
            # Header first, as add_message does, so the two never lock in opposite
            # orders; a refusal below rolls the count back.
            await txn.execute(
                "UPDATE chat_headers SET message_count = message_count - ? WHERE id = ?",
                len(ids), chat_id)
            found = await txn.fetchall(
                "SELECT id, chat_header_id, user_id,"
                " CASE WHEN message_type <> ? THEN message END FROM messages"
                f" WHERE id IN ({rows.in_list(ids)})" + self.db.engine.for_update,
                int(MessageType.TEXT), *ids)
            by_id = {r[0]: r for r in found}
            await check({i: (r[1], r[2]) for i, r in by_id.items()})
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
            paths = [by_id[i][3] for i in ids if by_id[i][3] is not None]
            for path in paths:
                await self.release_upload(txn, path)
            if after_commit is not None:
                txn.call_after(after_commit, ids, paths)
            return ids
        return await self.db.run(txn_fn)

    async def mark_read(self, chat_id: int, user_id: str) -> int:
        """Move the member's read marker to the chat's last message (never back).
        Refused ``not_member`` when the user is not a member of the chat."""
        async def txn_fn(txn):
            row = await txn.fetchone(
                "SELECT ch.last_message_id, cm.last_read_message_id FROM chat_headers ch"
                " JOIN chat_members cm ON cm.chat_header_id = ch.id AND cm.user_id = ?"
                " WHERE ch.id = ?", user_id, chat_id)
            if row is None:
                raise Refused("not_member")
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
