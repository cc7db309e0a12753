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
    original_name: str | None = None
    use_count: int = 0


_COLUMNS = ("path, user_id, message_type, size, creation_ms, used_ms, original_name,"
            " use_count")


class UploadStore:
    db = None

    async def add_upload(self, path: str, user_id: str, message_type: int, size: int,
                         now_ms: int, original_name: str | None = None) -> None:
        await self.db.execute(
            f"INSERT INTO uploads ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?, 0)",
            path, user_id, message_type, size, now_ms, original_name)

    async def get_upload(self, path: str) -> Upload | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM uploads WHERE path = ?", path)
        return Upload(*row) if row else None

    @staticmethod
    async def use_upload(txn, path: str, user_id: str, now_ms: int) -> bool:
        """Inside the message's own transaction: count one more message carrying the
        caller's upload. False when it is not the caller's, or the orphan sweep took
        it meanwhile."""
        # use_count always changes, so MariaDB's changed-rows count is the matched one.
        result = await txn.execute(
            "UPDATE uploads SET used_ms = COALESCE(used_ms, ?), use_count = use_count + 1"
            " WHERE path = ? AND user_id = ?", now_ms, path, user_id)
        return result.rowcount == 1

    @staticmethod
    async def release_upload(txn, path: str) -> None:
        """Inside a transaction that deletes or edits a message: one message fewer
        carries ``path``. With none left the upload is unused again, for
        ``forget_unused_upload`` (right after the commit, or the orphan sweep)."""
        # used_ms is assigned first: MariaDB evaluates SET left to right with the new
        # values, SQLite with the old ones; this order reads the old count on both.
        await txn.execute(
            "UPDATE uploads SET used_ms = CASE WHEN use_count <= 1 THEN NULL"
            " ELSE used_ms END, use_count = use_count - 1"
            " WHERE path = ? AND use_count > 0", path)

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

    # ----- the daily upload quota

    async def uploaded_bytes(self, user_id: str, day: int) -> int:
        row = await self.db.fetchone(
            "SELECT bytes FROM upload_bytes WHERE user_id = ? AND day = ?", user_id, day)
        return row[0] if row else 0

    async def count_uploaded_bytes(self, user_id: str, day: int, size: int,
                                   limit: int) -> bool:
        """Add ``size`` to what the user uploaded on ``day`` unless that would pass
        ``limit``; False (and nothing added) then. One statement decides, so uploads
        finishing together on several nodes cannot pass the limit between them."""
        if size > limit:
            return False
        if size <= 0:
            return True
        result = await self.db.execute(
            self.db.engine.add_up_to("upload_bytes", ("user_id", "day"), "bytes"),
            user_id, day, size, limit)
        return result.rowcount >= 1

    async def forget_uploaded_bytes_before(self, day: int) -> None:
        await self.db.execute("DELETE FROM upload_bytes WHERE day < ?", day)
