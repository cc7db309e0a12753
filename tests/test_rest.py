"""REST: the envelope, getChatHeaderAsync, friendships, group chats, the
admin API, health, CORS, and what bad requests get back."""

import json
import time
import urllib.request
import uuid

import jwt

from conftest import SECRET, User, dm, http_json, register

CHAT_HEADER_KEYS = {"id", "isGroup", "name", "avatar", "creationTime", "lastMessage",
                    "lastMessageTime", "unreadCount", "members"}
MEMBER_KEYS = {"userId", "name", "avatar", "isOnline", "lastReadMessageId"}


def raw(server, method: str, path: str, body: bytes | None = None, headers=None):
    """A request with any body; returns (status, headers, parsed JSON or None)."""
    req = urllib.request.Request(server.url + path, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, text = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, text = e.code, e.headers, e.read()
    return status, hdrs, (json.loads(text) if text else None)


def assert_failure(status, body, expected_status):
    assert status == expected_status, body
    assert body["success"] is False and body["data"] is None, body
    assert isinstance(body["message"], str) and len(body["message"]) > 5, body


def ok(status, body, expected_status=200):
    assert status == expected_status, body
    assert body["success"] is True and body["message"] is None, body
    return body["data"]


# --- getChatHeaderAsync ---------------------------------------------------------------

async def test_get_chat_header_gets_or_creates_the_chat_that_join_room_opens(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)

    header = ok(*ann.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={ann.id}&user2Id={bob.id}"))

    assert set(header) == CHAT_HEADER_KEYS
    assert header["isGroup"] is False and header["name"] == "Bob"
    assert header["lastMessage"] is None and header["unreadCount"] == 0
    assert header["creationTime"].endswith("Z")
    assert sorted(m["userId"] for m in header["members"]) == sorted([ann.id, bob.id])
    assert all(set(m) == MEMBER_KEYS for m in header["members"])
    # Either user, either order, and the socket event: always the one chat of the pair.
    again = ok(*bob.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={ann.id}&user2Id={bob.id}"))
    assert again["id"] == header["id"] and again["name"] == "Ann"
    b = await clients(bob)
    assert await dm(b, ann) == header["id"]


async def test_get_chat_header_after_join_room_returns_that_chat_with_its_last_message(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a = await clients(ann)
    chat_id = await dm(a, bob)
    sent = await a.call("createMessage", {"message": "hi Bob", "chatHeaderId": chat_id})

    header = ok(*bob.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={bob.id}&user2Id={ann.id}"))

    assert header["id"] == chat_id
    assert header["lastMessage"] == sent["chatMessage"]
    assert header["unreadCount"] == 1


async def test_get_chat_header_refusals(server):
    ann, bob, carol = User(server, "Ann"), User(server, "Bob"), User(server, "Carol")
    await register(ann, bob, carol)
    path = f"/api/chat/getChatHeaderAsync?user1Id={ann.id}&user2Id={bob.id}"

    assert_failure(*http_json(server, "GET", path), 401)
    assert_failure(*http_json(server, "GET", path, headers={"Authorization": "Bearer nonsense"}), 401)
    assert_failure(*carol.http("GET", path), 403)
    assert_failure(*ann.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={ann.id}&user2Id=not-a-guid"), 400)
    assert_failure(*ann.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={ann.id}"), 400)
    assert_failure(*ann.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={ann.id}&user2Id={ann.id}"), 400)


# --- friendships ----------------------------------------------------------------------

def friendship_with(user: User, other: User):
    found = [f for f in ok(*user.http("GET", "/api/friendships")) if f["userId"] == other.id]
    return found[0] if found else None


async def test_friend_request_is_answered_by_the_addressee_only(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)

    assert ok(*ann.http("POST", "/api/friendships", {"userId": bob.id})) == {"userId": bob.id, "status": 0}
    for side, other in ((ann, bob), (bob, ann)):
        f = friendship_with(side, other)
        assert f["status"] == 0 and f["requestedBy"] == ann.id and f["name"] == other.name
    assert_failure(*ann.http("POST", f"/api/friendships/{bob.id}/accept"), 404)
    assert_failure(*ann.http("POST", "/api/friendships", {"userId": bob.id}), 409)

    assert ok(*bob.http("POST", f"/api/friendships/{ann.id}/accept")) == {"userId": ann.id, "status": 1}
    assert friendship_with(ann, bob)["status"] == 1
    assert_failure(*bob.http("POST", "/api/friendships", {"UserId": ann.id}), 409)
    # The socket event lists accepted friends, with presence.
    b = await clients(bob)
    friends = await b.call("getMyFriendships", {})
    assert [(f["userId"], f["name"], f["isOnline"]) for f in friends] == [(ann.id, "Ann", False)]

    assert ok(*ann.http("DELETE", f"/api/friendships/{bob.id}")) == {"userId": bob.id, "status": None}
    assert friendship_with(ann, bob) is None and friendship_with(bob, ann) is None
    assert await b.call("getMyFriendships", {}) == []
    assert_failure(*ann.http("DELETE", f"/api/friendships/{bob.id}"), 404)


async def test_rejected_request_waits_for_the_sender_not_for_the_one_who_rejected(server):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    ok(*ann.http("POST", "/api/friendships", {"userId": bob.id}))
    assert ok(*bob.http("POST", f"/api/friendships/{ann.id}/reject"))["status"] == 2
    assert friendship_with(ann, bob)["status"] == 2
    assert_failure(*bob.http("POST", f"/api/friendships/{ann.id}/accept"), 404)
    # The cool-down after a rejection (tests/test_limits.py): Ann waits, Bob may ask.
    assert_failure(*ann.http("POST", "/api/friendships", {"userId": bob.id}), 429)
    assert ok(*bob.http("POST", "/api/friendships", {"userId": ann.id}))["status"] == 0


async def test_request_from_both_sides_is_an_acceptance(server):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    ok(*ann.http("POST", "/api/friendships", {"userId": bob.id}))
    assert ok(*bob.http("POST", "/api/friendships", {"userId": ann.id}))["status"] == 1


async def test_requests_from_both_sides_at_the_same_moment_are_an_acceptance(server):
    """Two users ask each other at once, many times over: never an error, one of the
    two answers is the acceptance, and both end up friends."""
    import asyncio

    for _ in range(15):
        ann, bob = User(server, "Ann"), User(server, "Bob")
        await register(ann, bob)
        answers = await asyncio.gather(
            asyncio.to_thread(ann.http, "POST", "/api/friendships", {"userId": bob.id}),
            asyncio.to_thread(bob.http, "POST", "/api/friendships", {"userId": ann.id}))
        assert sorted(ok(*a)["status"] for a in answers) == [0, 1], answers
        for user, other in ((ann, bob), (bob, ann)):
            assert friendship_with(user, other)["status"] == 1


async def test_friendship_request_refusals(server):
    ann = User(server, "Ann")
    await register(ann)
    assert_failure(*ann.http("POST", "/api/friendships", {"userId": str(uuid.uuid4())}), 404)
    assert_failure(*ann.http("POST", "/api/friendships", {"userId": ann.id}), 400)
    assert_failure(*ann.http("POST", "/api/friendships", {"userId": "bob"}), 400)
    assert_failure(*ann.http("POST", "/api/friendships", {}), 400)
    assert_failure(*ann.http("POST", "/api/friendships/not-a-guid/accept"), 400)
    assert_failure(*http_json(server, "GET", "/api/friendships"), 401)
    assert_failure(*http_json(server, "POST", f"/api/friendships/{ann.id}/block"), 401)


async def test_block_stops_the_dm_and_only_the_blocker_unblocks(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    ok(*ann.http("POST", "/api/friendships", {"userId": bob.id}))
    ok(*bob.http("POST", f"/api/friendships/{ann.id}/accept"))

    assert ok(*bob.http("POST", f"/api/friendships/{ann.id}/block")) == {"userId": ann.id, "status": 3}

    for client in (a, b):
        reply = await client.call("createMessage", {"message": "hello?", "chatHeaderId": chat_id})
        assert reply["code"] == "FORBIDDEN", reply
    assert (await a.call("joinRoom", {"otherUserId": bob.id}))["friendshipStatus"] == 3
    assert_failure(*ann.http("POST", f"/api/friendships/{bob.id}/unblock"), 403)
    assert_failure(*ann.http("DELETE", f"/api/friendships/{bob.id}"), 403)
    assert_failure(*ann.http("POST", "/api/friendships", {"userId": bob.id}), 403)
    assert_failure(*bob.http("POST", f"/api/friendships/{ann.id}/accept"), 403)
    await b.settle(0.2)
    assert b.received("message") == []
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 0

    assert ok(*bob.http("POST", f"/api/friendships/{ann.id}/unblock"))["status"] is None
    assert friendship_with(ann, bob) is None
    assert_failure(*bob.http("POST", f"/api/friendships/{ann.id}/unblock"), 404)
    reply = await a.call("createMessage", {"message": "friends again?", "chatHeaderId": chat_id})
    assert reply["chatMessage"]["message"] == "friends again?"
    await b.wait_for("message")


async def test_blocking_a_stranger_needs_no_request_first(server):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    assert ok(*ann.http("POST", f"/api/friendships/{bob.id}/block"))["status"] == 3
    assert friendship_with(bob, ann)["status"] == 3
    assert ok(*ann.http("POST", f"/api/friendships/{bob.id}/unblock"))["status"] is None


async def test_blocking_a_user_who_does_not_exist_is_404_and_stores_nothing(server):
    ann, ghost = User(server, "Ann"), User(server, "Ghost")
    await register(ann)
    assert_failure(*ann.http("POST", f"/api/friendships/{ghost.id}/block"), 404)
    # The id may become a real user later: no block must be waiting for them.
    await register(ghost)
    assert friendship_with(ann, ghost) is None and friendship_with(ghost, ann) is None
    assert ok(*ghost.http("POST", "/api/friendships", {"userId": ann.id}))["status"] == 0


# --- group chats ----------------------------------------------------------------------

async def test_create_group_and_add_members_tells_the_room(server, clients):
    ann, bob, carol, dan = (User(server, n) for n in ("Ann", "Bob", "Carol", "Dan"))
    await register(ann, bob, carol, dan)

    group = ok(*ann.http("POST", "/api/chat/groups",
                         {"name": "Trip", "memberIds": [bob.id]}), 201)

    assert set(group) == CHAT_HEADER_KEYS
    assert group["isGroup"] is True and group["name"] == "Trip"
    assert sorted(m["userId"] for m in group["members"]) == sorted([ann.id, bob.id])
    a, b, c = await clients(ann), await clients(bob), await clients(carol)
    for client in (a, b):
        await client.call("joinRoom", {"chatHeaderId": group["id"]})
    assert (await c.call("joinRoom", {"chatHeaderId": group["id"]}))["code"] == "FORBIDDEN"
    # Bob's own joinRoom is announced to Ann first; the additions come after that.
    await a.wait_for("onMemberJoin")
    a.events.clear()
    b.events.clear()

    added = ok(*bob.http("POST", f"/api/chat/groups/{group['id']}/members",
                         {"userIds": [carol.id, dan.id]}))

    assert sorted(m["userId"] for m in added["members"]) == sorted([ann.id, bob.id, carol.id, dan.id])
    for client in (a, b):
        joins = await client.wait_for("onMemberJoin", 2)
        got = {j["member"]["userId"]: j for j in joins}
        assert set(got) == {carol.id, dan.id}
        assert all(j["chatHeaderId"] == group["id"] for j in joins)
        assert set(got[carol.id]["member"]) == MEMBER_KEYS
        assert got[carol.id]["member"]["name"] == "Carol"
        assert got[carol.id]["member"]["isOnline"] is True
        assert got[dan.id]["member"]["isOnline"] is False
    await c.settle(0.2)
    assert c.received("onMemberJoin") == []
    # Adding someone who is already in is not announced again.
    ok(*ann.http("POST", f"/api/chat/groups/{group['id']}/members", {"userIds": [carol.id]}))
    await a.settle(0.2)
    assert len(a.received("onMemberJoin")) == 2
    # Now Carol is a member: she may join and write.
    await c.call("joinRoom", {"chatHeaderId": group["id"]})
    reply = await c.call("createMessage", {"message": "thanks!", "chatHeaderId": group["id"]})
    assert reply["chatHeaderId"] == group["id"]
    headers = await c.call("findAllChatHeaders", {})
    assert group["id"] in [h["id"] for h in headers["items"]]


async def test_group_member_rules(server, clients):
    ann, bob, carol, eve = (User(server, n) for n in ("Ann", "Bob", "Carol", "Eve"))
    await register(ann, bob, carol, eve)
    group = ok(*ann.http("POST", "/api/chat/groups",
                         {"name": "Team", "memberIds": [bob.id, carol.id]}), 201)
    gid = group["id"]

    # Someone outside the group can neither add nor remove.
    assert_failure(*eve.http("POST", f"/api/chat/groups/{gid}/members", {"userIds": [eve.id]}), 403)
    assert_failure(*eve.http("DELETE", f"/api/chat/groups/{gid}/members/{bob.id}"), 403)
    assert_failure(*eve.http("DELETE", f"/api/chat/groups/{gid}/members/{eve.id}"), 403)
    # Only the creator removes others; anyone may leave.
    assert_failure(*bob.http("DELETE", f"/api/chat/groups/{gid}/members/{carol.id}"), 403)
    assert_failure(*ann.http("POST", "/api/chat/groups/999999999/members", {"userIds": [eve.id]}), 404)
    assert_failure(*ann.http("DELETE", f"/api/chat/groups/{gid}/members/{eve.id}"), 404)
    b, c = await clients(bob), await clients(carol)
    await c.call("joinRoom", {"chatHeaderId": gid})
    await b.call("joinRoom", {"chatHeaderId": gid})

    removed = ok(*ann.http("DELETE", f"/api/chat/groups/{gid}/members/{carol.id}"))
    assert removed == {"chatHeaderId": gid, "userId": carol.id, "removed": True}
    left = ok(*bob.http("DELETE", f"/api/chat/groups/{gid}/members/{bob.id}"))
    assert left["removed"] is True

    # Gone from the group: no reading, no writing, no messages of the room any more.
    a = await clients(ann)
    await a.call("joinRoom", {"chatHeaderId": gid})
    await a.call("createMessage", {"message": "after they left", "chatHeaderId": gid})
    await a.wait_for("message")
    await c.settle(0.3)
    assert c.received("message") == [] and b.received("message") == []
    assert (await c.call("findAllMessages", {"chatHeaderId": gid}))["code"] == "FORBIDDEN"
    assert (await c.call("createMessage", {"message": "x", "chatHeaderId": gid}))["code"] == "FORBIDDEN"
    typing = await c.call("roomTyping", {"isTyping": True, "name": "Carol", "chatHeaderId": gid})
    assert typing["code"] == "FORBIDDEN", typing
    mine = await b.call("findAllChatHeaders", {})
    assert gid not in [h["id"] for h in mine["items"]]


async def test_create_group_refusals(server):
    ann = User(server, "Ann")
    await register(ann)
    assert_failure(*ann.http("POST", "/api/chat/groups", {"memberIds": []}), 400)
    assert_failure(*ann.http("POST", "/api/chat/groups", {"name": "", "memberIds": []}), 400)
    assert_failure(*ann.http("POST", "/api/chat/groups", {"name": "G", "memberIds": "x"}), 400)
    assert_failure(*ann.http("POST", "/api/chat/groups", {"name": "G", "memberIds": ["nope"]}), 400)
    assert_failure(*ann.http("POST", "/api/chat/groups", {"name": "x" * 100_000}), 400)
    assert_failure(*http_json(server, "POST", "/api/chat/groups", {"name": "G"}), 401)
    # A lone group (only the creator) is allowed.
    alone = ok(*ann.http("POST", "/api/chat/groups", {"name": "Notes"}), 201)
    assert [m["userId"] for m in alone["members"]] == [ann.id]


# --- admin API ------------------------------------------------------------------------

async def test_admin_user_update_renames_everywhere(store_kind, make_server, clients):
    srv = make_server(store_kind, "--service-key=svc-key-0123456789")
    ann, bob = User(srv, "Ann"), User(srv, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    path = f"/api/admin/users/{ann.id}"
    body = {"name": "Ann Smith", "avatar": "https://cdn.example.com/ann.png"}

    assert_failure(*http_json(srv, "PUT", path, body), 401)
    assert_failure(*http_json(srv, "PUT", path, body, {"X-Service-Key": "wrong"}), 401)
    assert_failure(*ann.http("PUT", path, body), 401)
    assert_failure(*http_json(srv, "PUT", path, {"avatar": "x"}, {"X-Service-Key": "svc-key-0123456789"}), 400)
    assert_failure(*http_json(srv, "PUT", "/api/admin/users/not-a-guid", body,
                              {"X-Service-Key": "svc-key-0123456789"}), 400)

    data = ok(*http_json(srv, "PUT", path, body, {"X-Service-Key": "svc-key-0123456789"}))
    assert data == {"id": ann.id, "name": "Ann Smith", "avatar": "https://cdn.example.com/ann.png"}

    # Ann keeps using the token minted before the rename: the new name still shows.
    reply = await a.call("createMessage", {"message": "new name", "chatHeaderId": chat_id,
                                           "accessToken": ann.token})
    assert reply["chatMessage"]["user"] == data
    (got,) = await b.wait_for("message")
    assert got["chatMessage"]["user"]["name"] == "Ann Smith"
    header = ok(*bob.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={bob.id}&user2Id={ann.id}"))
    assert header["name"] == "Ann Smith" and header["avatar"] == data["avatar"]
    ok(*ann.http("GET", "/api/friendships"))
    later = await b.call("joinRoom", {"otherUserId": ann.id})
    assert {m["userId"]: m["name"] for m in later["members"]}[ann.id] == "Ann Smith"
    # A token issued after the rename carries the newest claims: those win again.
    now = int(time.time())
    fresh = jwt.encode({"sub": ann.id, "name": "Ann S.", "iat": now + 1, "exp": now + 600},
                       SECRET, algorithm="HS256")
    reply = await a.call("createMessage", {"message": "newer token", "chatHeaderId": chat_id,
                                           "accessToken": fresh})
    # It has no picture claim: the stored avatar stays.
    assert reply["chatMessage"]["user"] == {"id": ann.id, "name": "Ann S.",
                                            "avatar": data["avatar"]}
    # A user the chat server has never seen is created by the service API.
    newcomer = str(uuid.uuid4())
    ok(*http_json(srv, "PUT", f"/api/admin/users/{newcomer}", {"name": "Newcomer"},
                  {"X-Service-Key": "svc-key-0123456789"}))
    assert ok(*ann.http("POST", "/api/friendships", {"userId": newcomer}))["status"] == 0
    assert friendship_with(ann, User(srv, "Newcomer", newcomer))["name"] == "Newcomer"


async def test_admin_api_is_off_without_a_service_key(server):
    ann = User(server, "Ann")
    assert_failure(*http_json(server, "PUT", f"/api/admin/users/{ann.id}", {"name": "X"},
                              {"X-Service-Key": ""}), 403)
    assert_failure(*http_json(server, "PUT", f"/api/admin/users/{ann.id}", {"name": "X"},
                              {"X-Service-Key": "anything"}), 403)


# --- health, envelope, CORS -----------------------------------------------------------

async def test_health_and_readiness(server):
    assert ok(*http_json(server, "GET", "/healthz")) == {"status": "up"}
    assert ok(*http_json(server, "GET", "/readyz")) == {"status": "ready"}


async def test_unknown_paths_and_methods_answer_in_the_envelope(server):
    ann = User(server, "Ann")
    for method in ("GET", "POST", "DELETE"):
        status, headers, body = raw(server, method, "/api/nothing/here")
        assert_failure(status, body, 404)
        assert headers["Content-Type"].startswith("application/json")
    # GET / names the endpoints (tests/test_playground.py); other methods are refused.
    status, _, body = raw(server, "POST", "/")
    assert_failure(status, body, 405)
    assert_failure(*ann.http("PATCH", "/api/friendships", {}), 405)
    assert_failure(*ann.http("GET", "/api/chat/groups"), 405)
    # A friendship with no action is not a thing one can POST to.
    assert_failure(*ann.http("POST", f"/api/friendships/{uuid.uuid4()}"), 405)
    assert_failure(*ann.http("DELETE", f"/api/friendships/{uuid.uuid4()}/accept"), 405)


async def test_malformed_bodies_get_400(server):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    auth = {"Authorization": f"Bearer {ann.token}", "Content-Type": "application/json"}
    group = ok(*ann.http("POST", "/api/chat/groups", {"name": "G"}), 201)
    for path in ("/api/friendships", "/api/chat/groups", f"/api/chat/groups/{group['id']}/members"):
        for body in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"null"):
            status, _, reply = raw(server, "POST", path, body, auth)
            assert_failure(status, reply, 400)
    status, _, reply = raw(server, "POST", "/api/friendships", b"x" * 300_000, auth)
    assert_failure(status, reply, 413)
    # The server is still fine afterwards.
    ok(*ann.http("POST", "/api/friendships", {"userId": bob.id}))


async def test_cors_preflight_and_replies(server):
    headers = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
    status, hdrs, _ = raw(server, "OPTIONS", "/api/friendships", headers=headers)
    assert status == 204
    assert hdrs["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "POST" in hdrs["Access-Control-Allow-Methods"]
    assert "authorization" in hdrs["Access-Control-Allow-Headers"].lower()
    status, hdrs, _ = raw(server, "OPTIONS", f"/api/friendships/{uuid.uuid4()}/accept",
                          headers=headers)
    assert status == 204 and hdrs["Access-Control-Allow-Origin"] == "https://app.example.com"
    # Errors carry the CORS headers too, so a browser can read why.
    status, hdrs, body = raw(server, "GET", "/api/friendships",
                             headers={"Origin": "https://app.example.com"})
    assert_failure(status, body, 401)
    assert hdrs["Access-Control-Allow-Origin"] == "https://app.example.com"


async def test_cors_only_for_configured_origins(make_server):
    srv = make_server("sqlite", "--cors-allowed-origins=https://app.example.com,https://admin.example.com")
    for origin, allowed in (("https://admin.example.com", True), ("https://evil.example.com", False)):
        status, hdrs, _ = raw(srv, "OPTIONS", "/api/chat/groups",
                              headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert (hdrs.get("Access-Control-Allow-Origin") == origin) is allowed, (origin, dict(hdrs))
        status, hdrs, _ = raw(srv, "GET", "/healthz", headers={"Origin": origin})
        assert status == 200
        assert (hdrs.get("Access-Control-Allow-Origin") == origin) is allowed
    # Socket.IO's own handshake obeys the same list.
    status, hdrs, _ = raw_text(srv, "/socket.io/?EIO=4&transport=polling",
                               {"Origin": "https://evil.example.com"})
    assert status == 400
    status, hdrs, _ = raw_text(srv, "/socket.io/?EIO=4&transport=polling",
                               {"Origin": "https://app.example.com"})
    assert status == 200 and hdrs["Access-Control-Allow-Origin"] == "https://app.example.com"


def raw_text(server, path, headers):
    req = urllib.request.Request(server.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def test_a_users_first_requests_at_once_are_all_answered(server):
    """Two requests of a user the server has not met, at the same moment: both create
    the user's row, one wins, and the other must read the winner's row (on MariaDB a
    plain read inside its transaction would still see none)."""
    import asyncio

    newcomers = [User(server, f"New {i}") for i in range(20)]

    async def first_contact(user):
        return await asyncio.gather(*[
            asyncio.to_thread(user.http, "GET", "/api/friendships") for _ in range(2)])

    answers = await asyncio.gather(*[first_contact(u) for u in newcomers])
    statuses = [status for pair in answers for status, _ in pair]
    assert statuses == [200] * 40, [body for pair in answers for _, body in pair
                                    if not isinstance(body, dict) or not body.get("success")]
