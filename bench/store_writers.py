"""New messages through syarah.store alone, no Socket.IO: W writers, each sending its
next message when the last one is stored, for a fixed number of messages.

    PYTHONPATH=. python -m bench.store_writers mysql  [writers] [messages] [k=v ...]
    PYTHONPATH=. python -m bench.store_writers sqlite [writers] [messages] [k=v ...]

k=v are configure_batches() arguments (max_size, in_flight) where the store has
them; one_trip=0 sends MariaDB's last statement and COMMIT as two round trips;
readers=N adds N tasks reading message pages meanwhile (reads/s and their p99).
Prints messages/s, CPU microseconds per message of this process and of mariadbd
(from /proc, so other clients of the same MariaDB count too: watch the load), the
batches' mean size, and the load average.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid

from bench.procs import MYSQL_URL, mysql_connect


def cpu_seconds(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mariadb_pid() -> int | None:
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() in ("mariadbd", "mysqld"):
                        return int(pid)
            except OSError:
                pass
    return None


async def main(kind: str, writers: int, messages: int, options: dict) -> dict:
    from syarah.store import open_store
    from syarah.types import User

    if kind == "sqlite":
        url, drop = f"sqlite:///{tempfile.mkdtemp(prefix='syarah-bw-')}/chat.db", None
    else:
        name = "syarah_bw_" + uuid.uuid4().hex[:10]
        conn = mysql_connect()
        conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        url, drop = MYSQL_URL.rstrip("/") + "/" + name, name
    store = await open_store(url, pool_size=max(10, writers))
    shown = dict(options)
    readers = options.pop("readers", 0)
    if "one_trip" in options:
        from syarah.store import database
        database._MysqlTxn.one_trip_commit = bool(options.pop("one_trip"))
    if hasattr(store, "configure_batches") and options:
        store.configure_batches(**options)
    now = int(time.time() * 1000)
    users, chats = [], []
    for n in range(writers):
        users.append(User(str(uuid.uuid4()), f"w{n}", None))
        await store.upsert_user(users[-1], now)
    # Two writers a chat, as in the benchmark's pairs.
    for n in range(0, writers, 2):
        pair = users[n:n + 2]
        if len(pair) == 2:
            chats.append(await store.get_or_create_individual_chat(pair[0].id, pair[1].id, now))
        else:
            chats.append(await store.create_group("g", None, pair[0].id, [], now))
    per = messages // writers

    async def writer(n: int):
        chat = chats[n // 2]
        for i in range(per):
            await store.add_message(chat.id, users[n], f"message {i} of {n}", 0, None,
                                    f"{n}-{i}", now)

    mdb = mariadb_pid() if kind != "sqlite" else None
    await asyncio.gather(*[store.add_message(chats[n // 2].id, users[n], "warm", 0, None,
                                             None, now) for n in range(writers)])
    batches0 = getattr(getattr(store, "batcher", None), "batches", 0)
    writing, reads = True, []

    async def reader(n: int):
        while writing:
            began = time.monotonic()
            await store.message_page(chats[n % len(chats)].id, None, 0, 20)
            reads.append(time.monotonic() - began)

    reading = [asyncio.ensure_future(reader(n)) for n in range(readers)]
    cpu0, mcpu0, t0 = cpu_seconds(), cpu_seconds(mdb) if mdb else 0.0, time.monotonic()
    await asyncio.gather(*[writer(n) for n in range(writers)])
    t1, cpu1, mcpu1 = time.monotonic(), cpu_seconds(), cpu_seconds(mdb) if mdb else 0.0
    writing = False
    await asyncio.gather(*reading)
    reads.sort()
    batches = getattr(getattr(store, "batcher", None), "batches", 0) - batches0
    await store.close()
    if drop:
        conn.cursor().execute(f"DROP DATABASE {drop}")
    done = per * writers
    return {
        "store": kind, "writers": writers, "messages": done, **shown,
        "msg_per_s": round(done / (t1 - t0)),
        "py_us_per_msg": round((cpu1 - cpu0) / done * 1e6),
        "mariadb_us_per_msg": round((mcpu1 - mcpu0) / done * 1e6) if mdb else None,
        "mean_batch": round(done / batches, 1) if batches else None,
        **({"reads_per_s": round(len(reads) / (t1 - t0)),
            "read_p99_ms": round(reads[int(len(reads) * 0.99)] * 1000, 2)} if reads else {}),
        "load": os.getloadavg()[0],
    }


if __name__ == "__main__":
    kind = sys.argv[1]
    writers = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    messages = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    options = {k: int(v) for k, v in (a.split("=", 1) for a in sys.argv[4:])}
    print(asyncio.run(main(kind, writers, messages, options)))
