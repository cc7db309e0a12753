"""Connection-level behaviour: tokenless sockets, polling bursts, blocked presence,
odd query values."""

import asyncio

from conftest import dm
from helpers import barrier, befriend, block, people, send


async def test_a_tokenless_socket_hears_nothing_addressed_to_the_user_until_proven(
        server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    # Someone claiming Ann's id without a token.
    claimed = await clients(ann, with_token=False)
    real = await clients(ann)
    b = await clients(bob)
    await b.close()
    # Ann's real socket hears Bob come and go; the claiming one hears neither.
    assert [s["activeNow"] for s in await real.wait_for("clientStatus", 2)] == [True, False]
    await barrier(claimed)
    assert claimed.received("clientStatus") == []
    # Once an event carries Ann's token, the socket is hers and hears her events.
    assert await claimed.call("getMyChats", {"accessToken": ann.token}) == []
    b = await clients(bob)
    (status,) = await claimed.wait_for("clientStatus")
    assert status["userId"] == bob.id and status["activeNow"] is True


async def test_a_polling_burst_of_many_events_is_answered_in_full(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann, transports=("polling",))
    chat_id = await dm(a, bob)
    # socket.io clients put every event queued during one poll into one request.
    replies = await asyncio.gather(*[
        a.call("createMessage", {"chatHeaderId": chat_id, "message": f"m{i}"})
        for i in range(40)])
    assert all("chatMessage" in r for r in replies), replies
    page = await a.call("findAllMessages", {"chatHeaderId": chat_id, "maxResultCount": 50})
    assert page["totalCount"] == 40


async def test_a_websocket_burst_is_acked_and_delivered_in_the_order_sent(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    a = await clients(ann)
    chat_id = await dm(a, bob)
    b = await clients(bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    # More events than the server reads ahead of the one it handles: reading pauses
    # and goes on, and every frame out keeps its place.
    texts = [f"m{i}" for i in range(60)]
    replies = await asyncio.gather(*[
        a.call("createMessage", {"chatHeaderId": chat_id, "message": t}) for t in texts])
    assert [r["chatMessage"]["message"] for r in replies] == texts
    delivered = await b.wait_for("message", len(texts))
    assert [m["chatMessage"]["message"] for m in delivered] == texts
    ids = [r["chatMessage"]["id"] for r in replies]
    assert ids == sorted(ids)


async def test_a_blocked_pair_does_not_see_each_others_presence(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    a = await clients(ann)
    await dm(a, bob)
    b = await clients(bob)
    (status,) = await a.wait_for("clientStatus")
    assert status["userId"] == bob.id
    status, body = ann.http("POST", f"/api/friendships/{bob.id}/block")
    assert status == 200 and body["data"]["status"] == 3, body
    chats = await a.call("getMyChats", {})
    assert [(c["userId"], c["friendshipStatus"], c["isOnline"]) for c in chats] == [
        (bob.id, 3, False)]
    await b.close()
    await barrier(a)
    assert len(a.received("clientStatus")) == 1


async def test_an_overlong_client_type_is_trimmed_not_refused(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    befriend(ann, bob)
    a = await clients(ann)
    await dm(a, bob)
    await clients(bob, client_type="x" * 200)
    (status,) = await a.wait_for("clientStatus")
    assert status["clientType"] == "x" * 40
    assert (await send(a, (await a.call("getMyChats", {}))[0]["chatHeaderId"], "hi"))
