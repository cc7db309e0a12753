"""The life of a socket: a connection that closes while it is being accepted leaves
nothing behind, and a socket whose token expires is closed at the transport so that
the client reconnects with a fresh token."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from urllib.parse import urlparse

import aiohttp
import pymysql

from conftest import SECRET, User, register
from helpers import barrier, befriend
from syarah.auth import Identity, mint
from syarah.clock import FakeClock
from syarah.transport.registry import SocketRegistry, SocketState
from syarah.types import User as UserRow
from test_js_client import node_or_skip, run_node_tests
from test_production import sample, scrape


async def open_and_drop(session: aiohttp.ClientSession, server, user: User,
                        token: str | None, held) -> None:
    """Engine.IO over polling by hand: the handshake, the Socket.IO CONNECT, and, while
    the server is still accepting it (its store held), the Engine.IO close."""
    base = f"{server.url}/socket.io/?EIO=4&transport=polling&userId={user.id}"
    async with session.get(base) as r:
        text = await r.text()
    sid = json.loads(text[text.index("{"):])["sid"]
    url = f"{base}&sid={sid}"
    connect = "40" + (json.dumps({"accessToken": token}) if token else "")

    async def post(body: str) -> int:
        async with session.post(url, data=body) as r:
            return r.status

    with held():
        accepting = asyncio.ensure_future(post(connect))
        await asyncio.sleep(0.2)
        assert not accepting.done()
        assert await post("1") in (200, 400)
    assert await accepting in (200, 400)


@contextlib.contextmanager
def store_held(server):
    """Hold the server's store from outside, so that its writes wait: accepting a
    connection whose token brings new claims writes the user's row."""
    url = server.database_url
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        unlock = "ROLLBACK"
    else:
        u = urlparse(url)
        conn = pymysql.connect(host=u.hostname, port=u.port, user=u.username,
                               password=u.password or "", database=u.path[1:])
        conn.cursor().execute("LOCK TABLES users WRITE")
        unlock = "UNLOCK TABLES"
    try:
        yield
    finally:
        conn.cursor().execute(unlock)
        conn.close()


async def connected_sockets(server) -> float:
    return sample(await asyncio.to_thread(scrape, server), "syarah_connected_sockets")


async def test_a_connection_closed_while_being_accepted_is_never_counted(
        make_server, store_kind, clients):
    server = make_server(store_kind, "--max-sockets-per-user=3",
                         "--max-tokenless-sockets-per-address=3")
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    befriend(ann, bob)
    b = await clients(bob)
    before = await connected_sockets(server)
    async with aiohttp.ClientSession() as session:
        for i in range(10):
            # Each token names Ann anew, so accepting it writes the store.
            token = mint(SECRET, ann.id, f"Ann {i}")
            await open_and_drop(session, server, ann, token, lambda: store_held(server))
    # Whatever the server was still doing for them has finished by now.
    await asyncio.sleep(1.0)
    await barrier(b)
    assert await connected_sockets(server) == before
    # Ann never stayed online for her friend, and no phantom uses up her caps.
    assert (await b.call("getMyFriendships", {}))[0]["isOnline"] is False
    online = [s["activeNow"] for s in b.received("clientStatus")]
    assert online.count(True) == online.count(False)
    phone, web, tablet = [await clients(ann) for _ in range(3)]
    tokenless = [await clients(ann, with_token=False) for _ in range(3)]
    assert await connected_sockets(server) == before + 6
    for c in (phone, web, tablet, *tokenless):
        await c.close()


async def test_an_expiring_token_reconnects_the_js_client_with_a_fresh_one(make_server):
    node_or_skip()
    server = make_server("sqlite", "--jwt-leeway=1")
    users = [User(server, f"Ann ({t})") for t in ("websocket", "polling")]
    await register(*users)
    await run_node_tests(server, "expiry.test.js",
                         [{"id": u.id, "name": u.name} for u in users],
                         CHAT_TEST_SECRET=SECRET)
    assert server.log().count("its access token has expired") >= 2


async def test_a_socket_proven_by_an_event_token_is_closed_when_it_expires(
        make_server, store_kind, clients):
    server = make_server(store_kind, "--jwt-leeway=1")
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    befriend(ann, bob)
    b = await clients(bob)
    a = await clients(ann, with_token=False)
    closed = asyncio.Event()
    a.sio.on("disconnect", lambda *args: closed.set())
    short = mint(SECRET, ann.id, "Ann", hours=2 / 3600)
    assert await a.call("getMyChats", {"accessToken": short}) == []
    (status,) = await b.wait_for("clientStatus")
    assert status["activeNow"] is True
    # Nothing more is sent on the socket: it is closed all the same, and Ann is gone.
    await asyncio.wait_for(closed.wait(), 10)
    statuses = await b.wait_for("clientStatus", 2)
    assert statuses[1]["activeNow"] is False
    assert "its access token has expired" in server.log()


def test_a_socket_rests_on_its_longest_lasting_proof():
    clock = FakeClock(start=1_000_000.0)
    registry = SocketRegistry(leeway=30, clock=clock)
    who = UserRow("6f1d2c4e-0000-4000-8000-000000000001", "Ann", None)
    short = Identity(who, expires_at=clock.time() + 60)
    socket = SocketState(sid="s1", user_id=who.id, client_type="web",
                         connect_identity=short)
    registry.add(socket)
    clock.advance(89)
    assert registry.expired() == [] and not registry.is_expired(socket)
    # An event brings a token that lasts longer: the socket now rests on it.
    longer = Identity(who, expires_at=clock.time() + 600)
    socket.event_identity = longer
    registry.note_proof(socket, longer)
    clock.advance(2)
    assert registry.expired() == [] and registry.current_identity(socket) is longer
    clock.advance(600 + 30)
    assert registry.expired() == [socket] and registry.is_expired(socket)
    assert registry.current_identity(socket) is None
    # Each expired socket is returned once.
    assert registry.expired() == []
    registry.remove("s1")
    assert len(registry) == 0 and registry.user_sockets == {}


def test_a_tokenless_socket_never_expires():
    clock = FakeClock()
    registry = SocketRegistry(leeway=30, clock=clock)
    socket = SocketState(sid="s2", user_id="6f1d2c4e-0000-4000-8000-000000000002",
                         client_type="web", address="10.0.0.1")
    registry.add(socket)
    clock.advance(10 * 24 * 3600)
    assert registry.expired() == [] and not registry.is_expired(socket)
    assert registry.tokenless_sockets == {"10.0.0.1": 1}
