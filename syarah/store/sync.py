"""The missed-message sync of findAllChatHeaders, and the records of deleted messages
that it reads.

A client names, per chat, the last message it holds. It has missed the messages after
that one, and the edits and deletions of the messages up to it made since that message
was written (its creation time, less a clock allowance). Every statement reads each
chat as index ranges of its own, limited per chat, so neither a long chat nor a client
that holds nothing (``LastMessageId`` 0) costs more than the rows sent.
"""

from __future__ import annotations

import time

from syarah import types
from syarah.store import rows
from syarah.store.rows import MESSAGE_COLUMNS

# Chats per statement: SQLite accepts at most 500 arms in one compound SELECT.
CHATS_PER_STATEMENT = 100
# Nodes stamp edits and deletions with their own clocks: an edit stamped up to this
# much before the client's last message was written is still sent (a message sent
# twice is harmless, one never sent is not).
CLOCK_ALLOWANCE_MS = 1000
# Records pruned per transaction, so that pruning never holds locks for long (and
# stays under SQLite's host-parameter limit).
PRUNE_BATCH = 500


async def _per_chat(txn, arm: str, args: list[tuple]) -> list[tuple]:
    """The rows of ``arm`` run once per chat with each of ``args``: one UNION ALL per
    CHATS_PER_STATEMENT chats, each arm in a derived table of its own (only there may
    it have its own ORDER BY and LIMIT, on both engines)."""
    found = []
    for i in range(0, len(args), CHATS_PER_STATEMENT):
        part = args[i:i + CHATS_PER_STATEMENT]
        sql = " UNION ALL ".join(f"SELECT * FROM ({arm}) AS arm{k}" for k in range(len(part)))
        found += await txn.fetchall(sql, *[v for one in part for v in one])
    return found


async def new_messages(txn, after: dict[int, int], limit: int) -> dict[int, list[types.Message]]:
    """For each chat id in ``after``, up to ``limit`` messages after the given id, oldest
    first: per chat a range of (chat_header_id, id) that stops at ``limit`` rows."""
    out: dict[int, list[types.Message]] = {chat_id: [] for chat_id in after}
    arm = (f"SELECT {MESSAGE_COLUMNS} FROM messages m{txn.engine.use_index('ix_messages_chat')}"
           " LEFT JOIN users u ON u.id = m.user_id"
           " WHERE m.chat_header_id = ? AND m.id > ? ORDER BY m.id LIMIT ?")
    for r in await _per_chat(txn, arm, [(c, last, limit) for c, last in after.items()]):
        out[r[1]].append(rows.message(r))
    for messages in out.values():
        messages.sort(key=lambda m: m.id)
    return out


async def record_deletions(txn, ids: list[int]) -> None:
    """Leave a record of each message about to be deleted, in the deleting transaction."""
    await txn.execute(
        "INSERT INTO deleted_messages (message_id, chat_header_id, creation_ms, deletion_ms)"
        " SELECT id, chat_header_id, creation_ms, ? FROM messages"
        f" WHERE id IN ({rows.in_list(ids)})", int(time.time() * 1000), *ids)


async def _since(txn, upto: dict[int, int]) -> dict[int, tuple[int, int | None]]:
    """Per chat: the moment from which its edits and deletions are sent, and the newest
    deletion time whose records were pruned (None: none ever were).

    The moment is the creation time of the client's last message: of the message
    itself, or of its deletion record, or else of the newest message before it that
    still exists (earlier, so nothing is missed)."""
    arm = ("SELECT ? AS chat_id,"
           f" (SELECT m.creation_ms FROM messages m{txn.engine.use_index('ix_messages_chat')}"
           "   WHERE m.chat_header_id = ? AND m.id <= ? ORDER BY m.id DESC LIMIT 1) AS kept,"
           " (SELECT d.creation_ms FROM deleted_messages d"
           "   WHERE d.message_id = ? AND d.chat_header_id = ?) AS deleted,"
           " (SELECT ch.deletions_pruned_ms FROM chat_headers ch WHERE ch.id = ?) AS pruned")
    args = [(c, c, last, last, c, c) for c, last in upto.items()]
    out = {}
    for chat_id, kept, deleted, pruned in await _per_chat(txn, arm, args):
        since = max(kept or 0, deleted or 0)
        out[int(chat_id)] = (max(0, since - CLOCK_ALLOWANCE_MS) if since else 0, pruned)
    return out


