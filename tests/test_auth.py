"""Access tokens and how a connection carries one: HS256, RS256 and
ES256, refused algorithms, expiry, issuer and audience, ABP claims, the user row."""

import base64
import hashlib
import hmac
import json
import os
import tempfile
import time
import uuid

import jwt
import pytest
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conftest import SECRET, Client, User, dm, http_json, register

NAMEIDENTIFIER = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
ISSUER, AUDIENCE = "https://id.example.com", "syarah-chat"


def token(sub=None, *, key=SECRET, alg="HS256", exp_in=600, **claims):
    now = int(time.time())
    body = {"iat": now, **claims}
    if sub is not None:
        body["sub"] = sub
    if exp_in is not None:
        body["exp"] = now + exp_in
    return jwt.encode(body, key, algorithm=alg)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict, claims: dict, key: bytes) -> str:
    """A token PyJWT would not make: HS256 over an arbitrary key, or `alg: none`."""
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    if header["alg"] == "none":
        return signing_input + "."
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(sig)


async def accepted(server, user_id=None, *, query=None, auth=None, headers=None) -> Client:
    """Connect as given; the connection must be accepted."""
    client = Client(User(server, "x", user_id or str(uuid.uuid4())))
    q = query if query is not None else (f"userId={user_id}" if user_id else "")
    await client.sio.connect(f"{server.url}?{q}", auth=auth, headers=headers or {},
                             transports=["websocket"], wait_timeout=10)
    return client


async def refused(server, user_id=None, *, query=None, auth=None, headers=None) -> str:
    """Connect as given; the connection must be refused. Returns what the client saw."""
    sio = socketio.AsyncClient(reconnection=False)
    seen = []
    sio.on("connect_error", lambda data=None: seen.append(data))
    q = query if query is not None else (f"userId={user_id}" if user_id else "")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(f"{server.url}?{q}", auth=auth, headers=headers or {},
                          transports=["websocket"], wait_timeout=10)
    assert seen, "no connect_error event"
    message = seen[0]["message"] if isinstance(seen[0], dict) else seen[0]
    assert isinstance(message, str) and len(message) > 10
    return message


async def is_authenticated(client: Client) -> bool:
    """A data event without its own token works only on an authenticated socket."""
    reply = await client.call("getMyFriendships", {})
    if isinstance(reply, dict):
        assert reply["code"] == "UNAUTHORIZED", reply
        return False
    return isinstance(reply, list)


# --- HS256 and where the token travels (the shared server, both stores) ----------------

async def test_connection_token_in_every_place_the_contract_allows(server):
    uid = str(uuid.uuid4())
    t = token(uid, name="Ann")
    ways = [
        dict(auth={"accessToken": t}),
        dict(auth={"token": t}),
        dict(auth={"accessToken": "Bearer " + t}),
        dict(query=f"userId={uid}&accessToken={t}"),
        dict(headers={"Authorization": "Bearer " + t}),
        # userId may be left out when the token names the user.
        dict(query="", auth={"accessToken": t}),
    ]
    for way in ways:
        client = await accepted(server, uid, **way)
        try:
            assert await is_authenticated(client), way
        finally:
            await client.close()


