"""The store's transactions and the work they queue for after the commit, in process on
SQLite and MariaDB: what runs, when, and how often."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import pytest_asyncio

from conftest import new_database_url
from syarah.errors import Unavailable
from syarah.store import open_store
from syarah.store.database import NotOnlyStatements


@pytest_asyncio.fixture
async def db(store_kind):
    url, cleanup = new_database_url(store_kind)
    store = await open_store(url, pool_size=2)
    yield store.db
    await store.close()
    cleanup()


def deadlock(db) -> Exception:
    """The error the engine reports when a transaction lost a deadlock: retried."""
    if db.engine.name == "sqlite":
        import sqlite3
        exc = sqlite3.OperationalError("database is locked")
    else:
        import pymysql
        exc = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
    assert db.engine.is_deadlock(exc)
    return exc


async def add_user(txn, name: str) -> str:
    user_id = str(uuid.uuid4())
    await txn.execute("INSERT INTO users (id, name, avatar, creation_ms, update_ms)"
                      " VALUES (?, ?, NULL, 1, 1)", user_id, name)
    return user_id


async def names(db) -> list[str]:
    return [r[0] for r in await db.fetchall("SELECT name FROM users ORDER BY name")]


async def test_work_queued_in_a_transaction_that_rolls_back_never_runs(db):
    ran = []

    async def fails(txn):
        await add_user(txn, "never")
        txn.call_after(ran.append, "never")
        raise ValueError("refused halfway")

    try:
        await db.run(fails)
    except ValueError:
        pass
    else:
        raise AssertionError("the transaction should have failed")
    assert ran == [] and await names(db) == []


async def test_a_retried_transaction_runs_only_the_committed_attempts_work(db):
    ran, attempts = [], []

    async def twice_a_deadlock_victim(txn):
        attempts.append(len(attempts) + 1)
        await add_user(txn, f"attempt {attempts[-1]}")
        txn.call_after(ran.append, attempts[-1])
        if len(attempts) < 3:
            raise deadlock(db)
        return "stored"

    assert await db.run(twice_a_deadlock_victim) == "stored"
    assert attempts == [1, 2, 3]
    assert ran == [3]
    assert await names(db) == ["attempt 3"]


async def test_queued_work_runs_once_after_the_commit_in_order(db):
    seen = []

    async def sees_the_committed_row(label):
        # Its own transaction: on SQLite it could not start while the queuing one
        # still held the connection, on MariaDB it would not see an uncommitted row.
        seen.append((label, await names(db)))

    def fails():
        raise RuntimeError("a broadcast that failed")

    async def stores(txn):
        await add_user(txn, "kept")
        txn.call_after(sees_the_committed_row, "first")
        txn.call_after(fails)
        txn.call_after(sees_the_committed_row, "after a failure")
        assert seen == []
        return "done"

    # A failing callback is logged: the change is stored and the rest still run.
    assert await db.run(stores) == "done"
    assert seen == [("first", ["kept"]), ("after a failure", ["kept"])]


async def test_a_transaction_that_awaits_more_than_its_statements_is_rolled_back(store_kind):
    """SQLite runs a transaction whole on its connection's thread, where nothing but
    its statements may be awaited: anything else fails it, and nothing of it stays."""
    if store_kind != "sqlite":
        pytest.skip("MariaDB's transactions run on the event loop")
    url, cleanup = new_database_url(store_kind)
    store = await open_store(url)
    db = store.db
    ran = []

    async def waits(txn):
        await add_user(txn, "never")
        txn.call_after(ran.append, "never")
        await asyncio.sleep(0)

    try:
        with pytest.raises(NotOnlyStatements):
            await db.run(waits)
        assert ran == [] and await names(db) == []
        # The connection goes on with the next transaction.
        await db.run(add_user, "next")
        assert await names(db) == ["next"]
    finally:
        await store.close()
        cleanup()


async def test_a_transaction_its_caller_gave_up_on_is_rolled_back(store_kind):
    """db_timeout: the caller hears Unavailable, and the transaction, which the
    connection's thread finishes meanwhile, is not committed."""
    if store_kind != "sqlite":
        pytest.skip("MariaDB's connection is closed instead (test_recovery)")
    url, cleanup = new_database_url(store_kind)
    store = await open_store(url)
    db = store.db
    db.timeout = 0.2
    go_on = threading.Event()

    async def slow(txn):
        await add_user(txn, "too late")
        go_on.wait(5)

    try:
        with pytest.raises(Unavailable):
            await db.run(slow)
        go_on.set()
        db.timeout = 5
        # Behind it on the one writer: it is over by then.
        await db.run(add_user, "next")
        assert await names(db) == ["next"]
    finally:
        await store.close()
        cleanup()
