"""Push devices and the push outbox."""

from __future__ import annotations

from syarah import types
from syarah.store import rows
from syarah.store.rows import MESSAGE_COLUMNS

PENDING = 0
FAILED = 2

_JOB_SELECT = (
    "SELECT o.id, o.token, o.user_id, o.chat_header_id, o.message_id, o.attempts,"
    " d.platform, d.user_id, ch.is_group, ch.name, cm.last_read_message_id,"
    # The badge: what the user has unread in all their chats, as the members'
    # kept counts say.
    " (SELECT SUM(cu.unread_count) FROM chat_members cu WHERE cu.user_id = o.user_id),"
    f" {MESSAGE_COLUMNS}"
    " FROM push_outbox o"
    " LEFT JOIN push_devices d ON d.token = o.token"
    " LEFT JOIN messages m ON m.id = o.message_id"
    " LEFT JOIN users u ON u.id = m.user_id"
    " LEFT JOIN chat_headers ch ON ch.id = o.chat_header_id"
    " LEFT JOIN chat_members cm ON cm.chat_header_id = o.chat_header_id"
    "  AND cm.user_id = o.user_id"
    " WHERE o.claim_id = ? ORDER BY o.id")
_JOB_WIDTH = 12

# A row is free to claim when pending, due, and not under a live lease of any node.
_CLAIMABLE = (f"status = {PENDING} AND due_ms <= ?"
              " AND (claimed_until_ms IS NULL OR claimed_until_ms < ?)")


def _job(r) -> types.PushJob:
    return types.PushJob(
        id=r[0], token=r[1], user_id=r[2], chat_header_id=r[3], message_id=r[4],
        attempts=r[5], platform=r[6], device_user_id=r[7],
        chat_is_group=bool(r[8]), chat_name=r[9], last_read_message_id=r[10],
        unread_count=int(r[11] or 0), message=rows.message(r[_JOB_WIDTH:]))


