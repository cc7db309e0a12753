"""The missed-message sync of findAllChatHeaders (RoomsWithLastMessageIds): messages
after the client's last one, and the edits and deletions of the ones it holds made
while it was away; bounded per chat, in work as well as in size; the records of
deletions pruned after the retention.

The work tests count what the database does (SQLite's virtual-machine steps, MariaDB's
handler reads) for a short chat and for a long one: a sync that reads each chat as a
range stopping at the rows it sends costs the same for both.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest_asyncio

from conftest import dm, new_database_url
from helpers import assert_error, people, send
from syarah.store import open_store, sync
from test_js_client import make_users, node_or_skip, run_node_tests

LONG_CHAT = 20_000
SHORT_CHAT = 300


@pytest_asyncio.fixture
async def store(store_kind):
    url, cleanup = new_database_url(store_kind)
    # Filling a 20,000-message chat is one long transaction: on a busy machine it
    # takes longer than the server's few seconds for an event.
    opened = await open_store(url, pool_size=2, timeout=120)
    yield opened
    await opened.close()
    cleanup()


STEP_MS = 1000


async def make_chat(store, count: int, base_ms: int, edited=range(0), edited_ms=0,
                    deleted=range(0), deleted_ms=0) -> tuple[int, list[int]]:
    """A chat of ``count`` messages written a second apart from ``base_ms``; the
    messages at the positions of the range ``edited`` edited at ``edited_ms``, those of
    the range ``deleted`` deleted at ``deleted_ms``. Returns the chat id and the ids of
    all the messages it was written with."""
    author = str(uuid.uuid4())

    async def fill(txn):
        await txn.execute("INSERT INTO users (id, name, creation_ms, update_ms)"
                          " VALUES (?, 'Writer', ?, ?)", author, base_ms, base_ms)
        chat = (await txn.execute("INSERT INTO chat_headers (is_group, name, creation_ms,"
                                  " activity_ms) VALUES (1, 'Long', ?, ?)",
                                  base_ms, base_ms)).lastrowid
        await txn.executemany(
            "INSERT INTO messages (chat_header_id, user_id, message, message_type,"
            " creation_ms) VALUES (?, ?, ?, 0, ?)",
            [(chat, author, f"m{i}", base_ms + i * STEP_MS) for i in range(count)])
        found = await txn.fetchall("SELECT id FROM messages WHERE chat_header_id = ?"
                                   " ORDER BY id", chat)
        ids = [r[0] for r in found]
        if edited:
            await txn.execute("UPDATE messages SET message = 'edited',"
                              " last_modification_ms = ? WHERE chat_header_id = ?"
                              " AND id BETWEEN ? AND ?", edited_ms, chat,
                              ids[edited[0]], ids[edited[-1]])
        if deleted:
            await txn.execute(
                "INSERT INTO deleted_messages (message_id, chat_header_id, creation_ms,"
                " deletion_ms) SELECT id, chat_header_id, creation_ms, ? FROM messages"
                " WHERE chat_header_id = ? AND id BETWEEN ? AND ?", deleted_ms, chat,
                ids[deleted[0]], ids[deleted[-1]])
            await txn.execute("DELETE FROM messages WHERE chat_header_id = ?"
                              " AND id BETWEEN ? AND ?", chat,
                              ids[deleted[0]], ids[deleted[-1]])
        return chat, ids

    return await store.db.run(fill)


async def work(store, fn, *args):
    """Runs ``fn(txn, *args)`` in a transaction; returns its result and the work the
    database did for it."""
    if store.db.engine.name == "sqlite":
        steps = [0]

        def count():
            steps[0] += 1
            return 0

        await store.db._conn.call(lambda conn: conn.set_progress_handler(count, 10))
        try:
            result = await store.db.run(fn, *args)
        finally:
            await store.db._conn.call(lambda conn: conn.set_progress_handler(None, 10))
        return result, steps[0]

    async def measured(txn):
        async def reads():
            found = await txn.fetchall("SHOW SESSION STATUS LIKE 'Handler_read%'")
            return sum(int(value) for _, value in found)
        before = await reads()
        result = await fn(txn, *args)
        return result, await reads() - before

    return await store.db.run(measured)


async def test_new_messages_cost_what_they_send_however_long_the_chat(store):
    """LastMessageId 0 (a client that holds nothing) on a 20,000-message chat reads as
    little as on a 300-message one: the per-chat limit comes before anything else."""
    short, short_ids = await make_chat(store, SHORT_CHAT, 1_000_000)
    long, long_ids = await make_chat(store, LONG_CHAT, 2_000_000)
    found, short_work = await work(store, sync.new_messages, {short: 0}, 201)
    assert [m.id for m in found[short]] == short_ids[:201]
    found, long_work = await work(store, sync.new_messages, {long: 0}, 201)
    assert [m.id for m in found[long]] == long_ids[:201]
    assert long_work < 2 * short_work, (short_work, long_work)
    # Several chats at once, each from its own id, each bounded on its own.
    found = await store.db.run(sync.new_messages, {short: short_ids[-3], long: long_ids[5]}, 201)
    assert [m.id for m in found[short]] == short_ids[-2:]
    assert [m.id for m in found[long]] == long_ids[6:207]
    assert [m.message for m in found[long][:2]] == ["m6", "m7"]


async def test_edits_and_deletions_cost_what_they_send_however_long_the_chat(store):
    """A client that holds all of a long chat and was away a while: the edits and
    deletions made long before its last message are in the chat's index but are never
    read, whichever chat length."""
    base = 10_000_000
    results = {}
    for count in (SHORT_CHAT, LONG_CHAT):
        # Half of the chat edited and a tenth deleted before the client's last
        # message was written; three edits and two deletions after it.
        middle = base + count // 2 * STEP_MS
        chat, ids = await make_chat(store, count, base, edited=range(0, count // 2),
                                    edited_ms=middle,
                                    deleted=range(count // 2, count // 2 + count // 10),
                                    deleted_ms=middle)
        last_written = base + (count - 1) * STEP_MS
        recent = [ids[-10], ids[-20], ids[-30]]
        gone = [ids[-40], ids[-50]]

        async def change(txn):
            for message_id in recent:
                await txn.execute("UPDATE messages SET message = 'late edit',"
                                  " last_modification_ms = ? WHERE id = ?",
                                  last_written + 5000, message_id)
            await sync.record_deletions(txn, gone)
            await txn.execute(f"DELETE FROM messages WHERE id IN ({', '.join('?' * 2)})",
                              *gone)
        await store.db.run(change)
        found, cost = await work(store, sync.read_sync, {chat: ids[-1]}, 200)
        got = found[chat]
        assert [m.id for m in got.updated_messages] == sorted(recent)
        assert {m.message for m in got.updated_messages} == {"late edit"}
        assert got.deleted_message_ids == sorted(gone)
        assert got.new_messages == []
        assert not (got.more_new_messages or got.more_updated_messages
                    or got.more_deleted_message_ids)
        results[count] = cost
        base += 100_000_000
    assert results[LONG_CHAT] < 2 * results[SHORT_CHAT], results


async def test_more_edits_or_deletions_than_a_page_set_the_flags(store):
    base = 50_000_000
    chat, ids = await make_chat(store, 700, base)
    last = ids[-1]
    edited_ms = base + 700 * STEP_MS

    async def change(txn):
        for i, message_id in enumerate(ids[:201]):
            await txn.execute("UPDATE messages SET last_modification_ms = ? WHERE id = ?",
                              edited_ms + i, message_id)
        await sync.record_deletions(txn, ids[300:501])
        await txn.execute("DELETE FROM messages WHERE id >= ? AND id <= ?",
                          ids[300], ids[500])
    await store.db.run(change)
    got = (await store.sync_chats({chat: last}, 200))[chat]
    # The first 200 edits and deletions made, oldest first by id.
    assert [m.id for m in got.updated_messages] == ids[:200]
    assert got.more_updated_messages is True
    assert got.deleted_message_ids == ids[300:500]
    assert got.more_deleted_message_ids is True
    got = (await store.sync_chats({chat: ids[250]}, 200))[chat]
    assert len(got.updated_messages) == 200 and got.more_updated_messages is True
    assert got.deleted_message_ids == [] and got.more_deleted_message_ids is False
    assert [m.id for m in got.new_messages] == ids[251:300] + ids[501:652]
    assert got.more_new_messages is True


async def test_a_sync_of_more_chats_than_one_statement_holds(store):
    """A page of chats is read in several statements: each chat still gets its own."""
    count = sync.CHATS_PER_STATEMENT + 30
    chats = {}
    for k in range(count):
        base = 200_000_000 + k * 10 * STEP_MS
        chat, ids = await make_chat(store, 4, base, edited=range(k % 3, k % 3 + 1),
                                    edited_ms=base + 5 * STEP_MS)
        chats[chat] = ids
    # Each chat's third message deleted after the edits; clients hold three each.
    for chat, ids in chats.items():
        await store.db.run(lambda txn, ids=ids: sync.record_deletions(txn, [ids[2]]))
        await store.db.execute("DELETE FROM messages WHERE id = ?", ids[2])
    found = await store.sync_chats({chat: ids[2] for chat, ids in chats.items()}, 200)
    assert set(found) == set(chats)
    for k, (chat, ids) in enumerate(chats.items()):
        got = found[chat]
        assert [m.id for m in got.new_messages] == [ids[3]]
        edited = ids[k % 3]
        assert [m.id for m in got.updated_messages] == ([] if edited == ids[2] else [edited])
        assert got.deleted_message_ids == [ids[2]]


async def test_pruning_drops_old_records_and_tells_clients_synced_from_before(store):
    base = 90_000_000
    deleted_ms = base + 10 * STEP_MS
    chat, ids = await make_chat(store, 10, base, deleted=range(2, 4), deleted_ms=deleted_ms)
    # A later deletion, kept by the pruning below.
    await store.db.run(lambda txn: txn.execute(
        "INSERT INTO deleted_messages (message_id, chat_header_id, creation_ms,"
        " deletion_ms) VALUES (?, ?, ?, ?)", ids[9] + 1000, chat, deleted_ms, deleted_ms + 50_000))
    before = (await store.sync_chats({chat: ids[9]}, 200))[chat]
    assert before.deleted_message_ids == [ids[2], ids[3]]
    assert before.more_deleted_message_ids is False
    assert await store.prune_deleted_messages(deleted_ms + 20_000) == 2
    assert await store.prune_deleted_messages(deleted_ms + 20_000) == 0
    after = (await store.sync_chats({chat: ids[9]}, 200))[chat]
    assert after.deleted_message_ids == []
    # Its last message was written before the pruned deletions: it may have missed
    # them, and must reload.
    assert after.more_deleted_message_ids is True
    remaining = await store.db.fetchall("SELECT message_id FROM deleted_messages"
                                        " WHERE chat_header_id = ?", chat)
    assert remaining == [(ids[9] + 1000,)]


# ----- through the server, as clients see it


async def sync_of(client, chat_id: int, last_id: int) -> dict:
    reply = await client.call("findAllChatHeaders", {"RoomsWithLastMessageIds": [
        {"ChatHeaderId": chat_id, "LastMessageId": last_id}]})
    (header,) = [h for h in reply["items"] if h["id"] == chat_id]
    return header


async def two_in_a_chat(server, clients):
    """Ann and Bob connected, in their chat: (Ann, her client, his client, the chat)."""
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    b = await clients(bob)
    return ann, a, b, await dm(a, bob)


async def all_ids(client, chat_id: int) -> list[int]:
    """Every message id of the chat, oldest first, paged as a client pages."""
    ids, before = [], None
    while True:
        query = {"chatHeaderId": chat_id, "maxResultCount": 200}
        if before is not None:
            query["lastMessageId"] = before
        items = (await client.call("findAllMessages", query))["items"]
        if not items:
            return sorted(ids)
        ids += [m["id"] for m in items]
        before = items[-1]["id"]


async def test_a_client_back_from_away_gets_the_edits_and_deletions_it_missed(
        server, clients):
    ann, a, b, chat = await two_in_a_chat(server, clients)
    old = await send(b, chat, "edited before the last message Ann holds")
    await b.call("updateMessage", {"id": old["id"], "chatHeaderId": chat,
                                   "message": "early edit"})
    # Beyond the allowance for clocks: this edit was there before Ann's last message.
    await asyncio.sleep(sync.CLOCK_ALLOWANCE_MS / 1000 + 0.2)
    held = [await send(b, chat, f"m{i}") for i in range(5)]
    cache = (await a.call("findAllMessages", {"chatHeaderId": chat}))["items"]
    assert [m["id"] for m in cache][:5] == [m["id"] for m in reversed(held)]
    await a.close()

    # While Ann is away: edits, a deletion in the middle and of her last message.
    edited = []
    for m in (held[1], held[3]):
        reply = await b.call("updateMessage", {"id": m["id"], "chatHeaderId": chat,
                                               "message": m["message"] + " (edited)"})
        edited.append(reply["chatMessage"])
    await b.call("removeMessage", {"ids": [held[2]["id"], held[4]["id"]],
                                   "chatHeaderId": chat})
    newer = await send(b, chat, "while you were away")

    a = await clients(ann)
    header = await sync_of(a, chat, held[4]["id"])
    assert header["newMessages"] == [newer]
    assert header["updatedMessages"] == edited
    assert header["updatedMessages"][0]["lastModificationTime"] is not None
    assert header["deletedMessageIds"] == [held[2]["id"], held[4]["id"]]
    assert header["hasMoreNewMessages"] is False
    assert header["hasMoreUpdatedMessages"] is False
    assert header["hasMoreDeletedMessageIds"] is False
    # From her cache and the sync alone, Ann's copy is the server's again.
    by_id = {m["id"]: m for m in cache}
    by_id.update({m["id"]: m for m in header["updatedMessages"] + header["newMessages"]})
    for message_id in header["deletedMessageIds"]:
        by_id.pop(message_id, None)
    fresh = (await a.call("findAllMessages", {"chatHeaderId": chat}))["items"]
    assert sorted(by_id.values(), key=lambda m: -m["id"]) == fresh
    # A client that holds nothing of the chat has nothing to correct.
    header = await sync_of(a, chat, 0)
    assert header["updatedMessages"] == [] and header["deletedMessageIds"] == []
    assert [m["id"] for m in header["newMessages"]] == [m["id"] for m in reversed(fresh)]


async def test_the_sync_reports_more_than_a_page_of_edits_or_deletions_with_flags(
        server, clients):
    _, a, b, chat = await two_in_a_chat(server, clients)
    for i in range(402):
        await b.emit("createMessage", {"message": f"m{i}", "chatHeaderId": chat})
    ids = await all_ids(b, chat)
    assert len(ids) == 402
    for message_id in ids[:201]:
        await b.emit("updateMessage", {"id": message_id, "chatHeaderId": chat,
                                       "message": "edited"})
    for start in (201, 301, 401):
        reply = await b.call("removeMessage", {"ids": ids[start:start + 100],
                                               "chatHeaderId": chat})
        assert "deletedIds" in reply, reply
    # ids[401] was the last; Ann held everything up to it.
    header = await sync_of(a, chat, ids[401])
    assert [m["id"] for m in header["updatedMessages"]] == ids[:200]
    assert header["hasMoreUpdatedMessages"] is True
    assert header["deletedMessageIds"] == ids[201:401]
    assert header["hasMoreDeletedMessageIds"] is True
    assert header["newMessages"] == [] and header["hasMoreNewMessages"] is False
    assert_error(await a.call("findAllChatHeaders", {"RoomsWithLastMessageIds": [
        {"ChatHeaderId": chat, "LastMessageId": "many"}]}), "VALIDATION")


async def test_deletions_older_than_the_retention_are_pruned_and_the_client_reloads(
        store_kind, make_server, clients):
    retention_seconds = 3
    srv = make_server(store_kind, f"--deleted-message-retention-days={retention_seconds / 86400}",
                      "--deleted-message-prune-interval=0.2")
    _, a, b, chat = await two_in_a_chat(srv, clients)
    held = [await send(b, chat, f"m{i}") for i in range(3)]
    await b.call("removeMessage", {"id": held[1]["id"], "chatHeaderId": chat})
    header = await sync_of(a, chat, held[2]["id"])
    assert header["deletedMessageIds"] == [held[1]["id"]]
    assert header["hasMoreDeletedMessageIds"] is False
    deadline = time.monotonic() + retention_seconds + 15
    while header["deletedMessageIds"]:
        assert time.monotonic() < deadline, "the record was never pruned"
        await asyncio.sleep(0.2)
        header = await sync_of(a, chat, held[2]["id"])
    # Gone from the sync, and the client is told that its copy may be stale.
    assert header["hasMoreDeletedMessageIds"] is True
    # A client whose last message came after the pruned deletion missed nothing.
    await asyncio.sleep(sync.CLOCK_ALLOWANCE_MS / 1000 + 0.2)
    later = await send(b, chat, "after the pruning")
    header = await sync_of(a, chat, later["id"])
    assert header["deletedMessageIds"] == []
    assert header["hasMoreDeletedMessageIds"] is False


async def test_a_socket_io_client_that_caches_history_converges_after_being_away(server):
    node_or_skip()
    users = await make_users(server, ("Ann", "Bob"))
    await run_node_tests(server, "sync.test.js", users)
