"""createMessage, findAllMessages, updateMessage, removeMessage, readMessage."""

import asyncio
import re

from conftest import SECRET, User, dm, register
from helpers import CHAT_MESSAGE_KEYS, ISO_MS, assert_error, barrier, block, group, people, send
from syarah.auth import mint


async def test_create_message_reaches_the_room_sender_included(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id, "accessToken": bob.token})

    reply = await a.call("createMessage", {
        "message": "Hello, world!", "chatHeaderId": chat_id,
        "accessToken": ann.token, "messageType": 0, "caption": ""})

    assert reply["chatHeaderId"] == chat_id
    msg = reply["chatMessage"]
    assert msg["message"] == "Hello, world!" and msg["userId"] == ann.id
    assert msg["user"] == {"id": ann.id, "name": "Ann", "avatar": None}
    assert msg["creationTime"].endswith("Z")
    (got_b,) = await b.wait_for("message")
    (got_a,) = await a.wait_for("message")
    assert got_b == reply == got_a


async def test_messages_of_one_socket_keep_their_order(server, clients):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    for i in range(30):
        await a.emit("createMessage", {"message": f"m{i}", "chatHeaderId": chat_id})
    got = await b.wait_for("message", 30)
    assert [g["chatMessage"]["message"] for g in got] == [f"m{i}" for i in range(30)]
    ids = [g["chatMessage"]["id"] for g in got]
    assert ids == sorted(ids)
    page = await b.call("findAllMessages", {"chatHeaderId": str(chat_id), "maxResultCount": 50})
    assert [m["message"] for m in page["items"]] == [f"m{i}" for i in reversed(range(30))]
    assert page["totalCount"] == 30


# --- createMessage -----------------------------------------------------------------


