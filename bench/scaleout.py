"""python -m bench.scaleout [--quick]: several nodes on one MariaDB and one Redis.

(a) what the traffic of node 1 costs an idle node 2 (CPU per message of node 1's),
    with python-socketio's one-channel manager and with a channel per room;
(b) delivery latency to a socket on another node against one on the same node;
(c) the total rate held by three nodes against one;
and the per-message costs a capacity model needs. CPU is read from /proc/<pid>/stat
over a fixed workload (the machine is shared, so wall-clock rates are noisy); the load
average is given with each figure. Prints a table and writes bench/SCALEOUT.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from bench import procs

TICK = 100
# Delivery p99 (ms) within which a rate counts as held.
P99_LIMIT = 100
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
MANAGERS = {"broadcast": ("--redis-manager=broadcast",),
            "rooms": ("--redis-manager=rooms",)}


def progress(text: str) -> None:
    sys.stderr.write(f"[scaleout] {text}\n")
    sys.stderr.flush()


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class OwnRedis:
    """A redis-server of the benchmark's own on a free port, stopped by its pid."""

    def __init__(self):
        self.port = procs.free_port()
        self.dir = tempfile.mkdtemp(prefix="syarah-bench-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = procs.Proc([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", self.dir],
                               log_name="redis")
        procs.wait_listening(self.port, self.proc)

    def version(self) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), "info", "server"],
                             capture_output=True, text=True).stdout
        return next((line.split(":")[1].strip() for line in out.splitlines()
                     if line.startswith("redis_version:")), "?")

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Deployment:
    """Nodes of one deployment (one database, one Redis prefix), started on demand."""

    def __init__(self, redis: OwnRedis, database_url: str, manager: str):
        self.redis = redis
        self.database_url = database_url
        self.prefix = "bench-" + uuid.uuid4().hex[:8]
        self.manager = manager
        self.nodes: list[procs.Server] = []

    def start(self, count: int) -> list[procs.Server]:
        for i in range(count):
            self.nodes.append(procs.Server(
                "product", self.database_url, core=str(i % 2), extra=(
                    f"--redis-url={self.redis.url}", f"--redis-prefix={self.prefix}",
                    *MANAGERS[self.manager])))
        return self.nodes

    def stop(self):
        for n in self.nodes:
            n.stop()
        self.nodes = []


def users_on(node: procs.Server, count: int, prefix: str) -> list[dict]:
    return [dict(u, url=node.url) for u in procs.users(count, prefix)]


def drive(pairs, idle, rates, seconds: float, pids: dict, label: str) -> list[dict]:
    """One row per rate (a ramp stops after two rates in a row not held)."""
    config = {"pairs": pairs, "idle": idle, "rates": list(rates), "seconds": seconds,
              "warmup": 2.0, "grace": 3.0, "pids": pids, "p99Limit": P99_LIMIT}
    gen = procs.node("scaleout.js", config, "scaleout-" + label)
    rows = []
    try:
        for line in gen.p.stdout:
            row = json.loads(line)
            if "error" in row:
                raise RuntimeError(f"generator failed: {row['error']}\n{gen.log()}")
            row["load"] = load()
            rows.append(row)
    finally:
        gen.stop()
    return rows


def pairs_between(a: list[dict], b: list[dict], label: str) -> list[dict]:
    return [{"from": x, "to": y, "label": label} for x, y in zip(a, b)]


def us_per(ticks: float, count: int) -> float | None:
    return round(ticks / TICK / count * 1e6, 1) if count else None


def part_a(redis, database_url, manager, rate, seconds, users) -> dict:
    """All traffic among sockets of node 1; node 2 holds idle sockets of its own."""
    d = Deployment(redis, database_url, manager)
    try:
        one, two = d.start(2)
        talk = users_on(one, users, f"a{manager}")
        quiet = users_on(two, users, f"i{manager}")
        half = users // 2
        (row,) = drive(pairs_between(talk[:half], talk[half:], "same"),
                       pairs_between(quiet[:half], quiet[half:], "idle"),
                       [rate], seconds, {"one": one.pid, "two": two.pid}, "a-" + manager)
    finally:
        d.stop()
    row["one_us"] = us_per(row["ticks"]["one"], row["sent"])
    row["two_us"] = us_per(row["ticks"]["two"], row["sent"])
    row["two_pct"] = round(100 * row["two_us"] / row["one_us"], 1) if row["one_us"] else None
    # A clock tick is 10 ms: none in the window means less than one tick's worth.
    row["two_shown"] = (f"< {us_per(1, row['sent'])}" if row["ticks"]["two"] == 0
                        else row["two_us"])
    return row


