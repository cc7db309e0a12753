"""python -m bench [--quick]: the product against its transport ceiling, one table.

Message path and idle connections for the servers side by side in one run (the product
on MariaDB and on its embedded SQLite default; bare python-socketio on Tornado on
uvloop's loop, as the product runs by default, and on asyncio's; Node's socket.io),
the product past its ceiling, then growth of the read events on MariaDB. Prints the table and writes bench/RESULTS.md.
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

KINDS = ("product", "product-sqlite", "python-socketio", "python-socketio-asyncio",
         "node-socket.io")
TITLES = {"product": "product (MariaDB)", "product-sqlite": "product (SQLite)",
          "python-socketio": "python-socketio relay (uvloop, as the product)",
          "python-socketio-asyncio": "python-socketio relay (asyncio's loop)",
          "node-socket.io": "node socket.io relay"}
# The bare stacks the product is measured against; the ratio takes the faster one.
BARE = ("python-socketio", "python-socketio-asyncio")


def kinds() -> tuple[str, ...]:
    """Without uvloop the product and the relay both run on asyncio's loop, and the
    second relay column would repeat the first."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return tuple(k for k in KINDS if k != "python-socketio-asyncio")
    return KINDS
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
        "uvloop": _version(metadata, "uvloop"),
        "node": out("node", "--version"), "socket.io (node)": sio_node,
        "socket.io-client": sio_client,
        "mariadb": out("mysql", "--version"),
        "load before run": out("uptime"),
    }


