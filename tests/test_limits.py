"""Rate limits on every client event and on the REST writes, the skipCount ceiling,
and the cool-down after a rejected friend request.

One server per store with tiny limits (a few actions per hour), so a burst of a few
events reaches each one; every test uses users of its own, since buckets are per user.
"""

import asyncio
import json
import re
import urllib.request

import pytest
import yaml

from conftest import ServerProcess, User, dm, new_database_url
from helpers import assert_error, people, send
from syarah import options
from syarah.handlers.routes import EVENTS
from syarah.ratelimit import Limits
from test_production import sample, scrape
from test_rest import raw

LIMIT = 3
COOLDOWN_SECONDS = 1


def _flag(event: str) -> str:
    return "--rate-" + re.sub(r"([A-Z])", r"-\1", event).lower() + f"-user={LIMIT}/3600"


TIGHT_FLAGS = (
    *(_flag(event) for event in EVENTS),
    f"--rate-friend-request-user={LIMIT}/3600",
    f"--rate-friendship-change-user={LIMIT}/3600",
    f"--rate-group-create-user={LIMIT}/3600",
    f"--rate-group-members-user={LIMIT}/3600",
    f"--rate-device-user={LIMIT}/3600",
    f"--friend-request-cooldown-hours={COOLDOWN_SECONDS / 3600}",
)


@pytest.fixture(scope="module")
def tight(store_kind):
    url, cleanup = new_database_url(store_kind)
    srv = ServerProcess(url, *TIGHT_FLAGS).start()
    yield srv
    srv.stop()
    cleanup()


def request(user: User, method: str, path: str, body=None):
    """A REST call by ``user``; returns (status, headers, parsed body)."""
    return raw(user.server, method, path, json.dumps(body).encode() if body is not None
               else None, {"Authorization": f"Bearer {user.token}",
                           "Content-Type": "application/json"})


def assert_rate_limited(status, headers, body, words: str):
    assert status == 429, (status, body)
    assert body["success"] is False and body["data"] is None, body
    assert body.get("code", "RATE_LIMITED") == "RATE_LIMITED", body
    message = body.get("error") or body["message"]
    assert re.search(words, message, re.I), message
    assert int(headers["Retry-After"]) >= 1, dict(headers)


# --- every client event -------------------------------------------------------------

def test_every_event_of_the_route_table_has_a_per_user_limit_by_default():
    limits = Limits(options.defaults())
    unlimited = [event for event in EVENTS if (event, "user") not in limits.buckets]
    assert unlimited == [], f"events without a default per-user rate limit: {unlimited}"


async def test_every_event_answers_rate_limited_beyond_its_limit(tight, clients):
    ann, bob = await people(tight, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(b, ann)
    mine = await send(a, chat_id, "to edit")
    # people() registered Ann with GET /api/friendships, which shares the bucket of
    # getMyFriendships.
    spent = {"createMessage": 1, "getMyFriendships": 1}
    payloads = {
        "createMessage": {"chatHeaderId": chat_id, "message": "hello"},
        "findAllMessages": {"chatHeaderId": chat_id},
        "updateMessage": {"id": mine["id"], "chatHeaderId": chat_id, "message": "edited"},
        "removeMessage": {"chatHeaderId": chat_id, "id": mine["id"]},
        "readMessage": {"chatHeaderId": chat_id},
        "findAllChatHeaders": {},
        "getMyChats": {},
        "joinRoom": {"chatHeaderId": chat_id},
        "leaveRoom": {"chatHeaderId": chat_id},
        "roomTyping": {"chatHeaderId": chat_id, "isTyping": True},
        "getMyFriendships": {},
    }
    assert set(payloads) == set(EVENTS), "every event of the table is tried here"

    for event, payload in payloads.items():
        for _ in range(LIMIT - spent.get(event, 0)):
            reply = await a.call(event, payload)
            assert not (isinstance(reply, dict) and reply.get("code") == "RATE_LIMITED"), \
                (event, reply)
        over = await a.call(event, payload)
        assert_error(over, "RATE_LIMITED")
        assert event in over["error"] and "try again in" in over["error"], over

    # Per user: Bob's budget is his own.
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] >= 1, page
    samples = scrape(tight)
    for event in EVENTS:
        assert sample(samples, "syarah_rate_limited_total",
                      action=event, scope="user") >= 1, event


async def test_an_event_without_an_ack_gets_the_refusal_as_exception(tight, clients):
    ann, = await people(tight, "Ann")
    a = await clients(ann)
    for _ in range(LIMIT + 1):
        await a.emit("getMyChats", {})
    [refusal] = await a.wait_for("exception")
    assert refusal["event"] == "getMyChats" and refusal["code"] == "RATE_LIMITED", refusal


# --- skipCount ----------------------------------------------------------------------

