"""Growth: the read events of a user with 1,000 chats as stored messages go from 10k
to 1M, on MariaDB, timed through the real server, with the query plans they rely on.

Rows are bulk-loaded with multi-row INSERTs straight into the tables (bench code may
know table names); the server reads them as if clients had written them. Half of all
messages go to one "hot" chat, so that its history is long enough for a deep
``lastMessageId`` page; the rest are spread over the 1,000 chats. The user has read all
but the last two messages of every chat, as an active user has.

Besides the median wall time of each event, the server's CPU time per call (and
MariaDB's, which other work on the machine may share) is read from /proc, as wall
time on a busy machine says little. Just this part, at 10k and 100k messages, in
about a minute: ``python -m bench.growth 10000 100000`` (prints, writes nothing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid

from bench import procs

CHATS = 1000
BATCH = 2000
REPEAT = 9

OPS = ("findAllMessages (first page)", "findAllMessages (deep page)",
       "findAllChatHeaders", "getMyChats", "getMyFriendships")


class Dataset:
    def __init__(self, db_name: str):
        self.conn = procs.mysql_connect(db_name)
        self.me = str(uuid.uuid4())
        self.others = [str(uuid.uuid4()) for _ in range(CHATS)]
        self.chat_ids: list[int] = []
        self.count = 0

    def _many(self, cur, head: str, rows: list[tuple]):
        width = len(rows[0])
        one = "(" + ", ".join(["%s"] * width) + ")"
        for i in range(0, len(rows), BATCH):
            part = rows[i:i + BATCH]
            cur.execute(head + " VALUES " + ", ".join([one] * len(part)),
                        [v for r in part for v in r])

    def create_people(self):
        now = int(time.time() * 1000) - 10 ** 9
        with self.conn.cursor() as cur:
            self._many(cur, "INSERT INTO users (id, name, avatar, creation_ms, update_ms)",
                       [(u, f"Bench user {i:04d}", None, now, now)
                        for i, u in enumerate([self.me] + self.others)])
            chats = []
            for i, other in enumerate(self.others):
                low, high = sorted((self.me, other))
                chats.append((0, low, high, now + i, now + i))
            self._many(cur, "INSERT INTO chat_headers (is_group, user_low, user_high,"
                            " creation_ms, activity_ms)", chats)
            cur.execute("SELECT id FROM chat_headers ORDER BY id")
            self.chat_ids = [r[0] for r in cur.fetchall()]
            members = []
            for cid, other in zip(self.chat_ids, self.others):
                members += [(cid, self.me, now), (cid, other, now)]
            self._many(cur, "INSERT INTO chat_members (chat_header_id, user_id, joined_ms)",
                       members)
            friends = []
            for other in self.others:
                friends += [(self.me, other, 1, self.me, now, now),
                            (other, self.me, 1, self.me, now, now)]
            self._many(cur, "INSERT INTO friendships (user_id, other_user_id, status,"
                            " requested_by, creation_ms, update_ms)", friends)

    def grow_to(self, total: int, progress):
        base_ms = int(time.time() * 1000) - 10 ** 8
        with self.conn.cursor() as cur:
            while self.count < total:
                n = min(20_000, total - self.count)
                rows = []
                for k in range(self.count, self.count + n):
                    # every other message in the hot chat, the rest round-robin
                    chat_index = 0 if k % 2 == 0 else (k // 2) % CHATS
                    author = self.me if k % 3 == 0 else self.others[chat_index]
                    rows.append((self.chat_ids[chat_index], author,
                                 f"Growth message number {k} with a little text", 0,
                                 base_ms + k))
                self._many(cur, "INSERT INTO messages (chat_header_id, user_id, message,"
                                " message_type, creation_ms)", rows)
                self.count += n
                progress(f"growth: loading messages {self.count:,}/{total:,}")
            # What the server keeps up to date on every createMessage, set in bulk.
            cur.execute(
                "UPDATE chat_headers ch JOIN (SELECT chat_header_id, MAX(id) AS last_id,"
                " COUNT(*) AS n FROM messages GROUP BY chat_header_id) x"
                " ON x.chat_header_id = ch.id JOIN messages m ON m.id = x.last_id"
                " SET ch.last_message_id = x.last_id, ch.last_message_ms = m.creation_ms,"
                " ch.activity_ms = m.creation_ms, ch.message_count = x.n")
            cur.execute(
                "UPDATE chat_members cm SET last_read_message_id = COALESCE((SELECT m.id"
                " FROM messages m WHERE m.chat_header_id = cm.chat_header_id"
                " ORDER BY m.id DESC LIMIT 1 OFFSET 2), 0) WHERE cm.user_id = %s", (self.me,))
            cur.execute("ANALYZE TABLE messages, chat_headers, chat_members, friendships")
            cur.fetchall()

    def deep_id(self) -> int:
        """A message id in the middle of the hot chat's history."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT MIN(id), MAX(id) FROM messages WHERE chat_header_id = %s",
                        (self.chat_ids[0],))
            lo, hi = cur.fetchone()
            return (lo + hi) // 2


def requests(ds: Dataset, token: str) -> dict[str, tuple[str, dict]]:
    hot = ds.chat_ids[0]
    return {
        OPS[0]: ("findAllMessages", {"chatHeaderId": hot, "maxResultCount": 20}),
        OPS[1]: ("findAllMessages", {"chatHeaderId": hot, "maxResultCount": 20,
                                     "lastMessageId": ds.deep_id()}),
        OPS[2]: ("findAllChatHeaders", {"maxResultCount": 20}),
        OPS[3]: ("getMyChats", {}),
        OPS[4]: ("getMyFriendships", {}),
    }


def cpu_ms(pid: int | None) -> float:
    """User + system CPU time of a process so far, in milliseconds."""
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


