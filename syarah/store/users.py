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

    async def update_user_from_claims(self, user: types.User, now_ms: int,
                                      issued_ms: int | None) -> types.User:
        """Create the user, or bring name and avatar up to date from a token's claims,
        unless the row holds newer facts: a rename through the service API after the
        token was issued must survive that token's next use. A token updates only
        what it carries: without a name (``""``) or a picture (None) the stored one
        stays. Returns the stored user."""
        stamp = issued_ms if issued_ms is not None else now_ms

        async def txn_fn(txn):
            row = await txn.fetchone(
                "SELECT name, avatar, update_ms FROM users WHERE id = ?", user.id)
            if row is None:
                added = await txn.execute(self.db.engine.insert_or_ignore(
                    "INSERT INTO users (id, name, avatar, creation_ms, update_ms)"
                    " VALUES (?, ?, ?, ?, ?)"), user.id, user.name, user.avatar, now_ms, stamp)
                if added.rowcount:
                    return user
                # Created meanwhile (another first request, a chat opened with this
                # user): update that row. A locking read sees it; MariaDB's plain read
                # would still answer from this transaction's snapshot, without it.
                row = await txn.fetchone(
                    "SELECT name, avatar, update_ms FROM users WHERE id = ?"
                    + self.db.engine.for_update, user.id)
            merged = types.User(user.id, user.name or row[0],
                                user.avatar if user.avatar is not None else row[1])
            if (row[0], row[1]) != (merged.name, merged.avatar) and row[2] <= stamp:
                await txn.execute(
                    "UPDATE users SET name = ?, avatar = ?, update_ms = ? WHERE id = ?",
                    merged.name, merged.avatar, stamp, user.id)
                return merged
            return rows.user((user.id, row[0], row[1]))
        return await self.db.run(txn_fn)

    async def ensure_users(self, user_ids, now_ms: int) -> None:
        """Get-or-create: a user the server has not met yet (a chat opened with them
        before they connected) gets a row without name or avatar. Its update time is
        0, so that their first token or the service API fills it in. Concurrent calls
        for the same user are settled by the primary key: the second insert is
        ignored."""
        ids = sorted(set(user_ids))
        if not ids:
            return
        # Mostly they exist (every joinRoom asks): a read, and a write only for the new.
        found = await self.db.fetchall(
            f"SELECT id FROM users WHERE id IN ({rows.in_list(ids)})", *ids)
        known = {r[0] for r in found}
        ids = [i for i in ids if i not in known]
        if not ids:
            return
        sql = self.db.engine.insert_or_ignore(
            "INSERT INTO users (id, name, avatar, creation_ms, update_ms)"
            " VALUES (?, '', NULL, ?, 0)")

        async def txn_fn(txn):
            await txn.executemany(sql, [(i, now_ms) for i in ids])
        await self.db.run(txn_fn)

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