async def test_skip_count_is_at_most_ten_thousand(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    await send(a, chat_id, "one")
    for alias in ("skipCount", "SkipCount"):
        page = await a.call("findAllMessages", {"chatHeaderId": chat_id, alias: 10_000})
        assert page == {"items": [], "totalCount": 1}, page
        refused = await a.call("findAllMessages", {"chatHeaderId": chat_id, alias: 10_001})
        assert_error(refused, "VALIDATION")
        assert "10000" in refused["error"] and "lastMessageId" in refused["error"], refused

        headers = await a.call("findAllChatHeaders", {alias: 10_000})
        assert headers["items"] == [] and headers["totalCount"] == 1, headers
        refused = await a.call("findAllChatHeaders", {alias: 1_000_000})
        assert_error(refused, "VALIDATION")
        assert "10000" in refused["error"], refused


def test_the_documents_show_the_skip_count_maximum(server):
    with urllib.request.urlopen(server.url + "/api/docs/asyncapi.yaml", timeout=10) as r:
        schemas = yaml.safe_load(r.read())["components"]["schemas"]
    for name, alias in (("FindAllMessages", "skipCount"), ("FindAllChatHeaders", "SkipCount")):
        prop = schemas[name]["properties"][alias]
        maxima = [s.get("maximum") for s in prop["oneOf"] if s.get("type") == "integer"]
        assert maxima == [10_000], prop
    assert "lastMessageId" in schemas["FindAllMessages"]["properties"]["skipCount"][
        "description"]


# --- REST ---------------------------------------------------------------------------

async def test_friend_requests_are_rate_limited(tight):
    ann, *others = await people(tight, "Ann", *(f"Friend{i}" for i in range(LIMIT + 1)))
    for other in others[:LIMIT]:
        status, _, body = request(ann, "POST", "/api/friendships", {"userId": other.id})
        assert status == 200 and body["data"]["status"] == 0, body
    assert_rate_limited(*request(ann, "POST", "/api/friendships", {"userId": others[-1].id}),
                        "friend request")
    # Nothing was stored for the refused one.
    status, _, body = request(others[-1], "GET", "/api/friendships")
    assert status == 200 and body["data"] == [], body


async def test_friendship_actions_are_rate_limited(tight):
    ann, bob = await people(tight, "Ann", "Bob")
    for action in ("block", "unblock", "block"):
        status, _, body = request(ann, "POST", f"/api/friendships/{bob.id}/{action}")
        assert status == 200, body
    assert_rate_limited(*request(ann, "DELETE", f"/api/friendships/{bob.id}"), "friendship")
    status, _, body = request(bob, "GET", "/api/friendships")
    assert [f["status"] for f in body["data"]] == [3], body


async def test_groups_are_rate_limited(tight):
    ann, bob, cat = await people(tight, "Ann", "Bob", "Cat")
    made = []
    for i in range(LIMIT):
        status, _, body = request(ann, "POST", "/api/chat/groups",
                                  {"name": f"G{i}", "memberIds": [bob.id]})
        assert status == 201, body
        made.append(body["data"]["id"])
    assert_rate_limited(*request(ann, "POST", "/api/chat/groups",
                                 {"name": "one too many", "memberIds": [bob.id]}), "group")
    status, _, body = request(bob, "GET", "/api/friendships")   # Bob is not limited
    assert status == 200

    gid = made[0]
    for method, path, body in (("POST", f"/api/chat/groups/{gid}/members", {"userIds": [cat.id]}),
                               ("DELETE", f"/api/chat/groups/{gid}/members/{cat.id}", None),
                               ("POST", f"/api/chat/groups/{gid}/members", {"userIds": [cat.id]})):
        status, _, reply = request(ann, method, path, body)
        assert status == 200, reply
    assert_rate_limited(*request(ann, "DELETE", f"/api/chat/groups/{gid}/members/{cat.id}"),
                        "group")


async def test_device_registrations_are_rate_limited(tight):
    ann, = await people(tight, "Ann")
    for i in range(LIMIT - 1):
        status, _, body = request(ann, "POST", "/api/chat/devices",
                                  {"token": f"device-{i}", "platform": "android"})
        assert status == 200, body
    status, _, body = request(ann, "DELETE", "/api/chat/devices/device-0")
    assert status == 200 and body["data"]["removed"] is True, body
    assert_rate_limited(*request(ann, "POST", "/api/chat/devices",
                                 {"token": "device-9", "platform": "ios"}), "device")


# --- a rejected friend request ------------------------------------------------------

async def test_a_rejected_request_cannot_be_repeated_at_once(server):
    ann, bob = await people(server, "Ann", "Bob")
    assert request(ann, "POST", "/api/friendships", {"userId": bob.id})[0] == 200
    status, _, body = request(bob, "POST", f"/api/friendships/{ann.id}/reject")
    assert status == 200 and body["data"]["status"] == 2, body

    assert_rate_limited(*request(ann, "POST", "/api/friendships", {"userId": bob.id}),
                        "declined your friend request.*again in")
    # Neither deleting the friendship nor blocking and unblocking wipes the refusal.
    for steps in ((("DELETE", f"/api/friendships/{bob.id}"),),
                  (("POST", f"/api/friendships/{bob.id}/block"),
                   ("POST", f"/api/friendships/{bob.id}/unblock"))):
        for method, path in steps:
            assert request(ann, method, path)[0] == 200, (method, path)
        assert_rate_limited(*request(ann, "POST", "/api/friendships", {"userId": bob.id}),
                            "declined")
    status, _, body = request(bob, "GET", "/api/friendships")
    assert body["data"] == [], body

    # Bob may still ask Ann; Ann asking back then is her acceptance.
    status, _, body = request(bob, "POST", "/api/friendships", {"userId": ann.id})
    assert status == 200 and body["data"]["status"] == 0, body
    status, _, body = request(ann, "POST", "/api/friendships", {"userId": bob.id})
    assert status == 200 and body["data"]["status"] == 1, body


async def test_a_rejected_request_can_be_repeated_after_the_cool_down(tight):
    ann, bob = await people(tight, "Ann", "Bob")
    assert request(ann, "POST", "/api/friendships", {"userId": bob.id})[0] == 200
    assert request(bob, "POST", f"/api/friendships/{ann.id}/reject")[0] == 200
    assert_rate_limited(*request(ann, "POST", "/api/friendships", {"userId": bob.id}),
                        "declined")
    await asyncio.sleep(COOLDOWN_SECONDS + 0.2)
    status, _, body = request(ann, "POST", "/api/friendships", {"userId": bob.id})
    assert status == 200 and body["data"]["status"] == 0, body
