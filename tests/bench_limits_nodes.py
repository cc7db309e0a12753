"""By hand: what the per-user limits across nodes cost a node per limited event.

    .venv/bin/python tests/bench_limits_nodes.py [events]

Two nodes on one MariaDB database and the Redis at SYARAH_TEST_REDIS (a prefix of its
own). Ann sends ``events`` roomTyping events (limited, answered FORBIDDEN before any
store query: a chat she has not joined) on her socket on node one: first while all her
sockets are on node one, then while she also holds a socket on node two, then after she closed that one. Printed: node
one's CPU (user + sys, /proc/<pid>/stat) per event, the shared-bucket round trips
node one made (Redis's EVALSHA count), and the load average."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis  # noqa: E402

from conftest import ServerProcess, User, new_database_url, register  # noqa: E402
from test_scaleout import REDIS_URL  # noqa: E402


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def evalsha_calls(r) -> int:
    return int(r.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


async def burst(client, events: int) -> None:
    for _ in range(events):
        reply = await client.call("roomTyping", {"chatHeaderId": 999_999, "isTyping": True})
        assert reply.get("code") == "FORBIDDEN", reply


async def measure(node, client, events: int, r) -> tuple[float, int]:
    await burst(client, 50)     # warm up
    calls, cpu = evalsha_calls(r), cpu_seconds(node.proc.pid)
    await burst(client, events)
    return ((cpu_seconds(node.proc.pid) - cpu) / events * 1e6,
            evalsha_calls(r) - calls)


async def main(events: int):
    url, cleanup = new_database_url("mysql")
    prefix = "syarah-bench-" + uuid.uuid4().hex[:8]
    flags = (f"--redis-url={REDIS_URL}", f"--redis-prefix={prefix}", "--log-level=warning",
             "--rate-room-typing-user=1000000/10", "--rate-room-typing-address=1000000/10")
    one = ServerProcess(url, *flags).start()
    two = ServerProcess(url, *flags).start()
    r = redis.Redis.from_url(REDIS_URL)
    try:
        ann = User(one, "Ann")
        await register(ann)
        a1 = await ann.connect()
        alone = await measure(one, a1, events, r)
        a2 = await User(two, "Ann", user_id=ann.id).connect()
        await asyncio.sleep(0.5)
        spread = await measure(one, a1, events, r)
        await a2.close()
        await asyncio.sleep(0.5)
        again = await measure(one, a1, events, r)
        for name, (us, calls) in (("on node one only", alone), ("on both nodes", spread),
                                  ("on node one only again", again)):
            print(f"Ann {name}: node one {us:.0f} µs CPU per roomTyping, "
                  f"{calls / events:.2f} Redis round trips per event "
                  f"({calls} over {events})")
        print("load average:", open("/proc/loadavg").read().split()[:3])
        await a1.close()
    finally:
        one.stop()
        two.stop()
        cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
