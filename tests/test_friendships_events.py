"""getMyFriendships: accepted friends only, with presence and their chat."""

from conftest import User, dm
from helpers import assert_error, befriend, block, people, send

FRIEND_KEYS = {"userId", "name", "avatar", "isOnline", "chatHeaderId"}


async def test_get_my_friendships_as_in_the_document(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    befriend(ann, bob)
    befriend(cat, ann)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(b, ann)
    reply = await a.call("getMyFriendships", {"accessToken": ann.token})
    assert isinstance(reply, list) and len(reply) == 2
    assert all(set(f) == FRIEND_KEYS for f in reply)
    by_name = {f["name"]: f for f in reply}
    assert by_name["Bob"] == {"userId": bob.id, "name": "Bob", "avatar": None,
                              "isOnline": True, "chatHeaderId": chat_id}
    assert by_name["Cat"] == {"userId": cat.id, "name": "Cat", "avatar": None,
                              "isOnline": False, "chatHeaderId": None}


async def test_a_friend_without_a_chat_gets_one_through_join_room(server, clients):
    """The document's "Handling Null chatHeaderId" flow."""
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    a = await clients(ann)
    (friend,) = await a.call("getMyFriendships", {})
    assert friend["chatHeaderId"] is None
    joined = await a.call("joinRoom", {"otherUserId": friend["userId"],
                                       "accessToken": ann.token})
    (friend,) = await a.call("getMyFriendships", {})
    assert friend["chatHeaderId"] == joined["chatHeaderId"]
    await send(a, friend["chatHeaderId"], "now we talk")


async def test_only_accepted_friendships_are_listed(server, clients):
    ann, asked, asker, rejected, blocked, ex = await people(
        server, "Ann", "Asked", "Asker", "Rejected", "Blocked", "Ex")
    ann.http("POST", "/api/friendships", {"userId": asked.id})
    asker.http("POST", "/api/friendships", {"userId": ann.id})
    rejected.http("POST", "/api/friendships", {"userId": ann.id})
    ann.http("POST", f"/api/friendships/{rejected.id}/reject")
    block(ann, blocked)
    befriend(ann, ex)
    status, _ = ann.http("DELETE", f"/api/friendships/{ex.id}")
    assert status == 200
    a = await clients(ann)
    assert await a.call("getMyFriendships", {}) == []
    others = [await clients(u) for u in (asked, asker, rejected, blocked, ex)]
    for o in others:
        assert await o.call("getMyFriendships", {}) == []


async def test_get_my_friendships_token_from_connection_or_event(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("getMyFriendships", {}), "UNAUTHORIZED")
    assert_error(await anon.call("getMyFriendships"), "UNAUTHORIZED")
    assert_error(await anon.call("getMyFriendships", {"accessToken": bob.token}),
                 "UNAUTHORIZED")
    reply = await anon.call("getMyFriendships", {"accessToken": f"Bearer {ann.token}"})
    assert [f["userId"] for f in reply] == [bob.id]
    # Once the socket has proved who it is, the token may be left out.
    assert await anon.call("getMyFriendships", {}) == reply


async def test_get_my_friendships_of_a_user_the_server_has_not_seen(server, clients):
    newcomer = User(server, "New")
    c = await clients(newcomer)
    assert await c.call("getMyFriendships", {}) == []