class PushStore:
    db = None

    # Devices

    async def register_device(self, token: str, user_id: str, platform: str,
                              now_ms: int) -> None:
        """Record ``token`` as ``user_id``'s device; a token another user registered
        moves, and what was queued for that user on it is dropped with the move (the
        phone now shows someone else's account)."""
        sql = self.db.engine.upsert(
            "push_devices", ("token",),
            ("token", "user_id", "platform", "creation_ms", "update_ms"),
            ("user_id", "platform", "update_ms"))

        async def txn_fn(txn):
            await txn.execute(sql, token, user_id, platform, now_ms, now_ms)
            await txn.execute(
                f"DELETE FROM push_outbox WHERE token = ? AND user_id <> ? AND status = {PENDING}",
                token, user_id)
        await self.db.run(txn_fn)

    async def unregister_device(self, token: str, user_id: str) -> bool:
        """Remove the caller's own device; False when it is not theirs."""
        async def txn_fn(txn):
            result = await txn.execute(
                "DELETE FROM push_devices WHERE token = ? AND user_id = ?", token, user_id)
            if result.rowcount:
                await txn.execute(
                    f"DELETE FROM push_outbox WHERE token = ? AND status = {PENDING}", token)
            return result.rowcount > 0
        return await self.db.run(txn_fn)

    async def remove_device(self, token: str) -> int:
        """FCM says the token is dead: forget it and what was queued for it.
        Returns how many queued rows went with it."""
        async def txn_fn(txn):
            await txn.execute("DELETE FROM push_devices WHERE token = ?", token)
            result = await txn.execute(
                f"DELETE FROM push_outbox WHERE token = ? AND status = {PENDING}", token)
            return result.rowcount
        return await self.db.run(txn_fn)

    async def user_devices(self, user_id: str) -> list[tuple[str, str]]:
        found = await self.db.fetchall(
            "SELECT token, platform FROM push_devices WHERE user_id = ? ORDER BY token",
            user_id)
        return [(r[0], r[1]) for r in found]

    # Writing the outbox: who, read before the message's transaction; the rows, in it

    async def push_targets(self, chat_id: int, sender_id: str) -> list[tuple[str, str | None]]:
        """Every member but the sender with each of their device tokens (None for a
        member with no device), in one query."""
        found = await self.db.fetchall(
            "SELECT cm.user_id, d.token FROM chat_members cm"
            " LEFT JOIN push_devices d ON d.user_id = cm.user_id"
            " WHERE cm.chat_header_id = ? AND cm.user_id <> ?", chat_id, sender_id)
        return [(r[0], r[1]) for r in found]

    @staticmethod
    async def add_pushes(txn, message: types.Message, targets, now_ms: int) -> None:
        """Inside the message's transaction: one outbox row per (user, token) in
        ``targets``."""
        await PushStore.add_pushes_of(txn, [(message, targets, now_ms)])

    @staticmethod
    async def add_pushes_of(txn, planned) -> None:
        """The same for several messages stored together: ``planned`` holds
        (message, targets, now_ms); one statement for all of their rows."""
        found = [(message.id, message.chat_header_id, user_id, token, now_ms, now_ms)
                 for message, targets, now_ms in planned for user_id, token in targets]
        if found:
            await txn.executemany(
                "INSERT INTO push_outbox (message_id, chat_header_id, user_id, token,"
                f" status, attempts, due_ms, creation_ms) VALUES (?, ?, ?, ?, {PENDING}, 0, ?, ?)",
                found)

    # The worker's side

    async def claim_pushes(self, claim_id: str, now_ms: int, lease_ms: int,
                           limit: int) -> list[types.PushJob]:
        """Lease up to ``limit`` due rows to ``claim_id`` until ``now_ms + lease_ms``.

        The UPDATE re-checks the lease, so when two nodes pick the same candidates
        only one of them gets each row: InnoDB's UPDATE reads the latest committed
        row under its lock, and SQLite runs one writer at a time.
        """
        async def txn_fn(txn):
            candidates = await txn.fetchall(
                f"SELECT id FROM push_outbox WHERE {_CLAIMABLE}"
                " ORDER BY due_ms, id LIMIT ?", now_ms, now_ms, limit)
            ids = [r[0] for r in candidates]
            if not ids:
                return []
            await txn.execute(
                "UPDATE push_outbox SET claim_id = ?, claimed_until_ms = ?"
                f" WHERE id IN ({rows.in_list(ids)}) AND {_CLAIMABLE}",
                claim_id, now_ms + lease_ms, *ids, now_ms, now_ms)
            return [_job(r) for r in await txn.fetchall(_JOB_SELECT, claim_id)]
        return await self.db.run(txn_fn)

    async def next_push_due_ms(self) -> int | None:
        """When the earliest pending row becomes claimable (a leased row: when its
        lease ends)."""
        row = await self.db.fetchone(
            "SELECT MIN(CASE WHEN claimed_until_ms IS NOT NULL"
            " AND claimed_until_ms > due_ms THEN claimed_until_ms ELSE due_ms END)"
            f" FROM push_outbox WHERE status = {PENDING}")
        return row[0] if row and row[0] is not None else None

    async def delete_pushes(self, ids) -> None:
        """Rows that were sent or dropped."""
        ids = list(ids)
        if ids:
            await self.db.execute(
                f"DELETE FROM push_outbox WHERE id IN ({rows.in_list(ids)})", *ids)

    async def retry_push(self, push_id: int, claim_id: str, attempts: int,
                         due_ms: int, error: str) -> None:
        await self.db.execute(
            "UPDATE push_outbox SET attempts = ?, due_ms = ?, last_error = ?,"
            " claim_id = NULL, claimed_until_ms = NULL WHERE id = ? AND claim_id = ?",
            attempts, due_ms, error[:500], push_id, claim_id)

    async def fail_push(self, push_id: int, claim_id: str, attempts: int,
                        error: str) -> None:
        """Give up on a row but keep it for inspection."""
        await self.db.execute(
            "UPDATE push_outbox SET status = ?, attempts = ?, last_error = ?,"
            " claim_id = NULL, claimed_until_ms = NULL WHERE id = ? AND claim_id = ?",
            FAILED, attempts, error[:500], push_id, claim_id)

    async def release_pushes(self, claims) -> None:
        """Hand back leased rows that were not finished (a stopping node), so that the
        next node sends them at once instead of after the lease."""
        claims = list(claims)
        if claims:
            await self.db.execute(
                "UPDATE push_outbox SET claim_id = NULL, claimed_until_ms = NULL"
                f" WHERE status = {PENDING} AND claim_id IN ({rows.in_list(claims)})", *claims)

    async def push_outbox_depth(self) -> dict[str, int]:
        """Rows waiting to be sent and rows given up on (for metrics)."""
        found = await self.db.fetchall(
            "SELECT status, COUNT(*) FROM push_outbox GROUP BY status")
        counts = {r[0]: r[1] for r in found}
        return {"pending": counts.get(PENDING, 0), "failed": counts.get(FAILED, 0)}

    async def failed_pushes(self, limit: int = 100) -> list[tuple]:
        """(id, message_id, user_id, token, attempts, last_error) of given-up rows."""
        return await self.db.fetchall(
            "SELECT id, message_id, user_id, token, attempts, last_error FROM push_outbox"
            " WHERE status = ? ORDER BY id LIMIT ?", FAILED, limit)
