"""Group commit for new messages: the createMessage calls that arrive while a batch
is being stored go into the next one, which is one transaction and one COMMIT.

A COMMIT costs the database a log flush and the process a round trip whatever the
transaction holds, so under load the messages waiting for it share it instead of
queueing for a commit each. With nobody waiting a batch holds one message and costs
what a transaction of its own would.

Inside the transaction, in this order: the chats' rows are locked in id order (two
batches, or a batch and any other writer of a chat, then queue instead of
deadlocking) and read together with the senders' memberships and each individual
chat's friendship; whoever may not send is refused on what was read, before anything
is written; the others are inserted in arrival order with one INSERT that skips a
clientMessageId already stored (the retry is answered with the first message); each
upload carried is counted; the push outbox rows are added; every chat's header and
its members' unread counts are updated once. Refusals and retries never fail the
others in their batch.

After the COMMIT each caller's ``after_commit`` runs (the broadcast), in arrival
order within its chat and after those of the batch before, and
only then does its caller get the message: no acknowledgement for anything not
stored, and per chat the ids, the broadcasts and the acknowledgements all follow the
order of arrival.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field

from syarah import types
from syarah.clock import SYSTEM
from syarah.errors import BUSY, ChatError, Unavailable
from syarah.store import rows
from syarah.types import FriendshipStatus

log = logging.getLogger(__name__)

MAX_SIZE = 1000


class Refused(Exception):
    """Nothing was written; ``reason`` names the fact that stopped it, for the handler
    to explain: ``no_chat``, ``not_member``, ``blocked``, ``no_message`` (not in that
    chat, or gone), ``upload_gone`` (not the author's upload, or swept meanwhile)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Duplicate(Exception):
    """The author already sent a message with this clientMessageId."""

    def __init__(self, existing: types.Message):
        self.existing = existing


@dataclass(eq=False)
class NewMessage:
    chat_id: int
    author: types.User
    text: str
    message_type: int
    caption: str | None
    client_message_id: str | None
    now_ms: int
    upload: str | None = None
    pushes: tuple | list = ()
    after_commit: object = None
    queued_at: float = 0.0
    future: asyncio.Future | None = field(default=None, repr=False)


_COLUMNS = ("chat_header_id, user_id, message, message_type, caption,"
            " client_message_id, creation_ms")


async def store_batch(txn, batch: list[NewMessage], store) -> list:
    """Inside one transaction: store what may be stored of ``batch`` (``store`` is the
    DataStore: its upload and push-outbox writes are used). Returns, per
    request, its Message, a Refused, or a Duplicate; raises only for what fails the
    transaction itself. Runs again from the start when the transaction is retried."""
    engine = txn.engine
    outcome: list = [None] * len(batch)
    chat_ids = sorted({r.chat_id for r in batch})
    authors = sorted({r.author.id for r in batch})
    # One statement locks the chats (in id order) and reads what decides who may
    # send: the senders' memberships and an individual chat's friendship.
    found = await txn.fetchall(
        "SELECT ch.id, cm.user_id, f.status FROM chat_headers ch"
        " LEFT JOIN chat_members cm ON cm.chat_header_id = ch.id"
        f" AND cm.user_id IN ({rows.in_list(authors)})"
        " LEFT JOIN friendships f ON f.user_id = ch.user_low"
        " AND f.other_user_id = ch.user_high"
        f" WHERE ch.id IN ({rows.in_list(chat_ids)}) ORDER BY ch.id" + engine.for_update,
        *authors, *chat_ids)
    chats = {r[0] for r in found}
    members = {(r[0], r[1]) for r in found if r[1] is not None}
    blocked = {r[0] for r in found if r[2] == FriendshipStatus.BLOCKED}

    accepted: list[int] = []
    first_of: dict[tuple, int] = {}   # (author, clientMessageId) -> first request
    repeats: dict[int, int] = {}      # a retry within the batch -> the first one
    for i, r in enumerate(batch):
        if r.chat_id not in chats:
            outcome[i] = Refused("no_chat")
        elif (r.chat_id, r.author.id) not in members:
            outcome[i] = Refused("not_member")
        elif r.chat_id in blocked:
            outcome[i] = Refused("blocked")
        elif r.client_message_id is not None and (
                key := (r.author.id, r.client_message_id)) in first_of:
            repeats[i] = first_of[key]
        else:
            if r.client_message_id is not None:
                first_of[key] = i
            accepted.append(i)
    if not accepted:
        return _resolve_repeats(outcome, repeats)

    values = []
    for i in accepted:
        r = batch[i]
        values += (r.chat_id, r.author.id, r.text, r.message_type, r.caption,
                   r.client_message_id, r.now_ms)
    inserted = [r[0] for r in await txn.fetchall(engine.insert_or_ignore(
        f"INSERT INTO messages ({_COLUMNS}) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(accepted))
        + " RETURNING id"), *values)]
    # Ids grow in the order of the VALUES. A row is skipped only for a
    # clientMessageId stored before (every other check was made above); which
    # ones were is read back only then, so the usual batch reads one column.
    inserted.sort()
    if len(inserted) == len(accepted):
        ids = dict(zip(accepted, inserted))
    else:
        found = await txn.fetchall(
            "SELECT id, user_id, client_message_id FROM messages"
            f" WHERE id IN ({rows.in_list(inserted)})", *inserted) if inserted else []
        by_key = {(r[1], r[2]): r[0] for r in found}
        plain = iter(sorted(r[0] for r in found if r[2] is None))
        ids = {}
        for i in accepted:
            r = batch[i]
            if r.client_message_id is None:
                ids[i] = next(plain)
            elif (r.author.id, r.client_message_id) in by_key:
                ids[i] = by_key[(r.author.id, r.client_message_id)]
    stored: list[int] = []
    for i in accepted:
        r = batch[i]
        if i in ids:
            outcome[i] = types.Message(
                id=ids[i], chat_header_id=r.chat_id, user_id=r.author.id,
                message=r.text, message_type=r.message_type, caption=r.caption,
                creation_ms=r.now_ms, last_modification_ms=None,
                client_message_id=r.client_message_id, author=r.author)
            stored.append(i)
            continue
        existing = await txn.fetchone(
            rows.MESSAGE_SELECT + " WHERE m.user_id = ? AND m.client_message_id = ?",
            r.author.id, r.client_message_id)
        if existing is None:
            raise RuntimeError("a message insert was skipped for no known reason")
        outcome[i] = Duplicate(rows.message(existing))

    kept = []
    for i in stored:
        r = batch[i]
        if r.upload is not None and not await store.use_upload(
                txn, r.upload, r.author.id, r.now_ms):
            # Swept meanwhile: this message alone goes, in the same transaction.
            await txn.execute("DELETE FROM messages WHERE id = ?", outcome[i].id)
            outcome[i] = Refused("upload_gone")
        else:
            kept.append(i)
    if kept:
        pushes = [(outcome[i], batch[i].pushes, batch[i].now_ms)
                  for i in kept if batch[i].pushes]
        if pushes:
            await store.add_pushes_of(txn, pushes)
        # Last, so that it may go out with the COMMIT.
        await _update_headers(txn, [outcome[i] for i in kept])
    return _resolve_repeats(outcome, repeats)


def _resolve_repeats(outcome: list, repeats: dict[int, int]) -> list:
    # A retry within the batch is answered as the first request was: its message
    # (as a Duplicate, so nothing is broadcast twice) or the same refusal.
    for i, first in repeats.items():
        done = outcome[first]
        outcome[i] = Duplicate(done) if isinstance(done, types.Message) else done
    return outcome


def _unread_update(count: collections.Counter, written: collections.Counter) -> tuple:
    """The statement that adds the batch's messages to the unread counts of the
    chats' members: each member gets those of its chat that others wrote."""
    if len(count) == 1 and len(written) == 1:
        (chat_id, author), = written
        return ("UPDATE chat_members SET unread_count = unread_count + ?"
                " WHERE chat_header_id = ? AND user_id <> ?",
                (count[chat_id], chat_id, author))
    ids = sorted(count)
    args: list = []
    for chat_id in ids:
        args += (chat_id, count[chat_id])
    for (chat_id, author), n in written.items():
        args += (chat_id, author, n)
    return ("UPDATE chat_members SET unread_count = unread_count"
            f" + CASE chat_header_id {' '.join(['WHEN ? THEN ?'] * len(ids))} END"
            " - CASE"
            f" {' '.join(['WHEN chat_header_id = ? AND user_id = ? THEN ?'] * len(written))}"
            f" ELSE 0 END WHERE chat_header_id IN ({rows.in_list(ids)})",
            (*args, *ids))


async def _update_headers(txn, messages: list[types.Message]) -> None:
    """One statement for every chat of the batch: its last message and its count;
    one more for its members' unread counts."""
    last: dict[int, types.Message] = {}
    count: collections.Counter = collections.Counter()
    written: collections.Counter = collections.Counter()
    for m in messages:
        last[m.chat_header_id] = m
        count[m.chat_header_id] += 1
        written[(m.chat_header_id, m.user_id)] += 1
    unread = (_unread_update(count, written),)
    if len(last) == 1:
        (chat_id, m), = last.items()
        await txn.execute_last(
            "UPDATE chat_headers SET last_message_id = ?, last_message_ms = ?,"
            " activity_ms = ?, message_count = message_count + ? WHERE id = ?",
            m.id, m.creation_ms, m.creation_ms, count[chat_id], chat_id, before=unread)
        return
    ids = sorted(last)
    cases = " ".join(["WHEN ? THEN ?"] * len(ids))
    args: list = []
    for column in ("id", "creation_ms", "creation_ms"):
        for chat_id in ids:
            args += (chat_id, getattr(last[chat_id], column))
    for chat_id in ids:
        args += (chat_id, count[chat_id])
    await txn.execute_last(
        f"UPDATE chat_headers SET last_message_id = CASE id {cases} END,"
        f" last_message_ms = CASE id {cases} END, activity_ms = CASE id {cases} END,"
        f" message_count = message_count + CASE id {cases} END"
        f" WHERE id IN ({rows.in_list(ids)})", *args, *ids, before=unread)


class MessageBatcher:
    """Collects new messages and stores them in batches of at most ``max_size``,
    with at most ``in_flight`` batch transactions at once.

    ``busy_after_ms``: a message that waited this long for its batch to begin is
    answered Unavailable and not stored. Past the rate the store holds, waiting
    without bound would only grow the latency (to seconds) and the queue (memory);
    the queue is bounded in time instead, and whoever is turned away hears it at
    once and can retry with the same clientMessageId. 0 waits without limit.
    """

    def __init__(self, store, *, max_size: int = 64, in_flight: int = 1,
                 busy_after_ms: int = 2000, clock=SYSTEM):
        self.store = store
        # Each message is 7 parameters of one INSERT: well below SQLite's limit.
        self.max_size = min(max(1, max_size), MAX_SIZE)
        self.in_flight = max(1, in_flight)
        self.busy_after_ms = max(0, busy_after_ms)
        self.clock = clock
        self._queue: collections.deque[NewMessage] = collections.deque()
        self._running = 0
        # Resolved when the latest batch's callers have all been answered; the next
        # batch answers its own after it, so answers follow the order of commits.
        self._answered: asyncio.Future | None = None
        self._answering: set[asyncio.Task] = set()
        self.batches = 0
        self.stored = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def add(self, request: NewMessage) -> types.Message:
        request.future = asyncio.get_running_loop().create_future()
        request.queued_at = self.clock.monotonic()
        self._queue.append(request)
        if self._running < self.in_flight:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await request.future

    def _take(self) -> list[NewMessage]:
        limit = self.busy_after_ms / 1000
        now = self.clock.monotonic()
        batch = []
        while self._queue and len(batch) < self.max_size:
            r = self._queue.popleft()
            if r.future.done():      # its caller went away before it was stored
                continue
            if limit and now - r.queued_at >= limit:
                r.future.set_exception(Unavailable(BUSY))
                continue
            batch.append(r)
        return batch

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._take()
                if batch:
                    await self._run(batch)
        finally:
            self._running -= 1

    async def _run(self, batch: list[NewMessage]) -> None:
        loop = asyncio.get_running_loop()
        before, answered = self._answered, loop.create_future()
        self._answered = answered
        try:
            outcome = await self._store(batch)
        except BaseException:
            # Cancelled on the way: whoever waits hears that nothing is sure.
            for r in batch:
                _refuse(r, Unavailable())
            answered.set_result(None)
            raise
        self.batches += 1
        if self._queue:
            # Others wait: their batch begins now, while this one's broadcasts go out.
            task = loop.create_task(self._answer(batch, outcome, before, answered))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        else:
            await self._answer(batch, outcome, before, answered)

    async def _store(self, batch: list[NewMessage]) -> list:
        try:
            return await self.store.db.run(store_batch, batch, self.store)
        except ChatError as exc:
            # Unavailable (the store is down or slow): nothing of it was stored.
            return [exc] * len(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("storing a message failed")
                return [exc]
            # Something in one request fails the whole transaction: each alone, so
            # that only that one fails.
            outcome = []
            for r in batch:
                outcome += await self._alone(r)
            return outcome

    async def _answer(self, batch, outcome, before, answered) -> None:
        try:
            if before is not None and not before.done():
                await asyncio.shield(before)
            by_chat: dict[int, list] = {}
            for r, result in zip(batch, outcome):
                if isinstance(result, types.Message):
                    by_chat.setdefault(r.chat_id, []).append((r, result))
                else:
                    _refuse(r, result)
            # Chat after chat in one coroutine: a broadcast puts frames on this node's
            # sockets and queues the copy for the other nodes without waiting, so
            # nothing is won by a task per chat (which costs more than the broadcast).
            for done in by_chat.values():
                await self._announce(done)
        finally:
            for r in batch:
                _refuse(r, Unavailable())
            if not answered.done():
                answered.set_result(None)

    async def _announce(self, done: list) -> None:
        """One chat's stored messages: each one's after_commit, then its answer."""
        for r, message in done:
            self.stored += 1
            if r.after_commit is not None:
                try:
                    ran = r.after_commit(message)
                    if asyncio.iscoroutine(ran):
                        await ran
                except Exception:
                    log.exception("work queued after a message's commit failed")
            _answer(r, message)

    async def _alone(self, r: NewMessage) -> list:
        try:
            return await self.store.db.run(store_batch, [r], self.store)
        except Exception as exc:
            if not isinstance(exc, ChatError):
                log.exception("storing a message failed")
            return [exc]


def _answer(r: NewMessage, message: types.Message) -> None:
    if not r.future.done():
        r.future.set_result(message)


def _refuse(r: NewMessage, exc: BaseException) -> None:
    if not r.future.done():
        r.future.set_exception(exc)
