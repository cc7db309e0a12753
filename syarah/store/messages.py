from __future__ import annotations

from syarah import types
from syarah.clock import SYSTEM
from syarah.store import rows, sync
from syarah.store.batch import Duplicate, MessageBatcher, NewMessage, Refused
from syarah.store.rows import MESSAGE_COLUMNS, MESSAGE_WIDTH
from syarah.types import MessageType

_SELECT = rows.MESSAGE_SELECT


def _paged(engine) -> str:
    """_SELECT for keyset pages of one chat: a range on (chat_header_id, id)."""
    return (f"SELECT {MESSAGE_COLUMNS} FROM messages m{engine.use_index('ix_messages_chat')}"
            " LEFT JOIN users u ON u.id = m.user_id")


class MessageStore:
    db = None

    batcher: MessageBatcher | None = None

    def configure_batches(self, *, max_size: int = 64, in_flight: int = 1,
                          busy_after_ms: int = 2000, clock=SYSTEM) -> None:
        """How new messages are grouped into transactions (see syarah.store.batch)."""
        if not self.db.engine.concurrent_writers:
            in_flight = 1
        self.batcher = MessageBatcher(self, max_size=max_size, in_flight=in_flight,
                                      busy_after_ms=busy_after_ms, clock=clock)

    async def add_message(self, chat_id: int, author: types.User, text: str,
                          message_type: int, caption: str | None,
                          client_message_id: str | None, now_ms: int, *,
                          upload: str | None = None, pushes=(),
                          after_commit=None) -> types.Message:
        """Store a message and make it the chat's last message, committed together
        with the other messages that arrive meanwhile (syarah.store.batch).

        Stored only when the author is a member and the individual chat is not
        blocked (else Refused). In the same transaction: ``upload``, the author's
        upload the message carries, counts one message more (Refused ``upload_gone``
        when it cannot), and the ``(user_id, token)`` rows of ``pushes`` join the push
        outbox. ``after_commit(message)`` runs once the message is committed, before
        this returns. Raises Duplicate for a repeated clientMessageId, and
        Unavailable, with nothing stored, when the store is down or too busy.
        """
        if self.batcher is None:
            self.configure_batches()
        return await self.batcher.add(NewMessage(
            chat_id, author, text, message_type, caption, client_message_id, now_ms,
            upload=upload, pushes=pushes, after_commit=after_commit))

    async def get_message(self, message_id: int) -> types.Message | None:
        row = await self.db.fetchone(_SELECT + " WHERE m.id = ?", message_id)
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
        return await self.db.read(txn_fn)

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
            # Those of them a member had not read, and did not write, are unread no
            # more; read while they are still there.
            await txn.execute(
                "UPDATE chat_members SET unread_count = unread_count - (SELECT COUNT(*)"
                f" FROM messages m WHERE m.id IN ({rows.in_list(ids)})"
                " AND m.chat_header_id = chat_members.chat_header_id"
                " AND m.id > chat_members.last_read_message_id"
                " AND m.user_id <> chat_members.user_id) WHERE chat_header_id = ?",
                *ids, chat_id)
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
            # Locked, as the writers of the chat's messages lock it: no message
            # arrives between reading the last one and counting nothing unread.
            row = await txn.fetchone(
                "SELECT ch.last_message_id, cm.last_read_message_id, cm.unread_count"
                " FROM chat_headers ch"
                " JOIN chat_members cm ON cm.chat_header_id = ch.id AND cm.user_id = ?"
                " WHERE ch.id = ?" + self.db.engine.for_update, user_id, chat_id)
            if row is None:
                raise Refused("not_member")
            last_read = max(row[0] or 0, row[1] or 0)
            if last_read != row[1] or row[2] != 0:
                await txn.execute(
                    "UPDATE chat_members SET last_read_message_id = ?, unread_count = 0"
                    " WHERE chat_header_id = ? AND user_id = ?", last_read, chat_id, user_id)
            return last_read
        return await self.db.run(txn_fn)


def rows_max_id() -> int:
    # Above any id either engine will hand out: "no upper bound" for keyset paging.
    return 2**63 - 1
