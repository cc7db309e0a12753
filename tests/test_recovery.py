"""Connection state recovery with the real socket.io-client (tests/js/recovery.test.js):
after the transport drops, after a server restart, and on another node behind the
same address; a client that presents no pid (as the Dart client) rejoins as before."""

from __future__ import annotations

import asyncio
import json
import os

from conftest import User, dm, register
from helpers import send
from test_js_client import JS_DIR, NODE_TIMEOUT, node_or_skip
from test_outage import TcpProxy
from test_scaleout import deployment  # noqa: F401  (a fixture)


async def run_recovery(url: str, scenario: str, ann: User, stranger: User, chat_id: int,
                       on_ready, on_recovered) -> None:
    node = node_or_skip()
    env = dict(os.environ, CHAT_SERVER_URL=url, CHAT_RECOVERY_SCENARIO=scenario,
               CHAT_TEST_CHAT=str(chat_id), NO_COLOR="1", CHAT_TEST_USERS=json.dumps(
                   [{"id": u.id, "name": u.name, "token": u.token} for u in (ann, stranger)]))
    proc = await asyncio.create_subprocess_exec(
        node, "--test", "--test-force-exit", "--test-reporter=spec",
        os.path.join(JS_DIR, "recovery.test.js"), cwd=JS_DIR, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out = []

    async def follow():
        while line := await proc.stdout.readline():
            text = line.decode(errors="replace")
            out.append(text)
            if text.strip() == "READY":
                await on_ready()
            elif text.strip() == "RECOVERED":
                await on_recovered()
        return await proc.wait()

    try:
        code = await asyncio.wait_for(follow(), NODE_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        code = None
    text = "".join(out)
    assert code == 0, f"node exited {code}:\n{text}"
    assert "ℹ pass 1" in text, text


async def chat_of_three(server):
    ann, bob, stranger = User(server, "Ann"), User(server, "Bob"), User(server, "Stranger")
    await register(ann, bob, stranger)
    return ann, bob, stranger


async def test_rooms_come_back_after_the_transport_drops(server, clients):
    ann, bob, stranger = await chat_of_three(server)
    b = await clients(bob)
    chat_id = await dm(b, ann)

    async def recovered():
        await send(b, chat_id, "while you were away")

    await run_recovery(server.url, "engine", ann, stranger, chat_id, None, recovered)


async def test_rooms_come_back_after_a_server_restart(make_server, store_kind, clients):
    server = make_server(store_kind)
    ann, bob, stranger = await chat_of_three(server)
    b = await clients(bob)
    chat_id = await dm(b, ann)
    await b.close()

    async def restart():
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)

    async def recovered():
        again = await clients(bob)
        await send(again, chat_id, "while you were away")

    await run_recovery(server.url, "restart", ann, stranger, chat_id, restart, recovered)


async def test_rooms_come_back_on_another_node(deployment, clients):  # noqa: F811
    one, two = deployment(), deployment()
    # One address in front of the nodes, as a load balancer is.
    proxy = TcpProxy("127.0.0.1", one.port)
    try:
        ann, bob, stranger = await chat_of_three(one)
        b = await clients(User(two, "Bob", bob.id))
        chat_id = await dm(b, ann)

        async def to_node_two():
            # The open connections drop; the reconnect reaches the other node.
            proxy.target = ("127.0.0.1", two.port)
            proxy.cut()
            proxy.restore()

        async def recovered():
            await send(b, chat_id, "while you were away")

        await run_recovery(f"http://127.0.0.1:{proxy.port}", "node", ann, stranger,
                           chat_id, to_node_two, recovered)
        assert "recovered 1 rooms" in two.log()
    finally:
        proxy.cut()


async def test_a_client_without_a_pid_rejoins_as_before(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    await a.close()
    # Connecting again without a pid (the Dart client has none): a socket of its own,
    # outside the room until it joins it again.
    a = await clients(ann)
    b = await clients(bob)
    await send(b, chat_id, "first")
    await a.settle()
    assert a.received("message") == []
    await dm(a, bob)
    reply = await send(b, chat_id, "second")
    (got,) = await a.wait_for("message")
    assert got["chatMessage"] == reply
