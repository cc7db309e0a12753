"""Push notifications: who is pushed, what FCM receives, retries, token
removal, the OAuth token, and the outbox across a restart.

Firebase cannot be reached from here, so a fake FCM + OAuth server (aiohttp on
127.0.0.1, in the test's event loop) stands in for it. The server talks to it
unchanged: ``--fcm-endpoint`` and the service account's ``token_uri`` point at it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid

import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import ServerProcess, User, dm, new_database_url, register
from helpers import befriend
from syarah.push.payload import fcm_message, notification_text
from syarah.store import open_store
from syarah.types import Message, PushJob
from syarah.types import User as Author

PROJECT = "syarah-push-test"
CLIENT_EMAIL = "chat-push@syarah-push-test.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


class FakeFirebase:
    """Google's OAuth token endpoint and FCM's messages:send, recording every request.

    Answers per request: ``mode`` for every token, ``token_modes[token]`` for one
    device, and ``scripts[token]`` (consumed first, one answer per request). Modes:
    ok, unregistered, invalid_token, 429, 500, hang.
    """

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = uuid.uuid4().hex
        self.mode = "ok"
        self.token_modes: dict[str, str] = {}
        self.scripts: dict[str, list[str]] = {}
        self.retry_after = "1"
        self.expires_in = 3600
        self.token_requests: list[dict] = []
        self.issued: dict[str, float] = {}      # access token -> expiry
        self.revoked: set[str] = set()
        self.sends: list[dict] = []
        self._release = asyncio.Event()
        self._serial = itertools.count(1)

    async def start(self):
        app = web.Application()
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)
        self.runner = web.AppRunner(app, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.token_uri = self.url + "/token"
        folder = tempfile.mkdtemp(prefix="syarah-fcm-")
        self.account_path = os.path.join(folder, "service-account.json")
        with open(self.account_path, "w") as f:
            json.dump({
                "type": "service_account", "project_id": PROJECT,
                "private_key_id": self.key_id,
                "private_key": self.key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption()).decode(),
                "client_email": CLIENT_EMAIL, "client_id": "1234567890",
                "token_uri": self.token_uri,
            }, f)
        return self

    async def close(self):
        self.release()
        await self.runner.cleanup()

    def release(self):
        """Let every hanging request answer (503); later hangs wait again."""
        self._release.set()
        self._release = asyncio.Event()

    async def token(self, request):
        form = await request.post()
        self.token_requests.append(dict(form))
        access = f"ya29.fake-{next(self._serial)}"
        self.issued[access] = time.time() + self.expires_in
        return web.json_response({"access_token": access, "expires_in": self.expires_in,
                                  "token_type": "Bearer"})

    async def send(self, request):
        body = await request.json()
        auth = request.headers.get("Authorization", "")
        message = body.get("message", {})
        token = message.get("token")
        record = {"at": time.monotonic(), "auth": auth, "project": request.match_info["project"],
                  "message": message, "token": token,
                  "message_id": message.get("data", {}).get("messageId")}
        self.sends.append(record)
        access = auth.removeprefix("Bearer ")
        if access in self.revoked or self.issued.get(access, 0) < time.time():
            record["answer"] = 401
            return self._error(401, "UNAUTHENTICATED", "Request had invalid credentials.")
        script = self.scripts.get(token)
        mode = script.pop(0) if script else self.token_modes.get(token, self.mode)
        record["mode"] = mode
        if mode == "hang":
            record["answer"] = "hang"
            await self._release.wait()
            record["answer"] = "released"
            return self._error(503, "UNAVAILABLE", "released by the test")
        if mode == "unregistered":
            record["answer"] = 404
            return self._error(404, "NOT_FOUND", "Requested entity was not found.",
                               "UNREGISTERED")
        if mode == "invalid_token":
            record["answer"] = 400
            return self._error(
                400, "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
                {"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "message.token",
                                      "description": "Invalid registration token"}]})
        if mode == "429":
            record["answer"] = 429
            return self._error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.",
                               "QUOTA_EXCEEDED", headers={"Retry-After": self.retry_after})
        if mode == "500":
            record["answer"] = 500
            return self._error(500, "INTERNAL", "Internal error.", "INTERNAL")
        record["answer"] = 200
        return web.json_response({"name": f"projects/{PROJECT}/messages/{next(self._serial)}"})

    @staticmethod
    def _error(status, state, text, code=None, *extra, headers=None):
        details = list(extra)
        if code:
            details.insert(0, {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                               "errorCode": code})
        return web.json_response(
            {"error": {"code": status, "message": text, "status": state, "details": details}},
            status=status, headers=headers)

    # What the tests look at

    def to(self, token: str) -> list[dict]:
        return [s for s in self.sends if s["token"] == token]

    def delivered(self, token: str) -> list[dict]:
        return [s for s in self.to(token) if s.get("answer") == 200]


async def until(predicate, timeout: float = 10, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def in_store(server, fn):
    """Look at the server's database the way the server does, through the store."""
    store = await open_store(server.database_url, pool_size=1, run_migrations=False)
    try:
        return await fn(store)
    finally:
        await store.close()


