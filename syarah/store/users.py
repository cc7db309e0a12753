from __future__ import annotations

from syarah import types
from syarah.store import rows


class UserStore:
    db = None  # set by DataStore

    async def upsert_user(self, user: types.User, now_ms: int) -> None:
        sql = self.db.engine.upsert(
            "users", ("id",), ("id", "name", "avatar", "creation_ms", "update_ms"),
            ("name", "avatar", "update_ms"))
        await self.db.execute(sql, user.id, user.name, user.avatar, now_ms, now_ms)

    async def get_user(self, user_id: str) -> types.User | None:
        row = await self.db.fetchone(
            "SELECT id, name, avatar FROM users WHERE id = ?", user_id)
        return rows.user(row) if row else None

    async def get_users(self, user_ids) -> dict[str, types.User]:
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return {}
        found = await self.db.fetchall(
            f"SELECT id, name, avatar FROM users WHERE id IN ({rows.in_list(ids)})", *ids)
        return {r[0]: rows.user(r) for r in found}