async def test_create_message_reply_has_every_chat_message_field(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    reply = await a.call("createMessage", {
        "message": "Hello, world!", "chatHeaderId": chat_id,
        "accessToken": f"Bearer {ann.token}", "messageType": 0, "caption": "",
        "clientMessageId": "c-1"})
    assert set(reply) == {"chatHeaderId", "chatMessage"}
    msg = reply["chatMessage"]
    assert set(msg) == CHAT_MESSAGE_KEYS
    assert isinstance(msg["id"], int) and msg["chatHeaderId"] == chat_id
    assert msg["messageType"] == 0 and msg["caption"] == ""
    assert msg["clientMessageId"] == "c-1" and msg["lastModificationTime"] is None
    assert re.match(ISO_MS, msg["creationTime"])


async def test_message_broadcast_skips_non_members_and_members_who_have_not_joined(
        server, clients):
    ann, bob, cat, dan = await people(server, "Ann", "Bob", "Cat", "Dan")
    chat_id = group(ann, "Trip", bob, cat)
    a, b, c, d = [await clients(u) for u in (ann, bob, cat, dan)]
    await a.call("joinRoom", {"chatHeaderId": chat_id})
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    # cat is a member but has not joined the room; dan is no member at all.
    await send(a, chat_id, "to the room")
    (got,) = await b.wait_for("message")
    assert got["chatMessage"]["message"] == "to the room"
    await barrier(c, d)
    assert c.received("message") == [] and d.received("message") == []
    assert len(a.received("message")) == 1


async def test_create_message_with_the_connection_token_or_the_event_token(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    with_token = await clients(ann)
    without = await clients(ann, with_token=False)
    chat_id = await dm(with_token, bob)
    assert (await send(with_token, chat_id, "conn token"))["userId"] == ann.id
    assert_error(await without.call("createMessage", {"message": "x", "chatHeaderId": chat_id}),
                 "UNAUTHORIZED")
    msg = await send(without, chat_id, "event token", accessToken=ann.token)
    assert msg["userId"] == ann.id
    # The socket proved who it is: later events may leave the token out.
    assert (await send(without, chat_id, "later"))["message"] == "later"


async def test_create_message_refuses_bad_tokens(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a = await clients(ann, with_token=False)
    b = await clients(bob)
    chat_id = await dm(b, ann)
    expired = mint(SECRET, ann.id, "Ann", hours=-1)
    forged = mint("another-secret-of-sufficient-length-1234", ann.id, "Ann")
    for token in (expired, forged, eve.token, "not-a-jwt", f"Bearer {expired}"):
        reply = await a.call("createMessage", {
            "message": "x", "chatHeaderId": chat_id, "accessToken": token})
        assert_error(reply, "UNAUTHORIZED")
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 0


async def test_a_connection_token_that_expires_while_connected(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    # The chat exists before; Ann's socket only has to connect while its token is good.
    status, body = bob.http("GET", f"/api/chat/getChatHeaderAsync?user1Id={bob.id}"
                                   f"&user2Id={ann.id}")
    assert status == 200, body
    chat_id = body["data"]["id"]
    # Expired 25 s ago: inside the 30 s leeway for 5 more seconds.
    ann.token = mint(SECRET, ann.id, "Ann", hours=-25 / 3600)
    a = await clients(ann)
    # The socket's identity rests on its connection token: once it has run out the
    # server closes the socket by itself, so the client reconnects with a fresh token.
    for _ in range(200):
        if not a.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not a.sio.connected
    ann.token = mint(SECRET, ann.id, "Ann")
    again = await clients(ann)
    await again.call("joinRoom", {"chatHeaderId": chat_id})
    assert (await send(again, chat_id, "renewed"))["message"] == "renewed"
    page = await again.call("findAllMessages", {"chatHeaderId": chat_id})
    assert [m["message"] for m in page["items"]] == ["renewed"]


async def test_create_message_forbidden_for_non_member_and_not_found_for_unknown_chat(
        server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    assert_error(await e.call("createMessage", {"message": "hi", "chatHeaderId": chat_id}),
                 "FORBIDDEN")
    assert_error(await a.call("createMessage", {"message": "hi", "chatHeaderId": 2**52}),
                 "NOT_FOUND")
    assert (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["totalCount"] == 0


async def test_blocked_dm_refuses_create_message_both_ways(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await send(a, chat_id, "before")
    block(ann, bob)
    for c in (a, b):
        assert_error(await c.call("createMessage", {"message": "x", "chatHeaderId": chat_id}),
                     "FORBIDDEN")
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert [m["message"] for m in page["items"]] == ["before"]
    joined = await a.call("joinRoom", {"chatHeaderId": chat_id})
    assert joined["friendshipStatus"] == 3
    status, body = bob.http("POST", f"/api/friendships/{ann.id}/unblock")
    assert status == 403, body  # only the one who blocked may unblock
    status, body = ann.http("POST", f"/api/friendships/{bob.id}/unblock")
    assert status == 200, body
    assert (await send(b, chat_id, "after unblock"))["message"] == "after unblock"


async def test_client_message_id_makes_a_retry_return_the_first_message(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    first = await send(a, chat_id, "once", clientMessageId="retry-1")
    again = await send(a, chat_id, "once (retried)", clientMessageId="retry-1")
    assert again == first
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 1 and [m["id"] for m in page["items"]] == [first["id"]]
    await b.wait_for("message")
    await barrier(b)
    assert len(b.received("message")) == 1
    # Another author may use the same client id: it is scoped to its sender.
    other = await send(b, chat_id, "mine", clientMessageId="retry-1")
    assert other["id"] != first["id"]
    assert (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["totalCount"] == 2


async def test_client_message_id_sent_from_two_devices_at_once_is_stored_once(
        server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    phone, web = await clients(ann), await clients(ann)
    chat_id = await dm(phone, bob)
    for round_ in range(3):
        key = f"dup-{round_}"
        one, two = await asyncio.gather(
            send(phone, chat_id, "same", clientMessageId=key),
            send(web, chat_id, "same", clientMessageId=key))
        assert one == two
    page = await web.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 3 and len(page["items"]) == 3


async def test_create_message_without_ack_answers_with_an_exception_event(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    await e.emit("createMessage", {"message": "intruder", "chatHeaderId": chat_id})
    (exc,) = await e.wait_for("exception")
    assert exc["event"] == "createMessage" and exc["code"] == "FORBIDDEN" and exc["error"]
    await e.emit("createMessage", {"chatHeaderId": "nope"})
    exc = (await e.wait_for("exception", 2))[1]
    assert exc["event"] == "createMessage" and exc["code"] == "VALIDATION"


async def test_media_message_needs_an_uploaded_path(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    for path in ("/uploads/chat-messages/images/../../x.webp", "/uploads/x.webp",
                 "/uploads/chat-messages/audios/" + "A" * 32 + ".mp3"):
        reply = await a.call("createMessage", {
            "message": path, "chatHeaderId": chat_id, "messageType": 2})
        assert reply.get("code") in ("VALIDATION", "NOT_FOUND"), reply
    assert (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["totalCount"] == 0


async def test_text_sent_as_a_media_type_is_stored_as_text(server, clients):
    """The API document's ChatClient.sendMessage(456, 'Hello, world!') sends
    messageType 1 (its default): what is no upload path at all is a text message."""
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    for i, (text, message_type) in enumerate(
            [("Hello, world!", 1), ("/etc/passwd", 2), ("https://x.example/a.webp", 4)]):
        reply = await a.call("createMessage", {
            "message": text, "chatHeaderId": chat_id, "accessToken": ann.token,
            "messageType": message_type, "caption": ""})
        assert reply["chatMessage"]["messageType"] == 0, reply
        assert reply["chatMessage"]["message"] == text
        (got,) = (await b.wait_for("message", i + 1))[i:]
        assert got == reply
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert [m["messageType"] for m in page["items"]] == [0, 0, 0]
    # Without an ack, nothing comes back as an exception either.
    await a.emit("createMessage", {"message": "no ack", "chatHeaderId": chat_id,
                                   "messageType": 1})
    (*_, last) = await b.wait_for("message", 4)
    assert last["chatMessage"]["messageType"] == 0 and "exception" not in a.events


# --- findAllMessages ---------------------------------------------------------------

async def _chat_with(server, clients, count: int):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    ids = [(await send(a, chat_id, f"m{i}"))["id"] for i in range(count)]
    return a, chat_id, ids


async def test_find_all_messages_pages_newest_first_with_both_aliases(server, clients):
    a, chat_id, ids = await _chat_with(server, clients, 12)
    page = await a.call("findAllMessages", {
        "chatHeaderId": str(chat_id), "accessToken": a.user.token,
        "skipCount": 0, "maxResultCount": 5})
    assert set(page) == {"items", "totalCount"}
    assert [m["id"] for m in page["items"]] == ids[::-1][:5]
    assert page["totalCount"] == 12
    assert set(page["items"][0]) == CHAT_MESSAGE_KEYS
    for alias in ("lastMessageId", "LastMessageId"):
        older = await a.call("findAllMessages", {
            "chatHeaderId": chat_id, alias: ids[7], "maxResultCount": 3})
        assert [m["id"] for m in older["items"]] == [ids[6], ids[5], ids[4]]
        assert older["totalCount"] == 12
    # skipCount applies after the keyset.
    skipped = await a.call("findAllMessages", {
        "chatHeaderId": chat_id, "lastMessageId": ids[7], "skipCount": 2,
        "maxResultCount": 3})
    assert [m["id"] for m in skipped["items"]] == [ids[4], ids[3], ids[2]]
    by_skip = await a.call("findAllMessages", {
        "chatHeaderId": chat_id, "SkipCount": 10, "MaxResultCount": 5})
    assert [m["id"] for m in by_skip["items"]] == [ids[1], ids[0]]
    end = await a.call("findAllMessages", {"chatHeaderId": chat_id, "lastMessageId": ids[0]})
    assert end == {"items": [], "totalCount": 12}


async def test_find_all_messages_defaults_to_50_and_caps_at_200(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    for i in range(205):
        await a.emit("createMessage", {"message": f"m{i}", "chatHeaderId": chat_id})
    # Events of one socket run in order: this call is answered after all 205.
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert len(page["items"]) == 50 and page["totalCount"] == 205
    assert page["items"][0]["message"] == "m204"
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id, "maxResultCount": 1000})
    assert len(page["items"]) == 200 and page["items"][-1]["message"] == "m5"
    assert a.received("exception") == []


async def test_find_all_messages_errors(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    assert_error(await e.call("findAllMessages", {"chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await a.call("findAllMessages", {"chatHeaderId": "999999999"}), "NOT_FOUND")
    assert_error(await a.call("findAllMessages", {}), "VALIDATION")
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("findAllMessages", {"chatHeaderId": chat_id}), "UNAUTHORIZED")


# --- updateMessage -----------------------------------------------------------------

async def test_update_message_replies_and_broadcasts_message_updated(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    chat_id = group(ann, "G", bob, cat)
    a, b, c = await clients(ann), await clients(bob), await clients(cat)
    for x in (a, b):
        await x.call("joinRoom", {"chatHeaderId": chat_id})
    msg = await send(a, chat_id, "first", caption="cap")
    reply = await a.call("updateMessage", {
        "id": msg["id"], "message": "Updated message content", "chatHeaderId": chat_id,
        "accessToken": ann.token, "caption": ""})
    assert set(reply) == {"chatHeaderId", "chatMessage"} and reply["chatHeaderId"] == chat_id
    updated = reply["chatMessage"]
    assert updated["id"] == msg["id"] and updated["message"] == "Updated message content"
    assert updated["caption"] == "" and re.match(ISO_MS, updated["lastModificationTime"])
    assert updated["creationTime"] == msg["creationTime"]
    (got_b,) = await b.wait_for("messageUpdated")
    assert got_b == updated
    (got_a,) = await a.wait_for("messageUpdated")
    assert got_a == updated
    await barrier(c)
    assert c.received("messageUpdated") == []
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["items"][0]["message"] == "Updated message content"


async def test_update_message_only_by_its_author_in_its_chat(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, b, e = await clients(ann), await clients(bob), await clients(eve)
    chat_id = await dm(a, bob)
    other_chat = await dm(a, eve)
    msg = await send(a, chat_id, "mine")
    assert_error(await b.call("updateMessage", {
        "id": msg["id"], "message": "hacked", "chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await e.call("updateMessage", {
        "id": msg["id"], "message": "hacked", "chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await a.call("updateMessage", {
        "id": msg["id"], "message": "moved", "chatHeaderId": other_chat}), "NOT_FOUND")
    assert_error(await a.call("updateMessage", {
        "id": 2**52, "message": "x", "chatHeaderId": chat_id}), "NOT_FOUND")
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["items"][0]["message"] == "mine"
    assert page["items"][0]["lastModificationTime"] is None


# --- removeMessage -----------------------------------------------------------------

async def test_remove_message_by_id_and_by_ids_once_per_id(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    ids = [(await send(a, chat_id, f"m{i}"))["id"] for i in range(5)]
    one = await a.call("removeMessage", {"id": ids[0], "chatHeaderId": chat_id,
                                         "accessToken": ann.token})
    assert one == {"chatHeaderId": chat_id, "deletedIds": [ids[0]]}
    many = await a.call("removeMessage", {"ids": [ids[1], ids[2], ids[2]],
                                          "chatHeaderId": chat_id})
    assert many == {"chatHeaderId": chat_id, "deletedIds": [ids[1], ids[2]]}
    got = await b.wait_for("messageDeleted", 3)
    await barrier(b)
    assert b.received("messageDeleted") == [ids[0], ids[1], ids[2]]
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert [m["id"] for m in page["items"]] == [ids[4], ids[3]] and page["totalCount"] == 2
    assert got


async def test_remove_message_ids_wins_over_id(server, clients):
    a, chat_id, ids = await _chat_with(server, clients, 3)
    reply = await a.call("removeMessage", {"id": ids[0], "ids": [ids[1]],
                                           "chatHeaderId": chat_id})
    assert reply["deletedIds"] == [ids[1]]
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert sorted(m["id"] for m in page["items"]) == [ids[0], ids[2]]


async def test_remove_message_empty_ids_beside_id_means_id(server, clients):
    a, chat_id, ids = await _chat_with(server, clients, 2)
    reply = await a.call("removeMessage", {"id": ids[0], "ids": [], "chatHeaderId": chat_id})
    assert reply == {"chatHeaderId": chat_id, "deletedIds": [ids[0]]}
    for empty in ({"ids": []}, {"Ids": [], "id": None}):
        assert_error(await a.call("removeMessage", dict(empty, chatHeaderId=chat_id)),
                     "VALIDATION")
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert [m["id"] for m in page["items"]] == [ids[1]]


async def test_remove_message_is_all_or_nothing(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    mine = [(await send(a, chat_id, f"a{i}"))["id"] for i in range(3)]
    theirs = (await send(b, chat_id, "b"))["id"]
    assert_error(await a.call("removeMessage", {"ids": mine + [theirs],
                                                "chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await a.call("removeMessage", {"ids": mine + [2**52],
                                                "chatHeaderId": chat_id}), "NOT_FOUND")
    assert_error(await b.call("removeMessage", {"id": mine[0], "chatHeaderId": chat_id}),
                 "FORBIDDEN")
    await barrier(b)
    assert b.received("messageDeleted") == []
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 4 and len(page["items"]) == 4


async def test_remove_message_at_most_100_ids(server, clients):
    a, chat_id, ids = await _chat_with(server, clients, 1)
    too_many = [ids[0]] + list(range(2**50, 2**50 + 100))
    assert_error(await a.call("removeMessage", {"ids": too_many, "chatHeaderId": chat_id}),
                 "VALIDATION")
    assert_error(await a.call("removeMessage", {"chatHeaderId": chat_id}), "VALIDATION")
    assert (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["totalCount"] == 1


async def test_remove_message_of_another_chat_or_as_non_member(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    other = await dm(a, eve)
    msg = await send(a, chat_id, "here")
    assert_error(await a.call("removeMessage", {"id": msg["id"], "chatHeaderId": other}),
                 "NOT_FOUND")
    assert_error(await e.call("removeMessage", {"id": msg["id"], "chatHeaderId": chat_id}),
                 "FORBIDDEN")
    assert (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["totalCount"] == 1


async def test_last_message_follows_deletes(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    first = await send(a, chat_id, "first")
    second = await send(a, chat_id, "second")

    async def header():
        page = await b.call("findAllChatHeaders", {})
        return next(h for h in page["items"] if h["id"] == chat_id)

    assert (await header())["lastMessage"]["id"] == second["id"]
    await a.call("removeMessage", {"id": second["id"], "chatHeaderId": chat_id})
    h = await header()
    assert h["lastMessage"]["id"] == first["id"] and h["unreadCount"] == 1
    assert h["lastMessageTime"] == first["creationTime"]
    chats = await b.call("getMyChats", {})
    assert next(c for c in chats if c["chatHeaderId"] == chat_id)["lastMessage"] == "first"
    await a.call("removeMessage", {"id": first["id"], "chatHeaderId": chat_id})
    h = await header()
    assert h["lastMessage"] is None and h["lastMessageTime"] is None and h["unreadCount"] == 0


# --- readMessage -------------------------------------------------------------------

async def test_read_message_moves_unread_counts_and_tells_the_room(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    chat_id = group(ann, "G", bob, cat)
    a, b, c = await clients(ann), await clients(bob), await clients(cat)
    await a.call("joinRoom", {"chatHeaderId": chat_id})
    msgs = [await send(a, chat_id, f"m{i}") for i in range(3)]
    await send(b, chat_id, "from bob")

    async def unread(client):
        page = await client.call("findAllChatHeaders", {})
        return next(h for h in page["items"] if h["id"] == chat_id)["unreadCount"]

    # Writing is not reading: bob still has ann's three unread.
    assert [await unread(x) for x in (a, b, c)] == [1, 3, 4]
    reply = await c.call("readMessage", {"chatHeaderId": chat_id})
    last_id = (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["items"][0]["id"]
    assert reply == {"chatHeaderId": chat_id, "lastReadMessageId": last_id}
    assert await unread(c) == 0
    (got,) = await a.wait_for("messageHasBeenRead")
    assert got == chat_id
    await barrier(b)
    assert b.received("messageHasBeenRead") == []  # member, but not in the room
    header = (await a.call("joinRoom", {"chatHeaderId": chat_id}))["chatHeader"]
    by_user = {m["userId"]: m for m in header["members"]}
    assert by_user[cat.id]["lastReadMessageId"] == last_id
    assert by_user[bob.id]["lastReadMessageId"] is None
    await send(a, chat_id, "more")
    assert await unread(c) == 1
    assert msgs


async def test_read_message_errors(server, clients):
    ann, bob, eve = await people(server, "Ann", "Bob", "Eve")
    a, e = await clients(ann), await clients(eve)
    chat_id = await dm(a, bob)
    assert_error(await e.call("readMessage", {"chatHeaderId": chat_id}), "FORBIDDEN")
    assert_error(await a.call("readMessage", {"chatHeaderId": 2**52}), "NOT_FOUND")
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("readMessage", {"chatHeaderId": chat_id}), "UNAUTHORIZED")


async def test_messages_from_many_sockets_at_once_are_all_stored(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    chat_id = await dm(await clients(ann), bob)
    sockets = [await clients(u) for u in (ann, ann, bob, bob)]
    await asyncio.gather(*(send(s, chat_id, f"{i}-{j}")
                           for i, s in enumerate(sockets) for j in range(5)))
    page = await sockets[0].call("findAllMessages", {"chatHeaderId": chat_id})
    assert page["totalCount"] == 20 and len(page["items"]) == 20
