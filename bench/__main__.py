"""python -m bench [--quick]: the product against its transport ceiling, one table.

Message path and idle connections for three servers side by side in one run (the
product on MariaDB, bare python-socketio on Tornado, Node's socket.io), then growth of
the read events on MariaDB. Prints the table and writes bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from bench import growth, loadtest, procs

KINDS = ("product", "python-socketio", "node-socket.io")
STARTED = time.time()


def progress(text: str) -> None:
    line = f"[{time.time() - STARTED:5.0f}s] {text}"
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K" + line[:150])
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def machine() -> dict:
    def out(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"
    from importlib import metadata

    import tornado
    with open(os.path.join(procs.NODE_DIR, "node_modules", "socket.io", "package.json")) as f:
        sio_node = json.load(f)["version"]
    with open(os.path.join(procs.NODE_DIR, "node_modules", "socket.io-client", "package.json")) as f:
        sio_client = json.load(f)["version"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    return {
        "cpu": f"{os.cpu_count()} x {cpu}", "kernel": platform.release(),
        "python": platform.python_version(), "tornado": tornado.version,
        "python-socketio": metadata.version("python-socketio"),
        "python-engineio": metadata.version("python-engineio"),
        "orjson": metadata.version("orjson"),
        "node": out("node", "--version"), "socket.io (node)": sio_node,
        "socket.io-client": sio_client,
        "mariadb": out("mysql", "--version"),
        "load before run": out("uptime"),
    }


def busy_note() -> str:
    load1 = os.getloadavg()[0]
    return (f"1-minute load average {load1:.2f} on {os.cpu_count()} cores before the run"
            + (" - the machine was BUSY (other jobs running), absolute figures are noisy;"
               " compare ratios" if load1 > 0.5 else " - the machine was quiet"))


def held_rate(steps: list[dict]) -> int:
    held = [s["rate"] for s in steps if s["held"] and not s.get("fixed")]
    return max(held) if held else 0


def at_rate(steps: list[dict], rate: int) -> dict | None:
    """The fixed point at ``rate`` (measured whatever the ramp reached)."""
    return next((s for s in steps if s["rate"] == rate and s.get("fixed")), None)


def median_of(rounds, rate, key):
    vals = [r[key] for r in (at_rate(s, rate) for s in rounds) if r and r[key] is not None]
    return round(statistics.median(vals), 1) if vals else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("--quick", action="store_true", help="about two minutes")
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--only", default="", help="comma list: messages,connections,growth")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    ap.add_argument("--render", action="store_true",
                    help="rewrite bench/RESULTS.md from the last run's bench/results.json")
    args = ap.parse_args(argv)
    if args.render:
        with open(os.path.join(procs.HERE, "results.json")) as f:
            saved = json.load(f)
        r = saved["run"]
        if saved["growth"]:
            # JSON turned the sizes into strings
            saved["growth"]["ms"] = {int(k): v for k, v in saved["growth"]["ms"].items()}
        report = render(saved["messages"], saved["connections"], saved["growth"], r["quick"],
                        r["rounds"], r["step_seconds"], r["pairs"], saved["note"],
                        saved["machine"], r["command"])
        print(report["table"])
        with open(os.path.join(procs.HERE, "RESULTS.md"), "w") as f:
            f.write(report["markdown"])
        return 0
    quick = args.quick
    parts = set(args.only.split(",")) if args.only else {"messages", "connections", "growth"}
    rounds = 1 if quick else 2
    step_seconds = 2 if quick else 2.5
    conns = {"product": 2000 if quick else 15000,
             "python-socketio": 2000 if quick else 5000,
             "node-socket.io": 2000 if quick else 5000,
             # the stack's own cost per connection, without the compressor
             "python-socketio-nodeflate": 2000 if quick else 3000}
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    note = busy_note()
    info = machine()
    progress(note)

    db_name, db_url = procs.new_database()
    msg = {k: [] for k in KINDS}
    idle = {}
    grow = None
    try:
        if "messages" in parts:
            # Rounds interleave the servers so that noise from other jobs falls on all.
            for r in range(rounds):
                for kind in KINDS:
                    server = procs.Server(kind, db_url)
                    try:
                        msg[kind].append(loadtest.message_ramp(
                            server, args.pairs, step_seconds, progress,
                            f"messages round {r + 1}/{rounds} {kind}"))
                    finally:
                        server.stop()
        if "connections" in parts:
            for kind in (*KINDS, "python-socketio-nodeflate"):
                server = procs.Server(kind, db_url)
                try:
                    idle[kind] = loadtest.idle_connections(
                        server, conns[kind], progress, f"connections {kind}")
                finally:
                    server.stop()
    finally:
        procs.drop_database(db_name)
    if "growth" in parts:
        grow = growth.run(sizes, progress)
    if sys.stderr.isatty():
        sys.stderr.write("\n")

    command = " ".join(["bench/run"] + (argv if argv is not None else sys.argv[1:]))
    report = render(msg, idle, grow, quick, rounds, step_seconds, args.pairs, note, info,
                    command)
    print(report["table"])
    if not args.no_write:
        with open(os.path.join(procs.HERE, "RESULTS.md"), "w") as f:
            f.write(report["markdown"])
        with open(os.path.join(procs.HERE, "results.json"), "w") as f:
            json.dump({"messages": msg, "connections": idle, "growth": grow,
                       "machine": info, "note": note,
                       "run": {"quick": quick, "rounds": rounds, "step_seconds": step_seconds,
                               "pairs": args.pairs, "command": command}}, f, indent=1)
    return 0


def fmt(x, unit=""):
    if x is None:
        return "-"
    return f"{x:g}{unit}" if isinstance(x, (int, float)) else str(x)


def render(msg, idle, grow, quick, rounds, step_seconds, pairs, note, info, command):
    rows = []
    if any(msg.values()):
        held = {k: [held_rate(s) for s in msg[k]] for k in KINDS if msg[k]}
        ref = max(held.get("python-socketio", [0])) or None
        rows.append(("Message path", "", "", "", ""))
        rows.append(("highest rate held, msg/s (each round)",
                     *[f"{max(held[k])} ({', '.join(map(str, held[k]))})" if k in held else "-"
                       for k in KINDS],
                     f"product/python-socketio = {max(held['product']) / ref:.2f}" if ref and "product" in held else ""))
        for key, label in (("ack_p50", "ack p50 ms @1000/s"), ("ack_p90", "ack p90 ms @1000/s"),
                           ("ack_p99", "ack p99 ms @1000/s"),
                           ("deliv_p50", "delivery p50 ms @1000/s"),
                           ("deliv_p90", "delivery p90 ms @1000/s"),
                           ("deliv_p99", "delivery p99 ms @1000/s"),
                           ("server_us_per_msg", "server CPU us/msg @1000/s"),
                           ("db_us_per_msg", "MariaDB CPU us/msg @1000/s"),
                           ("server_cpu", "server CPU % @1000/s"),
                           ("gen_cpu", "load generator CPU % @1000/s")):
            vals = [median_of(msg[k], 1000, key) if msg[k] else None for k in KINDS]
            rows.append((label, *[fmt(v) for v in vals], ""))
        top = [max((s for rd in msg[k] for s in rd if s["held"] and not s.get("fixed")), key=lambda s: s["rate"],
                   default=None) if msg[k] else None for k in KINDS]
        rows.append(("load generator CPU % at highest held rate",
                     *[fmt(t["gen_cpu"]) if t else "-" for t in top], ""))
    if idle:
        rows.append(("Idle authenticated connections", "", "", "", ""))
        rows.append(("connections held (asked)",
                     *[f"{idle[k]['held']} ({idle[k]['count']})" if k in idle else "-" for k in KINDS], ""))
        bare = idle.get("python-socketio-nodeflate")
        rows.append(("RSS KiB per connection",
                     *[fmt(idle[k]["kib_per_conn"]) if k in idle else "-" for k in KINDS],
                     f"python-socketio without permessage-deflate: {bare['kib_per_conn']} KiB"
                     if bare else ""))
        rows.append(("connects per second",
                     *[fmt(idle[k]["connect_rate"]) if k in idle else "-" for k in KINDS], ""))
    table = ["| measure | product (MariaDB) | python-socketio relay | node socket.io relay | ratio / note |",
             "|---|---|---|---|---|"]
    for r in rows:
        table.append("| " + " | ".join(r) + " |" if r[1] or r[2] else f"| **{r[0]}** | | | | |")
    gtable = []
    if grow:
        sizes = grow["sizes"]
        gtable = ["| event (user with 1,000 chats), median ms | "
                  + " | ".join(f"{s:,} msgs" for s in sizes) + f" | {sizes[-1]:,} / {sizes[0]:,} |",
                  "|---|" + "---|" * (len(sizes) + 1)]
        for op in growth.OPS:
            v = [grow["ms"][s][op] for s in sizes]
            ratio = v[-1] / v[0] if v[0] else 0
            gtable.append(f"| {op} | " + " | ".join(fmt(x) for x in v)
                          + f" | {ratio:.2f}x{' (over 2x)' if ratio > 2 else ''} |")
    text = "\n".join(table + [""] + gtable)
    md = [
        "# Benchmark results", "",
        f"Run {'--quick' if quick else 'full'}: `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        "", f"**{note}.**", "",
        "Server pinned to core 0 (`taskset -c 0`), load generator (JavaScript socket.io-client,"
        f" {pairs} pairs of users, one sender per pair) on core 1; MariaDB is shared and not"
        f" pinned. Each rate step lasts {step_seconds} s after a warm-up; a step is held when"
        " every message is acked and delivered and ack and delivery p99 are <= 100 ms."
        f" {rounds} round(s), servers interleaved; percentiles are the median over rounds.",
        "", "## Table", "", text, "",
        "## Machine and versions", "",
        *[f"- {k}: {v}" for k, v in info.items()], "",
    ]
    if msg and any(msg.values()):
        md += ["## Every step", "", "| server | round | rate | achieved | ack p50/p90/p99 | delivery p50/p90/p99 | server CPU % | server us/msg | gen CPU % | held |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for k in KINDS:
            for i, rd in enumerate(msg[k]):
                for s in rd:
                    md.append(f"| {k} | {i + 1} | {s['rate']}{' (fixed)' if s.get('fixed') else ''} | {s['achieved']} | "
                              f"{s['ack_p50']}/{s['ack_p90']}/{s['ack_p99']} | "
                              f"{s['deliv_p50']}/{s['deliv_p90']}/{s['deliv_p99']} | "
                              f"{s['server_cpu']} | {s['server_us_per_msg']} | {s['gen_cpu']} | "
                              f"{'yes' if s['held'] else 'no'} |")
        md.append("")
    findings = os.path.join(procs.HERE, "FINDINGS.md")
    if os.path.exists(findings):
        with open(findings) as f:
            md += [f.read(), ""]
    if grow:
        md += ["## Query plans (EXPLAIN at the largest size)", ""]
        for op, stmts in grow["plans"].items():
            md += [f"### {op}", "", "```"]
            for sql, lines in stmts:
                md += [sql, *lines, ""]
            md += ["```", ""]
    return {"table": text, "markdown": "\n".join(md)}


if __name__ == "__main__":
    sys.exit(main())
