"""A node past its ceiling: a client whose createMessage events pile up faster than
the server handles them is answered at once, UNAVAILABLE, once it has been ahead for
busy_after_ms, and nothing it was refused is stored.

The server is made to fall behind without a timed load: another connection holds the
SQLite file's write lock, so the socket's first message waits in its transaction while
the client sends the rest, which wait unread behind it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid

import pytest

from conftest import User, dm
from helpers import assert_error
from syarah.transport.compat import AHEAD_GAP_SECONDS

pytestmark = pytest.mark.asyncio

SENT = 120


def _sqlite_file(url: str) -> str:
    return url[len("sqlite:///"):]


def _hold_write_lock(path: str, seconds: float) -> threading.Event:
    """Take the file's write lock in a thread for ``seconds``; set once it is held."""
    held = threading.Event()

    def hold():
        conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        threading.Event().wait(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    threading.Thread(target=hold, daemon=True).start()
    held.wait(10)
    return held


async def _flood(make_server, clients, busy_after_ms: int):
    srv = make_server("sqlite", f"--busy-after-ms={busy_after_ms}")
    alice, bob = User(srv, "alice"), User(srv, "bob")
    a = await clients(alice)
    chat_id = await dm(a, bob)
    ids = [str(uuid.uuid4()) for _ in range(SENT)]
    _hold_write_lock(_sqlite_file(srv.database_url), 1.5)
    replies = await asyncio.gather(*(
        a.call("createMessage", {"message": f"m{i}", "chatHeaderId": chat_id,
                                 "messageType": 0, "clientMessageId": ids[i]}, timeout=30)
        for i in range(SENT)))
    stored = set()
    while True:
        page = await a.call("findAllMessages", {"chatHeaderId": chat_id,
                                                "skipCount": len(stored)})
        stored |= {m["clientMessageId"] for m in page["items"]}
        if not page["items"] or len(stored) >= page["totalCount"]:
            break
    return a, chat_id, ids, replies, stored


async def test_a_client_ahead_of_the_server_for_busy_after_ms_is_answered_busy(
        make_server, clients):
    a, chat_id, ids, replies, stored = await _flood(make_server, clients, busy_after_ms=300)
    assert len(replies) == SENT
    refused = [i for i, r in enumerate(replies) if "chatMessage" not in r]
    accepted = [i for i, r in enumerate(replies) if "chatMessage" in r]
    assert refused, "every message was stored: nothing turned the late ones away"
    for i in refused:
        assert_error(replies[i], "UNAVAILABLE")
        assert replies[i]["error"] == "The server is busy; try again in a moment."
    # The first one was already in its transaction: it waits and is stored.
    assert 0 in accepted
    assert stored == {ids[i] for i in accepted}
    # Sent again with the same clientMessageId after a moment, as the answer asks: by
    # then the client is no longer ahead of the server.
    await asyncio.sleep(2 * AHEAD_GAP_SECONDS)
    for i in refused[:3]:
        reply = await a.call("createMessage", {"message": f"m{i}", "chatHeaderId": chat_id,
                                               "messageType": 0, "clientMessageId": ids[i]})
        assert reply["chatMessage"]["clientMessageId"] == ids[i], reply


async def test_without_busy_after_ms_every_message_waits_and_is_stored(
        make_server, clients):
    _, _, ids, replies, stored = await _flood(make_server, clients, busy_after_ms=0)
    assert all("chatMessage" in r for r in replies), [
        r for r in replies if "chatMessage" not in r][:3]
    assert stored == set(ids)