async def _updated(txn, upto, since, limit) -> dict[int, list[types.Message]]:
    out: dict[int, list[types.Message]] = {chat_id: [] for chat_id in upto}
    # The range is the chat's edits since the moment, never the (chat_header_id, id)
    # index, which would read every message up to the client's.
    arm = (f"SELECT {MESSAGE_COLUMNS} FROM messages m"
           f"{txn.engine.use_index('ix_messages_edited')}"
           " LEFT JOIN users u ON u.id = m.user_id"
           " WHERE m.chat_header_id = ? AND m.last_modification_ms >= ? AND m.id <= ?"
           " ORDER BY m.last_modification_ms, m.id LIMIT ?")
    args = [(c, since[c], last, limit) for c, last in upto.items()]
    for r in await _per_chat(txn, arm, args):
        out[r[1]].append(rows.message(r))
    return out


async def _deleted(txn, upto, since, limit) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {chat_id: [] for chat_id in upto}
    arm = ("SELECT d.chat_header_id, d.message_id FROM deleted_messages d"
           f"{txn.engine.use_index('ix_deleted_messages_chat')}"
           " WHERE d.chat_header_id = ? AND d.deletion_ms >= ? AND d.message_id <= ?"
           " ORDER BY d.deletion_ms, d.message_id LIMIT ?")
    args = [(c, since[c], last, limit) for c, last in upto.items()]
    for chat_id, message_id in await _per_chat(txn, arm, args):
        out[chat_id].append(message_id)
    return out


async def read_sync(txn, after: dict[int, int], limit: int) -> dict[int, types.ChatSync]:
    """What a client holding each chat of ``after`` up to the given message id has
    missed; each list at most ``limit`` long."""
    # One more than is sent tells whether more were left out.
    new = await new_messages(txn, after, limit + 1)
    upto = {chat_id: last for chat_id, last in after.items() if last > 0}
    updated, deleted, since = {}, {}, {}
    if upto:
        since = await _since(txn, upto)
        moments = {chat_id: since[chat_id][0] for chat_id in upto}
        updated = await _updated(txn, upto, moments, limit + 1)
        deleted = await _deleted(txn, upto, moments, limit + 1)
    out = {}
    for chat_id in after:
        edits = updated.get(chat_id, [])
        gone = deleted.get(chat_id, [])
        moment, pruned = since.get(chat_id, (0, None))
        out[chat_id] = types.ChatSync(
            new_messages=new[chat_id][:limit],
            more_new_messages=len(new[chat_id]) > limit,
            updated_messages=sorted(edits[:limit], key=lambda m: m.id),
            more_updated_messages=len(edits) > limit,
            deleted_message_ids=sorted(gone[:limit]),
            more_deleted_message_ids=len(gone) > limit or (
                chat_id in upto and pruned is not None and pruned >= moment))
    return out


class SyncStore:
    db = None

    async def sync_chats(self, after: dict[int, int], limit: int) -> dict[int, types.ChatSync]:
        """read_sync in one transaction: the lists agree with each other."""
        if not after:
            return {}
        return await self.db.run(read_sync, after, limit)

    async def prune_deleted_messages(self, before_ms: int) -> int:
        """Drop the records of messages deleted before ``before_ms``, noting per chat the
        newest deletion time dropped. Returns how many were dropped."""
        async def txn_fn(txn):
            found = await txn.fetchall(
                "SELECT message_id, chat_header_id FROM deleted_messages"
                f"{txn.engine.use_index('ix_deleted_messages_time')}"
                " WHERE deletion_ms < ? ORDER BY deletion_ms LIMIT ?", before_ms, PRUNE_BATCH)
            if not found:
                return 0
            chats = sorted({r[1] for r in found})
            await txn.execute(
                "UPDATE chat_headers SET deletions_pruned_ms = (SELECT MAX(d.deletion_ms)"
                " FROM deleted_messages d WHERE d.chat_header_id = chat_headers.id"
                f" AND d.deletion_ms < ?) WHERE id IN ({rows.in_list(chats)})",
                before_ms, *chats)
            ids = [r[0] for r in found]
            await txn.execute(
                f"DELETE FROM deleted_messages WHERE message_id IN ({rows.in_list(ids)})", *ids)
            return len(found)

        total = 0
        while True:
            dropped = await self.db.run(txn_fn)
            total += dropped
            if dropped < PRUNE_BATCH:
                return total
