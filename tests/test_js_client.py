"""The API document's flows with the real JavaScript socket.io-client v4 (tests/js).

pytest owns the server (SQLite and MariaDB, through the ``server`` fixture), the users
and their friendships; node only plays the clients, reading the server URL and the
users from its environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import IN_CI, ROOT, User, register

JS_DIR = os.path.join(ROOT, "tests", "js")
TRANSPORTS = ("websocket", "polling")
# Both transports and every flow take a few seconds; far more means something hangs.
NODE_TIMEOUT = 180


def node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    return tuple(int(part) for part in re.findall(r"\d+", out)[:2]) or (0,)


def node_or_skip() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed (the JavaScript client tests need Node.js 20.14+)"
    elif node_version(node) < (20, 14):
        missing = f"node {'.'.join(map(str, node_version(node)))} is too old: need 20.14+"
    elif not os.path.isdir(os.path.join(JS_DIR, "node_modules", "socket.io-client")):
        missing = "tests/js/node_modules is missing: run bin/setup-env --test (npm ci)"
    if missing:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    return node


def befriend(user, friend) -> None:
    status, body = user.http("POST", "/api/friendships", {"userId": friend.id})
    assert status == 200, body
    status, body = friend.http("POST", f"/api/friendships/{user.id}/accept")
    assert status == 200 and body["data"]["status"] == 1, body


async def test_api_document_flows_with_socket_io_client(server):
    node = node_or_skip()
    users = []
    for transport in TRANSPORTS:
        ann, bob, cy = (User(server, f"{name} ({transport})") for name in ("Ann", "Bob", "Cy"))
        await register(ann, bob, cy)
        befriend(ann, bob)
        befriend(ann, cy)
        users += [{"id": u.id, "name": u.name, "token": u.token} for u in (ann, bob, cy)]

    env = dict(os.environ, CHAT_SERVER_URL=server.url, CHAT_TEST_USERS=json.dumps(users),
               NO_COLOR="1")
    proc = await asyncio.create_subprocess_exec(
        # python-engineio answers a long poll that is pending when a polling client
        # closes only at its ping timeout (45 s); node would wait for it to exit.
        node, "--test", "--test-force-exit", "--test-reporter=spec", os.path.join(JS_DIR, "chat.test.js"),
        cwd=JS_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        output, _ = await proc.communicate()
        pytest.fail(f"node did not finish within {NODE_TIMEOUT} s:\n"
                    f"{output.decode(errors='replace')}")
    text = output.decode(errors="replace")
    assert proc.returncode == 0, (
        f"node --test failed (exit {proc.returncode}):\n{text}\n"
        f"--- server log (last 4000 chars) ---\n{server.log()[-4000:]}")
    # A run that found no tests would also exit 0.
    counts = dict(re.findall(r"^ℹ (tests|pass) (\d+)$", text, re.M))
    assert int(counts.get("tests", 0)) > 0 and counts.get("pass") == counts["tests"], text
