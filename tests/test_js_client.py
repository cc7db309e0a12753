"""The API document's flows with the real JavaScript socket.io-client v4 (tests/js):
chat.test.js for the events, media.test.js for the upload-then-createMessage flow.

pytest owns the server (SQLite and MariaDB, through the ``server`` fixture), the users,
their friendships and the sample media files; node only plays the clients, reading the
server URL, the users and the files from its environment.
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
from test_uploads import jpeg, mp4_head

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


async def make_users(server, names) -> list[dict]:
    """One group of users per transport; the first of each group befriends the rest."""
    users = []
    for transport in TRANSPORTS:
        group = [User(server, f"{name} ({transport})") for name in names]
        await register(*group)
        for friend in group[1:]:
            befriend(group[0], friend)
        users += [{"id": u.id, "name": u.name, "token": u.token} for u in group]
    return users


async def run_node_tests(server, script: str, users: list[dict], **extra_env) -> str:
    """Runs one node:test file against ``server`` and fails with its output (and the
    server's log) unless every test in it passed."""
    node = node_or_skip()
    env = dict(os.environ, CHAT_SERVER_URL=server.url, CHAT_TEST_USERS=json.dumps(users),
               NO_COLOR="1", **extra_env)
    proc = await asyncio.create_subprocess_exec(
        # python-engineio answers a long poll that is pending when a polling client
        # closes only at its ping timeout (45 s); node would wait for it to exit.
        node, "--test", "--test-force-exit", "--test-reporter=spec", os.path.join(JS_DIR, script),
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
    return text


async def test_api_document_flows_with_socket_io_client(server):
    node_or_skip()
    users = await make_users(server, ("Ann", "Bob", "Cy"))
    await run_node_tests(server, "chat.test.js", users)


async def test_media_message_flow_with_socket_io_client(server, tmp_path):
    """The document's Image and Video Message Examples (tests/js/media.test.js)."""
    node_or_skip()
    users = await make_users(server, ("Ann", "Bob"))
    # The sample files are made here, with the same makers as tests/test_uploads.py:
    # a real JPEG photo larger than 1920 px, and an MP4 the server's sniffing accepts.
    width, height = 2400, 1600
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(jpeg(width, height))
    video = tmp_path / "holiday.mp4"
    video.write_bytes(mp4_head() + os.urandom(60_000))
    media = {"image": {"path": str(photo), "width": width, "height": height},
             "video": {"path": str(video)}}
    await run_node_tests(server, "media.test.js", users, CHAT_TEST_MEDIA=json.dumps(media))


async def test_the_api_documents_chat_client_class(server):
    """The document's ChatClient class as it stands (tests/js/document-client.test.js
    holds its text verbatim): it sends, edits, deletes and reads."""
    node_or_skip()
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    users = [{"id": u.id, "name": u.name, "token": u.token} for u in (ann, bob)]
    await run_node_tests(server, "document-client.test.js", users)
