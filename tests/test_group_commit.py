"""createMessage calls that arrive together share one transaction (the store's group
commit), in process on SQLite and MariaDB: each is answered on its own, after its
commit; a refused one or a retry never fails the others; a failing store answers
nobody with a message it did not keep; a message that waited too long is turned away.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import pytest_asyncio

from conftest import new_database_url
from syarah.clock import FakeClock
from syarah.errors import ChatError, Forbidden, Unavailable
from syarah.handlers import messages
from syarah.handlers.context import Context, Services
from syarah.protocol import inbound as dto
from syarah.store import Duplicate, Refused, open_store
from syarah.types import FriendshipStatus, MessageType, User
from test_handlers import RecordingRooms

NOW = 1_800_000_000_000


@pytest_asyncio.fixture
async def store(store_kind):
    url, cleanup = new_database_url(store_kind)
    opened = await open_store(url, pool_size=4)
    yield opened
    await opened.close()
    cleanup()


async def people(store, *names) -> list[User]:
    found = []
    for name in names:
        user = User(str(uuid.uuid4()), name, None)
        await store.upsert_user(user, NOW)
        found.append(user)
    return found


def contexts(store, *users):
    services = Services(store=store, presence=None, verifier=None, rooms=RecordingRooms(),
                        users=None, settings=None)
    return services, [Context(services, u, f"sid-{u.name}", "web") for u in users]


def send(ctx, chat_id, text, client_message_id=None):
    return messages.create_message(ctx, dto.CreateMessage(
        chat_id, text, client_message_id=client_message_id))


async def header(store, chat_id):
    return await store.db.fetchone(
        "SELECT last_message_id, message_count FROM chat_headers WHERE id = ?", chat_id)


async def stored(store, chat_id) -> list[tuple]:
    return await store.db.fetchall(
        "SELECT id, user_id, message FROM messages WHERE chat_header_id = ? ORDER BY id",
        chat_id)


async def test_messages_sent_together_share_a_transaction_and_each_gets_its_own_answer(store):
    ann, bob, cid, dan = await people(store, "Ann", "Bob", "Cid", "Dan")
    group = await store.create_group("G", None, ann.id, [bob.id, cid.id], NOW)
    pair = await store.get_or_create_individual_chat(ann.id, bob.id, NOW)
    other = await store.get_or_create_individual_chat(cid.id, dan.id, NOW)
    services, (a, b, c, d) = contexts(store, ann, bob, cid, dan)
    plan = [(a, group.id), (b, group.id), (c, other.id), (a, pair.id), (d, other.id),
            (c, group.id), (b, pair.id)] * 4
    replies = await asyncio.gather(*[
        send(ctx, chat, f"{ctx.user.name} {n}") for n, (ctx, chat) in enumerate(plan)])

    # One batch for all of them: they arrived while none was being stored.
    assert store.batcher.batches == 1 and store.batcher.stored == len(plan)
    for n, ((ctx, chat), reply) in enumerate(zip(plan, replies)):
        assert reply["chatHeaderId"] == chat
        assert reply["chatMessage"]["message"] == f"{ctx.user.name} {n}"
        assert reply["chatMessage"]["userId"] == ctx.user.id
    broadcasts = [s for s in services.rooms.sent if s[2] == "message"]
    assert len(broadcasts) == len(plan)
    for chat in (group.id, pair.id, other.id):
        sent_here = [r for (_, c), r in zip(plan, replies) if c == chat]
        # Ids follow the order of arrival; each is broadcast once, in that order.
        assert [s[3] for s in broadcasts if s[1] == chat] == sent_here
        rows = await stored(store, chat)
        assert [r[2] for r in rows] == [r["chatMessage"]["message"] for r in sent_here]
        assert [r[0] for r in rows] == [r["chatMessage"]["id"] for r in sent_here]
        assert await header(store, chat) == (rows[-1][0], len(rows))


async def test_two_batches_in_flight_keep_each_chats_order(store):
    """The second batch begins while the first holds the chat: its messages come
    after the first's in ids, broadcasts and answers."""
    store.configure_batches(in_flight=2)
    ann, bob, cid = await people(store, "Ann", "Bob", "Cid")
    shared = await store.get_or_create_individual_chat(ann.id, bob.id, NOW)
    other = await store.get_or_create_individual_chat(bob.id, cid.id, NOW)
    services, (a, b, c) = contexts(store, ann, bob, cid)
    answered = []

    async def sent(ctx, chat, text):
        reply = await send(ctx, chat, text)
        answered.append(reply["chatMessage"]["message"])
        return reply

    first = asyncio.ensure_future(sent(a, shared.id, "a0"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)      # the first batch has begun
    plan = [(b, shared.id, "b1"), (c, other.id, "c1"), (a, shared.id, "a2"),
            (b, other.id, "b3")]
    rest = await asyncio.gather(*[sent(ctx, chat, text) for ctx, chat, text in plan])
    await first
    assert store.batcher.batches == 2
    assert answered[0] == "a0"
    for chat in (shared.id, other.id):
        rows = await stored(store, chat)
        texts = [s[3]["chatMessage"]["message"] for s in services.rooms.sent
                 if s[1] == chat]
        assert [r[2] for r in rows] == texts == [t for t in answered if (
            t in ("a0", "b1", "a2")) == (chat == shared.id)]
    assert [r["chatMessage"]["message"] for r in rest] == ["b1", "c1", "a2", "b3"]


async def block(store, a: User, b: User):
    for x, y in ((a, b), (b, a)):
        await store.db.execute(
            "INSERT INTO friendships (user_id, other_user_id, status, requested_by,"
            " blocked_by, creation_ms, update_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            x.id, y.id, int(FriendshipStatus.BLOCKED), a.id, a.id, NOW, NOW)


async def test_a_refused_message_fails_only_itself(store):
    ann, bob, cid, eve = await people(store, "Ann", "Bob", "Cid", "Eve")
    group = await store.create_group("G", None, ann.id, [bob.id], NOW)
    blocked = await store.get_or_create_individual_chat(ann.id, cid.id, NOW)
    await block(store, ann, cid)
    await store.add_upload("/uploads/images/ann.jpg", ann.id, MessageType.IMAGE, 10, NOW)
    await store.add_upload("/uploads/images/bob.jpg", bob.id, MessageType.IMAGE, 10, NOW)

    def add(chat_id, author, text, upload=None, pushes=()):
        return store.add_message(
            chat_id, author, text, MessageType.IMAGE if upload else MessageType.TEXT,
            None, None, NOW, upload=upload, pushes=pushes)

    results = await asyncio.gather(
        add(group.id, ann, "first"),
        add(group.id, eve, "not a member"),
        add(blocked.id, ann, "to a blocked chat"),
        add(group.id, ann, "/uploads/images/bob.jpg", upload="/uploads/images/bob.jpg",
            pushes=[(bob.id, "token-1")]),
        add(10**9, ann, "no such chat"),
        add(group.id, bob, "/uploads/images/ann.jpg", upload="/uploads/images/ann.jpg"),
        add(group.id, ann, "/uploads/images/ann.jpg", upload="/uploads/images/ann.jpg",
            pushes=[(bob.id, "token-2")]),
        add(group.id, bob, "last"),
        return_exceptions=True)
    assert store.batcher.batches == 1
    reasons = [r.reason if isinstance(r, Refused) else r.message for r in results]
    assert reasons == ["first", "not_member", "blocked", "upload_gone", "no_chat",
                       "upload_gone", "/uploads/images/ann.jpg", "last"]
    # Nothing of the refused ones is kept: no row, no count, no push, no upload use.
    rows = await stored(store, group.id)
    assert [r[2] for r in rows] == ["first", "/uploads/images/ann.jpg", "last"]
    assert await header(store, group.id) == (rows[-1][0], 3)
    assert await stored(store, blocked.id) == []
    assert await header(store, blocked.id) == (None, 0)
    assert await store.db.fetchall("SELECT message_id, token FROM push_outbox") == [
        (rows[1][0], "token-2")]
    assert (await store.get_upload("/uploads/images/ann.jpg")).use_count == 1
    assert (await store.get_upload("/uploads/images/bob.jpg")).use_count == 0


async def test_a_retry_gets_the_first_message_back_within_a_batch_and_after_it(store):
    ann, bob = await people(store, "Ann", "Bob")
    chat = await store.get_or_create_individual_chat(ann.id, bob.id, NOW)
    services, (a, b) = contexts(store, ann, bob)
    first = await send(a, chat.id, "before", "c-0")
    replies = await asyncio.gather(
        send(a, chat.id, "hello", "c-1"), send(b, chat.id, "hi", "c-1"),
        send(a, chat.id, "hello again", "c-1"), send(a, chat.id, "before, resent", "c-0"),
        send(a, chat.id, "no id"), send(a, chat.id, "no id"))
    assert store.batcher.batches == 2
    ids = [r["chatMessage"]["id"] if isinstance(r, dict) else r.chat_message.id
           for r in replies]
    # Bob's c-1 is his own; Ann's retries of c-1 and c-0 get her first messages.
    assert ids[2] == ids[0] and ids[3] == first["chatMessage"]["id"]
    assert len(set(ids[:2] + ids[4:])) == 4
    later = await send(a, chat.id, "hello once more", "c-1")
    assert later.chat_message.id == ids[0] and later.chat_message.message == "hello"
    texts = [r[2] for r in await stored(store, chat.id)]
    assert texts == ["before", "hello", "hi", "no id", "no id"]
    assert [s[3]["chatMessage"]["message"] for s in services.rooms.sent
            if s[2] == "message"] == texts
    assert (await header(store, chat.id))[1] == 5
    with pytest.raises(Duplicate):
        await store.add_message(chat.id, ann, "x", 0, None, "c-1", NOW)


async def test_a_store_that_fails_mid_batch_acknowledges_nothing_it_did_not_keep(store):
    ann, bob = await people(store, "Ann", "Bob")
    chat = await store.get_or_create_individual_chat(ann.id, bob.id, NOW)
    add_pushes_of, sent = store.add_pushes_of, []

    async def connection_lost(txn, planned):
        # After the inserts, before the header update and the COMMIT.
        raise ConnectionResetError("the database connection was lost")

    def add(author, text):
        return store.add_message(chat.id, author, text, 0, None, None, NOW,
                                 pushes=[(bob.id, "token")], after_commit=sent.append)

    store.add_pushes_of = connection_lost
    results = await asyncio.gather(*[add(u, f"lost {n}") for n, u in enumerate(
        (ann, bob, ann))], return_exceptions=True)
    assert all(isinstance(r, Exception) and not isinstance(r, (Refused, Duplicate))
               for r in results), results
    assert sent == []
    assert await stored(store, chat.id) == []
    assert await header(store, chat.id) == (None, 0)
    # The next batch is stored as usual.
    store.add_pushes_of = add_pushes_of
    kept = await add(ann, "kept")
    assert [r[2] for r in await stored(store, chat.id)] == ["kept"]
    assert sent == [kept]


async def hold_the_chat(store, chat_id, hold: asyncio.Event) -> asyncio.Future:
    """Another writer of the chat, holding it until ``hold`` is set: a batch that
    comes to it waits (on SQLite for the one writer, on MariaDB for the row)."""
    loop = asyncio.get_running_loop()
    held = asyncio.Event()
    releaser = None
    if store.db.engine.concurrent_writers:
        async def holds_the_chat(txn):
            await txn.execute("UPDATE chat_headers SET name = 'held' WHERE id = ?", chat_id)
            held.set()
            await hold.wait()
    else:
        # SQLite runs a transaction whole on the writer's thread: it holds the
        # thread there, where only a blocking wait can keep it.
        released = threading.Event()

        async def release():
            await hold.wait()
            released.set()
        releaser = loop.create_task(release())

        async def holds_the_chat(txn):
            await txn.execute("UPDATE chat_headers SET name = 'held' WHERE id = ?", chat_id)
            loop.call_soon_threadsafe(held.set)
            released.wait()

    holder = asyncio.ensure_future(store.db.run(holds_the_chat))
    if releaser is not None:
        holder.add_done_callback(lambda _: releaser.cancel())
    await held.wait()
    return holder


async def test_a_batch_whose_connection_is_killed_answers_unavailable(store):
    """MariaDB: the batch's connection is cut while it waits for a chat another
    writer holds. Nobody is told their message was stored, and none was."""
    if store.db.engine.name != "mysql":
        pytest.skip("a connection of a server to kill")
    ann, bob = await people(store, "Ann", "Bob")
    chat = await store.get_or_create_individual_chat(ann.id, bob.id, NOW)
    hold, sent = asyncio.Event(), []
    holder = await hold_the_chat(store, chat.id, hold)
    waiting = asyncio.gather(*[store.add_message(
        chat.id, u, "cut off", 0, None, f"c-{n}", NOW, after_commit=sent.append)
        for n, u in enumerate((ann, bob, ann))], return_exceptions=True)
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        found = await store.db.fetchall(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = DATABASE()"
            " AND INFO LIKE 'SELECT ch.id, cm.user_id%'")
        if found:
            break
        assert asyncio.get_running_loop().time() < deadline, "the batch never began"
        await asyncio.sleep(0.02)
    await store.db.execute(f"KILL {int(found[0][0])}")
    hold.set()
    await holder
    results = await waiting
    assert all(isinstance(r, Unavailable) for r in results), results
    assert sent == [] and await stored(store, chat.id) == []
    again = await store.add_message(chat.id, ann, "after", 0, None, "c-0", NOW)
    assert [r[0] for r in await stored(store, chat.id)] == [again.id]


async def one_batch_held_then(store, clock, chat, wait_s: float):
    """A first message whose batch has begun and waits behind another writer of the
    chat, and a second that queues meanwhile for ``wait_s`` seconds; then the writer
    commits. Returns both outcomes."""
    ann, bob = await people(store, "Ann", "Bob")
    await store.add_members(chat.id, [ann.id, bob.id], NOW)
    hold = asyncio.Event()
    holder = await hold_the_chat(store, chat.id, hold)
    first = asyncio.ensure_future(store.add_message(chat.id, ann, "began in time", 0,
                                                    None, None, NOW))
    await asyncio.sleep(0)
    await asyncio.sleep(0)      # its batch has begun and waits for the chat
    assert store.batcher.waiting == 0
    late = asyncio.ensure_future(store.add_message(chat.id, bob, "queued", 0, None,
                                                   "c-late", NOW))
    await asyncio.sleep(0)
    assert store.batcher.waiting == 1
    clock.advance(wait_s)
    hold.set()
    await holder
    return await asyncio.gather(first, late, return_exceptions=True), bob


async def test_a_message_that_waited_too_long_for_its_batch_is_turned_away(store):
    clock = FakeClock()
    store.configure_batches(busy_after_ms=2000, clock=clock)
    chat = await store.create_group("G", None, (await people(store, "Cid"))[0].id, [], NOW)
    (first, late), bob = await one_batch_held_then(store, clock, chat, 2.5)
    assert first.message == "began in time"
    assert isinstance(late, Unavailable)
    assert late.reply() == {
        "error": "The server is busy; try again in a moment.", "code": "UNAVAILABLE"}
    assert [r[2] for r in await stored(store, chat.id)] == ["began in time"]
    assert (await header(store, chat.id))[1] == 1
    # Nothing of it was kept, so its retry is a first send.
    again = await store.add_message(chat.id, bob, "queued", 0, None, "c-late", NOW)
    assert [r[0] for r in await stored(store, chat.id)][-1] == again.id


async def test_without_busy_after_ms_a_message_waits_for_its_batch(store):
    clock = FakeClock()
    store.configure_batches(busy_after_ms=0, clock=clock)
    chat = await store.create_group("G", None, (await people(store, "Cid"))[0].id, [], NOW)
    (first, late), _ = await one_batch_held_then(store, clock, chat, 3600)
    assert [first.message, late.message] == ["began in time", "queued"]


async def test_the_handler_explains_a_refusal_from_a_batch(store):
    ann, bob, eve = await people(store, "Ann", "Bob", "Eve")
    chat = await store.get_or_create_individual_chat(ann.id, bob.id, NOW)
    services, (a, e) = contexts(store, ann, eve)
    results = await asyncio.gather(send(a, chat.id, "hi"), send(e, chat.id, "intruding"),
                                   return_exceptions=True)
    assert results[0]["chatMessage"]["message"] == "hi"
    assert isinstance(results[1], Forbidden) and isinstance(results[1], ChatError)
    assert results[1].reply() == {"error": "You are not a member of this chat.",
                                  "code": "FORBIDDEN"}
