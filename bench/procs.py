"""Starting, pinning, watching and stopping the processes a benchmark needs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from urllib.parse import urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NODE_DIR = os.path.join(HERE, "node")
PYTHON = sys.executable
MYSQL_URL = os.environ.get("SYARAH_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/")
SECRET = "bench-secret-0123456789-abcdefghijklmnop"
SERVER_CORE, LOAD_CORE = "0", "1"

sys.path.insert(0, ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def mysql_params() -> dict:
    u = urlparse(MYSQL_URL)
    return dict(host=u.hostname or "127.0.0.1", port=u.port or 3306,
                user=u.username or "root", password=u.password or "")


def mysql_connect(db: str | None = None):
    import pymysql
    return pymysql.connect(database=db, charset="utf8mb4", autocommit=True, **mysql_params())


def new_database(suffix: str = "") -> tuple[str, str]:
    """A fresh `syarah_bench_*` database: (name, URL for the server)."""
    name = "syarah_bench_" + uuid.uuid4().hex[:10] + suffix
    conn = mysql_connect()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn.close()
    p = mysql_params()
    return name, f"mysql://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{name}"


def drop_database(name: str) -> None:
    conn = mysql_connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def db_pid() -> int | None:
    for name in ("mariadbd", "mysqld"):
        out = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
    return None


def pinned(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv]


class Proc:
    """A subprocess we started; stopped by its own pid only."""

    def __init__(self, argv, *, cwd=None, env=None, stdout=None, log_name="proc"):
        self.log_path = os.path.join(tempfile.gettempdir(), f"syarah-bench-{log_name}-{os.getpid()}.log")
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  stdout=stdout or self._log, stderr=self._log)
        self.pid = self.p.pid

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self, timeout=15):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self._log.close()


def wait_listening(port: int, proc: Proc, path: str | None = None, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.p.poll() is not None:
            raise RuntimeError(f"server exited:\n{proc.log()}")
        try:
            if path:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1):
                    return
            else:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not start:\n{proc.log()}")


# The load comes from one address and a few users at rates far above what a person
# sends: the product's abuse limits would measure themselves, so they are off here.
NO_LIMITS = tuple(f"--rate-{action}-{scope}=0"
                  for action in ("create-message", "room-typing", "connect")
                  for scope in ("user", "address"))


class Server:
    """One of the three servers under test, pinned to the server core."""

    def __init__(self, kind: str, database_url: str | None = None, extra=(),
                 core: str = SERVER_CORE):
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = tempfile.mkdtemp(prefix="syarah-bench-")
        if kind in ("product", "product-sqlite"):
            if kind == "product-sqlite":
                # The embedded default: a database file of the server's own.
                database_url = f"sqlite:///{self.workdir}/syarah.db"
            argv = [PYTHON, os.path.join(ROOT, "bin", "syarah-server"),
                    f"--port={self.port}", "--address=127.0.0.1",
                    f"--database-url={database_url}", f"--jwt-secret={SECRET}",
                    f"--upload-dir={self.workdir}/uploads", "--log-level=warning",
                    *NO_LIMITS, *extra]
            health = "/healthz"
        elif kind == "python-socketio":
            argv = [PYTHON, os.path.join(HERE, "relay_py.py"), str(self.port)]
            health = None
        elif kind == "python-socketio-asyncio":
            argv = [PYTHON, os.path.join(HERE, "relay_py.py"), str(self.port), "--asyncio"]
            health = None
        elif kind == "python-socketio-nodeflate":
            argv = [PYTHON, os.path.join(HERE, "relay_py.py"), str(self.port),
                    "--no-compression"]
            health = None
        elif kind == "node-socket.io":
            argv = ["node", os.path.join(NODE_DIR, "relay.js"), str(self.port)]
            health = None
        else:
            raise ValueError(kind)
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.proc = Proc(pinned(core, argv), cwd=self.workdir, env=env, log_name=kind)
        wait_listening(self.port, self.proc, health)
        self.pid = self.proc.pid

    @property
    def mode(self) -> str:
        return "product" if self.kind.startswith("product") else "relay"

    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def node(script: str, config: dict, log_name: str) -> Proc:
    path = os.path.join(tempfile.gettempdir(), f"syarah-bench-{log_name}-{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return Proc(pinned(LOAD_CORE, ["node", os.path.join(NODE_DIR, script), path]),
                stdout=subprocess.PIPE, log_name=log_name)


def users(n: int, prefix: str = "u") -> list[dict]:
    from syarah.auth import mint
    out = []
    for i in range(n):
        uid = str(uuid.uuid4())
        out.append({"id": uid, "token": mint(SECRET, uid, f"{prefix}{i}", hours=4)})
    return out
