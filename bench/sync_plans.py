"""The missed-message sync of findAllChatHeaders on a chat of 1M messages, on SQLite and
on MariaDB: the plan of every statement it sends and how long each takes.

    PYTHONPATH=. .venv/bin/python -m bench.sync_plans [--messages 1000000] [--only sqlite|mysql]

Each store gets a database of its own (a temporary SQLite file; the MariaDB database
``syarah_bench_sync`` on SYARAH_BENCH_MYSQL, default root@127.0.0.1:3306, created and
dropped here). The chat: ``--messages`` messages a second apart; a tenth of them edited
and a twentieth deleted long before the client's last message (index entries that the
sync must not read); 50 edits and 30 deletions after it. The statements are recorded
from the product's own store code, so the plans shown are of what the server sends.
Beside them, for comparison, the statement the sync used before (ROW_NUMBER over every
newer message, limited afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid

from bench import procs

DB_NAME = "syarah_bench_sync"
REPEAT = 7
BATCH = 5000
BASE_MS = 1_600_000_000_000
STEP_MS = 1000
LIMIT = 200

# The statement findAllChatHeaders ran before the per-chat limit, for comparison.
OLD_NEW_MESSAGES = (
    "SELECT * FROM (SELECT m.id, m.chat_header_id, m.user_id, m.message, m.message_type,"
    " m.caption, m.creation_ms, m.last_modification_ms, m.client_message_id, u.name,"
    " u.avatar, ROW_NUMBER() OVER (PARTITION BY m.chat_header_id ORDER BY m.id) AS rn"
    " FROM messages m LEFT JOIN users u ON u.id = m.user_id"
    " WHERE (m.chat_header_id = ? AND m.id > ?)) AS missed WHERE rn <= ?"
    " ORDER BY chat_header_id, id")


def progress(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


async def fill(store, count: int) -> tuple[int, list[int]]:
    """One chat of ``count`` messages; returns its id and the client's last message."""
    author = str(uuid.uuid4())

    async def people(txn):
        # Others besides the writer, so that the plans join users as a real database.
        await txn.executemany("INSERT INTO users (id, name, creation_ms, update_ms)"
                              " VALUES (?, 'Someone', ?, ?)",
                              [(str(uuid.uuid4()), BASE_MS, BASE_MS) for _ in range(999)])
        await txn.execute("INSERT INTO users (id, name, creation_ms, update_ms)"
                          " VALUES (?, 'Writer', ?, ?)", author, BASE_MS, BASE_MS)
        return (await txn.execute("INSERT INTO chat_headers (is_group, name, creation_ms,"
                                  " activity_ms) VALUES (1, 'Long', ?, ?)",
                                  BASE_MS, BASE_MS)).lastrowid
    chat = await store.db.run(people)
    for start in range(0, count, BATCH):
        rows = [(chat, author, f"Message number {i} with a little text",
                 BASE_MS + i * STEP_MS) for i in range(start, min(count, start + BATCH))]

        async def insert(txn, rows=rows):
            await txn.executemany(
                "INSERT INTO messages (chat_header_id, user_id, message, message_type,"
                " creation_ms) VALUES (?, ?, ?, 0, ?)", rows)
        await store.db.run(insert)
        if (start // BATCH) % 40 == 0:
            progress(f"  {start + len(rows):,}/{count:,} messages")
    ids = [r[0] for r in await store.db.fetchall(
        "SELECT id FROM messages WHERE chat_header_id = ? ORDER BY id", chat)]
    last_written = BASE_MS + (count - 1) * STEP_MS
    long_before = BASE_MS + count // 4 * STEP_MS

    async def history(txn):
        # Long before the client's last message: a tenth edited, a twentieth deleted.
        await txn.execute("UPDATE messages SET last_modification_ms = ? WHERE chat_header_id = ?"
                          " AND id BETWEEN ? AND ?", long_before, chat, ids[0], ids[count // 10])
        lo, hi = ids[count // 5], ids[count // 5 + count // 20]
        await txn.execute(
            "INSERT INTO deleted_messages (message_id, chat_header_id, creation_ms, deletion_ms)"
            " SELECT id, chat_header_id, creation_ms, ? FROM messages WHERE chat_header_id = ?"
            " AND id BETWEEN ? AND ?", long_before, chat, lo, hi)
        await txn.execute("DELETE FROM messages WHERE chat_header_id = ? AND id BETWEEN ? AND ?",
                          chat, lo, hi)
        # After it: 50 edits and 30 deletions spread over the whole history.
        for k in range(50):
            await txn.execute("UPDATE messages SET last_modification_ms = ? WHERE id = ?",
                              last_written + 5000 + k, ids[(k * 7919) % (count // 3) + 1])
        gone = [ids[count - 2 - k * 1000] for k in range(30)]
        await txn.execute(
            "INSERT INTO deleted_messages (message_id, chat_header_id, creation_ms, deletion_ms)"
            f" SELECT id, chat_header_id, creation_ms, ? FROM messages"
            f" WHERE id IN ({', '.join('?' * len(gone))})", last_written + 6000, *gone)
        await txn.execute(f"DELETE FROM messages WHERE id IN ({', '.join('?' * len(gone))})",
                          *gone)
    await store.db.run(history)
    return chat, ids


def recording(store):
    """Records the statements of the store's transactions: (converted SQL, args)."""
    from syarah.store import database
    recorded: list[tuple[str, tuple]] = []
    cls = database._SqliteTxn if store.db.engine.name == "sqlite" else database._MysqlTxn
    original = cls.fetchall

    async def fetchall(self, sql, *args):
        recorded.append((self.engine.convert(sql), args))
        return await original(self, sql, *args)

    cls.fetchall = fetchall
    return recorded, lambda: setattr(cls, "fetchall", original)


async def timed(store, fn, repeat: int = REPEAT) -> float:
    await fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def statement_ms(store, sql: str, args: tuple, repeat: int = REPEAT) -> float:
    async def run():
        async def q(txn):
            # Straight to the cursor: the SQL is already converted.
            if store.db.engine.name == "sqlite":
                cur = await txn._cursor.execute(sql, args)
                return await cur.fetchall()
            await txn._cursor.execute(sql, args)
            return await txn._cursor.fetchall()
        return await store.db.run(q)
    return await timed(store, run, repeat)


async def plans(store, sql: str, args: tuple) -> list[str]:
    if store.db.engine.name == "sqlite":
        found = await store.db._conn.call(
            lambda conn: conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall())
        return [f"    {row[3]}" for row in found]

    async def q(txn):
        await txn._cursor.execute("EXPLAIN " + sql, args)
        names = [d[0] for d in txn._cursor.description]
        return [dict(zip(names, r)) for r in await txn._cursor.fetchall()]
    lines = []
    for r in await store.db.run(q):
        lines.append(f"    {r['select_type']!s:<16} {r['table']!s:<10} {r['type']!s:<7}"
                     f" key={r['key']!s:<26} rows={r['rows']!s:<8} {r['Extra'] or ''}")
    return lines


async def measure(kind: str, url: str, count: int) -> None:
    from syarah.store import open_store

    store = await open_store(url, pool_size=2, timeout=900)
    try:
        progress(f"{kind}: filling {count:,} messages")
        t = time.perf_counter()
        chat, ids = await fill(store, count)
        if kind == "mysql":
            await store.db.fetchall("ANALYZE TABLE messages, deleted_messages, chat_headers")
        else:
            await store.db.execute("ANALYZE")
        progress(f"{kind}: filled in {time.perf_counter() - t:.0f} s")
        cases = {
            "client holds everything (LastMessageId = the last message)": {chat: ids[-1]},
            "client holds half (LastMessageId in the middle)": {chat: ids[count // 2 - 1]},
            "client holds nothing (LastMessageId = 0)": {chat: 0},
        }
        print(f"\n## {kind}: one chat of {count:,} messages\n")
        for label, after in cases.items():
            recorded, restore = recording(store)
            try:
                result = (await store.sync_chats(after, LIMIT))[chat]
            finally:
                restore()
            total = await timed(store, lambda after=after: store.sync_chats(after, LIMIT))
            print(f"### {label}: sync_chats {total:.2f} ms (median of {REPEAT})")
            print(f"    sent: {len(result.new_messages)} new (more: {result.more_new_messages}),"
                  f" {len(result.updated_messages)} updated"
                  f" (more: {result.more_updated_messages}),"
                  f" {len(result.deleted_message_ids)} deleted"
                  f" (more: {result.more_deleted_message_ids})")
            for sql, args in recorded:
                what = ("since" if "deletions_pruned_ms" in sql else
                        "new messages" if "m.id > " in sql else
                        "edits" if "last_modification_ms >=" in sql else "deletions")
                ms = await statement_ms(store, sql, args)
                print(f"  {what}: {ms:.2f} ms")
                for line in await plans(store, sql, args):
                    print(line)
            print()
        old_sql = store.db.engine.convert(OLD_NEW_MESSAGES)
        for label, last in (("LastMessageId = 0", 0), ("LastMessageId in the middle",
                                                        ids[count // 2 - 1])):
            args = (chat, last, LIMIT + 1)
            try:
                took = f"{await statement_ms(store, old_sql, args, repeat=3):.2f} ms (median of 3)"
            except Exception as exc:
                # It sorts the whole chat in a temporary table, which a full /tmp refuses.
                took = f"failed: {exc}"
            print(f"### before: ROW_NUMBER over every newer message, {label}: {took}")
            for line in await plans(store, old_sql, args):
                print(line)
        print()
        sys.stdout.flush()
    finally:
        await store.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--only", choices=("sqlite", "mysql"))
    args = parser.parse_args(argv)
    if args.only != "mysql":
        folder = tempfile.mkdtemp(prefix="syarah-bench-sync-")
        try:
            asyncio.run(measure("sqlite", f"sqlite:///{folder}/sync.db", args.messages))
        finally:
            for name in os.listdir(folder):
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
    if args.only != "sqlite":
        conn = procs.mysql_connect()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
            cur.execute(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4"
                        " COLLATE utf8mb4_unicode_ci")
        conn.close()
        p = procs.mysql_params()
        try:
            asyncio.run(measure(
                "mysql", f"mysql://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{DB_NAME}",
                args.messages))
        finally:
            procs.drop_database(DB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
