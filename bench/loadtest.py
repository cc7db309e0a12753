"""Message path and idle connections, for the product and both reference relays."""

from __future__ import annotations

import json
import threading
import time

from bench import procs

STEPS = [250, 500, 750, 1000, 1250, 1500, 2000, 2500, 3000, 4000, 5000, 6000, 8000,
         10000, 12000, 16000]


def message_ramp(server: procs.Server, pairs: int, step_seconds: float, progress,
                 label: str) -> list[dict]:
    """Rising createMessage rates until one is not held; one dict per step."""
    config = {
        "url": server.url, "mode": server.mode, "users": procs.users(2 * pairs),
        "steps": STEPS, "stepSeconds": step_seconds, "warmup": 1.5, "grace": 2.0,
        "p99Limit": 100, "maxFails": 2, "fixed": [1000], "serverPid": server.pid, "dbPid": procs.db_pid(),
        # Clients of the API send their token with every event.
        "tokenPerMessage": True,
    }
    gen = procs.node("load.js", config, "load-" + server.kind)
    results = []
    try:
        for line in gen.p.stdout:
            row = json.loads(line)
            if "error" in row:
                raise RuntimeError(f"load generator failed: {row['error']}\n{server.proc.log()}")
            if "ready" in row:
                progress(f"{label}: {row['ready']} pairs connected")
                continue
            results.append(row)
            progress(f"{label}: {'fixed ' if row.get('fixed') else ''}{row['rate']} msg/s -> ack p99 {row['ack_p99']} ms,"
                     f" delivery p99 {row['deliv_p99']} ms, {'held' if row['held'] else 'NOT held'}")
    finally:
        gen.stop()
    return results


def overload(server: procs.Server, pairs: int, rate: int, after_rate: int, progress,
             label: str, seconds: int = 30, after_seconds: int = 15) -> dict:
    """``rate`` msg/s (past what the server holds) for ``seconds``, then ``after_rate``:
    what clients saw second by second, the server's memory, and how soon after the
    load fell acks were back under 100 ms for good."""
    config = {
        "url": server.url, "mode": server.mode, "users": procs.users(2 * pairs),
        "steps": [], "warmupRate": after_rate, "stepSeconds": 1, "warmup": 1.5,
        "grace": 2.0, "p99Limit": 100, "maxFails": 1, "serverPid": server.pid,
        "tokenPerMessage": True,
        "overload": {"rate": rate, "seconds": seconds, "afterRate": after_rate,
                     "afterSeconds": after_seconds, "drainSeconds": 30},
    }
    progress(f"{label}: {rate} msg/s for {seconds} s, then {after_rate} msg/s")
    rss0 = procs.rss_kib(server.pid)
    gen = procs.node("load.js", config, "overload-" + server.kind)
    windows, rss_after = None, None
    try:
        for line in gen.p.stdout:
            row = json.loads(line)
            if "error" in row:
                raise RuntimeError(f"load generator failed: {row['error']}\n{server.proc.log()}")
            if "overload" in row:
                windows, rss_after = row["overload"], row["rss_after_drain_kib"]
    finally:
        gen.stop()
    alive = server.proc.p.poll() is None
    if windows is None:
        return {"rate": rate, "alive": alive, "windows": []}
    over = [w for w in windows if w["phase"] == "over"]
    after = [w for w in windows if w["phase"] == "after"]
    sent = sum(w["sent"] for w in over)
    codes: dict[str, int] = {}
    for w in over + after:
        for code, count in w["codes"].items():
            codes[code] = codes.get(code, 0) + count
    # Seconds after the load fell until every later second's ack p99 is <= 100 ms.
    recovered = None
    for i in range(len(after)):
        if all(w["ack_p99"] is not None and w["ack_p99"] <= 100 for w in after[i:]):
            recovered = i
            break
    return {
        "rate": rate, "after_rate": after_rate, "seconds": seconds, "alive": alive,
        "sent": sent, "acked": sum(w["acked"] for w in over), "codes": codes,
        "unanswered": sum(w["sent"] - w["acked"] for w in over + after),
        "ack_p50_max": max((w["ack_p50"] or 0) for w in over),
        "ack_p99_max": max((w["ack_p99"] or 0) for w in over),
        "rss0_kib": rss0, "rss_peak_kib": max((w["rss_kib"] or 0) for w in windows),
        "rss_after_kib": rss_after, "recovered_after_s": recovered, "windows": windows,
    }


def idle_connections(server: procs.Server, count: int, progress, label: str,
                     per_process: int = 5000, deadline: float = 240) -> dict:
    """Hold ``count`` authenticated idle connections from several generator processes
    (each below the per-process file limit); RSS per connection on the server."""
    time.sleep(0.5)
    rss0 = procs.rss_kib(server.pid)
    started = time.time()
    gens, ready, failed, first_error = [], 0, 0, None
    all_users = procs.users(count, "idle")
    try:
        for i in range(0, count, per_process):
            config = {"url": server.url, "mode": server.mode,
                      "users": all_users[i:i + per_process], "concurrency": 32,
                      "deadlineSeconds": deadline}
            gens.append(procs.node("conns.js", config, f"conns{i}-{server.kind}"))
        opened = [0] * len(gens)
        finals: list[dict | None] = [None] * len(gens)

        def follow(n, g):
            for line in g.p.stdout:
                row = json.loads(line)
                if "opened" in row:
                    opened[n] = row["opened"]
                elif "ready" in row:
                    opened[n] = row["ready"]
                    finals[n] = row
                    return
            finals[n] = {"ready": 0, "failed": -1, "firstError": g.log()}

        threads = [threading.Thread(target=follow, args=(n, g), daemon=True)
                   for n, g in enumerate(gens)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            progress(f"{label}: {sum(opened)}/{count} idle connections open")
            time.sleep(2)
        for row in finals:
            ready += row["ready"]
            failed += row["failed"]
            first_error = first_error or row.get("firstError")
        connect_seconds = time.time() - started
        time.sleep(3)  # let buffers settle and a ping round pass the busiest moment
        rss1 = procs.rss_kib(server.pid)
        alive = server.proc.p.poll() is None
    finally:
        for g in gens:
            g.stop()
    return {"count": count, "held": ready if alive else 0, "failed": failed,
            "first_error": first_error, "rss0_kib": rss0, "rss_kib": rss1,
            "kib_per_conn": round((rss1 - rss0) / max(ready, 1), 1),
            "connect_rate": round(ready / connect_seconds)}
