"""Recovery sessions: the chat rooms each socket was in, under its pid."""

from __future__ import annotations

from syarah import types


class RecoveryStore:
    db = None  # set by DataStore

    async def save_recovery(self, pid: str, user_id: str, chat_ids: list[int],
                            now_ms: int) -> None:
        sql = self.db.engine.upsert(
            "recovery_sessions", ("pid",),
            ("pid", "user_id", "chat_ids", "update_ms", "expires_ms"),
            ("chat_ids", "update_ms", "expires_ms"))
        await self.db.execute(sql, pid, user_id, ",".join(map(str, chat_ids)), now_ms,
                              None)

    async def recovery_ends(self, pid: str, expires_ms: int) -> None:
        await self.db.execute(
            "UPDATE recovery_sessions SET expires_ms = ? WHERE pid = ?", expires_ms, pid)

    async def recovery_session(self, pid: str) -> types.RecoverySession | None:
        row = await self.db.fetchone(
            "SELECT pid, user_id, chat_ids, update_ms, expires_ms"
            " FROM recovery_sessions WHERE pid = ?", pid)
        if row is None:
            return None
        chat_ids = [int(c) for c in row[2].split(",") if c]
        return types.RecoverySession(row[0], row[1], chat_ids, row[3], row[4])

    async def drop_recovery(self, pid: str) -> None:
        await self.db.execute("DELETE FROM recovery_sessions WHERE pid = ?", pid)

    async def prune_recovery(self, now_ms: int, stale_before_ms: int) -> int:
        """Forget sessions past their window, and those of sockets whose node never
        said they left and that changed nothing since ``stale_before_ms``."""
        result = await self.db.execute(
            "DELETE FROM recovery_sessions WHERE expires_ms < ?"
            " OR (expires_ms IS NULL AND update_ms < ?)", now_ms, stale_before_ms)
        return result.rowcount
