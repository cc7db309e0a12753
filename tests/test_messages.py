"""createMessage, findAllMessages, updateMessage, removeMessage, readMessage."""

from conftest import User, dm, register


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
