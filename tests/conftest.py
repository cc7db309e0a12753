"""Test harness: the real server in a subprocess on a free port, on SQLite and on
MariaDB, driven by real clients.

MariaDB runs when reachable at SYARAH_TEST_MYSQL (default root@127.0.0.1:3306); with
CI set, an unreachable MariaDB fails the run instead of skipping it. Each server gets
a database of its own, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from urllib.parse import urlparse

import pytest
import pytest_asyncio
import engineio.payload
import socketio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from syarah.auth import mint  # noqa: E402
from syarah.options import NAMES  # noqa: E402

SECRET = "test-secret-0123456789-abcdefghijklmnop"
MYSQL_URL = os.environ.get("SYARAH_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
IN_CI = bool(os.environ.get("CI"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mysql_admin(sql: str) -> None:
    import pymysql

    u = urlparse(MYSQL_URL)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


def mysql_available() -> bool:
    try:
        mysql_admin("SELECT 1")
        return True
    except Exception:
        return False


def new_database_url(kind: str) -> tuple[str, callable]:
    """A fresh, empty database of ``kind``; returns its URL and a cleanup function."""
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="syarah-test-")
        return f"sqlite:///{folder}/chat.db", lambda: None
    if not mysql_available():
        if IN_CI:
            pytest.fail(f"MariaDB is required in CI but unreachable at {MYSQL_URL}")
        pytest.skip(f"MariaDB not reachable at {MYSQL_URL}")
    name = "syarah_t_" + uuid.uuid4().hex[:12]
    mysql_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    u = urlparse(MYSQL_URL)
    url = f"mysql://{u.username or 'root'}:{u.password or ''}@{u.hostname}:{u.port or 3306}/{name}"
    return url, lambda: mysql_admin(f"DROP DATABASE IF EXISTS {name}")


# Every test client speaks from 127.0.0.1 and the suite replays many users' traffic in
# seconds, so test servers run without rate limits unless a test's flags set them
# (later flags win); tests/test_production.py and tests/test_limits.py test the
# limits themselves.
NO_RATE_LIMITS = tuple(f"--{name}=0" for name in NAMES if name.startswith("rate_"))


class ServerProcess:
    """bin/syarah-server as systemd would run it, with settings as flags."""

    def __init__(self, database_url: str, *flags: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workdir = tempfile.mkdtemp(prefix="syarah-srv-")
        self.upload_dir = os.path.join(self.workdir, "uploads")
        self.log_path = os.path.join(self.workdir, "server.log")
        self.flags = [
            f"--port={self.port}", "--address=127.0.0.1",
            f"--database-url={database_url}", f"--jwt-secret={SECRET}",
            f"--upload-dir={self.upload_dir}", "--log-level=debug", *NO_RATE_LIMITS, *flags]
        self.env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        self.proc = None

    def start(self, timeout: float = 30) -> "ServerProcess":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "bin", "syarah-server"), *self.flags],
            cwd=self.workdir, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._log.close()

    def log(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class User:
    def __init__(self, server, name: str, user_id: str | None = None, hours: float = 2):
        self.server = server
        self.id = user_id or str(uuid.uuid4())
        self.name = name
        self.token = mint(SECRET, self.id, name, hours=hours)

    async def connect(self, *, with_token: bool = True, transports=("websocket",),
                      client_type: str | None = None, **kwargs) -> "Client":
        client = Client(self)
        query = f"userId={self.id}"
        if client_type:
            query += f"&clientType={client_type}"
        auth = {"accessToken": self.token} if with_token else None
        await client.sio.connect(f"{self.server.url}?{query}", auth=auth,
                                 transports=list(transports), wait_timeout=10, **kwargs)
        return client

    def http(self, method: str, path: str, body=None, headers=None):
        return http_json(self.server, method, path, body,
                         dict({"Authorization": f"Bearer {self.token}"}, **(headers or {})))


def http_json(server, method: str, path: str, body=None, headers=None):
    """A blocking JSON request; returns (status, parsed body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method,
                                 headers=dict({"Content-Type": "application/json"},
                                              **(headers or {})))
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def http_get(server, path: str, headers=None):
    """A blocking GET; returns (status, headers, raw body) whatever the status."""
    req = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# python-engineio's client drops a whole polling response of more than 16 packets
# (socket.io's JavaScript client takes any number); a server quick enough to answer
# a burst of events between two polls sends more than that.
engineio.payload.Payload.max_decode_packets = 1000


class Client:
    """A python-socketio client that records every server event it receives."""

    def __init__(self, user: User):
        self.user = user
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: dict[str, list] = {}
        self._arrived = asyncio.Event()

        @self.sio.on("*")
        async def any_event(event, *args):
            self.events.setdefault(event, []).append(args[0] if len(args) == 1 else list(args))
            self._arrived.set()

    async def call(self, event: str, data=None, timeout: float = 10):
        if data is None:
            return await self.sio.call(event, timeout=timeout)
        return await self.sio.call(event, data, timeout=timeout)

    async def emit(self, event: str, data=None):
        await self.sio.emit(event, data)

    async def wait_for(self, event: str, count: int = 1, timeout: float = 5) -> list:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.events.get(event, [])) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.user.name} got {len(self.events.get(event, []))} {event!r} "
                    f"events, expected {count}; all: {list(self.events)}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        return self.events[event]

    async def settle(self, seconds: float = 0.3):
        """Give broadcasts that must NOT arrive a chance to arrive."""
        await asyncio.sleep(seconds)

    def received(self, event: str) -> list:
        return self.events.get(event, [])

    async def close(self):
        if self.sio.connected:
            await self.sio.disconnect()


def pytest_generate_tests(metafunc):
    if "store_kind" in metafunc.fixturenames:
        metafunc.parametrize("store_kind", ["sqlite", "mysql"], scope="session")


@pytest.fixture(scope="session")
def server(store_kind):
    url, cleanup = new_database_url(store_kind)
    srv = ServerProcess(url).start()
    yield srv
    srv.stop()
    cleanup()


@pytest.fixture
def make_server():
    """Start extra servers with their own flags (each on a fresh database)."""
    started = []

    def start(store_kind="sqlite", *flags, env=None, database_url=None):
        url, cleanup = (database_url, lambda: None) if database_url else new_database_url(store_kind)
        srv = ServerProcess(url, *flags, env=env).start()
        started.append((srv, cleanup))
        return srv

    yield start
    for srv, cleanup in started:
        srv.stop()
        cleanup()


@pytest_asyncio.fixture
async def clients():
    """Connect users; every client is closed after the test."""
    opened = []

    async def connect(user: User, **kwargs) -> Client:
        client = await user.connect(**kwargs)
        opened.append(client)
        return client

    yield connect
    for c in opened:
        await c.close()


async def register(*users: User) -> None:
    """Make users known to the server, as their first authenticated contact does."""
    for u in users:
        status, body = u.http("GET", "/api/friendships")
        assert status == 200, body


async def dm(a_client: Client, b: User) -> int:
    """Open (or get) the individual chat of a_client's user with b, joining its room."""
    reply = await a_client.call("joinRoom", {"otherUserId": b.id})
    assert reply.get("joined") is True, reply
    return reply["chatHeaderId"]
