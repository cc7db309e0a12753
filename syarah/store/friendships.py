from __future__ import annotations

from syarah import types
from syarah.store import rows
from syarah.types import FriendshipStatus as S


class FriendshipStore:
    db = None

    async def friendship_status(self, user_id: str, other_id: str) -> int | None:
        row = await self.db.fetchone(
            "SELECT status FROM friendships WHERE user_id = ? AND other_user_id = ?",
            user_id, other_id)
        return row[0] if row else None

    async def blocked_among(self, user_id: str, other_ids) -> set[str]:
        """Those of ``other_ids`` with whom ``user_id`` is a blocked pair (either side
        blocked: both rows of a pair carry the status)."""
        ids = list(dict.fromkeys(other_ids))
        if not ids:
            return set()
        found = await self.db.fetchall(
            "SELECT other_user_id FROM friendships WHERE user_id = ? AND status = ?"
            f" AND other_user_id IN ({rows.in_list(ids)})", user_id, int(S.BLOCKED), *ids)
        return {r[0] for r in found}

    async def chat_blocked(self, chat_id: int) -> bool:
        """Whether ``chat_id`` is an individual chat whose pair is Blocked: two
        primary-key probes, cheap enough for every typing notification."""
        row = await self.db.fetchone(
            "SELECT 1 FROM chat_headers ch JOIN friendships f"
            " ON f.user_id = ch.user_low AND f.other_user_id = ch.user_high"
            " WHERE ch.id = ? AND f.status = ?", chat_id, int(S.BLOCKED))
        return row is not None

    async def list_friendships(self, user_id: str, status: int | None = None):
        """The user's friendships (all, or of one status), each with the individual
        chat of the pair when there is one."""
        found = await self.db.fetchall(
            "SELECT u.id, u.name, u.avatar, f.status, f.requested_by, ch.id"
            " FROM friendships f JOIN users u ON u.id = f.other_user_id"
            " LEFT JOIN chat_headers ch ON"
            "  ch.user_low = (CASE WHEN f.user_id < f.other_user_id"
            "                 THEN f.user_id ELSE f.other_user_id END)"
            "  AND ch.user_high = (CASE WHEN f.user_id < f.other_user_id"
            "                 THEN f.other_user_id ELSE f.user_id END)"
            " WHERE f.user_id = ? AND (? < 0 OR f.status = ?)"
            " ORDER BY u.name, u.id",
            user_id, -1 if status is None else status, -1 if status is None else status)
        return [types.Friend(rows.user(r[:3]), r[3], r[4], r[5]) for r in found]

    async def note_rejection(self, user_id: str, rejected_by: str, now_ms: int) -> None:
        """``rejected_by`` has just rejected a friend request from ``user_id``."""
        sql = self.db.engine.upsert(
            "friend_rejections", ("user_id", "rejected_by"),
            ("user_id", "rejected_by", "rejected_ms"), ("rejected_ms",))
        await self.db.execute(sql, user_id, rejected_by, now_ms)

    async def rejected_at(self, user_id: str, rejected_by: str) -> int | None:
        """When ``rejected_by`` last rejected a friend request from ``user_id``."""
        row = await self.db.fetchone(
            "SELECT rejected_ms FROM friend_rejections WHERE user_id = ? AND rejected_by = ?",
            user_id, rejected_by)
        return row[0] if row else None

    async def _write_pair(self, txn, a, b, status, requested_by, blocked_by, now_ms):
        for x, y in ((a, b), (b, a)):
            result = await txn.execute(
                "UPDATE friendships SET status = ?, requested_by = ?, blocked_by = ?,"
                " update_ms = ? WHERE user_id = ? AND other_user_id = ?",
                status, requested_by, blocked_by, now_ms, x, y)
            if result.rowcount == 0:
                await txn.execute(
                    "INSERT INTO friendships (user_id, other_user_id, status, requested_by,"
                    " blocked_by, creation_ms, update_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    x, y, status, requested_by, blocked_by, now_ms, now_ms)

    async def change_friendship(self, user_id: str, other_id: str, decide, now_ms: int):
        """Change the pair's friendship as ``decide`` says, in one transaction.

        ``decide(row)`` gets the pair's row as ``user_id`` sees it, a FriendshipRow or
        None when there is none, read under a lock so that two actions on one pair
        never both act on the same state; it returns the FriendshipRow to write for
        both sides, or None to delete the pair (it may raise instead). Returns what
        ``decide`` returned.
        """
        async def txn_fn(txn):
            row = await txn.fetchone(
                "SELECT status, requested_by, blocked_by FROM friendships"
                " WHERE user_id = ? AND other_user_id = ?" + self.db.engine.for_update,
                user_id, other_id)
            new = decide(types.FriendshipRow(*row) if row else None)
            if new is not None:
                await self._write_pair(txn, user_id, other_id, int(new.status),
                                       new.requested_by, new.blocked_by, now_ms)
            elif row is not None:
                await txn.execute(
                    "DELETE FROM friendships WHERE (user_id = ? AND other_user_id = ?)"
                    " OR (user_id = ? AND other_user_id = ?)",
                    user_id, other_id, other_id, user_id)
            return new
        return await self.db.run(txn_fn)