def push_flags(fake: FakeFirebase, *more: str) -> list[str]:
    return [f"--fcm-service-account-file={fake.account_path}",
            f"--fcm-endpoint={fake.url}", "--push-retry-base=0.2",
            "--push-max-attempts=3", "--shutdown-grace=1", *more]


@pytest_asyncio.fixture(scope="module")
async def fake():
    firebase = await FakeFirebase().start()
    yield firebase
    await firebase.close()


@pytest.fixture(scope="module")
def push_server(store_kind, fake):
    url, cleanup = new_database_url(store_kind)
    srv = ServerProcess(url, *push_flags(fake)).start()
    yield srv
    srv.stop()
    cleanup()


@pytest.fixture(autouse=True)
def fresh_fake(request):
    if "fake" in request.fixturenames:
        f = request.getfixturevalue("fake")
        f.mode, f.retry_after, f.expires_in = "ok", "1", 3600
        f.token_modes.clear()
        f.scripts.clear()


def device_token() -> str:
    # Shaped like an FCM registration token: an instance id, a colon, a long tail.
    return f"d{uuid.uuid4().hex[:10]}:APA91b{uuid.uuid4().hex}{uuid.uuid4().hex}"


def add_device(user: User, token: str, platform: str = "android"):
    status, body = user.http("POST", "/api/chat/devices", {"token": token,
                                                          "platform": platform})
    assert status == 200 and body["success"], body


async def send(client, chat_id: int, text: str) -> dict:
    reply = await client.call("createMessage", {"chatHeaderId": chat_id, "message": text})
    assert "chatMessage" in reply, reply
    return reply["chatMessage"]


async def pair(server, clients, fake_token: str | None = None):
    """Ann (connected, in the room) and Bob (offline, with one device)."""
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    token = fake_token or device_token()
    add_device(bob, token)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    return ann, bob, a, chat_id, token