def part_b(redis, database_url, manager, rate, seconds, users, mixed: bool) -> dict:
    """Senders on node 1; receivers on node 2 (all, or half of them, the others on 1)."""
    d = Deployment(redis, database_url, manager)
    try:
        one, two = d.start(2)
        senders = users_on(one, users // 2, f"s{manager}")
        if mixed:
            quarter = users // 4
            pairs = (pairs_between(senders[:quarter], users_on(one, quarter, "rs"), "same")
                     + pairs_between(senders[quarter:], users_on(two, users // 2 - quarter,
                                                                 "rc"), "cross"))
        else:
            pairs = pairs_between(senders, users_on(two, users // 2, "rc"), "cross")
        (row,) = drive(pairs, [], [rate], seconds, {"one": one.pid, "two": two.pid},
                       f"b-{manager}-{mixed}")
    finally:
        d.stop()
    row["one_us"] = us_per(row["ticks"]["one"], row["sent"])
    row["two_us"] = us_per(row["ticks"]["two"], row["sent"])
    return row


def part_c(redis, database_url, manager, count, rates, seconds, users) -> list[dict]:
    """``count`` nodes, each with its own talking pairs, at rising total rates."""
    d = Deployment(redis, database_url, manager)
    try:
        nodes = d.start(count)
        pairs = []
        per = max(2, users // count)
        for i, n in enumerate(nodes):
            us = users_on(n, per, f"c{count}{i}")
            pairs.append(pairs_between(us[:per // 2], us[per // 2:], "same"))
        # Interleaved so each node gets its share of the rate.
        pairs = [p for group in zip(*pairs) for p in group]
        rows = drive(pairs, [], rates, seconds, {f"n{i}": n.pid for i, n in enumerate(nodes)},
                     f"c-{count}")
    finally:
        d.stop()
    for row in rows:
        row["nodes"] = count
        row["us_per_msg"] = us_per(sum(row["ticks"].values()), row["sent"])
    return rows


def capacity(c_same: float, c_send: float, c_recv_old: float, c_recv: float,
             c_ign: float, nodes: int) -> tuple[int, int]:
    """msg/s a deployment of ``nodes`` one-core nodes holds at full CPU, two-member
    rooms whose members sit on random nodes (old manager, new manager). Per message
    sent anywhere, each node's share: its own messages (1/N of them; the receiver here
    with probability 1/N, c_same, else c_send), the messages of others for its sockets
    (c_recv), and with the old manager the messages of others it hears for nothing
    (c_ign)."""
    n = nodes
    own = (c_same + (n - 1) * c_send) / n ** 2
    remote = (n - 1) / n ** 2
    ignored = ((n - 1) / n) ** 2
    old = 1e6 / (own + remote * c_recv_old + ignored * c_ign)
    new = 1e6 / (own + remote * c_recv)
    return round(old), round(new)


def render(info, a_rows, b_rows, c_rows, model, capacities) -> str:
    out = ["# Several nodes: what the Redis manager costs", "",
           f"Run {info['when']} on {info['cpus']} cores, Redis {info['redis']}, MariaDB "
           f"(shared), `{info['command']}`. CPU from /proc/<pid>/stat over the measured "
           "window (after a 2 s warm-up), per createMessage sent; load average "
           "(1/5/15 min) at the end of each run. Other jobs shared the machine.", "",
           "## (a) An idle node's cost of another node's traffic", "",
           f"{info['users']} users on node 1 in two-member rooms, {info['rate']} msg/s among "
           f"them for {info['seconds']} s; node 2 holds {info['users']} idle sockets in "
           "rooms of their own.", "",
           "| manager | sent | node 1 µs/msg | node 2 µs/msg | node 2 / node 1 | load |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in a_rows:
        out.append(f"| {r['manager']} | {r['sent']} | {r['one_us']} | {r['two_shown']} | "
                   f"{r['two_pct']} % | {r['load']} |")
    out += ["", "## (b) Delivery latency across nodes", "",
            f"Senders on node 1 at {info['rate']} msg/s; receivers on node 1 (same) or on "
            "node 2 (cross); delivery = createMessage sent to `message` received, ms.", "",
            "| manager | pairs | same p50 | same p99 | cross p50 | cross p99 | node 1 µs/msg "
            "| node 2 µs/msg | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in b_rows:
        s, c = r["latency"].get("same", {}), r["latency"].get("cross", {})
        out.append(f"| {r['manager']} | {'half cross' if s else 'all cross'} | "
                   f"{s.get('p50', '—')} | {s.get('p99', '—')} | {c.get('p50')} | "
                   f"{c.get('p99')} | {r['one_us']} | {r['two_us']} | {r['load']} |")
    out += ["", "## (c) Nodes on this machine", "",
            "Each node's own pairs at rising total rates (rooms manager); held = every "
            f"message acked and delivered, p99 delivery <= {P99_LIMIT} ms, >= 95 % of the "
            "rate sent. Two cores carry all the nodes, the generator, MariaDB, Redis and "
            "the other jobs of the machine.", "",
            "| nodes | rate | sent | held | p50 ms | p99 ms | µs/msg (all nodes) | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in c_rows:
        lat = r["latency"]["same"]
        out.append(f"| {r['nodes']} | {r['rate']} | {r['sent']} | "
                   f"{'yes' if r['held'] else 'no'} | {lat['p50']} | {lat['p99']} | "
                   f"{r['us_per_msg']} | {r['load']} |")
    best = {}
    for r in c_rows:
        if r["held"]:
            best[r["nodes"]] = max(best.get(r["nodes"], 0), r["rate"])
    if c_rows:
        out += ["", "Highest total rate held: " + ", ".join(
            f"{n} node{'s' if n > 1 else ''} {best.get(n, 'none of the rates')}"
            + (" msg/s" if n in best else "") for n in sorted({r['nodes'] for r in c_rows}))
            + "."]
    out += ["", "## Per-message costs for the capacity model", "",
            "| cost | µs of node CPU |", "| --- | --- |"]
    for name, value in model.items():
        out.append(f"| {name} | {value} |")
    if capacities:
        out += ["", "Capacity (msg/s) of N one-core nodes at full CPU, two-member rooms "
                "with members on random nodes, from the costs above (see the README):", "",
                "| nodes | broadcast | rooms |", "| --- | --- | --- |"]
        out += [f"| {n} | {old} | {new} |" for n, old, new in capacities]
    out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaleout")
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 2 minutes)")
    ap.add_argument("--rate", type=int, default=300)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--no-write", action="store_true", help="do not write bench/SCALEOUT.md")
    ap.add_argument("--only", default="", help="comma list: a,b,c")
    args = ap.parse_args(argv)
    seconds = 5 if args.quick else 10
    parts = set(args.only.split(",")) if args.only else {"a", "b", "c"}
    redis = OwnRedis()
    name, database_url = procs.new_database("_scaleout")
    a_rows, b_rows, c_rows = [], [], []
    try:
        if "a" in parts:
            for manager in MANAGERS:
                progress(f"(a) {manager}: {args.rate} msg/s on node 1, node 2 idle")
                row = part_a(redis, database_url, manager, args.rate, seconds, args.users)
                row["manager"] = manager
                a_rows.append(row)
                progress(f"    node 1 {row['one_us']} µs/msg, node 2 {row['two_us']} µs/msg "
                         f"({row['two_pct']} %), load {row['load']}")
        if "b" in parts:
            for manager, mixed in (("rooms", True), ("rooms", False), ("broadcast", False)):
                progress(f"(b) {manager}: senders on node 1, {'half' if mixed else 'all'} "
                         "receivers on node 2")
                row = part_b(redis, database_url, manager, args.rate, seconds, args.users,
                             mixed)
                row["manager"] = manager
                b_rows.append(row)
                progress(f"    {row['latency']}, node 1 {row['one_us']} µs/msg, node 2 "
                         f"{row['two_us']} µs/msg, load {row['load']}")
        if "c" in parts:
            rates = [200, 400, 600, 800, 1000, 1200, 1500]
            for count in (1, 3):
                progress(f"(c) {count} node(s), rising rates")
                rows = part_c(redis, database_url, "rooms", count, rates, seconds / 2,
                              max(args.users, 60))
                c_rows += rows
                for row in rows:
                    progress(f"    {row['rate']} msg/s held {row['held']}, "
                             f"{row['latency']['same']}, {row['us_per_msg']} µs/msg, "
                             f"load {row['load']}")
    finally:
        redis_version = redis.version()
        redis.stop()
        procs.drop_database(name)
    model = {}
    by = {r["manager"]: r for r in a_rows}
    if by:
        model["own message, receivers on the same node (rooms)"] = by["rooms"]["one_us"]
        model["own message, receivers on the same node (broadcast)"] = by["broadcast"]["one_us"]
        model["ignored message of another node (broadcast)"] = by["broadcast"]["two_us"]
        model["another node's message in rooms it does not hold (rooms)"] = by["rooms"]["two_us"]
    cross = {r["manager"]: r for r in b_rows if "same" not in r["latency"]}
    for manager, r in cross.items():
        model[f"own message, receiver on another node: sender ({manager})"] = r["one_us"]
        model[f"received cross-node message, delivered ({manager})"] = r["two_us"]
    capacities = []
    if by and "rooms" in cross:
        c_same = by["rooms"]["one_us"]
        c_send = cross["rooms"]["one_us"]
        c_recv = cross["rooms"]["two_us"]
        c_recv_old = cross.get("broadcast", cross["rooms"])["two_us"]
        c_ign = by["broadcast"]["two_us"]
        capacities = [(n, *capacity(c_same, c_send, c_recv_old, c_recv, c_ign, n))
                      for n in (1, 2, 4, 8, 16)]
    info = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(), "redis": redis_version, "rate": args.rate,
            "users": args.users, "seconds": seconds,
            "command": "python -m bench.scaleout" + (" --quick" if args.quick else "")}
    report = render(info, a_rows, b_rows, c_rows, model, capacities)
    print(report)
    if not args.no_write and parts == {"a", "b", "c"}:
        with open(os.path.join(procs.HERE, "SCALEOUT.md"), "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
