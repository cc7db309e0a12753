"""What operators rely on: graceful shutdown, /metrics, logs without tokens, limits,
CORS, token expiry on open sockets, and the systemd unit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from urllib.parse import urlparse

import pytest
import socketio
from prometheus_client.parser import text_string_to_metric_families

from conftest import (
    http_get,
    IN_CI, ROOT, SECRET, ServerProcess, User, dm, http_json, new_database_url, register,
)
from syarah import options
from syarah.auth import mint


def scrape(server) -> dict:
    """/metrics parsed by prometheus_client: {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


raw_get = http_get


# --- metrics ---------------------------------------------------------------------

async def test_metrics_parse_and_move_with_events(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    before = scrape(server)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    for i in range(3):
        reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": f"m{i}"})
        assert reply["chatHeaderId"] == chat_id
    bad = await a.call("createMessage", {"chatHeaderId": chat_id})
    assert bad["code"] == "VALIDATION"
    await a.call("noSuchEvent", {})
    after = scrape(server)

    def moved(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert moved("syarah_events_total", event="createMessage", outcome="ok") == 3
    assert moved("syarah_events_total", event="createMessage", outcome="VALIDATION") == 1
    assert moved("syarah_events_total", event="joinRoom", outcome="ok") == 1
    # A client's made-up event name never becomes a label of its own.
    assert moved("syarah_events_total", event="unknown", outcome="VALIDATION") == 1
    assert not any(dict(k[1]).get("event") == "noSuchEvent" for k in after)
    assert moved("syarah_event_seconds_count", event="createMessage") == 4
    assert sample(after, "syarah_event_seconds_bucket", event="createMessage", le="+Inf") \
        >= sample(after, "syarah_event_seconds_count", event="createMessage") > 0
    assert sample(after, "syarah_connected_sockets") >= 1
    assert sample(after, "syarah_connected_users") >= 1
    # Nothing holds a connection between events; the pool's ceiling is reported.
    assert sample(after, "syarah_db_connections_in_use") == 0
    assert sample(after, "syarah_db_pool_size") >= 1
    assert ("syarah_upload_bytes_total", ()) in after
    assert ("process_open_fds", ()) in after

    await a.close()
    for _ in range(50):
        if sample(scrape(server), "syarah_connected_sockets") < sample(after, "syarah_connected_sockets"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("syarah_connected_sockets did not fall after a disconnect")


# --- token expiry ------------------------------------------------------------------

def short_token(user: User, seconds_left: float) -> str:
    # Tokens are accepted 30 s past exp: exp = now - 30 + seconds_left.
    return mint(SECRET, user.id, user.name, hours=(seconds_left - 30) / 3600)


async def test_expired_tokens_are_refused_mid_connection(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    # Bob's socket connected with a token that runs out in five seconds (room enough
    # for the setup below on a loaded machine).
    bob.token = short_token(bob, 5)
    b = await clients(bob)
    disconnected = asyncio.Event()
    b.sio.on("disconnect", lambda *args: disconnected.set())
    assert isinstance(await b.call("getMyFriendships", {}), list)
    # Ann's connection token is good for hours; her event token runs out too.
    a = await clients(ann)
    expiring = short_token(ann, 5)
    assert isinstance(await a.call("getMyFriendships", {"accessToken": expiring}), list)

    await asyncio.sleep(5.5)

    refused = await a.call("getMyFriendships", {"accessToken": expiring})
    assert refused["code"] == "UNAUTHORIZED" and "expired" in refused["error"]
    # Her connection's own token still holds, so the socket stays and keeps working.
    assert isinstance(await a.call("getMyFriendships", {}), list)
    assert a.sio.connected

    # Bob's socket rests on its expired connection token: the server has closed it
    # at the transport without waiting for an event, so the client would reconnect.
    await asyncio.wait_for(disconnected.wait(), 5)


# --- CORS and packet size -----------------------------------------------------------

async def test_cors_default_reflects_origin_without_credentials(server):
    user = User(server, "Cors")
    status, headers, body = raw_get(
        server, f"/socket.io/?EIO=4&transport=polling&userId={user.id}",
        {"Origin": "https://web.example"})
    assert status == 200
    assert headers.get("Access-Control-Allow-Origin") == "https://web.example"
    # Tokens, not cookies: no site may make a browser send credentials here.
    assert "Access-Control-Allow-Credentials" not in headers
    # The handshake tells clients the packet ceiling that media-free events need.
    handshake = json.loads(body.decode()[1:])
    assert handshake["maxPayload"] == 256 * 1024


# --- limits (one server with tight limits and a configured origin) ------------------

LIMITED_FLAGS = (
    "--xheaders=true",
    "--cors-allowed-origins=https://app.example.com,https://admin.example.com",
    "--rate-create-message-user=5/60", "--rate-create-message-address=12/60",
    "--rate-room-typing-user=4/60", "--rate-room-typing-address=100/60",
    "--rate-connect-user=6/60", "--rate-connect-address=8/60",
    "--max-sockets-per-user=3", "--max-rooms-per-socket=2",
    "--log-format=json",
)


@pytest.fixture(scope="module")
def limited():
    url, cleanup = new_database_url("sqlite")
    srv = ServerProcess(url, *LIMITED_FLAGS).start()
    yield srv
    srv.stop()
    cleanup()


def fake_address() -> str:
    # Behind the proxy (xheaders) each test speaks from an address of its own, so the
    # per-address buckets of one test leave the others alone.
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


async def connect_from(clients, user: User, address: str):
    return await clients(user, headers={"X-Forwarded-For": address})


async def refused_connect(user: User, address: str, with_token: bool = True) -> dict:
    """Connect and expect a refusal; returns the connect_error payload."""
    sio = socketio.AsyncClient(reconnection=False)
    seen = []
    sio.on("connect_error", lambda data=None: seen.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(f"{user.server.url}?userId={user.id}",
                          auth={"accessToken": user.token} if with_token else None,
                          transports=["websocket"], headers={"X-Forwarded-For": address},
                          wait_timeout=5)
    await sio.disconnect()
    assert seen, "no connect_error arrived"
    return seen[0]


async def test_create_message_burst_is_rate_limited_per_user_and_address(limited, clients):
    ann, bob, cid, dan = (User(limited, n) for n in ("Ann", "Bob", "Cid", "Dan"))
    await register(ann, bob, cid, dan)
    shared, elsewhere = fake_address(), fake_address()
    a = await connect_from(clients, ann, shared)
    b = await connect_from(clients, bob, shared)
    c = await connect_from(clients, cid, shared)
    d = await connect_from(clients, dan, elsewhere)
    ab, ba, cd, dc = await dm(a, bob), await dm(b, ann), await dm(c, dan), await dm(d, cid)
    assert ab == ba and cd == dc

    replies = [await a.call("createMessage", {"chatHeaderId": ab, "message": f"a{i}"})
               for i in range(8)]
    assert [r.get("code", "ok") for r in replies] == ["ok"] * 5 + ["RATE_LIMITED"] * 3
    assert "slow down" in replies[-1]["error"]
    # Without an ack the refusal comes as an `exception` event, like every error.
    await a.emit("createMessage", {"chatHeaderId": ab, "message": "no ack"})
    (exc,) = await a.wait_for("exception")
    assert exc["code"] == "RATE_LIMITED" and exc["event"] == "createMessage"

    # Bob shares Ann's address; his own budget is untouched (address: 9 of 12 used).
    for i in range(3):
        ok = await b.call("createMessage", {"chatHeaderId": ab, "message": f"b{i}"})
        assert ok["chatMessage"]["message"] == f"b{i}"
    # The address's budget is now spent, for everyone speaking from it...
    limited_c = await c.call("createMessage", {"chatHeaderId": cd, "message": "c"})
    assert limited_c["code"] == "RATE_LIMITED" and "address" in limited_c["error"]
    # ...but not for Dan elsewhere, whose messages flow as usual.
    ok = await d.call("createMessage", {"chatHeaderId": dc, "message": "from elsewhere"})
    assert ok["chatMessage"]["message"] == "from elsewhere"
    page = await d.call("findAllMessages", {"chatHeaderId": ab})
    assert page["code"] == "FORBIDDEN"
    page = await b.call("findAllMessages", {"chatHeaderId": ab})
    assert sorted(m["message"] for m in page["items"]) == \
        ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2"]
    assert http_json(limited, "GET", "/healthz")[0] == 200

    samples = scrape(limited)
    assert sample(samples, "syarah_rate_limited_total", action="createMessage", scope="user") >= 4
    assert sample(samples, "syarah_rate_limited_total",
                  action="createMessage", scope="address") >= 1


async def test_room_typing_is_rate_limited(limited, clients):
    ann, bob = User(limited, "Ann"), User(limited, "Bob")
    await register(ann, bob)
    a = await connect_from(clients, ann, fake_address())
    chat_id = await dm(a, bob)
    replies = [await a.call("roomTyping", {"chatHeaderId": chat_id, "isTyping": True})
               for _ in range(6)]
    assert [r.get("code", "ok") for r in replies] == ["ok"] * 4 + ["RATE_LIMITED"] * 2


async def test_connection_attempts_are_rate_limited(limited, clients):
    # Per address: 8 attempts a minute, whoever makes them.
    address = fake_address()
    users = [User(limited, f"U{i}") for i in range(9)]
    for u in users[:8]:
        await connect_from(clients, u, address)
    refusal = await refused_connect(users[8], address)
    assert refusal["data"]["code"] == "RATE_LIMITED" and "address" in refusal["message"]
    # The same user from another address is welcome.
    await connect_from(clients, users[8], fake_address())

    # Per user: 6 attempts a minute, from wherever they come.
    eve = User(limited, "Eve")
    for _ in range(6):
        c = await connect_from(clients, eve, fake_address())
        await c.close()
    refusal = await refused_connect(eve, fake_address())
    assert refusal["data"]["code"] == "RATE_LIMITED" and "you" in refusal["message"]


async def test_sockets_and_rooms_per_user_are_capped(limited, clients):
    ann = User(limited, "Ann")
    others = [User(limited, f"O{i}") for i in range(3)]
    await register(ann, *others)
    sockets = [await connect_from(clients, ann, fake_address()) for _ in range(3)]
    refusal = await refused_connect(ann, fake_address())
    assert refusal["data"]["code"] == "RATE_LIMITED" and "connections open" in refusal["message"]
    # The refused socket took nothing with it: the three others still work.
    s = sockets[0]
    chats = [await dm(s, o) for o in others[:2]]
    third = await s.call("joinRoom", {"otherUserId": others[2].id})
    assert third["code"] == "RATE_LIMITED" and "leave one" in third["error"]
    # Joining a room already joined is not a new room.
    assert (await s.call("joinRoom", {"chatHeaderId": chats[0]}))["joined"] is True
    assert (await s.call("leaveRoom", {"chatHeaderId": chats[1]}))["left"] is True
    assert (await s.call("joinRoom", {"otherUserId": others[2].id}))["joined"] is True
    # Another socket of the same user has its own rooms.
    assert await dm(sockets[1], others[2])


async def test_configured_origins_only(limited):
    user = User(limited, "Cors")
    path = f"/socket.io/?EIO=4&transport=polling&userId={user.id}"
    status, headers, _ = raw_get(limited, path, {"Origin": "https://admin.example.com"})
    assert status == 200
    assert headers.get("Access-Control-Allow-Origin") == "https://admin.example.com"
    status, headers, _ = raw_get(limited, path, {"Origin": "https://evil.example"})
    assert status == 400 and "Access-Control-Allow-Origin" not in headers
    status, headers, _ = raw_get(limited, "/healthz", {"Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


async def test_json_log_lines(limited):
    lines = [line for line in limited.log().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record)


# --- logs --------------------------------------------------------------------------

async def test_log_of_a_full_flow_holds_no_token(make_server):
    srv = make_server("sqlite", "--log-socketio=true")
    ann, bob = User(srv, "Ann"), User(srv, "Bob")
    await register(ann, bob)
    # The token in every place a client may put it: query, auth, header, event.
    a = socketio.AsyncClient(reconnection=False)
    await a.connect(f"{srv.url}?userId={ann.id}&accessToken={ann.token}",
                    transports=["polling"], wait_timeout=5)
    b = socketio.AsyncClient(reconnection=False)
    await b.connect(f"{srv.url}?userId={bob.id}", auth={"accessToken": bob.token},
                    headers={"Authorization": f"Bearer {bob.token}"},
                    transports=["websocket"], wait_timeout=5)
    joined = await a.call("joinRoom", {"otherUserId": bob.id, "accessToken": ann.token})
    chat_id = joined["chatHeaderId"]
    await b.call("joinRoom", {"chatHeaderId": chat_id, "AccessToken": bob.token})
    sent = await a.call("createMessage", {"chatHeaderId": chat_id, "message": "hi",
                                          "accessToken": f"Bearer {ann.token}"})
    assert sent["chatMessage"]["message"] == "hi"
    expired = mint(SECRET, ann.id, "Ann", hours=-1)
    forged = mint("another-secret-0123456789-abcdefghijk", ann.id, "Ann")
    for bad in (expired, forged):
        reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": "x",
                                               "accessToken": bad})
        assert reply["code"] == "UNAUTHORIZED"
    status, _ = http_json(srv, "GET", f"/api/chat/getChatHeaderAsync?user1Id={ann.id}"
                          f"&user2Id={bob.id}", headers={"Authorization": f"Bearer {forged}"})
    assert status == 401
    status, _ = http_json(srv, "GET", f"/api/friendships?accessToken={ann.token}",
                          headers={"Authorization": f"Bearer {ann.token}"})
    assert status == 200
    refused = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(f"{srv.url}?userId={bob.id}&accessToken={expired}",
                              transports=["websocket"], wait_timeout=5)
    await refused.disconnect()
    # Stopping the server first ends the polling client's long poll at once; a polling
    # client between polls does not hold the shutdown up.
    began = asyncio.get_running_loop().time()
    assert await asyncio.to_thread(srv.stop) == 0
    assert asyncio.get_running_loop().time() - began < 5
    await a.disconnect()
    await b.disconnect()

    log = srv.log()
    tokens = [ann.token, bob.token, expired, forged]
    for token in tokens:
        signature = token.rsplit(".", 1)[1]
        assert signature not in log, f"a token signature is in the log:\n{log}"
        assert token.split(".")[1] not in log, "a token's claims are in the log"
    assert not re.search(r"accessToken=(?!\[redacted\])", log)
    # The log is not silent about what happened: each place was logged, redacted.
    assert "accessToken=[redacted]" in log                      # tornado access log
    assert re.search(r"engineio\.server: .*(Received|Sending) packet", log)
    assert re.search(r"createMessage from \S+: ok in", log)     # one line per outcome
    assert re.search(r"createMessage from \S+: UNAUTHORIZED", log)
    assert re.search(r"connection from \S+ refused: UNAUTHORIZED", log)


# --- graceful shutdown ---------------------------------------------------------------

async def test_sigterm_during_traffic_keeps_every_acked_message(store_kind, make_server):
    srv = make_server(store_kind)
    senders = [User(srv, f"S{i}") for i in range(4)]
    reader = User(srv, "Reader")
    await register(reader, *senders)
    clients_ = [await s.connect() for s in senders]
    listener = await reader.connect()
    chats = [await dm(c, reader) for c in clients_]
    for chat_id in chats:
        await listener.call("joinRoom", {"chatHeaderId": chat_id})
    acked: dict[int, set] = {c: set() for c in chats}
    refusals = []

    async def send(client, chat_id, n):
        for i in range(n):
            try:
                reply = await client.call(
                    "createMessage", {"chatHeaderId": chat_id, "message": f"{chat_id}:{i}"},
                    timeout=5)
            except Exception:
                return  # the socket was closed by the shutdown
            if "chatMessage" in reply:
                acked[chat_id].add(reply["chatMessage"]["message"])
            else:
                refusals.append(reply["code"])

    traffic = [asyncio.create_task(send(c, chat_id, 400))
               for c, chat_id in zip(clients_, chats)]
    while sum(map(len, acked.values())) < 40:
        await asyncio.sleep(0.01)
    srv.proc.send_signal(signal.SIGTERM)
    signalled = asyncio.get_running_loop().time()
    for _ in range(300):
        if srv.proc.poll() is not None:
            break
        await asyncio.sleep(0.02)
    assert srv.proc.returncode == 0, srv.log()
    # Well within shutdown_grace (10 s): nothing waited for a timeout.
    assert asyncio.get_running_loop().time() - signalled < 5
    await asyncio.wait_for(asyncio.gather(*traffic), 30)
    assert set(refusals) <= {"UNAVAILABLE"}, refusals
    log = srv.log()
    assert "stopped" in log and "Traceback" not in log, log
    # Every broadcast the reader saw was acked (or at least stored: checked below).
    broadcast = {m["chatMessage"]["message"] for m in listener.received("message")}
    for c in clients_ + [listener]:
        await c.close()

    # The same database under a fresh server: every acked message is there.
    again = make_server(store_kind, database_url=srv.database_url)
    r = User(again, "Reader", user_id=reader.id)
    rc = await r.connect()
    stored = set()
    for chat_id in chats:
        page = await rc.call("findAllMessages", {"chatHeaderId": chat_id, "maxResultCount": 200})
        stored.update(m["message"] for m in page["items"])
        total = page["totalCount"]
        while len([m for m in stored if m.startswith(f"{chat_id}:")]) < total:
            last = page["items"][-1]["id"]
            page = await rc.call("findAllMessages", {"chatHeaderId": chat_id,
                                                     "lastMessageId": last,
                                                     "maxResultCount": 200})
            assert page["items"], "totalCount promises more than the pages hold"
            stored.update(m["message"] for m in page["items"])
    await rc.close()
    all_acked = set().union(*acked.values())
    assert len(all_acked) >= 40
    assert all_acked <= stored, sorted(all_acked - stored)[:5]
    assert broadcast <= stored


# --- systemd ---------------------------------------------------------------------------

def test_systemd_unit_verifies(tmp_path):
    unit = os.path.join(ROOT, "conf", "syarah.service")
    with open(unit) as f:
        text = f.read()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.M))
    assert settings["User"] not in ("", "root")
    assert settings["Restart"] == "on-failure"
    assert int(settings["LimitNOFILE"]) >= 65536
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"
    assert "/var/lib/syarah" in settings["ReadWritePaths"]
    assert settings["EnvironmentFile"].startswith("/etc/syarah/")
    assert "bin/syarah-server" in settings["ExecStart"]
    # The server's own flag parser accepts the unit's arguments, with the sample config.
    args = settings["ExecStart"].split("bin/syarah-server", 1)[1].split()
    args = [a.replace("/etc/syarah/syarah.conf", os.path.join(ROOT, "conf", "production.conf"))
            for a in args]
    loaded = options.load(args, environ={})
    assert loaded.require_connect_token and loaded.origins != "*"

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if IN_CI:
            pytest.fail("systemd-analyze is required in CI (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart exists: point the unit at this checkout.
    local = tmp_path / "syarah.service"
    local.write_text(text.replace("/opt/syarah/.venv/bin/python", sys.executable)
                     .replace("/opt/syarah", ROOT))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True,
                            text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "syarah.service" in line]
    assert result.returncode == 0, result.stderr
    assert not complaints, complaints


async def test_tokenless_sockets_cannot_crowd_out_the_real_user(limited, clients):
    """Sockets that only claim a userId count against their address, not the user."""
    ann = User(limited, "Ann")
    await register(ann)
    crowd = fake_address()
    for _ in range(3):
        await clients(ann, with_token=False, headers={"X-Forwarded-For": crowd})
    # Ann, with her token, still connects: the tokenless ones are not hers.
    mine = await connect_from(clients, ann, fake_address())
    assert (await mine.call("getMyChats", {})) == []


# --- hardening: dependencies, store connections, secrets, /metrics --------------------

def test_dependency_floors_exclude_versions_with_advisories():
    import configparser

    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    wanted = {}
    for line in cfg["options"]["install_requires"].strip().splitlines():
        req = Requirement(line.strip())
        wanted[req.name.lower()] = req.specifier
    # aiomysql 0.2.0 lets a rogue database server read local files through LOCAL
    # INFILE; orjson releases before 3.11.6 carry a published advisory as well.
    for name, bad, good in (("aiomysql", "0.2.0", "0.3.2"), ("orjson", "3.11.5", "3.11.6"),
                            ("orjson", "3.10.18", "3.13.0")):
        assert not wanted[name].contains(bad), (name, str(wanted[name]))
        assert wanted[name].contains(good), (name, str(wanted[name]))


async def test_pool_connections_never_offer_local_infile():
    from pymysql.constants import CLIENT

    from syarah.store.database import Database

    url, cleanup = new_database_url("mysql")
    db = await Database.connect(url, pool_size=2, timeout=5)
    try:
        pool = db._pool
        conns = [await pool.acquire() for _ in range(2)]
        try:
            flags = [c.client_flag for c in conns]
            assert all(f & CLIENT.CAPABILITIES for f in flags), flags
            assert not any(f & CLIENT.LOCAL_FILES for f in flags), flags
            assert not any(c._local_infile for c in conns)
        finally:
            for c in conns:
                pool.release(c)
    finally:
        await db.close()
        cleanup()


def test_short_hs256_secret_is_refused_at_start():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "syarah-server"), "--jwt-secret=abcdef",
         "--port=0", "--address=127.0.0.1", "--database-url=sqlite:///:memory:"],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "jwt_secret" in result.stderr and "at least 32 bytes" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_production_sample_names_issuer_and_audience():
    prod = options.load([f"--config={ROOT}/conf/production.conf"], {})
    assert prod.jwt_issuer and prod.jwt_audience
    with open(os.path.join(ROOT, "conf", "production.conf")) as f:
        lines = [line for line in f if line.startswith(("jwt_issuer", "jwt_audience"))]
    assert len(lines) == 2 and all("#" in line for line in lines), lines


async def test_metrics_behind_a_token(make_server):
    srv = make_server("sqlite", "--metrics-token=scrape-token-0123456789")
    assert raw_get(srv, "/metrics")[0] == 401
    assert raw_get(srv, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    status, headers, body = raw_get(srv, "/metrics",
                                    {"Authorization": "Bearer scrape-token-0123456789"})
    assert status == 200 and b"syarah_connected_sockets" in body
    # Health checks stay open: the load balancer has no token.
    assert raw_get(srv, "/healthz")[0] == 200


async def test_metrics_on_a_listener_of_their_own(make_server):
    from conftest import free_port

    port = free_port()
    srv = make_server("sqlite", f"--metrics-port={port}", "--metrics-address=127.0.0.1")
    # Not on the public port any more...
    assert raw_get(srv, "/metrics")[0] == 404
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200 and b"syarah_connected_sockets" in r.read()


def make_tls_files(folder, name: str = "ca") -> dict:
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)

    def write(filename, data):
        path = os.path.join(folder, filename)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Syarah test {name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - day).not_valid_after(now + day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - day).not_valid_after(now + day)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return {
        "ca": write(f"{name}.pem", ca.public_bytes(serialization.Encoding.PEM)),
        "cert": write(f"{name}-server.pem", cert.public_bytes(serialization.Encoding.PEM)),
        "key": write(f"{name}-server-key.pem", pem_key(key)),
    }


@pytest.fixture
def tls_mariadb(tmp_path):
    from own_mariadb import OwnMariadb, available

    if not available():
        if IN_CI:
            pytest.fail("mariadbd and mariadb-install-db are required in CI")
        pytest.skip("mariadbd is not installed")
    files = make_tls_files(str(tmp_path))
    db = OwnMariadb(f"--ssl-ca={files['ca']}", f"--ssl-cert={files['cert']}",
                    f"--ssl-key={files['key']}", "--require-secure-transport=ON")
    try:
        db.start()
        yield db, files, db.create_database()
    finally:
        db.stop()


async def test_mariadb_over_tls_verifies_the_server(tls_mariadb, tmp_path, make_server):
    from syarah.store.database import Database, tls_context

    mdb, files, url = tls_mariadb
    # The server requires TLS: a plain connection is refused.
    with pytest.raises(Exception, match="cannot open the database"):
        await Database.connect(url, pool_size=1, timeout=3)
    db = await Database.connect(url, pool_size=1, timeout=3,
                                ssl=tls_context(ca=files["ca"]))
    try:
        (_, cipher), = await db.fetchall("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert cipher, "the session is not encrypted"
    finally:
        await db.close()

    srv = make_server("mysql", f"--database-ssl-ca={files['ca']}", database_url=url)
    assert http_json(srv, "GET", "/readyz")[0] == 200

    # A CA that did not sign the server's certificate: refused, said so, exit 2.
    other = make_tls_files(str(tmp_path), name="other-ca")
    refused = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "syarah-server"), f"--jwt-secret={SECRET}",
         "--port=0", "--address=127.0.0.1", f"--database-url={url}", "--db-timeout=3",
         f"--database-ssl-ca={other['ca']}"],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "cannot open the database" in refused.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr or "certificate" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- shutdown order: sockets first, then the store --------------------------------

SHUTDOWN_ERRORS = ("Cannot operate on a closed database", "took longer than the grace period",
                   "not completed", "not announced", "failed", "Traceback")


class StoreHeld:
    """Keeps the server's queries for who hears a user's presence waiting: on SQLite
    the write lock of the file, on MariaDB a table lock, from a connection of the
    test's own."""

    def __init__(self, database_url: str):
        self.url = database_url

    def __enter__(self):
        u = urlparse(self.url)
        if u.scheme == "sqlite":
            import sqlite3
            self.conn = sqlite3.connect(u.path[1:] if u.path.startswith("//") else u.path,
                                        isolation_level=None, check_same_thread=False)
            self.conn.execute("BEGIN IMMEDIATE")
            self.release_sql = "COMMIT"
        else:
            import pymysql
            self.conn = pymysql.connect(host=u.hostname, port=u.port or 3306,
                                        user=u.username or "root", password=u.password or "",
                                        database=u.path.lstrip("/"))
            self.conn.cursor().execute("LOCK TABLES friendships WRITE")
            self.release_sql = "UNLOCK TABLES"
        return self

    def release(self):
        if self.conn is not None:
            self.conn.cursor().execute(self.release_sql)
            self.conn.close()
            self.conn = None

    def __exit__(self, *exc):
        self.release()


# Longer than a WebSocket's flush at shutdown (3 s), shorter than the store's wait.
STORE_HELD_SECONDS = 3.5


async def test_sigterm_closes_sockets_before_the_store(store_kind, make_server):
    from test_scaleout import REDIS_URL, redis_available

    if not redis_available():
        if IN_CI:
            pytest.fail(f"Redis is required in CI but unreachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    prefix = "syarah-test-" + uuid.uuid4().hex[:8]
    deployment = (f"--redis-url={REDIS_URL}", f"--redis-prefix={prefix}", "--presence-ttl=30")
    leaving = make_server(store_kind, *deployment)
    staying = make_server(store_kind, *deployment, database_url=leaving.database_url)
    watcher = User(staying, "Watcher")
    users = [User(leaving, f"U{i}") for i in range(24)]
    await register(watcher, *users)
    w = await watcher.connect()
    opened = [w]
    try:
        for i, u in enumerate(users):
            # Half on WebSocket, half long-polling: both kinds are closed at shutdown.
            c = await u.connect(transports=("websocket",) if i % 2 else ("polling",))
            opened.append(c)
            # A chat partner to whom the user has written: hears their clientStatus.
            await c.call("createMessage", {"chatHeaderId": await dm(c, watcher),
                                           "message": "hi"})
        await w.settle(0.3)
        w.events.pop("clientStatus", None)

        # A busy store: every disconnect waits for it. Half the users say goodbye
        # themselves just before the signal, so their disconnects are under way when
        # the shutdown begins; the others are disconnected by the shutdown.
        with StoreHeld(leaving.database_url) as held:
            closing = [asyncio.create_task(c.close()) for c in opened[1::2]]
            await asyncio.sleep(0.3)
            leaving.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(STORE_HELD_SECONDS)
            held.release()
        assert await asyncio.to_thread(leaving.proc.wait, 30) == 0, leaving.log()[-5000:]
        await asyncio.gather(*closing, return_exceptions=True)

        # Each user's going offline was announced across the deployment, which needs
        # the store (the user's partners) after the sockets closed.
        gone = await w.wait_for("clientStatus", len(users), timeout=10)
        assert {s["userId"] for s in gone if not s["activeNow"]} == {u.id for u in users}
        log = leaving.log()
        assert "stopped" in log
        assert not [e for e in SHUTDOWN_ERRORS if e in log], [
            line for line in log.splitlines() if any(e in line for e in SHUTDOWN_ERRORS)]
    finally:
        for c in opened:
            await c.close()