async def test_the_badge_counts_what_is_unread_in_all_the_users_chats(
        push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    await send(a, chat_id, "One")
    await until(lambda: len(fake.delivered(token)) == 1, what="the first push")
    cat = User(push_server, "Cat")
    await register(cat)
    c = await clients(cat)
    other = await dm(c, bob)
    await send(c, other, "Two")
    await until(lambda: len(fake.delivered(token)) == 2, what="the second push")
    second = fake.delivered(token)[-1]["message"]
    assert second["data"]["senderId"] == cat.id
    assert second["apns"]["payload"]["aps"]["badge"] == 2
    # Bob reads Ann's chat on another device: the next push counts only what is left.
    b = await clients(bob)
    assert "error" not in await b.call("readMessage", {"chatHeaderId": chat_id})
    await send(c, other, "Three")
    await until(lambda: len(fake.delivered(token)) == 3, what="the third push")
    third = fake.delivered(token)[-1]["message"]
    assert third["apns"]["payload"]["aps"]["badge"] == 2
    assert third["android"]["notification"]["notification_count"] == 2


# Devices

async def test_device_registration_and_removal(push_server, fake, clients):
    ann, bob = User(push_server, "Ann"), User(push_server, "Bob")
    await register(ann, bob)
    status, body = ann.http("POST", "/api/chat/devices", {"platform": "ios"})
    assert status == 400 and body["success"] is False and "token" in body["message"]
    status, body = ann.http("POST", "/api/chat/devices", {"token": "x" * 600})
    assert status == 400, body
    status, body = User(push_server, "Nobody").http(
        "POST", "/api/chat/devices", {"token": "t"}, headers={"Authorization": ""})
    assert status == 401, body

    shared = device_token()
    add_device(ann, shared, "iOS")
    assert await in_store(push_server, lambda s: s.user_devices(ann.id)) == [(shared, "ios")]
    # Bob signs in on Ann's phone: the token is his now.
    add_device(bob, shared)
    assert await in_store(push_server, lambda s: s.user_devices(ann.id)) == []
    assert await in_store(push_server, lambda s: s.user_devices(bob.id)) == [(shared, "android")]

    status, body = ann.http("DELETE", f"/api/chat/devices/{shared}")
    assert status == 404 and body["success"] is False
    status, body = bob.http("DELETE", f"/api/chat/devices/{shared}")
    assert status == 200 and body["data"] == {"token": shared, "removed": True}
    assert await in_store(push_server, lambda s: s.user_devices(bob.id)) == []


async def test_push_is_off_without_a_service_account(server):
    # The session server has no fcm_service_account_file.
    assert "push notifications are OFF" in server.log()
    user = User(server, "Ann")
    status, body = user.http("POST", "/api/chat/devices", {"token": device_token()})
    assert status == 200, body


# Who is pushed

async def test_offline_member_is_pushed_with_the_fcm_v1_payload(push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    first = await send(a, chat_id, "Hello Bob")
    second = await send(a, chat_id, "Are you there?")
    await until(lambda: len(fake.delivered(token)) == 2, what="two pushes")

    by_id = {s["message_id"]: s for s in fake.delivered(token)}
    assert set(by_id) == {str(first["id"]), str(second["id"])}
    sent = by_id[str(first["id"])]
    assert sent["project"] == PROJECT
    assert sent["auth"].removeprefix("Bearer ") in fake.issued
    m = sent["message"]
    assert m["token"] == token
    assert m["notification"] == {"title": "Ann", "body": "Hello Bob"}
    assert m["data"] == {"chatHeaderId": str(chat_id), "messageId": str(first["id"]),
                         "messageType": "0", "senderId": ann.id}
    assert m["android"]["priority"] == "high"
    assert m["apns"]["headers"]["apns-priority"] == "10"
    assert m["apns"]["headers"]["apns-push-type"] == "alert"
    # The badge is Bob's unread count when the push is sent: 1 or 2 for the first
    # (both may be queued before it goes), exactly 2 for the second.
    assert m["apns"]["payload"]["aps"]["badge"] in (1, 2)
    last = by_id[str(second["id"])]["message"]
    assert last["apns"]["payload"]["aps"]["badge"] == 2
    assert last["android"]["notification"]["notification_count"] == 2
    # The sender is never pushed about their own message.
    assert all(s["message"]["data"]["senderId"] == ann.id for s in fake.to(token))


async def test_group_push_names_the_group_and_the_sender(push_server, fake, clients):
    ann, bob, cid = User(push_server, "Ann"), User(push_server, "Bob"), User(push_server, "Cid")
    await register(ann, bob, cid)
    bob_token, cid_token = device_token(), device_token()
    add_device(bob, bob_token)
    add_device(cid, cid_token, "ios")
    status, body = ann.http("POST", "/api/chat/groups",
                            {"name": "Hiking", "memberIds": [bob.id, cid.id]})
    assert status == 201, body
    group_id = body["data"]["id"]
    a = await clients(ann)
    msg = await send(a, group_id, "Saturday at 8?")
    await until(lambda: fake.delivered(bob_token) and fake.delivered(cid_token),
                what="both members pushed")
    for token in (bob_token, cid_token):
        (sent,) = fake.delivered(token)
        assert sent["message"]["notification"] == {"title": "Hiking",
                                                   "body": "Ann: Saturday at 8?"}
        assert sent["message_id"] == str(msg["id"])


async def test_viewing_members_are_not_pushed_until_they_leave_or_disconnect(
        push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    # Friends: Ann hears when Bob goes offline.
    befriend(ann, bob)
    b = await clients(bob)
    online = await send(a, chat_id, "online, not viewing")       # pushed

    await b.call("joinRoom", {"chatHeaderId": chat_id})
    viewing = await send(a, chat_id, "viewing")                  # not pushed
    await b.wait_for("message")
    await b.call("leaveRoom", {"chatHeaderId": chat_id})
    after_leave = await send(a, chat_id, "after leaveRoom")      # pushed

    # One of two sockets viewing is enough to count as viewing.
    b2 = await clients(bob)
    await b2.call("joinRoom", {"chatHeaderId": chat_id})
    viewing_second_socket = await send(a, chat_id, "second socket viewing")
    await b.close()
    await b2.close()
    # Bob's last socket is gone once Ann hears he is offline.
    await until(lambda: any(e["userId"] == bob.id and e["activeNow"] is False
                            for e in a.received("clientStatus")), what="Bob offline")
    after_disconnect = await send(a, chat_id, "after disconnect")  # pushed

    expected = {str(m["id"]) for m in (online, after_leave, after_disconnect)}
    await until(lambda: {s["message_id"] for s in fake.delivered(token)} >= expected,
                what="pushes after leaving")
    await asyncio.sleep(0.3)
    sent_ids = [s["message_id"] for s in fake.to(token)]
    assert sorted(sent_ids) == sorted(expected)
    assert str(viewing["id"]) not in sent_ids
    assert str(viewing_second_socket["id"]) not in sent_ids


# Before sending: read or deleted

async def test_read_or_deleted_before_the_send_is_dropped(push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    b = await clients(bob)
    fake.retry_after = "2"
    fake.scripts[token] = ["429", "429"]
    read = await send(a, chat_id, "read it before the retry")
    await until(lambda: len(fake.to(token)) == 1, what="first (refused) send")
    await b.call("readMessage", {"chatHeaderId": chat_id})
    gone = await send(a, chat_id, "deleted before the retry")
    await until(lambda: len(fake.to(token)) == 2, what="second (refused) send")
    reply = await a.call("removeMessage", {"chatHeaderId": chat_id, "id": gone["id"]})
    assert reply["deletedIds"] == [gone["id"]]

    async def pending(store):
        return (await store.push_outbox_depth())["pending"]
    deadline = time.monotonic() + 8
    while await in_store(push_server, pending) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await in_store(push_server, pending) == 0
    assert fake.delivered(token) == []
    assert [s["message_id"] for s in fake.to(token)] == [str(read["id"]), str(gone["id"])]


# FCM errors

async def test_429_and_500_are_retried_with_backoff_honouring_retry_after(
        push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    fake.retry_after = "1"
    fake.scripts[token] = ["429", "500"]
    msg = await send(a, chat_id, "eventually")
    await until(lambda: fake.delivered(token), timeout=15, what="delivery after retries")
    attempts = fake.to(token)
    assert [s["answer"] for s in attempts] == [429, 500, 200]
    assert all(s["message_id"] == str(msg["id"]) for s in attempts)
    waited = [b["at"] - a_["at"] for a_, b in zip(attempts, attempts[1:])]
    print(f"\nretry gaps: after 429 (Retry-After 1) {waited[0]:.2f}s, "
          f"after 500 {waited[1]:.2f}s")
    assert waited[0] >= 0.95          # Retry-After wins over the 0.2 s backoff
    await asyncio.sleep(0.5)
    assert len(fake.delivered(token)) == 1


async def test_unregistered_and_invalid_tokens_remove_the_device(push_server, fake, clients):
    ann, bob, a, chat_id, good = await pair(push_server, clients)
    dead, invalid = device_token(), device_token()
    add_device(bob, dead, "ios")
    add_device(bob, invalid, "web")
    fake.token_modes[dead] = "unregistered"
    fake.token_modes[invalid] = "invalid_token"
    await send(a, chat_id, "one")
    await until(lambda: fake.delivered(good) and fake.to(dead) and fake.to(invalid),
                what="three sends")

    async def devices(store):
        return await store.user_devices(bob.id)
    deadline = time.monotonic() + 5
    while len(await in_store(push_server, devices)) > 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await in_store(push_server, devices) == [(good, "android")]

    await send(a, chat_id, "two")
    await until(lambda: len(fake.delivered(good)) == 2, what="second push")
    await asyncio.sleep(0.3)
    assert len(fake.to(dead)) == 1 and len(fake.to(invalid)) == 1


async def test_a_push_that_keeps_failing_is_kept_as_failed(push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    fake.token_modes[token] = "500"
    msg = await send(a, chat_id, "doomed")
    await until(lambda: len(fake.to(token)) == 3, timeout=10, what="three attempts")

    async def failed(store):
        return [r for r in await store.failed_pushes(1000) if r[3] == token]
    deadline = time.monotonic() + 5
    while not await in_store(push_server, failed) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    (row,) = await in_store(push_server, failed)
    _, message_id, user_id, _, attempts, error = row
    assert (message_id, user_id, attempts) == (msg["id"], bob.id, 3)
    assert error.startswith("500 INTERNAL")
    await asyncio.sleep(0.8)
    assert len(fake.to(token)) == 3       # max_attempts is 3: no fourth


# OAuth

async def test_oauth_assertion_token_reuse_and_refresh(push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)
    await send(a, chat_id, "warm up")
    await until(lambda: fake.delivered(token), what="first push")

    # The assertion: RS256 with the account's key, the claims Google asks for.
    request = fake.token_requests[-1]
    assert request["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assertion = request["assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == fake.key_id
    claims = jwt.decode(assertion, fake.public_pem, algorithms=["RS256"],
                        audience=fake.token_uri)
    assert claims["iss"] == CLIENT_EMAIL and claims["scope"] == SCOPE
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] <= time.time() + 1

    # Reused: more pushes, no new token.
    fetched = len(fake.token_requests)
    for i in range(3):
        await send(a, chat_id, f"reuse {i}")
    await until(lambda: len(fake.delivered(token)) == 4, what="reused-token pushes")
    assert len(fake.token_requests) == fetched
    assert len({s["auth"] for s in fake.delivered(token)}) == 1

    # FCM refuses the token (401): one refresh, the same push goes through.
    fake.revoked.update(fake.issued)
    fake.expires_in = 62          # renewed 60 s early: good for about 2 s
    msg = await send(a, chat_id, "after revocation")
    await until(lambda: len(fake.delivered(token)) == 5, what="push after 401")
    assert len(fake.token_requests) == fetched + 1
    tries = [s for s in fake.to(token) if s["message_id"] == str(msg["id"])]
    assert [s["answer"] for s in tries] == [401, 200]

    # Near expiry the token is renewed before the send, not after a refusal.
    await asyncio.sleep(2.2)
    msg = await send(a, chat_id, "after expiry")
    await until(lambda: len(fake.delivered(token)) == 6, what="push after expiry")
    assert len(fake.token_requests) == fetched + 2
    tries = [s for s in fake.to(token) if s["message_id"] == str(msg["id"])]
    assert [s["answer"] for s in tries] == [200]
    assert tries[0]["auth"] != fake.delivered(token)[-2]["auth"]


# Off the message path

async def test_a_hanging_fcm_does_not_slow_create_message(push_server, fake, clients):
    ann, bob, a, chat_id, token = await pair(push_server, clients)

    async def ack_times(label: str, n: int = 20) -> list[float]:
        times, ids = [], []
        for i in range(n):
            t0 = time.perf_counter()
            ids.append((await send(a, chat_id, f"{label} {i}"))["id"])
            times.append((time.perf_counter() - t0) * 1000)
        return times, ids

    fast, fast_ids = await ack_times("fast")
    await until(lambda: len(fake.delivered(token)) == 20, what="fast pushes")
    fake.token_modes[token] = "hang"
    hanging, hang_ids = await ack_times("hanging")
    await until(lambda: sum(1 for s in fake.to(token) if s.get("answer") == "hang") >= 8,
                what="the worker's slots to hang")
    print(f"\ncreateMessage ack, ms (median / max of 20): FCM fast "
          f"{statistics.median(fast):.1f} / {max(fast):.1f}; FCM hanging "
          f"{statistics.median(hanging):.1f} / {max(hanging):.1f}")
    # FCM comes back: everything queued during the hang arrives, once each.
    fake.token_modes[token] = "ok"
    fake.release()
    await until(lambda: len(fake.delivered(token)) == 40, timeout=20, what="drain")
    delivered = [int(s["message_id"]) for s in fake.delivered(token)]
    assert sorted(delivered) == sorted(fast_ids + hang_ids)


# Durability

async def test_pending_pushes_survive_a_restart_and_arrive_once(store_kind, fake, clients):
    url, cleanup = new_database_url(store_kind)
    first = ServerProcess(url, *push_flags(fake, "--push-concurrency=2")).start()
    second = None
    try:
        ann, bob, a, chat_id, token = await pair(first, clients)
        fake.token_modes[token] = "hang"
        ids = [(await send(a, chat_id, f"pending {i}"))["id"] for i in range(5)]
        await until(lambda: len(fake.to(token)) == 2, what="two sends in flight")
        await a.close()
        assert first.stop() == 0
        depth = await in_store(first, lambda s: s.push_outbox_depth())
        assert depth == {"pending": 5, "failed": 0}

        fake.token_modes[token] = "ok"
        fake.release()
        second = ServerProcess(url, *push_flags(fake)).start()
        await until(lambda: len(fake.delivered(token)) == 5, timeout=15,
                    what="pending pushes after the restart")
        await asyncio.sleep(0.5)
        delivered = sorted(int(s["message_id"]) for s in fake.delivered(token))
        assert delivered == sorted(ids)
        depth = await in_store(second, lambda s: s.push_outbox_depth())
        assert depth == {"pending": 0, "failed": 0}
        print(f"\nrestart: {len(fake.to(token))} requests for 5 pushes "
              f"(2 abandoned by the stopped node), 5 delivered once each")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        cleanup()


# What a push says (pure)

def _job(message_type: int, text: str, caption=None, group=None) -> PushJob:
    message = Message(id=7, chat_header_id=3, user_id="u-1", message=text,
                      message_type=message_type, caption=caption, creation_ms=0,
                      last_modification_ms=None, client_message_id=None,
                      author=Author("u-1", "Ann"))
    return PushJob(id=1, token="tok", user_id="u-2", chat_header_id=3, message_id=7,
                   attempts=0, platform="android", device_user_id="u-2", message=message,
                   chat_is_group=group is not None, chat_name=group,
                   last_read_message_id=0, unread_count=4)


def test_media_messages_say_what_they_are_not_their_path():
    path = "/uploads/chat-messages/images/abcdefghijklmnop.webp"
    assert notification_text(_job(2, path, "At the lake")) == ("Ann", "Photo: At the lake")
    assert notification_text(_job(4, path)) == ("Ann", "Video")
    assert notification_text(_job(1, path, group="Hiking")) == ("Hiking", "Ann: Voice message")
    assert notification_text(_job(3, path)) == ("Ann", "File")
    long = notification_text(_job(0, "x" * 5000))[1]
    assert len(long) == 500 and long.endswith("…")
    message = fcm_message(_job(0, "hi"))
    assert message["apns"]["payload"]["aps"]["badge"] == 4
    assert all(isinstance(v, str) for v in message["data"].values())


# Counters (in process: the worker over a real store, talking to the fake)

async def test_every_decision_is_counted(store_kind, fake):
    from prometheus_client import REGISTRY

    from syarah.presence import LocalPresence
    from syarah.push import metrics
    from syarah.push.fcm import FcmClient, ServiceAccount
    from syarah.push.service import PushService

    url, cleanup = new_database_url(store_kind)
    store = await open_store(url, pool_size=2)
    presence = LocalPresence()
    service = PushService(store, presence,
                          FcmClient(ServiceAccount.load(fake.account_path), fake.url),
                          max_attempts=2, retry_base=0.05)
    now = int(time.time() * 1000)
    ann, bob, cid, dan, eve, fay = (Author(str(uuid.uuid4()), n)
                                    for n in ("Ann", "Bob", "Cid", "Dan", "Eve", "Fay"))
    for u in (ann, bob, cid, dan, eve, fay):
        await store.upsert_user(u, now)
    group = await store.create_group("G", None, ann.id, [bob.id, cid.id, dan.id, eve.id], now)
    pair_chat = await store.get_or_create_individual_chat(ann.id, fay.id, now)
    tokens = {name: device_token() for name in ("bob", "bob_dead", "cid", "eve", "fay")}
    for name, token in tokens.items():
        owner = {"bob": bob, "bob_dead": bob, "cid": cid, "eve": eve, "fay": fay}[name]
        await store.register_device(token, owner.id, "android", now)
    fake.token_modes[tokens["bob_dead"]] = "unregistered"
    fake.token_modes[tokens["cid"]] = "500"
    await presence.add_socket(eve.id, "sid-eve")
    await presence.set_viewing(eve.id, "sid-eve", group.id)
    before = metrics.counters()
    try:
        async def send(chat, text):
            # As createMessage does: decided before the transaction, counted after it.
            plan = await service.plan(chat.id, ann.id)
            return await store.add_message(chat.id, ann, text, 0, None, None, now,
                                           pushes=plan.pushes,
                                           after_commit=lambda m: service.queued(plan))

        async def anything(found):
            pass

        # Eve views the group, Dan has no device, Bob and Cid are queued.
        first = await send(group, "hi all")
        # Fay reads the first before any push goes; the second is deleted.
        await send(pair_chat, "one")
        await store.mark_read(pair_chat.id, fay.id)
        deleted = await send(pair_chat, "two")
        await store.delete_messages(pair_chat.id, [deleted.id], anything)
        assert (await store.push_outbox_depth())["pending"] == 5

        await service.start()
        deadline = time.monotonic() + 10
        while (await store.push_outbox_depth()) != {"pending": 0, "failed": 1}:
            assert time.monotonic() < deadline, await store.push_outbox_depth()
            await asyncio.sleep(0.05)
    finally:
        await service.stop(1)
        await store.close()
        cleanup()
    after = metrics.counters()
    delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert delta == {"skipped_viewing": 1, "skipped_no_device": 1, "pushed": 1,
                     "token_removed": 1, "retried": 1, "failed": 1,
                     "dropped_read": 1, "dropped_deleted": 1}, delta
    assert REGISTRY.get_sample_value("syarah_push_pushed_total") == after["pushed"]
    assert [s["message_id"] for s in fake.delivered(tokens["bob"])] == [str(first.id)]
    assert len(fake.to(tokens["cid"])) == 2          # max_attempts
    assert fake.to(tokens["fay"]) == [] and fake.to(tokens["eve"]) == []


async def test_a_message_decides_its_pushes_outside_its_transaction_and_counts_them_once(
        store_kind):
    """createMessage in process, its transaction a deadlock victim once: who views the
    chat is looked up with no transaction open, the outbox row is written once, and
    the broadcast and the counters happen once, after the commit."""
    from syarah.handlers.context import Context, Services
    from syarah.handlers.messages import create_message
    from syarah.presence import LocalPresence
    from syarah.protocol import inbound as dto
    from syarah.push import metrics
    from syarah.push.service import PushService
    from syarah.store.push import PushStore
    from test_transactions import deadlock

    url, cleanup = new_database_url(store_kind)
    store = await open_store(url, pool_size=2)
    db = store.db
    looked, sent, written = [], [], []

    class WatchedPresence(LocalPresence):
        async def viewing(self, chat_id, user_ids):
            looked.append(db.in_use)   # transactions open at that moment
            return await super().viewing(chat_id, user_ids)

    class Rooms:
        async def to_chat(self, chat_id, event, data, skip_sid=None):
            stored = await store.get_message(data["chatMessage"]["id"])
            sent.append((event, stored is not None))

    async def loses_a_deadlock_once(txn, planned):
        written.append(sum(len(targets) for _, targets, _ in planned))
        if len(written) == 1:
            raise deadlock(db)
        await PushStore.add_pushes_of(txn, planned)

    try:
        now = int(time.time() * 1000)
        ann, bob, eve = (Author(str(uuid.uuid4()), n) for n in ("Ann", "Bob", "Eve"))
        for u in (ann, bob, eve):
            await store.upsert_user(u, now)
        group = await store.create_group("G", None, ann.id, [bob.id, eve.id], now)
        for owner in (bob, eve):
            await store.register_device(device_token(), owner.id, "android", now)
        presence = WatchedPresence()
        await presence.add_socket(eve.id, "sid-eve")
        await presence.set_viewing(eve.id, "sid-eve", group.id)
        service = PushService(store, presence, fcm=None)
        store.add_pushes_of = loses_a_deadlock_once
        ctx = Context(Services(store=store, presence=presence, verifier=None,
                               rooms=Rooms(), users=None, settings=None, push=service),
                      ann)
        before = metrics.counters()
        reply = await create_message(ctx, dto.CreateMessage(group.id, "hello"))
        after = metrics.counters()
        depth = await store.push_outbox_depth()
    finally:
        await store.close()
        cleanup()
    assert reply["chatMessage"]["message"] == "hello"
    assert looked == [0]                      # Eve's viewing: outside any transaction
    assert written == [1, 1]                  # Bob's row, in each attempt
    assert depth["pending"] == 1              # committed once
    assert sent == [("message", True)]        # broadcast once, the message committed
    delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert delta == {"skipped_viewing": 1}, delta


# Two nodes: viewing state in Redis, one outbox shared

async def test_two_nodes_see_each_others_viewers_and_send_each_push_once(
        fake, make_server, clients):
    from test_scaleout import REDIS_URL, redis_available

    if not redis_available():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    url, cleanup = new_database_url("mysql")
    prefix = "syarah-push-" + uuid.uuid4().hex[:8]
    nodes = []
    try:
        for _ in range(2):
            nodes.append(make_server(
                None, f"--redis-url={REDIS_URL}", f"--redis-prefix={prefix}",
                *push_flags(fake, "--push-concurrency=2"), database_url=url))
        one, two = nodes
        ann, bob, cid = User(one, "Ann"), User(two, "Bob"), User(two, "Cid")
        await register(ann, bob, cid)
        bob_token, cid_token = device_token(), device_token()
        add_device(bob, bob_token)
        add_device(cid, cid_token)
        a, b = await clients(ann), await clients(bob)
        chat_id = await dm(a, bob)
        await b.call("joinRoom", {"chatHeaderId": chat_id})
        seen = await send(a, chat_id, "Bob views this on the other node")
        await b.wait_for("message")
        await b.call("leaveRoom", {"chatHeaderId": chat_id})
        pushed = await send(a, chat_id, "Bob has left the room")
        await until(lambda: fake.delivered(bob_token), what="push after leaving")
        assert [s["message_id"] for s in fake.to(bob_token)] == [str(pushed["id"])]
        assert str(seen["id"]) not in {s["message_id"] for s in fake.to(bob_token)}

        # Cid is offline; both nodes drain the one outbox.
        cid_chat = await dm(a, cid)
        ids = [(await send(a, cid_chat, f"n{i}"))["id"] for i in range(12)]
        await until(lambda: len(fake.delivered(cid_token)) == 12, timeout=20,
                    what="12 pushes")
        await asyncio.sleep(0.5)
        assert sorted(int(s["message_id"]) for s in fake.delivered(cid_token)) == ids
    finally:
        # Stopped before their database is dropped.
        for node in nodes:
            node.stop()
        cleanup()


async def test_the_outbox_depth_is_exported_as_a_metric(push_server, fake, clients):
    from test_production import sample, scrape

    ann, bob, a, chat_id, token = await pair(push_server, clients)
    fake.token_modes[token] = "500"
    await send(a, chat_id, "doomed too")
    await until(lambda: len(fake.to(token)) == 3, timeout=10, what="three attempts")
    # The worker refreshes the gauge every few seconds.
    deadline = time.monotonic() + 15
    while sample(scrape(push_server), "syarah_push_outbox_rows", status="failed") < 1:
        assert time.monotonic() < deadline, "the failed row never showed in /metrics"
        await asyncio.sleep(0.5)
    assert ("syarah_push_outbox_rows", (("status", "pending"),)) in scrape(push_server)
