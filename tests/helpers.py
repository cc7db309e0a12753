"""Small steps the event tests share: people, friendships, groups, messages, and a
barrier that proves a broadcast did NOT reach a socket."""

from __future__ import annotations

from conftest import Client, User, register

ISO_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"

CHAT_MESSAGE_KEYS = {"id", "chatHeaderId", "userId", "message", "messageType", "caption",
                     "creationTime", "lastModificationTime", "clientMessageId", "user"}
MEMBER_KEYS = {"userId", "name", "avatar", "isOnline", "lastReadMessageId"}
CHAT_HEADER_KEYS = {"id", "isGroup", "name", "avatar", "creationTime", "lastMessage",
                    "lastMessageTime", "unreadCount", "members"}


async def people(server, *names: str) -> list[User]:
    """New users, known to the server."""
    users = [User(server, n) for n in names]
    await register(*users)
    return users


def befriend(a: User, b: User) -> None:
    status, body = a.http("POST", "/api/friendships", {"userId": b.id})
    assert status == 200, body
    status, body = b.http("POST", f"/api/friendships/{a.id}/accept")
    assert status == 200 and body["data"]["status"] == 1, body


def block(a: User, b: User) -> None:
    """a asks b for friendship, then blocks b (the flow a real client goes through)."""
    status, body = a.http("POST", "/api/friendships", {"userId": b.id})
    assert status == 200, body
    status, body = a.http("POST", f"/api/friendships/{b.id}/block")
    assert status == 200 and body["data"]["status"] == 3, body


def group(owner: User, name: str, *members: User) -> int:
    status, body = owner.http("POST", "/api/chat/groups",
                              {"name": name, "memberIds": [m.id for m in members]})
    assert status == 201, body
    return body["data"]["id"]


async def send(client: Client, chat_id: int, text: str, **extra) -> dict:
    """createMessage with an ack; returns the chatMessage."""
    reply = await client.call("createMessage", dict(
        {"message": text, "chatHeaderId": chat_id, "messageType": 0}, **extra))
    assert "chatMessage" in reply, reply
    return reply["chatMessage"]


async def barrier(*clients: Client) -> None:
    """After this, any broadcast emitted before it has reached these sockets.

    The server queues a room emit on every recipient socket before it answers the
    sender; a round trip on a recipient afterwards is answered behind that emit, since
    one socket's packets keep their order. So a missing event is proven missing without
    sleeping. Any reply will do, an error one included.
    """
    for c in clients:
        await c.call("leaveRoom", {"chatHeaderId": 2**53 - 1})


def assert_error(reply, code: str) -> None:
    assert isinstance(reply, dict) and reply.get("code") == code, reply
    assert isinstance(reply.get("error"), str) and reply["error"], reply