async def test_a_tokenless_connection_proves_nothing_until_an_event_token(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    ann.http("POST", "/api/friendships", {"userId": bob.id})
    bob.http("POST", f"/api/friendships/{ann.id}/accept")
    b = await clients(bob)

    a = await clients(ann, with_token=False)

    assert not await is_authenticated(a)
    assert b.received("clientStatus") == []
    reply = await a.call("joinRoom", {"otherUserId": bob.id})
    assert reply["code"] == "UNAUTHORIZED" and "token" in reply["error"]
    # A token with the event works, and the socket remembers it.
    friends = await a.call("getMyFriendships", {"accessToken": ann.token})
    assert [f["userId"] for f in friends] == [bob.id]
    assert await is_authenticated(a)
    (status,) = await b.wait_for("clientStatus")
    assert status["userId"] == ann.id and status["activeNow"] is True
    # Someone else's token on this socket is refused.
    reply = await a.call("getMyFriendships", {"accessToken": bob.token})
    assert reply["code"] == "UNAUTHORIZED" and "another user" in reply["error"]


async def test_token_of_another_user_than_the_query_user_is_refused(server):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    message = await refused(server, ann.id, auth={"accessToken": bob.token})
    assert "another user" in message
    message = await refused(server, query=f"userId={ann.id}&accessToken={bob.token}")
    assert "another user" in message


async def test_refused_tokens_say_why(server):
    uid = str(uuid.uuid4())
    cases = {
        "expired": token(uid, exp_in=-120),
        "exp": token(uid, exp_in=None),
        "malformed": "not.a.token",
        "not valid": token(uid, key="some-other-secret-0123456789abcdef"),
        "none": hand_signed({"alg": "none", "typ": "JWT"},
                            {"sub": uid, "exp": int(time.time()) + 600}, b""),
        "user": token(None, name="Nobody"),
        "GUID": token("alice", name="Alice"),
    }
    for why, bad in cases.items():
        message = await refused(server, uid, auth={"accessToken": bad})
        assert why.lower() in message.lower(), (why, message)
        status, body = http_json(server, "GET", "/api/friendships",
                                 headers={"Authorization": f"Bearer {bad}"})
        assert status == 401 and body["message"] == message, (why, body)
    # Within the 30 s leeway an expired token still counts.
    client = await accepted(server, uid, auth={"accessToken": token(uid, exp_in=-10)})
    try:
        assert await is_authenticated(client)
    finally:
        await client.close()


async def test_expired_token_is_refused_on_events_too(server, clients):
    ann = User(server, "Ann")
    a = await clients(ann, with_token=False)
    reply = await a.call("getMyFriendships", {"accessToken": token(ann.id, exp_in=-120)})
    assert reply == {"error": "The access token has expired.", "code": "UNAUTHORIZED"}


async def test_abp_identity_claims(server, clients):
    bob = User(server, "Bob")
    await register(bob)
    upper_id = str(uuid.uuid4()).upper()
    abp = token(None, **{NAMEIDENTIFIER: upper_id, "given_name": "Sara", "family_name": "Ali",
                         "picture": "https://cdn.example.com/sara.jpg"})
    client = await accepted(server, upper_id.lower(), auth={"accessToken": "Bearer " + abp})
    try:
        chat_id = await dm(client, bob)
        reply = await client.call("createMessage", {"message": "salam", "chatHeaderId": chat_id})
        assert reply["chatMessage"]["userId"] == upper_id.lower()
        assert reply["chatMessage"]["user"] == {
            "id": upper_id.lower(), "name": "Sara Ali", "avatar": "https://cdn.example.com/sara.jpg"}
    finally:
        await client.close()
    # The user row made from the claims is what others see.
    b = await clients(bob)
    (chat,) = await b.call("getMyChats", {})
    assert (chat["userId"], chat["userName"], chat["userAvatar"]) == (
        upper_id.lower(), "Sara Ali", "https://cdn.example.com/sara.jpg")

    unique = str(uuid.uuid4())
    client = await accepted(server, unique, auth={"accessToken": token(
        None, **{NAMEIDENTIFIER: unique, "unique_name": "sara.k"})})
    try:
        reply = await client.call("joinRoom", {"otherUserId": bob.id})
        assert reply["currentMember"]["name"] == "sara.k"
    finally:
        await client.close()


async def test_user_row_follows_newer_claims(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    now = int(time.time())
    newer = jwt.encode({"sub": ann.id, "name": "Annie", "picture": "https://cdn.example.com/a.png",
                        "iat": now + 1, "exp": now + 600}, SECRET, algorithm="HS256")

    reply = await a.call("createMessage", {"message": "renamed", "chatHeaderId": chat_id,
                                           "accessToken": newer})

    assert reply["chatMessage"]["user"]["name"] == "Annie"
    b = await clients(bob)
    (chat,) = await b.call("getMyChats", {})
    assert (chat["userName"], chat["userAvatar"]) == ("Annie", "https://cdn.example.com/a.png")
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["items"][0]["user"]["name"] == "Annie"


# --- RS256 and ES256 with a public key file --------------------------------------------

def key_pair(kind: str):
    private = (rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
               else ec.generate_private_key(ec.SECP256R1()))
    private_pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path = os.path.join(tempfile.mkdtemp(prefix="syarah-keys-"), f"{kind}-public.pem")
    with open(path, "wb") as f:
        f.write(public_pem)
    return private_pem, public_pem, path


async def test_rs256_with_issuer_and_audience(make_server):
    private_pem, public_pem, path = key_pair("rsa")
    srv = make_server("sqlite", "--jwt-algorithms=RS256,HS256", f"--jwt-public-key-file={path}",
                      f"--jwt-issuer={ISSUER}", f"--jwt-audience={AUDIENCE}")
    uid = str(uuid.uuid4())
    good = dict(iss=ISSUER, aud=AUDIENCE, name="Rita")

    for t in (token(uid, key=private_pem, alg="RS256", **good), token(uid, **good)):
        client = await accepted(srv, uid, auth={"accessToken": t})
        try:
            assert await is_authenticated(client)
        finally:
            await client.close()
        status, body = http_json(srv, "GET", "/api/friendships",
                                 headers={"Authorization": f"Bearer {t}"})
        assert status == 200 and body["success"] is True

    other_private, _, _ = key_pair("rsa")
    ec_private, _, _ = key_pair("ec")
    cases = {
        "someone else": token(uid, key=private_pem, alg="RS256", iss="https://evil.example.com",
                              aud=AUDIENCE),
        "audience": token(uid, key=private_pem, alg="RS256", iss=ISSUER, aud="another-app"),
        "'iss'": token(uid, key=private_pem, alg="RS256", aud=AUDIENCE),
        "'aud'": token(uid, key=private_pem, alg="RS256", iss=ISSUER),
        "not valid": token(uid, key=other_private, alg="RS256", **good),
        "ES256": token(uid, key=ec_private, alg="ES256", **good),
        # Algorithm confusion: HS256 is allowed here, but keyed by the secret only.
        "not valid ": hand_signed({"alg": "HS256", "typ": "JWT"},
                                  dict(sub=uid, exp=int(time.time()) + 600, **good), public_pem),
        "none": hand_signed({"alg": "none"}, dict(sub=uid, exp=int(time.time()) + 600, **good), b""),
    }
    for why, bad in cases.items():
        message = await refused(srv, uid, auth={"accessToken": bad})
        assert why.strip().lower() in message.lower(), (why, message)


async def test_es256_only_and_connect_token_required(make_server):
    private_pem, public_pem, path = key_pair("ec")
    srv = make_server("sqlite", "--jwt-algorithms=ES256", f"--jwt-public-key-file={path}",
                      "--require-connect-token")
    uid = str(uuid.uuid4())

    client = await accepted(srv, uid, auth={"accessToken": token(uid, key=private_pem, alg="ES256")})
    try:
        assert await is_authenticated(client)
    finally:
        await client.close()

    rsa_private, _, _ = key_pair("rsa")
    for bad in (token(uid), token(uid, key=rsa_private, alg="RS256"),
                hand_signed({"alg": "HS256"}, {"sub": uid, "exp": int(time.time()) + 600},
                            public_pem)):
        message = await refused(srv, uid, auth={"accessToken": bad})
        assert "not accepted" in message, message
    message = await refused(srv, uid)
    assert "requires an access token" in message
    message = await refused(srv, query="")
    assert "requires an access token" in message
