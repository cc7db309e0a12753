"""python -m bench.profile [product|python-socketio] [RATE] [SECONDS]: hold one rate and
show where the server's time goes (py-spy, the top functions by own and total time)
and how many asyncio tasks it creates per message."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bench import procs


def task_count(server, path) -> int:
    os.kill(server.pid_python, signal.SIGUSR1)
    time.sleep(0.3)
    with open(path) as f:
        return int(f.read())


class InstrumentedServer(procs.Server):
    def __init__(self, kind, database_url=None):
        self.kind = kind
        self.port = procs.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="syarah-bench-")
        self.tasks_file = os.path.join(self.workdir, "tasks")
        script = os.path.join(procs.HERE, "instrumented.py")
        if kind == "product":
            argv = [procs.PYTHON, script, "product", f"--port={self.port}",
                    "--address=127.0.0.1", f"--database-url={database_url}",
                    f"--jwt-secret={procs.SECRET}", "--log-level=warning",
                    f"--upload-dir={self.workdir}/uploads", *procs.NO_LIMITS]
            health = "/healthz"
        else:
            argv = [procs.PYTHON, script, "relay", str(self.port)]
            health = None
        env = dict(os.environ, PYTHONPATH=procs.ROOT, SYARAH_BENCH_TASKS=self.tasks_file)
        # exec so that the pid we signal and profile is the Python process itself
        self.proc = procs.Proc(["taskset", "-c", procs.SERVER_CORE, *argv], cwd=self.workdir,
                               env=env, log_name="profile-" + kind)
        procs.wait_listening(self.port, self.proc, health)
        self.pid = self.pid_python = self.proc.pid

    def tasks(self) -> tuple[int, dict]:
        os.kill(self.pid, signal.SIGUSR1)
        time.sleep(0.3)
        with open(self.tasks_file) as f:
            lines = f.read().splitlines()
        names = {}
        for line in lines[1:]:
            n, name = line.split(" ", 1)
            names[name] = int(n)
        return int(lines[0]), names


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "product"
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8
    db_name, url = procs.new_database("_prof")
    server = InstrumentedServer(kind, url)
    try:
        users = procs.users(100)
        config = {"url": server.url, "mode": server.mode, "users": users,
                  "steps": [rate], "stepSeconds": seconds, "warmup": 1.5, "grace": 3,
                  "p99Limit": 100, "maxFails": 1, "serverPid": server.pid,
                  "dbPid": procs.db_pid(), "tokenPerMessage": True}
        gen = procs.node("load.js", config, "profile-load")
        assert "ready" in json.loads(gen.p.stdout.readline())
        time.sleep(1.6)  # warm-up
        before = server.tasks()
        out = os.path.join(tempfile.gettempdir(), f"pyspy-{kind}.txt")
        spy = None
        if shutil.which("py-spy") or os.path.exists(os.path.join(os.path.dirname(procs.PYTHON), "py-spy")):
            spy_bin = shutil.which("py-spy") or os.path.join(os.path.dirname(procs.PYTHON), "py-spy")
            spy = subprocess.Popen([spy_bin, "record", "-p", str(server.pid), "-d", str(int(seconds) - 1),
                                    "-f", "raw", "-o", out, "-r", "200", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        step = json.loads(gen.p.stdout.readline())
        after = server.tasks()
        gen.stop()
        if spy:
            spy.wait()
        print(json.dumps(step))
        sent = max(step["sent"], 1)
        print(f"asyncio tasks created per message: {(after[0] - before[0]) / sent:.2f}")
        for name, n in after[1].items():
            per = (n - before[1].get(name, 0)) / sent
            if per >= 0.05:
                print(f"  {per:5.2f}  {name}")
        if spy and os.path.exists(out):
            summarise(out)
    finally:
        server.stop()
        procs.drop_database(db_name)


def summarise(path, top=25):
    """Own and total sample counts per function from py-spy's collapsed stacks."""
    own, total, samples = {}, {}, 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.strip().rpartition(" ")
            if not n.isdigit():
                continue
            n = int(n)
            samples += n
            frames = stack.split(";")
            for fr in set(frames):
                total[fr] = total.get(fr, 0) + n
            own[frames[-1]] = own.get(frames[-1], 0) + n
    print(f"\n{samples} samples; top own time:")
    for fr, n in sorted(own.items(), key=lambda x: -x[1])[:top]:
        print(f"  {100 * n / samples:5.1f}%  {fr[:140]}")
    print("\ntop total time (inclusive), our code and the libraries' entry points:")
    for fr, n in sorted(total.items(), key=lambda x: -x[1])[:top + 15]:
        print(f"  {100 * n / samples:5.1f}%  {fr[:140]}")


if __name__ == "__main__":
    main()