def _version(metadata, name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_times() -> list[int]:
    """The machine's CPU counters (user ... steal), for the run's steal share: on a
    shared host the hypervisor's other guests take cycles that no load average shows."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def steal_note(before: list[int], after: list[int]) -> str:
    delta = [b - a for a, b in zip(before, after)]
    total = sum(delta) or 1
    idle = delta[3] + delta[4]
    return (f"during the run: steal {100 * delta[7] / total:.1f} % of the CPU time,"
            f" busy {100 * (total - idle) / total:.1f} %, 1-minute load average at the end"
            f" {os.getloadavg()[0]:.2f}")


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
    ap.add_argument("--only", default="",
                    help="comma list: messages,overload,connections,growth")
    ap.add_argument("--servers", default="",
                    help="comma list of servers to run (default: all of " + ",".join(KINDS) + ")")
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
        report = render(saved["messages"], saved["connections"], saved["growth"],
                        saved.get("overload") or {}, r["quick"],
                        r["rounds"], r["step_seconds"], r["pairs"], saved["note"],
                        saved["machine"], r["command"])
        print(report["table"])
        with open(os.path.join(procs.HERE, "RESULTS.md"), "w") as f:
            f.write(report["markdown"])
        return 0
    quick = args.quick
    parts = (set(args.only.split(",")) if args.only
             else {"messages", "overload", "connections", "growth"})
    servers = kinds()
    if args.servers:
        servers = tuple(k for k in servers if k in args.servers.split(","))
    rounds = 1 if quick else 2
    step_seconds = 2 if quick else 2.5
    conns = {"product": 2000 if quick else 15000,
             "python-socketio": 2000 if quick else 5000,
             "node-socket.io": 2000 if quick else 5000,
             # the stack's own cost per connection, without the compressor
             "python-socketio-asyncio": 2000 if quick else 5000,
             "python-socketio-nodeflate": 2000 if quick else 3000}
    sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    note = busy_note()
    info = machine()
    progress(note)
    times = cpu_times()

    db_name, db_url = procs.new_database()
    msg = {k: [] for k in servers}
    idle = {}
    over = {}
    grow = None
    try:
        if "messages" in parts:
            # Rounds interleave the servers so that noise from other jobs falls on all.
            for r in range(rounds):
                for kind in servers:
                    server = procs.Server(kind, db_url)
                    try:
                        msg[kind].append(loadtest.message_ramp(
                            server, args.pairs, step_seconds, progress,
                            f"messages round {r + 1}/{rounds} {kind}"))
                    finally:
                        server.stop()
        if "overload" in parts:
            # Twice the highest rate each product held in this run (or, run alone,
            # 1,000 msg/s), for 30 s, then a rate any server holds.
            for kind in [k for k in ("product", "product-sqlite") if k in servers]:
                held = max((held_rate(s) for s in msg.get(kind, [])), default=0) or 1000
                server = procs.Server(kind, db_url)
                try:
                    over[kind] = loadtest.overload(
                        server, args.pairs, 2 * held, 250, progress, f"overload {kind}",
                        seconds=15 if quick else 30, after_seconds=10 if quick else 15)
                finally:
                    server.stop()
        if "connections" in parts:
            for kind in (*[k for k in servers if k != "product-sqlite"],
                         "python-socketio-nodeflate"):
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
    info["machine during run"] = steal_note(times, cpu_times())
    progress(info["machine during run"])
    if sys.stderr.isatty():
        sys.stderr.write("\n")

    command = " ".join(["bench/run"] + (argv if argv is not None else sys.argv[1:]))
    report = render(msg, idle, grow, over, quick, rounds, step_seconds, args.pairs, note,
                    info, command)
    print(report["table"])
    if not args.no_write:
        with open(os.path.join(procs.HERE, "RESULTS.md"), "w") as f:
            f.write(report["markdown"])
        with open(os.path.join(procs.HERE, "results.json"), "w") as f:
            json.dump({"messages": msg, "connections": idle, "growth": grow,
                       "overload": over,
                       "machine": info, "note": note,
                       "run": {"quick": quick, "rounds": rounds, "step_seconds": step_seconds,
                               "pairs": args.pairs, "command": command}}, f, indent=1)
    return 0


def fmt(x, unit=""):
    if x is None:
        return "-"
    return f"{x:g}{unit}" if isinstance(x, (int, float)) else str(x)


def render(msg, idle, grow, over, quick, rounds, step_seconds, pairs, note, info, command):
    cols = [k for k in KINDS if msg.get(k) or k in idle or k in over]
    rows = []

    def section(title):
        rows.append((title,))

    def row(label, values: dict, note=""):
        rows.append((label, *[values.get(k, "-") for k in cols], note))

    if any(msg.values()):
        held = {k: [held_rate(s) for s in msg[k]] for k in cols if msg.get(k)}
        bare = {k: max(held[k]) for k in BARE if k in held}
        ref_kind = max(bare, key=bare.get) if bare else None
        ratios = []
        if ref_kind and bare[ref_kind]:
            for k in ("product", "product-sqlite"):
                if k in held:
                    ratios.append(f"{TITLES[k]} / {TITLES[ref_kind]} = "
                                  f"{max(held[k]) / bare[ref_kind]:.2f}")
        section("Message path")
        row("highest rate held, msg/s (each round)",
            {k: f"{max(v)} ({', '.join(map(str, v))})" for k, v in held.items()},
            "; ".join(ratios))
        for key, label in (("ack_p50", "ack p50 ms @1000/s"), ("ack_p90", "ack p90 ms @1000/s"),
                           ("ack_p99", "ack p99 ms @1000/s"),
                           ("deliv_p50", "delivery p50 ms @1000/s"),
                           ("deliv_p90", "delivery p90 ms @1000/s"),
                           ("deliv_p99", "delivery p99 ms @1000/s"),
                           ("server_us_per_msg", "server CPU us/msg @1000/s"),
                           ("db_us_per_msg", "MariaDB CPU us/msg @1000/s"),
                           ("server_cpu", "server CPU % @1000/s"),
                           ("gen_cpu", "load generator CPU % @1000/s")):
            vals = {k: fmt(median_of(msg[k], 1000, key)) for k in cols if msg.get(k)}
            if key == "db_us_per_msg":
                # Only the MariaDB product talks to MariaDB.
                vals = {k: v for k, v in vals.items() if k == "product"}
            row(label, vals)
        top = {k: max((s for rd in msg[k] for s in rd if s["held"] and not s.get("fixed")),
                      key=lambda s: s["rate"], default=None) for k in cols if msg.get(k)}
        row("load generator CPU % at highest held rate",
            {k: fmt(t["gen_cpu"]) for k, t in top.items() if t})
    if over:
        section("Past the ceiling (2x the highest rate held, then 250 msg/s)")
        o = {k: v for k, v in over.items() if v.get("windows")}
        row("rate sent, msg/s x seconds",
            {k: f"{v['rate']} x {v['seconds']}" for k, v in o.items()})
        row("server up afterwards", {k: "yes" if v["alive"] else "NO" for k, v in over.items()})
        row("acked / sent while over",
            {k: f"{v['acked']} / {v['sent']}" for k, v in o.items()})
        row("replies by error code (whole run)",
            {k: ", ".join(f"{c} {n}" for c, n in sorted(v["codes"].items())) or "none"
             for k, v in o.items()})
        row("never answered", {k: fmt(v["unanswered"]) for k, v in o.items()})
        row("ack p50 / p99 ms, worst second while over",
            {k: f"{fmt(v['ack_p50_max'])} / {fmt(v['ack_p99_max'])}" for k, v in o.items()})
        row("server RSS MiB: before / peak / after",
            {k: f"{v['rss0_kib'] / 1024:.0f} / {v['rss_peak_kib'] / 1024:.0f} / "
                f"{(v['rss_after_kib'] or 0) / 1024:.0f}" for k, v in o.items()})
        row("seconds after the load fell until ack p99 <= 100 ms for good",
            {k: fmt(v["recovered_after_s"]) if v["recovered_after_s"] is not None
             else "not within the run" for k, v in o.items()})
    if idle:
        section("Idle authenticated connections")
        row("connections held (asked)",
            {k: f"{idle[k]['held']} ({idle[k]['count']})" for k in cols if k in idle})
        nodeflate = idle.get("python-socketio-nodeflate")
        row("RSS KiB per connection", {k: fmt(idle[k]["kib_per_conn"]) for k in cols if k in idle},
            f"python-socketio without permessage-deflate: {nodeflate['kib_per_conn']} KiB"
            if nodeflate else "")
        row("connects per second", {k: fmt(idle[k]["connect_rate"]) for k in cols if k in idle})
    table = ["| measure | " + " | ".join(TITLES[k] for k in cols) + " | ratio / note |",
             "|---|" + "---|" * (len(cols) + 1)]
    for r in rows:
        if len(r) == 1:
            table.append(f"| **{r[0]}** |" + " |" * (len(cols) + 1))
        else:
            table.append("| " + " | ".join(r) + " |")
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
    if over:
        md += ["## Past the ceiling, second by second", "",
               "| server | phase | second | rate | sent | acked | error codes | ack p50/p99/max ms | server RSS MiB |",
               "|---|---|---|---|---|---|---|---|---|"]
        for k, v in over.items():
            for w in v.get("windows", []):
                md.append(f"| {k} | {w['phase']} | {w['second']} | {w['rate']} | {w['sent']} | "
                          f"{w['acked']} | {', '.join(f'{c} {n}' for c, n in w['codes'].items()) or '-'} | "
                          f"{w['ack_p50']}/{w['ack_p99']}/{w['ack_max']} | "
                          f"{(w['rss_kib'] or 0) / 1024:.0f} |")
        md.append("")
    if msg and any(msg.values()):
        md += ["## Every step", "", "| server | round | rate | achieved | ack p50/p90/p99 | delivery p50/p90/p99 | server CPU % | server us/msg | gen CPU % | held |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for k in cols:
            for i, rd in enumerate(msg.get(k, [])):
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
