from __future__ import annotations

from syarah import types
from syarah.types import FriendshipStatus
from syarah.errors import NotFound
from syarah.store import rows
from syarah.store.rows import CHAT_COLUMNS, CHAT_WIDTH, MESSAGE_COLUMNS, MESSAGE_WIDTH


# A member's unread count from the messages themselves, for members who arrive in a
# chat that already has messages (a group member's marker starts at 0).
_RECOUNT_UNREAD = (
    "UPDATE chat_members SET unread_count = (SELECT COUNT(*) FROM messages m"
    " WHERE m.chat_header_id = chat_members.chat_header_id"
    " AND m.id > chat_members.last_read_message_id"
    " AND m.user_id <> chat_members.user_id)"
    " WHERE chat_header_id = ? AND user_id IN ({})")


def pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


class ChatStore:
    db = None

    async def get_chat_for_member(self, chat_id: int, user_id: str):
        """The chat and whether ``user_id`` is one of its members, in one query."""
        row = await self.db.fetchone(
            f"SELECT {CHAT_COLUMNS}, cm.user_id FROM chat_headers ch"
            " LEFT JOIN chat_members cm ON cm.chat_header_id = ch.id AND cm.user_id = ?"
            " WHERE ch.id = ?", user_id, chat_id)
        if row is None:
            return None, False
        return rows.chat(row), row[CHAT_WIDTH] is not None

    async def member_of(self, user_id: str, chat_ids: list[int]) -> list[int]:
        """Those of ``chat_ids`` that ``user_id`` is a member of, in the given order."""
        if not chat_ids:
            return []
        marks = ", ".join("?" * len(chat_ids))
        found = await self.db.fetchall(
            f"SELECT chat_header_id FROM chat_members WHERE user_id = ?"
            f" AND chat_header_id IN ({marks})", user_id, *chat_ids)
        members = {r[0] for r in found}
        return [c for c in chat_ids if c in members]

    async def get_or_create_individual_chat(self, a: str, b: str, now_ms: int) -> types.Chat:
        low, high = pair(a, b)
        engine = self.db.engine

        async def txn_fn(txn):
            # The unique (user_low, user_high) key settles a race between two callers:
            # the second insert is ignored and both read the same row back.
            await txn.execute(engine.insert_or_ignore(
                "INSERT INTO chat_headers (is_group, user_low, user_high, creation_ms,"
                " activity_ms) VALUES (0, ?, ?, ?, ?)"), low, high, now_ms, now_ms)
            row = await txn.fetchone(
                f"SELECT {CHAT_COLUMNS} FROM chat_headers ch"
                " WHERE ch.user_low = ? AND ch.user_high = ?", low, high)
            chat = rows.chat(row)
            # Both rows go in with the chat and no event removes either, so the
            # chat's messages are counted as they come (a group's member can join
            # late: add_members counts for them).
            await txn.executemany(engine.insert_or_ignore(
                "INSERT INTO chat_members (chat_header_id, user_id, joined_ms)"
                " VALUES (?, ?, ?)"), [(chat.id, low, now_ms), (chat.id, high, now_ms)])
            return chat

        return await self.db.run(txn_fn)

    async def create_group(self, name: str, avatar: str | None, creator_id: str,
                           member_ids: list[str], now_ms: int) -> types.Chat:
        members = list(dict.fromkeys([creator_id] + list(member_ids)))

        async def txn_fn(txn):
            result = await txn.execute(
                "INSERT INTO chat_headers (is_group, name, avatar, creator_id, creation_ms,"
                " activity_ms) VALUES (1, ?, ?, ?, ?, ?)",
                name, avatar, creator_id, now_ms, now_ms)
            chat_id = result.lastrowid
            await txn.executemany(
                "INSERT INTO chat_members (chat_header_id, user_id, joined_ms)"
                " VALUES (?, ?, ?)", [(chat_id, m, now_ms) for m in members])
            row = await txn.fetchone(
                f"SELECT {CHAT_COLUMNS} FROM chat_headers ch WHERE ch.id = ?", chat_id)
            return rows.chat(row)

        return await self.db.run(txn_fn)

    async def add_members(self, chat_id: int, user_ids: list[str], now_ms: int) -> list[str]:
        """Add users to a chat; returns those who were not members before."""
        async def txn_fn(txn):
            if not user_ids:
                return []
            # The chat's lock first, as every writer of its messages takes it: the new
            # members' unread counts are of the messages stored when it is held (a
            # locking read sees the last one committed, not the snapshot).
            locked = await txn.fetchone(
                "SELECT last_message_id FROM chat_headers WHERE id = ?"
                + txn.engine.for_update, chat_id)
            present = await txn.fetchall(
                "SELECT user_id FROM chat_members WHERE chat_header_id = ?"
                f" AND user_id IN ({rows.in_list(user_ids)})", chat_id, *user_ids)
            have = {r[0] for r in present}
            new = [u for u in user_ids if u not in have]
            if new:
                await txn.executemany(
                    "INSERT INTO chat_members (chat_header_id, user_id, joined_ms)"
                    " VALUES (?, ?, ?)", [(chat_id, u, now_ms) for u in new])
                if locked and locked[0] is not None:
                    await txn.execute(_RECOUNT_UNREAD.format(rows.in_list(new)),
                                      chat_id, *new)
            return new

        return await self.db.run(txn_fn)

    async def remove_member(self, chat_id: int, user_id: str) -> bool:
        result = await self.db.execute(
            "DELETE FROM chat_members WHERE chat_header_id = ? AND user_id = ?",
            chat_id, user_id)
        return result.rowcount > 0

    async def get_members(self, chat_ids) -> dict[int, list[types.Member]]:
        ids = list(dict.fromkeys(chat_ids))
        out: dict[int, list[types.Member]] = {i: [] for i in ids}
        if not ids:
            return out
        found = await self.db.fetchall(
            "SELECT cm.chat_header_id, u.id, u.name, u.avatar, cm.last_read_message_id"
            " FROM chat_members cm JOIN users u ON u.id = cm.user_id"
            f" WHERE cm.chat_header_id IN ({rows.in_list(ids)})"
            " ORDER BY cm.chat_header_id, cm.joined_ms, u.id", *ids)
        for r in found:
            out[r[0]].append(types.Member(r[0], types.User(r[1], r[2] or "", r[3]), r[4]))
        return out

    async def count_chats(self, user_id: str) -> int:
        row = await self.db.fetchone(
            "SELECT COUNT(*) FROM chat_members WHERE user_id = ?", user_id)
        return row[0]

    async def chat_summaries(self, user_id: str, *, skip: int = 0, limit: int = 50,
                             chat_id: int | None = None) -> list[types.ChatSummary]:
        """A user's chats, most recent activity first, each with its last message,
        the other user (individual chats), the friendship status and the unread count."""
        found = await self.db.fetchall(
            f"SELECT {CHAT_COLUMNS}, {MESSAGE_COLUMNS},"
            " ou.id, ou.name, ou.avatar, f.status, cm.unread_count"
            " FROM chat_members cm"
            " JOIN chat_headers ch ON ch.id = cm.chat_header_id"
            " LEFT JOIN messages m ON m.id = ch.last_message_id"
            " LEFT JOIN users u ON u.id = m.user_id"
            " LEFT JOIN users ou ON ch.is_group = 0 AND ou.id ="
            "   (CASE WHEN ch.user_low = cm.user_id THEN ch.user_high ELSE ch.user_low END)"
            " LEFT JOIN friendships f ON f.user_id = cm.user_id AND f.other_user_id = ou.id"
            " WHERE cm.user_id = ? AND (? = 0 OR ch.id = ?)"
            " ORDER BY ch.activity_ms DESC, ch.id DESC LIMIT ? OFFSET ?",
            user_id, chat_id or 0, chat_id or 0, limit, skip)
        base = CHAT_WIDTH + MESSAGE_WIDTH
        return [types.ChatSummary(
            chat=rows.chat(r[:CHAT_WIDTH]),
            last_message=rows.message(r[CHAT_WIDTH:base]),
            unread_count=r[base + 4],
            other_user=rows.user(r[base:base + 3]),
            friendship_status=r[base + 3]) for r in found]

    async def my_chats(self, user_id: str, limit: int = 10_000) -> list[types.MyChatEntry]:
        """A user's individual chats as getMyChats lists them, most recent activity
        first. Only the columns that list shows are read: a user with 1,000 chats
        reads 1,000 rows, and each column of each row is decoded in Python by the
        MariaDB driver."""
        found = await self.db.fetchall(
            "SELECT ch.id, ch.creation_ms, ch.last_message_ms, m.message, m.message_type,"
            " ou.id, ou.name, ou.avatar, f.status, cm.unread_count"
            " FROM chat_members cm"
            " JOIN chat_headers ch ON ch.id = cm.chat_header_id"
            " LEFT JOIN messages m ON m.id = ch.last_message_id"
            " LEFT JOIN users ou ON ou.id ="
            "   (CASE WHEN ch.user_low = cm.user_id THEN ch.user_high ELSE ch.user_low END)"
            " LEFT JOIN friendships f ON f.user_id = cm.user_id AND f.other_user_id = ou.id"
            " WHERE cm.user_id = ? AND ch.is_group = 0"
            " ORDER BY ch.activity_ms DESC, ch.id DESC LIMIT ?", user_id, limit)
        entry = types.MyChatEntry
        return [entry(r[0], r[1], r[2], r[3], r[4], r[5],
                      None if r[5] is None else r[6] or "", r[7], r[8], r[9])
                for r in found]

    async def chat_summary(self, chat_id: int, user_id: str) -> types.ChatSummary:
        found = await self.chat_summaries(user_id, chat_id=chat_id, limit=1)
        if not found:
            raise NotFound("That chat does not exist.")
        return found[0]

    async def presence_audience(self, user_id: str) -> set[str]:
        """Who sees ``user_id`` come and go: accepted friends, and the partners of a
        one-to-one chat in which ``user_id`` has written, except a blocked pair.
        Opening a chat with someone's id does not let one watch them. One query, as
        it runs on every connect."""
        found = await self.db.fetchall(
            "SELECT other_user_id FROM friendships WHERE user_id = ? AND status = ?"
            " UNION"
            " SELECT CASE WHEN ch.user_low = ? THEN ch.user_high ELSE ch.user_low END"
            " FROM chat_members cm JOIN chat_headers ch ON ch.id = cm.chat_header_id"
            " LEFT JOIN friendships f ON f.user_id = ch.user_low"
            "  AND f.other_user_id = ch.user_high"
            " WHERE cm.user_id = ? AND ch.is_group = 0"
            "  AND (f.status IS NULL OR f.status <> ?)"
            "  AND EXISTS (SELECT 1 FROM messages m"
            "   WHERE m.user_id = ? AND m.chat_header_id = ch.id)",
            user_id, int(FriendshipStatus.ACCEPTED), user_id, user_id,
            int(FriendshipStatus.BLOCKED), user_id)
        return {r[0] for r in found}
