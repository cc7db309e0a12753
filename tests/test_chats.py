"""findAllChatHeaders and getMyChats: the chat lists, their order, unread counts and the
missed-message sync."""

import asyncio
import random
import re
import time

import jwt

from conftest import SECRET, User, dm, http_json, new_database_url, register
from syarah import types
from syarah.protocol.outbound import MyChat, Time, to_wire
from syarah.store import open_store
from syarah.auth import mint
from test_uploads import jpeg, upload
from helpers import (
    CHAT_HEADER_KEYS, CHAT_MESSAGE_KEYS, ISO_MS, MEMBER_KEYS, assert_error, befriend, block,
    group, people, send)

MY_CHAT_KEYS = {"chatHeaderId", "userId", "userName", "userAvatar", "lastMessage",
                "lastMessageType", "lastMessageTime", "creationTime", "isOnline", "unreadCount",
                "friendshipStatus"}


async def tick():
    # Activity is ordered by millisecond time: keep steps in distinct milliseconds.
    await asyncio.sleep(0.005)


async def test_find_all_chat_headers_as_in_the_document(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    a = await clients(ann)
    dm_id = await dm(a, bob)
    await tick()
    gid = group(ann, "Trip", bob, cat)
    await tick()
    msg = await send(a, dm_id, "hi bob")
    reply = await a.call("findAllChatHeaders", {
        "AccessToken": ann.token, "UserId": ann.id, "SkipCount": 0, "MaxResultCount": 20})
    assert set(reply) == {"items", "totalCount"} and reply["totalCount"] == 2
    assert [h["id"] for h in reply["items"]] == [dm_id, gid]
    for h in reply["items"]:
        assert set(h) == CHAT_HEADER_KEYS
        assert re.match(ISO_MS, h["creationTime"])
        for m in h["members"]:
            assert set(m) == MEMBER_KEYS
    individual, trip = reply["items"]
    assert individual["isGroup"] is False and individual["name"] == "Bob"
    assert set(individual["lastMessage"]) == CHAT_MESSAGE_KEYS
    assert individual["lastMessage"]["id"] == msg["id"]
    assert individual["lastMessageTime"] == msg["creationTime"]
    assert individual["unreadCount"] == 0
    assert trip["isGroup"] is True and trip["name"] == "Trip" and trip["lastMessage"] is None
    assert {m["userId"] for m in trip["members"]} == {ann.id, bob.id, cat.id}
    online = {m["userId"]: m["isOnline"] for m in trip["members"]}
    assert online == {ann.id: True, bob.id: False, cat.id: False}


async def test_find_all_chat_headers_aliases_and_paging(server, clients):
    ann, *others = await people(server, "Ann", "B1", "B2", "B3", "B4", "B5")
    a = await clients(ann, with_token=False)
    ids = []
    for other in others:
        ids.append((await a.call("joinRoom", {"otherUserId": other.id,
                                              "accessToken": ann.token}))["chatHeaderId"])
        await tick()
    newest_first = ids[::-1]
    page = await a.call("findAllChatHeaders", {"accessToken": f"Bearer {ann.token}",
                                               "userId": ann.id, "skipCount": 1,
                                               "maxResultCount": 2})
    assert [h["id"] for h in page["items"]] == newest_first[1:3]
    assert page["totalCount"] == 5
    page = await a.call("findAllChatHeaders", {"SkipCount": 4, "MaxResultCount": 500})
    assert [h["id"] for h in page["items"]] == newest_first[4:]
    page = await a.call("findAllChatHeaders", {})
    assert [h["id"] for h in page["items"]] == newest_first


async def test_find_all_chat_headers_order_follows_the_latest_message(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    a, c = await clients(ann), await clients(cat)
    with_bob = await dm(a, bob)
    await tick()
    with_cat = await dm(a, cat)
    await tick()
    gid = group(ann, "G", bob, cat)
    order = [h["id"] for h in (await a.call("findAllChatHeaders", {}))["items"]]
    assert order == [gid, with_cat, with_bob]
    await tick()
    await send(a, with_bob, "bump")
    await tick()
    await send(c, with_cat, "bump too")
    order = [h["id"] for h in (await a.call("findAllChatHeaders", {}))["items"]]
    assert order == [with_cat, with_bob, gid]


async def test_rooms_with_last_message_ids_return_the_missed_messages_oldest_first(
        server, clients):
    ann, bob, cat, eve = await people(server, "Ann", "Bob", "Cat", "Eve")
    a, b, e = await clients(ann), await clients(bob), await clients(eve)
    with_bob = await dm(a, bob)
    with_cat = await dm(a, cat)
    with_eve = await dm(e, ann)
    seen = await send(b, with_bob, "seen")
    missed = [await send(b, with_bob, f"missed {i}") for i in range(3)]
    gone = await send(b, with_bob, "deleted")
    await b.call("removeMessage", {"id": gone["id"], "chatHeaderId": with_bob})
    cat_msgs = [await send(a, with_cat, f"c{i}") for i in range(2)]
    secret = await send(e, with_eve, "between eve and ann")
    # bob asks for a chat he is not in: it must not leak.
    reply = await b.call("findAllChatHeaders", {"RoomsWithLastMessageIds": [
        {"ChatHeaderId": with_bob, "LastMessageId": seen["id"]},
        {"ChatHeaderId": with_eve, "LastMessageId": 0}]})
    (header,) = reply["items"]
    assert header["newMessages"] == missed
    reply = await a.call("findAllChatHeaders", {"RoomsWithLastMessageIds": [
        {"ChatHeaderId": with_bob, "LastMessageId": missed[-1]["id"]},
        {"chatHeaderId": str(with_cat), "lastMessageId": 0}]})
    by_id = {h["id"]: h for h in reply["items"]}
    assert by_id[with_bob]["newMessages"] == []
    assert by_id[with_cat]["newMessages"] == cat_msgs
    assert by_id[with_bob]["hasMoreNewMessages"] is False
    assert "newMessages" not in by_id[with_eve]
    assert "hasMoreNewMessages" not in by_id[with_eve]
    assert by_id[with_eve]["lastMessage"] == secret


async def test_more_than_200_missed_messages_are_paged_with_has_more(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    for i in range(203):
        await a.emit("createMessage", {"message": f"m{i}", "chatHeaderId": chat_id})
    # One socket's events run in order: this is answered after all 203.
    newest = (await a.call("findAllMessages", {"chatHeaderId": chat_id}))["items"][0]
    assert newest["message"] == "m202"
    sync = {"RoomsWithLastMessageIds": [{"ChatHeaderId": chat_id, "LastMessageId": 0}]}
    (header,) = (await b.call("findAllChatHeaders", sync))["items"]
    assert [m["message"] for m in header["newMessages"]] == [f"m{i}" for i in range(200)]
    assert header["hasMoreNewMessages"] is True
    # The rest: sync again from the last one received.
    sync["RoomsWithLastMessageIds"][0]["LastMessageId"] = header["newMessages"][-1]["id"]
    (header,) = (await b.call("findAllChatHeaders", sync))["items"]
    assert [m["message"] for m in header["newMessages"]] == ["m200", "m201", "m202"]
    assert header["hasMoreNewMessages"] is False
    # Or page back from the newest with findAllMessages down to what was received.
    page = await b.call("findAllMessages", {"chatHeaderId": chat_id, "maxResultCount": 3})
    assert [m["message"] for m in page["items"]] == ["m202", "m201", "m200"]


async def test_a_sync_list_of_thousands_of_rooms_is_accepted(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    a, b = await clients(ann), await clients(bob)
    with_bob = await dm(a, bob)
    await tick()
    with_cat = await dm(a, cat)
    from_bob = await send(b, with_bob, "to ann")
    to_cat = await send(a, with_cat, "to cat")
    # A client with thousands of rooms sends them all; most are not on this page (or
    # not even the caller's), and those are ignored.
    rooms = [{"ChatHeaderId": with_bob + 1000 + i, "LastMessageId": 0} for i in range(4998)]
    rooms += [{"ChatHeaderId": with_bob, "LastMessageId": 0},
              {"ChatHeaderId": with_cat, "LastMessageId": 0}]
    assert len(rooms) == 5000
    reply = await a.call("findAllChatHeaders", {"RoomsWithLastMessageIds": rooms})
    by_id = {h["id"]: h for h in reply["items"]}
    assert set(by_id) == {with_bob, with_cat}
    assert by_id[with_bob]["newMessages"] == [from_bob]
    assert by_id[with_cat]["newMessages"] == [to_cat]
    # Only the returned page is synced.
    reply = await a.call("findAllChatHeaders", {"RoomsWithLastMessageIds": rooms,
                                                "MaxResultCount": 1})
    (header,) = reply["items"]
    assert header["id"] == with_cat and header["newMessages"] == [to_cat]
    assert reply["totalCount"] == 2


async def test_find_all_chat_headers_errors(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    assert_error(await a.call("findAllChatHeaders", {"UserId": bob.id}), "FORBIDDEN")
    assert_error(await a.call("findAllChatHeaders", {"AccessToken": bob.token}),
                 "UNAUTHORIZED")
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("findAllChatHeaders", {"UserId": ann.id}), "UNAUTHORIZED")
    assert (await a.call("findAllChatHeaders", {}))["totalCount"] == 0


async def test_get_my_chats_as_in_the_document(server, clients):
    ann, bob, cat, dan = await people(server, "Ann", "Bob", "Cat", "Dan")
    a, b = await clients(ann), await clients(bob)
    befriend(ann, bob)
    block(ann, dan)
    with_bob = await dm(a, bob)
    await tick()
    with_cat = await dm(a, cat)
    await tick()
    group(ann, "Not listed", bob, cat)
    await tick()
    with_dan = await dm(a, dan)
    await tick()
    await send(b, with_bob, "one")
    last = await send(b, with_bob, "Hello, how are you?")
    chats = await a.call("getMyChats", {"accessToken": ann.token})
    assert [c["chatHeaderId"] for c in chats] == [with_bob, with_dan, with_cat]
    for c in chats:
        assert set(c) == MY_CHAT_KEYS and re.match(ISO_MS, c["creationTime"])
    bob_chat, dan_chat, cat_chat = chats
    assert bob_chat == {
        "chatHeaderId": with_bob, "userId": bob.id, "userName": "Bob", "userAvatar": None,
        "lastMessage": "Hello, how are you?", "lastMessageType": 0,
        "lastMessageTime": last["creationTime"],
        "creationTime": bob_chat["creationTime"], "isOnline": True, "unreadCount": 2,
        "friendshipStatus": 1}
    assert dan_chat["friendshipStatus"] == 3 and dan_chat["isOnline"] is False
    assert cat_chat["lastMessage"] is None and cat_chat["lastMessageTime"] is None
    assert cat_chat["lastMessageType"] is None
    assert cat_chat["friendshipStatus"] is None and cat_chat["unreadCount"] == 0
    await a.call("readMessage", {"chatHeaderId": with_bob})
    assert (await a.call("getMyChats", {}))[0]["unreadCount"] == 0
    await b.close()
    (gone,) = await a.wait_for("clientStatus")
    assert gone == {"userId": bob.id, "clientType": "unknown", "activeNow": False}
    assert (await a.call("getMyChats"))[0]["isOnline"] is False


async def test_get_my_chats_token_from_connection_or_event(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    await dm(await clients(bob), ann)
    anon = await clients(ann, with_token=False)
    assert_error(await anon.call("getMyChats", {}), "UNAUTHORIZED")
    assert_error(await anon.call("getMyChats", {"accessToken": bob.token}), "UNAUTHORIZED")
    chats = await anon.call("getMyChats", {"AccessToken": f"Bearer {ann.token}"})
    assert [c["userId"] for c in chats] == [bob.id]


async def test_get_my_chats_says_the_type_of_the_last_message(server, clients):
    """lastMessage of a photo is its /uploads/ path: lastMessageType tells a chat list
    to show it as a photo, not as text."""
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    photo = (await upload(server, ann, jpeg(300, 200), "a.jpg", 2)).json["data"]
    await send(a, chat_id, photo, messageType=2)
    (chat,) = await a.call("getMyChats", {})
    assert (chat["lastMessage"], chat["lastMessageType"]) == (photo, 2)
    await send(a, chat_id, "and a word")
    (chat,) = await a.call("getMyChats", {})
    assert (chat["lastMessage"], chat["lastMessageType"]) == ("and a word", 0)


# --- users the server has not met yet -------------------------------------------------

async def test_chats_and_groups_with_users_not_met_yet(store_kind, make_server, clients):
    """getChatHeaderAsync, group creation and adding members create a user the server
    has not met yet (no name, no avatar), race-free; the service API fills them in."""
    key = "svc-key-0123456789"
    srv = make_server(store_kind, f"--service-key={key}")
    ann, cat = User(srv, "Ann"), User(srv, "Cat")
    await register(ann, cat)
    bob, dan, eve = (User(srv, n) for n in ("Bob", "Dan", "Eve"))  # never seen
    path = f"/api/chat/getChatHeaderAsync?user1Id={ann.id}&user2Id={bob.id}"
    replies = await asyncio.gather(
        *(asyncio.to_thread(u.http, "GET", path.replace(ann.id, u.id))
          for u in (ann, ann, cat, cat)),
        *(asyncio.to_thread(u.http, "POST", "/api/chat/groups",
                            {"name": "G", "memberIds": [dan.id, bob.id]})
          for u in (ann, cat)))
    assert [status for status, _ in replies] == [200] * 4 + [201] * 2, replies
    assert replies[0][1]["data"]["id"] == replies[1][1]["data"]["id"]
    header = replies[0][1]["data"]
    assert {m["userId"]: (m["name"], m["avatar"]) for m in header["members"]} == {
        ann.id: ("Ann", None), bob.id: ("", None)}
    gid = replies[4][1]["data"]["id"]
    assert len(replies[4][1]["data"]["members"]) == 3
    status, body = ann.http("POST", f"/api/chat/groups/{gid}/members", {"userIds": [eve.id]})
    assert status == 200, body
    assert eve.id in {m["userId"] for m in body["data"]["members"]}

    status, body = http_json(srv, "PUT", f"/api/admin/users/{bob.id}",
                             {"name": "Bob B", "avatar": "https://cdn.example/b.png"},
                             {"X-Service-Key": key})
    assert status == 200, body
    status, body = ann.http("GET", path)
    assert {m["userId"]: (m["name"], m["avatar"]) for m in body["data"]["members"]}[
        bob.id] == ("Bob B", "https://cdn.example/b.png")
    # Eve's first token names her, and she finds the group she was added to.
    e = await clients(eve)
    headers = await e.call("findAllChatHeaders", {})
    assert [h["id"] for h in headers["items"]] == [gid]
    assert {m["userId"]: m["name"] for m in headers["items"][0]["members"]}[eve.id] == "Eve"


def token(user_id: str, **claims) -> str:
    now = int(time.time())
    return jwt.encode(dict(sub=user_id, iat=now, exp=now + 3600, **claims), SECRET,
                      algorithm="HS256")


async def test_claims_update_only_what_they_carry(server, clients):
    """A token without a picture (or a name) leaves the stored avatar (or name)."""
    ann, bob = await people(server, "Ann", "Bob")
    ann.token = mint(SECRET, ann.id, "Ann", avatar="https://cdn.example/ann.png")
    b = await clients(bob)
    chat_id = await dm(b, ann)
    await clients(ann)  # the token with the picture

    async def ann_as_stored():
        reply = await b.call("joinRoom", {"chatHeaderId": chat_id})
        return next((m["name"], m["avatar"]) for m in reply["members"] if m["userId"] == ann.id)

    assert await ann_as_stored() == ("Ann", "https://cdn.example/ann.png")
    ann.token = token(ann.id, name="Ann A")  # no picture claim
    await clients(ann)
    assert await ann_as_stored() == ("Ann A", "https://cdn.example/ann.png")
    ann.token = token(ann.id)  # neither name nor picture
    await clients(ann)
    assert await ann_as_stored() == ("Ann A", "https://cdn.example/ann.png")
    ann.token = token(ann.id, name="Ann", picture="https://cdn.example/new.png")
    await clients(ann)
    assert await ann_as_stored() == ("Ann", "https://cdn.example/new.png")


async def test_get_my_chats_entry_of_every_kind(server, clients):
    """Each kind of individual chat once (friend, pending, blocked, none; unread, read,
    edited and deleted last messages, none), and every entry agrees
    with the same chat's findAllChatHeaders header."""
    ann, bob, cat, dan, eve, fay = (User(server, n) for n in ("Ann", "Bob", "Cat", "Dan",
                                                             "Eve", "Fay"))
    bob.token = mint(SECRET, bob.id, "Bob", avatar="https://cdn.example/bob.png")
    await register(ann, bob, cat, dan, eve, fay)
    a, b, c, d, e = [await clients(u) for u in (ann, bob, cat, dan, eve)]
    befriend(ann, bob)
    cat.http("POST", "/api/friendships", {"userId": ann.id})
    block(fay, ann)
    with_fay = await dm(a, fay)
    await tick()
    gid = group(bob, "Not listed", ann)
    await send(b, gid, "to the group")
    with_eve = await dm(e, ann)
    await send(e, with_eve, "read by ann")
    await a.call("readMessage", {"chatHeaderId": with_eve})
    await tick()
    with_dan = await dm(d, ann)
    kept = await send(d, with_dan, "kept")
    gone = await send(d, with_dan, "deleted")
    await d.call("removeMessage", {"id": gone["id"], "chatHeaderId": with_dan})
    await tick()
    with_cat = await dm(c, ann)
    edited = await send(c, with_cat, "before")
    await c.call("updateMessage", {"id": edited["id"], "message": "after",
                                   "chatHeaderId": with_cat})
    await tick()
    with_bob = await dm(b, ann)
    await send(b, with_bob, "one")
    await send(b, with_bob, "two")
    mine = await send(a, with_bob, "and mine")
    chats = await a.call("getMyChats", {})
    by_id = {ch["chatHeaderId"]: ch for ch in chats}
    assert [ch["chatHeaderId"] for ch in chats] == [with_bob, with_cat, with_dan, with_eve,
                                                   with_fay]
    expected = {
        with_bob: (bob.id, "Bob", "https://cdn.example/bob.png", "and mine", 0,
                   mine["creationTime"], True, 2, 1),
        with_cat: (cat.id, "Cat", None, "after", 0, edited["creationTime"], True, 1, 0),
        with_dan: (dan.id, "Dan", None, "kept", 0, kept["creationTime"], True, 1, None),
        with_eve: (eve.id, "Eve", None, "read by ann", 0, by_id[with_eve]["lastMessageTime"],
                   True, 0, None),
        with_fay: (fay.id, "Fay", None, None, None, None, False, 0, 3),
    }
    for chat_id, (uid, name, avatar, text, kind, when, online, unread, status) in (
            expected.items()):
        assert by_id[chat_id] == {
            "chatHeaderId": chat_id, "userId": uid, "userName": name, "userAvatar": avatar,
            "lastMessage": text, "lastMessageType": kind, "lastMessageTime": when,
            "creationTime": by_id[chat_id]["creationTime"], "isOnline": online,
            "unreadCount": unread, "friendshipStatus": status}
        assert re.match(ISO_MS, by_id[chat_id]["creationTime"])
    headers = {h["id"]: h for h in (await a.call("findAllChatHeaders", {}))["items"]}
    assert set(headers) == set(by_id) | {gid}
    for chat_id, ch in by_id.items():
        h = headers[chat_id]
        last = h["lastMessage"] or {}
        assert (ch["userName"], ch["userAvatar"], ch["creationTime"], ch["lastMessageTime"],
                ch["unreadCount"], ch["lastMessage"], ch["lastMessageType"]) == (
            h["name"], h["avatar"], h["creationTime"], h["lastMessageTime"],
            h["unreadCount"], last.get("message"), last.get("messageType"))


async def test_unread_counts_of_a_long_chat_list_agree_between_the_two_lists(store_kind):
    """205 chats, each with its own count: getMyChats's list and findAllChatHeaders's
    summaries give every one of them, the same."""
    url, cleanup = new_database_url(store_kind)
    store = await open_store(url)
    try:
        now = int(time.time() * 1000)
        me = types.User("00000000-0000-4000-8000-00000000a000", "Me")
        others = [types.User(f"00000000-0000-4000-8000-{i:012d}", f"U{i}") for i in range(205)]
        await store.ensure_users([me.id] + [o.id for o in others], now)
        unread = {}
        for i, other in enumerate(others):
            chat = await store.get_or_create_individual_chat(me.id, other.id, now + i)
            for k in range(i % 3):
                await store.add_message(chat.id, other, f"m{k}", 0, None, None, now + i)
            await store.add_message(chat.id, me, "mine", 0, None, None, now + i)
            unread[chat.id] = i % 3
        listed = await store.my_chats(me.id)
        assert {c.chat_header_id: c.unread_count for c in listed} == unread
        summaries = await store.chat_summaries(me.id, limit=1000)
        assert [(s.chat.id, s.unread_count) for s in summaries] == [
            (c.chat_header_id, c.unread_count) for c in listed]
    finally:
        await store.close()
        cleanup()


def test_a_chat_list_entry_is_written_as_its_my_chat():
    """MyChat.wire writes an entry without building the MyChat: the same keys in the
    same order, the same values."""
    for entry, online in (
            (types.MyChatEntry(7, 1764700000123, 1764700001000, "hi", 2, "u-1", "Bob",
                                 "https://cdn.example/b.png", 1, 3), True),
            (types.MyChatEntry(8, 1764700000000, None, None, None, None, None, None, None,
                                 0), False)):
        dataclass_wire = to_wire(MyChat(
            entry.chat_header_id, entry.user_id, entry.user_name, entry.user_avatar,
            entry.last_message, entry.last_message_type,
            None if entry.last_message_ms is None else Time(entry.last_message_ms),
            Time(entry.creation_ms), online, entry.unread_count, entry.friendship_status))
        direct = MyChat.wire(entry, online)
        assert list(direct.items()) == list(dataclass_wire.items())


async def test_unread_counts_kept_on_every_write_agree_with_the_messages(store_kind):
    """Two nodes of one database: messages from several members at once (batches of
    many chats and authors), reads, deletions, members leaving and joining, all
    interleaved. Afterwards every member's unread count is what counting the
    messages from others after the member's read marker gives, and both chat lists
    show it."""
    url, cleanup = new_database_url(store_kind)
    nodes = [await open_store(url)]
    nodes.append(await open_store(url, run_migrations=False))
    rng = random.Random(7)
    try:
        now = int(time.time() * 1000)
        people = [types.User(f"00000000-0000-4000-8000-{i:012d}", f"P{i}") for i in range(6)]
        await nodes[0].ensure_users([p.id for p in people], now)
        members: dict[int, set[str]] = {}
        for a, b in ((0, 1), (0, 2), (1, 2), (3, 4), (0, 5)):
            chat = await nodes[0].get_or_create_individual_chat(
                people[a].id, people[b].id, now)
            members[chat.id] = {people[a].id, people[b].id}
        groups = []
        for names in ((0, 1, 2, 3), (2, 4, 5)):
            group = await nodes[0].create_group(
                "G", None, people[names[0]].id, [people[n].id for n in names[1:]], now)
            members[group.id] = {people[n].id for n in names}
            groups.append(group.id)
        by_id = {p.id: p for p in people}
        written: dict[int, list[tuple[int, str]]] = {c: [] for c in members}

        async def send(node, chat_id, author):
            m = await node.add_message(chat_id, by_id[author], "hi", 0, None, None, now)
            written[chat_id].append((m.id, author))

        async def delete_own(node, chat_id, author):
            mine = [i for i, who in written[chat_id] if who == author]
            if not mine:
                return
            ids = rng.sample(mine, min(len(mine), rng.randint(1, 2)))
            for i in ids:
                written[chat_id].remove((i, author))

            async def check(found):
                assert all(found[i] == (chat_id, author) for i in ids)
            await node.delete_messages(chat_id, ids, check)

        for _ in range(25):
            work = []
            for _ in range(12):
                chat_id = rng.choice(list(members))
                work.append(send(rng.choice(nodes), chat_id,
                                 rng.choice(sorted(members[chat_id]))))
            for _ in range(3):
                chat_id = rng.choice(list(members))
                work.append(rng.choice(nodes).mark_read(
                    chat_id, rng.choice(sorted(members[chat_id]))))
            chat_id = rng.choice(list(members))
            work.append(delete_own(rng.choice(nodes), chat_id,
                                   rng.choice(sorted(members[chat_id]))))
            group = rng.choice(groups)
            outside = sorted({p.id for p in people} - members[group])
            if outside and rng.random() < 0.5:
                joining = rng.choice(outside)
                members[group].add(joining)
                work.append(rng.choice(nodes).add_members(group, [joining], now))
            rng.shuffle(work)
            await asyncio.gather(*work)
            group = rng.choice(groups)
            if len(members[group]) > 3 and rng.random() < 0.3:
                # What the one who leaves wrote stays, no longer theirs to delete.
                leaving = rng.choice(sorted(members[group]))
                members[group].discard(leaving)
                written[group] = [w for w in written[group] if w[1] != leaving]
                assert await nodes[0].remove_member(group, leaving)
        # The last word: one person reads everything, while the others write on.
        await asyncio.gather(*(
            [nodes[1].mark_read(c, people[0].id) for c in members if people[0].id in members[c]]
            + [send(nodes[0], c, sorted(members[c] - {people[0].id})[0]) for c in members
               if people[0].id not in members[c]]))
        found = await nodes[0].db.fetchall(
            "SELECT cm.chat_header_id, cm.user_id, cm.unread_count,"
            " (SELECT COUNT(*) FROM messages m WHERE m.chat_header_id = cm.chat_header_id"
            "  AND m.id > cm.last_read_message_id AND m.user_id <> cm.user_id)"
            " FROM chat_members cm")
        assert len(found) == sum(len(m) for m in members.values())
        assert [r for r in found if r[2] != r[3]] == []
        assert any(r[2] > 0 for r in found) and any(r[2] == 0 for r in found)
        kept = {(r[0], r[1]): r[2] for r in found}
        for person in people:
            listed = await nodes[1].my_chats(person.id)
            assert {c.chat_header_id: c.unread_count for c in listed} == {
                c: kept[(c, person.id)] for c in members
                if c not in groups and person.id in members[c]}
            summaries = await nodes[1].chat_summaries(person.id, limit=100)
            assert {s.chat.id: s.unread_count for s in summaries} == {
                c: kept[(c, person.id)] for c in members if person.id in members[c]}
    finally:
        for node in nodes:
            await node.close()
        cleanup()


async def test_a_database_from_before_kept_counts_gets_them_from_its_messages(
        store_kind, monkeypatch):
    """Migrating a database whose members had no stored unread count: each gets the
    messages from others after its marker, and the lists show them."""
    from syarah.store import migrations

    url, cleanup = new_database_url(store_kind)
    every = migrations.available()
    version = next(v for v, name, _ in every if name == "v0010_unread_counts")
    monkeypatch.setattr(migrations, "available", lambda: [m for m in every if m[0] < version])
    store = await open_store(url)
    try:
        now = int(time.time() * 1000)
        ann, bob, cat = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(3))
        await store.ensure_users([ann, bob, cat], now)
        chat = await store.get_or_create_individual_chat(ann, bob, now)
        group = await store.create_group("G", None, ann, [bob, cat], now)
        db = store.db
        ids = []
        for chat_id, author in ((chat.id, ann), (chat.id, bob), (chat.id, bob),
                                (group.id, cat), (group.id, ann), (group.id, cat)):
            result = await db.execute(
                "INSERT INTO messages (chat_header_id, user_id, message, message_type,"
                " creation_ms) VALUES (?, ?, 'old', 0, ?)", chat_id, author, now)
            ids.append(result.lastrowid)
        for chat_id in (chat.id, group.id):
            await db.execute("UPDATE chat_headers SET last_message_id = ? WHERE id = ?",
                             max(ids), chat_id)
        # Ann had read up to Bob's first message, Cat up to Ann's group message.
        await db.execute("UPDATE chat_members SET last_read_message_id = ?"
                         " WHERE chat_header_id = ? AND user_id = ?", ids[1], chat.id, ann)
        await db.execute("UPDATE chat_members SET last_read_message_id = ?"
                         " WHERE chat_header_id = ? AND user_id = ?", ids[4], group.id, cat)
        monkeypatch.setattr(migrations, "available", lambda: every)
        assert await migrations.migrate(db) == ["v0010_unread_counts"]
        found = await db.fetchall(
            "SELECT chat_header_id, user_id, unread_count FROM chat_members")
        assert {(r[0], r[1]): r[2] for r in found} == {
            (chat.id, ann): 1, (chat.id, bob): 1,
            (group.id, ann): 2, (group.id, bob): 3, (group.id, cat): 0}
        assert [(c.chat_header_id, c.unread_count) for c in await store.my_chats(ann)] == [
            (chat.id, 1)]
    finally:
        await store.close()
        cleanup()