async def time_events(url: str, ds: Dataset, token: str, server_pid: int | None = None,
                      db_pid: int | None = None) -> dict[str, dict[str, float]]:
    """Median milliseconds of each event, called one after another over Socket.IO, and
    the server's and MariaDB's CPU milliseconds per call over the same calls."""
    import socketio

    client = socketio.AsyncClient(reconnection=False)
    await client.connect(f"{url}?userId={ds.me}", auth={"accessToken": token},
                         transports=["websocket"], wait_timeout=10)
    out = {"ms": {}, "server_cpu_ms": {}, "db_cpu_ms": {}}
    try:
        for label, (event, data) in requests(ds, token).items():
            reply = await client.call(event, data, timeout=30)
            if isinstance(reply, dict) and "error" in reply:
                raise RuntimeError(f"{event}: {reply}")
            times = []
            server0, db0 = cpu_ms(server_pid), cpu_ms(db_pid)
            for _ in range(REPEAT):
                t = time.perf_counter()
                await client.call(event, data, timeout=30)
                times.append((time.perf_counter() - t) * 1000)
            out["ms"][label] = round(statistics.median(times), 2)
            out["server_cpu_ms"][label] = round((cpu_ms(server_pid) - server0) / REPEAT, 1)
            out["db_cpu_ms"][label] = round((cpu_ms(db_pid) - db0) / REPEAT, 1)
    finally:
        await client.disconnect()
    return out


async def statements(database_url: str, ds: Dataset) -> dict[str, list[tuple[str, tuple]]]:
    """The SQL each event runs, recorded by calling the product's handlers in-process
    on the same database, so the plans shown are of the statements the server sends."""
    from syarah.handlers import chats, friendships, messages
    from syarah.handlers.context import Context, Services
    from syarah.presence import LocalPresence
    from syarah.protocol import inbound as dto
    from syarah.protocol.fields import decode
    from syarah.store import database, open_store
    from syarah.types import User

    store = await open_store(database_url, run_migrations=False)
    recorded: list[tuple[str, tuple]] = []
    original = database._MysqlTxn.fetchall

    async def recording(self, sql, *args):
        recorded.append((self.engine.convert(sql), args))
        return await original(self, sql, *args)

    database._MysqlTxn.fetchall = recording
    handlers = {"findAllMessages": (messages.find_all_messages, dto.FindAllMessages),
                "findAllChatHeaders": (chats.find_all_chat_headers, dto.FindAllChatHeaders),
                "getMyChats": (chats.get_my_chats, dto.GetMyChats),
                "getMyFriendships": (friendships.get_my_friendships, dto.GetMyFriendships)}
    services = Services(store=store, presence=LocalPresence(), verifier=None, rooms=None,
                        users=None, settings=None)
    ctx = Context(services, User(ds.me, "Bench user"))
    out = {}
    try:
        for label, (event, data) in requests(ds, "").items():
            handler, cls = handlers[event]
            recorded.clear()
            await handler(ctx, decode(cls, data))
            out[label] = list(recorded)
    finally:
        database._MysqlTxn.fetchall = original
        await store.close()
    return out


def explain(ds: Dataset, sql: str, args: tuple) -> list[str]:
    with ds.conn.cursor() as cur:
        cur.execute("EXPLAIN " + sql, args)
        names = [d[0] for d in cur.description]
        lines = []
        for row in cur.fetchall():
            r = dict(zip(names, row))
            lines.append(f"  {r['table']!s:<6} {r['type']!s:<7} key={r['key']!s:<22}"
                         f" rows={r['rows']!s:<8} {r['Extra'] or ''}")
        return lines


def run(sizes: list[int], progress) -> dict:
    """Time the events at each size; ``ms`` (the table's figures), ``server_cpu_ms``
    and ``db_cpu_ms`` are keyed by size, then by event."""
    from syarah.auth import mint

    db_name, url = procs.new_database("_growth")
    server = None
    try:
        server = procs.Server("product", url)  # migrates the empty database
        ds = Dataset(db_name)
        ds.create_people()
        token = mint(procs.SECRET, ds.me, "Bench user", hours=4)
        results = {"ms": {}, "server_cpu_ms": {}, "db_cpu_ms": {}}
        plans = {}
        for size in sizes:
            ds.grow_to(size, progress)
            progress(f"growth: timing events at {size:,} messages")
            timed = asyncio.run(time_events(server.url, ds, token, server.pid,
                                            procs.db_pid()))
            for key, value in timed.items():
                results[key][size] = value
            progress(f"growth: at {size:,} messages, median ms (server CPU ms):"
                     + "; ".join(f" {op} {timed['ms'][op]} ({timed['server_cpu_ms'][op]})"
                                 for op in OPS))
            if size == sizes[-1]:
                for label, stmts in asyncio.run(statements(url, ds)).items():
                    plans[label] = [(sql, explain(ds, sql, args)) for sql, args in stmts]
        return {"sizes": sizes, **results, "plans": plans}
    finally:
        if server is not None:
            server.stop()
        procs.drop_database(db_name)


def main(argv: list[str]) -> int:
    sizes = [int(a.replace("_", "").replace(",", "")) for a in argv] or [10_000, 100_000]
    load = os.getloadavg()
    grown = run(sizes, lambda text: print(text, file=sys.stderr))
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f},"
          f" after: {os.getloadavg()[0]:.2f}")
    print("| event | " + " | ".join(f"{s:,} msgs: ms (server CPU, MariaDB CPU)"
                                     for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for op in OPS:
        print(f"| {op} | " + " | ".join(
            f"{grown['ms'][s][op]} ({grown['server_cpu_ms'][s][op]},"
            f" {grown['db_cpu_ms'][s][op]})" for s in sizes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
