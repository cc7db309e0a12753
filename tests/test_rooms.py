"""joinRoom, leaveRoom, roomTyping: the reply objects and who hears about it."""

import asyncio
import re

from conftest import SECRET, User, dm
from helpers import (
    CHAT_HEADER_KEYS, ISO_MS, MEMBER_KEYS, assert_error, barrier, befriend, block, group,
    people, send)
from syarah.auth import mint

JOIN_KEYS = {"chatHeaderId", "joined", "roomMembers", "currentMember", "members",
             "friendshipStatus", "chatHeader"}


async def test_join_room_with_chat_header_id_as_in_the_document(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    reply = await b.call("joinRoom", {
        "chatHeaderId": chat_id, "userId": bob.id, "socketId": b.sio.get_sid(),
        "accessToken": bob.token})
    assert set(reply) == JOIN_KEYS
    assert reply["chatHeaderId"] == chat_id and reply["joined"] is True
    assert reply["friendshipStatus"] is None
    header = reply["chatHeader"]
    assert set(header) == CHAT_HEADER_KEYS and header["id"] == chat_id
    assert header["isGroup"] is False and header["name"] == "Ann"  # the other person
    assert re.match(ISO_MS, header["creationTime"]) and header["lastMessage"] is None
    assert reply["members"] == reply["roomMembers"] == header["members"]
    assert {m["userId"] for m in reply["members"]} == {ann.id, bob.id}
    for m in reply["members"]:
        assert set(m) == MEMBER_KEYS and m["isOnline"] is True
    assert reply["currentMember"] == {"userId": bob.id, "name": "Bob", "avatar": None,
                                      "isOnline": True, "lastReadMessageId": None}


async def test_join_room_with_other_user_id_gets_or_creates_the_one_chat(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    first = await a.call("joinRoom", {"userId": ann.id, "otherUserId": bob.id,
                                      "socketId": "ignored", "accessToken": ann.token})
    assert set(first) == JOIN_KEYS and first["joined"] is True
    assert first["chatHeaderId"] == first["chatHeader"]["id"]
    again = await a.call("joinRoom", {"otherUserId": bob.id})
    theirs = await b.call("joinRoom", {"otherUserId": ann.id.upper()})
    assert again["chatHeaderId"] == theirs["chatHeaderId"] == first["chatHeaderId"]
    chats = await a.call("getMyChats", {})
    assert [c["chatHeaderId"] for c in chats] == [first["chatHeaderId"]]


async def test_concurrent_get_or_create_gives_one_chat(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    sockets = [await clients(u) for u in (ann, ann, ann, bob, bob, bob)]
    calls = [s.call("joinRoom", {"otherUserId": (bob if s.user is ann else ann).id})
             for s in sockets]
    rest = [asyncio.to_thread(u.http, "GET", "/api/chat/getChatHeaderAsync"
                              f"?user1Id={ann.id}&user2Id={bob.id}") for u in (ann, bob)]
    replies = await asyncio.gather(*calls, *rest)
    ids = {r["chatHeaderId"] for r in replies[:6]}
    ids |= {body["data"]["id"] for status, body in replies[6:]}
    assert len(ids) == 1, replies
    assert len(await sockets[0].call("getMyChats", {})) == 1


async def test_join_room_refusals(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    assert_error(await a.call("joinRoom", {"otherUserId": ann.id}), "VALIDATION")
    assert_error(await a.call("joinRoom", {"chatHeaderId": 2**52}), "NOT_FOUND")
    assert_error(await e.call("joinRoom", {"chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await a.call("joinRoom", {}), "VALIDATION")
    assert_error(await a.call("joinRoom", {"chatHeaderId": chat_id, "userId": bob.id}),
                 "FORBIDDEN")
    assert_error(await a.call("joinRoom", {"chatHeaderId": chat_id,
                                           "accessToken": bob.token}), "UNAUTHORIZED")
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("joinRoom", {"chatHeaderId": chat_id}), "UNAUTHORIZED")
    # Refused joins joined nothing: eve hears none of the room.
    await send(a, chat_id, "private")
    await barrier(e, anon)
    assert e.received("message") == [] and anon.received("message") == []
    assert len(await a.call("getMyChats", {})) == 1


async def test_join_room_reports_the_friendship_status(server, clients):
    ann, bob, cat, dan = await people(server, "Ann", "Bob", "Cat", "Dan")
    a = await clients(ann)
    befriend(ann, bob)
    ann.http("POST", "/api/friendships", {"userId": cat.id})
    block(ann, dan)
    statuses = {u.name: (await a.call("joinRoom", {"otherUserId": u.id}))["friendshipStatus"]
                for u in (bob, cat, dan)}
    assert statuses == {"Bob": 1, "Cat": 0, "Dan": 3}
    cat.http("POST", f"/api/friendships/{ann.id}/reject")
    assert (await a.call("joinRoom", {"otherUserId": cat.id}))["friendshipStatus"] == 2
    gid = group(ann, "G", bob)
    reply = await a.call("joinRoom", {"chatHeaderId": gid})
    assert reply["friendshipStatus"] is None and reply["chatHeader"]["isGroup"] is True
    assert reply["chatHeader"]["name"] == "G"


async def test_on_member_join_reaches_the_others_in_the_room_only(server, clients):
    ann, bob, cat, eve = await people(server, "Ann", "Bob", "Cat", "Eve")
    chat_id = group(ann, "G", bob, cat)
    a, b, c, e = [await clients(u) for u in (ann, bob, cat, eve)]
    await a.call("joinRoom", {"chatHeaderId": chat_id})
    reply = await b.call("joinRoom", {"chatHeaderId": chat_id})
    (got,) = await a.wait_for("onMemberJoin")
    assert got == {"chatHeaderId": chat_id, "member": reply["currentMember"]}
    assert got["member"]["userId"] == bob.id and set(got["member"]) == MEMBER_KEYS
    await barrier(b, c, e)
    assert b.received("onMemberJoin") == []   # not to the one who joined
    assert c.received("onMemberJoin") == []   # a member who has not joined the room
    assert e.received("onMemberJoin") == []   # not a member


async def test_leave_room_stops_the_room_broadcasts(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    await send(a, chat_id, "while viewing")
    await b.wait_for("message")
    reply = await b.call("leaveRoom", {"chatHeaderId": chat_id, "accessToken": bob.token})
    assert reply == {"chatHeaderId": chat_id, "left": True}
    assert await b.call("leaveRoom", {"chatHeaderId": chat_id}) == reply  # idempotent
    await send(a, chat_id, "after leaving")
    assert_error(await b.call("roomTyping", {"chatHeaderId": chat_id, "isTyping": True}),
                 "FORBIDDEN")
    await barrier(b)
    assert len(b.received("message")) == 1
    # Still a member: the history is there, and joining again resumes the broadcasts.
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 2
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    await send(a, chat_id, "back")
    assert (await b.wait_for("message", 2))[1]["chatMessage"]["message"] == "back"


async def test_leave_room_errors(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    assert_error(await e.call("leaveRoom", {"chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await a.call("leaveRoom", {"chatHeaderId": 2**52}), "NOT_FOUND")
    assert_error(await a.call("leaveRoom", {}), "VALIDATION")
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("leaveRoom", {"chatHeaderId": chat_id}), "UNAUTHORIZED")


async def test_room_typing_reaches_the_room_but_not_the_sender(server, clients):
    ann, bob, cat, eve = await people(server, "Ann", "Bob", "Cat", "Eve")
    chat_id = group(ann, "G", bob, cat)
    a, b, c, e = [await clients(u) for u in (ann, bob, cat, eve)]
    a2 = await clients(ann)  # ann's second device, in the room too
    for x in (a, a2, b):
        await x.call("joinRoom", {"chatHeaderId": chat_id})
    reply = await a.call("roomTyping", {"isTyping": True, "name": "John Doe",
                                        "chatHeaderId": chat_id})
    assert reply == {"ok": True}
    expected = {"name": "John Doe", "isTyping": True, "chatHeaderId": chat_id,
                "userId": ann.id}
    assert (await b.wait_for("typing")) == [expected]
    assert (await a2.wait_for("typing")) == [expected]
    await a.call("roomTyping", {"isTyping": False, "chatHeaderId": chat_id})
    second = (await b.wait_for("typing", 2))[1]
    assert second == {"name": "Ann", "isTyping": False, "chatHeaderId": chat_id,
                      "userId": ann.id}
    await barrier(a, c, e)
    assert a.received("typing") == [] and c.received("typing") == []
    assert e.received("typing") == []


async def test_room_typing_without_join_room_is_forbidden(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, b, e = await clients(ann), await clients(bob), await clients(eve)
    chat_id = await dm(a, bob)
    a_again = await clients(ann)  # a member's socket that never joined
    for x in (a_again, e):
        assert_error(await x.call("roomTyping", {"isTyping": True, "chatHeaderId": chat_id}),
                     "FORBIDDEN")
    await e.emit("roomTyping", {"isTyping": True, "chatHeaderId": chat_id})
    (exc,) = await e.wait_for("exception")
    assert exc["event"] == "roomTyping" and exc["code"] == "FORBIDDEN"
    await barrier(a, b)
    assert a.received("typing") == [] and b.received("typing") == []


async def test_typing_and_editing_in_a_blocked_chat_are_forbidden(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    own = await send(a, chat_id, "before the block")
    assert await a.call("roomTyping", {"chatHeaderId": chat_id}) == {"ok": True}
    await b.wait_for("typing")
    # Both sockets joined before the block: it must still hold for them.
    block(bob, ann)
    for x in (a, b):
        assert_error(await x.call("roomTyping", {"chatHeaderId": chat_id,
                                                 "isTyping": True}), "FORBIDDEN")
    assert_error(await a.call("updateMessage", {"id": own["id"], "message": "edited",
                                                "chatHeaderId": chat_id}), "FORBIDDEN")
    await barrier(a, b)
    assert len(b.received("typing")) == 1 and a.received("typing") == []
    assert b.received("messageUpdated") == []
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["items"][0]["message"] == "before the block"
    assert page["items"][0]["lastModificationTime"] is None
    # Unblocked, both work again.
    status, body = bob.http("POST", f"/api/friendships/{ann.id}/unblock")
    assert status == 200, body
    assert await a.call("roomTyping", {"chatHeaderId": chat_id}) == {"ok": True}
    edited = await a.call("updateMessage", {"id": own["id"], "message": "edited",
                                            "chatHeaderId": chat_id})
    assert edited["chatMessage"]["message"] == "edited"


async def test_a_member_removed_from_a_group_hears_and_changes_nothing_more(
        server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    gid = group(ann, "G", bob, cat)
    a, b, c = [await clients(u) for u in (ann, bob, cat)]
    for x in (a, b, c):
        await x.call("joinRoom", {"chatHeaderId": gid})
    own = await send(b, gid, "bob's")
    status, body = ann.http("DELETE", f"/api/chat/groups/{gid}/members/{bob.id}")
    assert status == 200, body
    await send(a, gid, "after bob left")
    assert_error(await b.call("roomTyping", {"chatHeaderId": gid, "isTyping": True}),
                 "FORBIDDEN")
    assert_error(await b.call("updateMessage", {"id": own["id"], "message": "edit",
                                                "chatHeaderId": gid}), "FORBIDDEN")
    assert_error(await b.call("removeMessage", {"id": own["id"], "chatHeaderId": gid}),
                 "FORBIDDEN")
    assert_error(await b.call("createMessage", {"message": "x", "chatHeaderId": gid}),
                 "FORBIDDEN")
    assert_error(await b.call("findAllMessages", {"chatHeaderId": gid}), "FORBIDDEN")
    await c.wait_for("message", 2)
    await barrier(b)
    assert [m["chatMessage"]["message"] for m in b.received("message")] == ["bob's"]
    assert b.received("typing") == []
    page = await c.call("findAllMessages", {"chatHeaderId": gid})
    assert [m["message"] for m in page["items"]] == ["after bob left", "bob's"]


async def test_join_room_with_someone_not_met_yet_creates_them(server, clients):
    """otherUserId of a user who never connected: their user row is created without
    name or avatar, race-free, and their first token fills it in."""
    ann, cat = await people(server, "Ann", "Cat")
    bob = User(server, "Bob")  # never connected, never called the REST API
    bob.token = mint(SECRET, bob.id, "Bob", avatar="https://cdn.example/bob.png")
    sockets = [await clients(u) for u in (ann, ann, ann, cat, cat)]
    # Five sockets of two users open chats with the same unknown user at once.
    replies = await asyncio.gather(
        *(s.call("joinRoom", {"otherUserId": bob.id}) for s in sockets))
    for reply in replies:
        assert reply.get("joined") is True, reply
    assert len({r["chatHeaderId"] for r in replies[:3]}) == 1
    assert len({r["chatHeaderId"] for r in replies[3:]}) == 1
    stranger = next(m for m in replies[0]["members"] if m["userId"] == bob.id)
    assert stranger == {"userId": bob.id, "name": "", "avatar": None, "isOnline": False,
                        "lastReadMessageId": None}
    assert replies[0]["chatHeader"]["name"] == ""
    await send(sockets[0], replies[0]["chatHeaderId"], "Are you there yet?")

    b = await clients(bob)
    mine = await b.call("getMyChats", {})
    assert {c["userId"] for c in mine} == {ann.id, cat.id}
    seen = await sockets[0].call("joinRoom", {"otherUserId": bob.id})
    filled = next(m for m in seen["members"] if m["userId"] == bob.id)
    assert (filled["name"], filled["avatar"]) == ("Bob", "https://cdn.example/bob.png")
    page = await b.call("findAllMessages", {"chatHeaderId": seen["chatHeaderId"]})
    assert [m["message"] for m in page["items"]] == ["Are you there yet?"]
