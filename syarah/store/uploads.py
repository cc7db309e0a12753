from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Upload:
    path: str
    user_id: str
    message_type: int
    size: int
    creation_ms: int
    used_ms: int | None


_COLUMNS = "path, user_id, message_type, size, creation_ms, used_ms"


class UploadStore:
    db = None

    async def add_upload(self, path: str, user_id: str, message_type: int, size: int,
                         now_ms: int) -> None:
        await self.db.execute(
            f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
            path, user_id, message_type, size, now_ms)

    async def get_upload(self, path: str) -> Upload | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM uploads WHERE path = ?", path)
        return Upload(*row) if row else None

    @staticmethod
    async def use_upload(txn, path: str, user_id: str, now_ms: int) -> bool:
        """Inside the message's own transaction: mark the caller's upload as used.
        False when it is not the caller's, or the orphan sweep took it meanwhile."""
        result = await txn.execute(
            "UPDATE uploads SET used_ms = COALESCE(used_ms, ?) WHERE path = ? AND user_id = ?",
            now_ms, path, user_id)
        if result.rowcount:
            return True
        # MariaDB counts changed rows, not matched ones: an upload used before is
        # matched but unchanged.
        row = await txn.fetchone(
            "SELECT 1 FROM uploads WHERE path = ? AND user_id = ?", path, user_id)
        return row is not None

    async def unused_uploads(self, created_before_ms: int, limit: int) -> list[str]:
        found = await self.db.fetchall(
            "SELECT path FROM uploads WHERE used_ms IS NULL AND creation_ms < ?"
            " ORDER BY creation_ms LIMIT ?", created_before_ms, limit)
        return [r[0] for r in found]

    async def forget_unused_upload(self, path: str) -> bool:
        """Drop the record of an upload still unused; False if a message took it."""
        result = await self.db.execute(
            "DELETE FROM uploads WHERE path = ? AND used_ms IS NULL", path)
        return result.rowcount == 1
