"""clientStatus to friends and chat partners, viewing state, per-socket order."""

import asyncio

import pytest
import socketio

from conftest import SECRET, User, dm
from helpers import barrier, befriend, group, people, send
from syarah.auth import mint
from syarah.presence import LocalPresence


async def test_client_status_reaches_friends_and_chat_partners_only(server, clients):
    ann, friend, partner, pending, stranger = await people(
        server, "Ann", "Friend", "Partner", "Pending", "Stranger")
    befriend(ann, friend)
    pending.http("POST", "/api/friendships", {"userId": ann.id})
    # Ann has written to Partner; Stranger only opened a chat with Ann's id, which
    # must not let them watch her come and go.
    a = await clients(ann)
    await send(a, await dm(a, partner), "hi")
    p = await clients(partner)
    await a.close()
    # Ann's going reaches Partner once her disconnect has been handled to the end
    # (its audience is read from the store after presence has her offline), so
    # nobody connected after this hears it late.
    first_off = (await p.wait_for("clientStatus"))[0]
    assert (first_off["userId"], first_off["activeNow"]) == (ann.id, False)
    await offline_for(friend, ann)
    s = await clients(stranger)
    await dm(s, ann)
    f, pe = [await clients(u) for u in (friend, pending)]

    a = await clients(ann, client_type="android")
    online = {"userId": ann.id, "clientType": "android", "activeNow": True}
    assert await f.wait_for("clientStatus") == [online]
    assert (await p.wait_for("clientStatus", 2))[1] == online

    await a.close()
    offline = dict(online, activeNow=False)
    assert (await f.wait_for("clientStatus", 2))[1] == offline
    assert (await p.wait_for("clientStatus", 3))[2] == offline
    await barrier(pe, s)
    assert pe.received("clientStatus") == [] and s.received("clientStatus") == []


async def offline_for(friend: User, user: User) -> None:
    """Wait until the server has handled ``user``'s disconnect, as ``friend`` sees it."""
    for _ in range(100):
        status, body = friend.http("GET", "/api/friendships")
        assert status == 200, body
        if not any(f["userId"] == user.id and f["isOnline"] for f in body["data"]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{user.name} still online for {friend.name}")


async def test_client_status_only_for_the_first_and_the_last_socket(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    b = await clients(bob)
    phone = await clients(ann, client_type="ios")
    await b.wait_for("clientStatus")
    web = await clients(ann, client_type="web")
    await phone.close()
    await barrier(b)
    await asyncio.sleep(0.2)  # a disconnect has no reply to wait behind
    assert b.received("clientStatus") == [
        {"userId": ann.id, "clientType": "ios", "activeNow": True}]
    assert (await b.call("getMyFriendships", {}))[0]["isOnline"] is True
    await web.close()
    last = (await b.wait_for("clientStatus", 2))[1]
    assert last == {"userId": ann.id, "clientType": "web", "activeNow": False}
    assert (await b.call("getMyFriendships", {}))[0]["isOnline"] is False
    # Nobody is told about their own status.
    assert all(e["userId"] != bob.id for e in b.received("clientStatus"))


async def test_a_tokenless_connection_does_not_make_its_user_online(server, clients):
    """A bare userId proves nothing: anyone could claim a friend's id to show them
    online. Only a token-proven socket counts for presence."""
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    b = await clients(bob)
    claimed = await clients(ann, with_token=False)
    await barrier(claimed, b)
    assert b.received("clientStatus") == []
    assert (await b.call("getMyFriendships", {}))[0]["isOnline"] is False
    # Once an event proves the socket with Ann's token, she is online.
    await claimed.call("getMyChats", {"accessToken": ann.token})
    (status,) = await b.wait_for("clientStatus")
    assert status == {"userId": ann.id, "clientType": "unknown", "activeNow": True}
    assert (await b.call("getMyFriendships", {}))[0]["isOnline"] is True


async def test_on_member_join_shows_the_member_online(server, clients):
    ann, bob, cat = await people(server, "Ann", "Bob", "Cat")
    gid = group(ann, "G", bob, cat)
    b = await clients(bob)
    await b.call("joinRoom", {"chatHeaderId": gid})
    a = await clients(ann)
    await a.call("joinRoom", {"chatHeaderId": gid})
    (joined,) = await b.wait_for("onMemberJoin")
    assert joined["member"]["userId"] == ann.id and joined["member"]["isOnline"] is True


@pytest.mark.parametrize("token_of", ["other", "expired", "forged", "not text"])
async def test_a_connection_with_a_bad_token_is_refused(server, token_of):
    ann, bob = User(server, "Ann"), User(server, "Bob")
    token = {"other": bob.token,
             "expired": mint(SECRET, ann.id, "Ann", hours=-1),
             "forged": mint("x" * 40, ann.id, "Ann"),
             "not text": "ey\ud800"}[token_of]
    sio = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError) as refused:
        await sio.connect(f"{server.url}?userId={ann.id}", auth={"accessToken": token},
                          transports=["websocket"], wait_timeout=5)
    assert str(refused.value)
    await sio.disconnect()


async def test_viewing_state_is_cleared_on_leave_room(server, clients):
    """Viewing drives push; on the wire it shows as the room's events."""
    ann, bob = await people(server, "Ann", "Bob")
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    await b.call("leaveRoom", {"chatHeaderId": chat_id})
    await send(a, chat_id, "not viewed")
    await barrier(b)
    assert b.received("message") == []


async def test_local_presence_viewing_per_socket():
    presence = LocalPresence()
    assert await presence.add_socket("u", "s1") is True
    assert await presence.add_socket("u", "s2") is False
    await presence.set_viewing("u", "s1", 7)
    await presence.set_viewing("u", "s2", 7)
    await presence.clear_viewing("u", "s1", 7)
    assert await presence.viewing(7, ["u"]) == {"u"}  # s2 still views it
    await presence.clear_viewing("u", "s2", 7)
    assert await presence.viewing(7, ["u"]) == set()
    await presence.set_viewing("u", "s2", 8)
    assert await presence.remove_socket("u", "s2") is False
    assert await presence.viewing(8, ["u"]) == set()  # disconnect clears it too
    assert await presence.remove_socket("u", "s1") is True
    assert await presence.online(["u"]) == set()


async def test_each_socket_keeps_its_own_message_order(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a1, a2, b = await clients(ann), await clients(ann), await clients(bob)
    chat_id = await dm(a1, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    for i in range(15):
        await a1.emit("createMessage", {"message": f"one-{i}", "chatHeaderId": chat_id})
        await a2.emit("createMessage", {"message": f"two-{i}", "chatHeaderId": chat_id})
    got = [g["chatMessage"] for g in await b.wait_for("message", 30)]
    for prefix in ("one", "two"):
        mine = [m for m in got if m["message"].startswith(prefix)]
        assert [m["message"] for m in mine] == [f"{prefix}-{i}" for i in range(15)]
        assert [m["id"] for m in mine] == sorted(m["id"] for m in mine)
