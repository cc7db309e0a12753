"""Bad input for every client event: a readable error reply, nothing written, and the
same socket keeps working."""

from __future__ import annotations

import json
import math

import aiohttp
import pytest

from conftest import SECRET, dm
from helpers import assert_error, people, send
from syarah.auth import mint
from syarah.protocol.inbound import MAX_SYNC_ROOMS

GUID = "550e8400-e29b-41d4-a716-446655440000"
MB = 1_000_000
# The server's Socket.IO packet limit (max_http_buffer_size default, 256 KiB).
PACKET_LIMIT = 256 * 1024

# Whole payloads that are not an event object at all.
NOT_OBJECTS = ["string", "", ["a", 1], [{"chatHeaderId": 1}], 42, -1, 4.5, True, False]

BAD_IDS = ["abc", "", " ", "1.5", "0x10", "1e3", "-1", 0, -1, -5, 1.5, math.inf, math.nan,
           True, False, [], [1], {}, {"$gt": 0}, 2**64, "9" * 25, 2**53]
BAD_COUNTS = ["many", -1, 1.5, True, [], {}, "x" * 100_000]
# maxResultCount above 200 is clamped, not refused.
BAD_PAGE_SIZES = BAD_COUNTS + [0]
BAD_SKIPS = BAD_COUNTS + [10**12]
BAD_TEXTS = [123, True, [], ["a"], {}, {"text": "hi"}, "", "x" * 10_001, "x" * 100_000,
             "x" * (PACKET_LIMIT - 10_000), "a\x00b", "lone \ud800 surrogate"]
BAD_GUIDS = ["not-a-guid", GUID + "0", GUID[:-1] + "g", "x" * 100_000, 42, [], {},
             True, [GUID]]
BAD_TOKENS = [42, True, [], {}, "x" * 20_000, "Bearer \udc00"]
BAD_BOOLS = ["yes", 2, 0.5, [], {}, "x" * 100_000]
BAD_NAMES = [5, [], {}, "n" * 101, "n" * 100_000, "a\x00b", "lone \udfff"]
# An empty list is no list when `id` is given beside it (tests/test_messages.py).
BAD_ID_LISTS = ["1,2", 5, {}, [0], [-1], ["a"], [[1]], [None], [1.5], [True],
                list(range(1, 102)), [{"id": 1}]]
BAD_ROOM_LISTS = ["x", 5, {}, [5], ["x"], [[]], [{}], [{"ChatHeaderId": "x"}],
                  [{"ChatHeaderId": 1, "LastMessageId": -1}],
                  [{"ChatHeaderId": 1, "LastMessageId": "abc"}],
                  [{"ChatHeaderId": i + 1, "LastMessageId": 0}
                   for i in range(MAX_SYNC_ROOMS + 1)]]


class World:
    """Ann (socket ``a``, in the room) and Bob in one chat with one message of Ann's."""

    @classmethod
    async def make(cls, server, clients):
        w = cls()
        w.ann, w.bob = await people(server, "Ann", "Bob")
        w.a, w.b = await clients(w.ann), await clients(w.bob)
        w.chat = await dm(w.a, w.bob)
        await w.b.call("joinRoom", {"chatHeaderId": w.chat})
        w.message_id = (await send(w.a, w.chat, "original"))["id"]
        return w


def vary(base: dict, field: str, values) -> list[dict]:
    return [dict(base, **{field: v}) for v in values]


def cases(event: str, w: World) -> list:
    """The bad payloads of one event; each is a payload, or (payload, expected code)."""
    chat, mid = w.chat, w.message_id
    # Unknown fields are ignored (clients send extras such as socketId), so nested
    # garbage is refused through the required fields it lacks.
    common = NOT_OBJECTS + [{"x": {"y": [{"z": None}]}}]
    if event == "createMessage":
        base = {"message": "BAD", "chatHeaderId": chat, "messageType": 0}
        return common + [{}, {"message": "BAD"}, {"chatHeaderId": chat},
                         {"message": None, "chatHeaderId": chat}] + (
            vary(base, "chatHeaderId", BAD_IDS) + vary(base, "message", BAD_TEXTS)
            + vary(base, "messageType", [5, -1, "text", 1.5, True, [], "9" * 30])
            + vary(base, "caption", [5, [], {}, "c" * 2001, "c" * 100_000])
            + vary(base, "clientMessageId", ["", "k" * 65, 5, [], {}])
            + vary(base, "accessToken", BAD_TOKENS))
    if event == "findAllMessages":
        base = {"chatHeaderId": chat}
        return common + [{}, {"chatHeaderId": None}] + (
            vary(base, "chatHeaderId", BAD_IDS) + vary(base, "lastMessageId", BAD_IDS)
            + vary(base, "LastMessageId", BAD_IDS) + vary(base, "skipCount", BAD_SKIPS)
            + vary(base, "SkipCount", BAD_SKIPS)
            + vary(base, "maxResultCount", BAD_PAGE_SIZES)
            + vary(base, "accessToken", BAD_TOKENS))
    if event == "findAllChatHeaders":
        base = {}
        return NOT_OBJECTS + (
            vary(base, "RoomsWithLastMessageIds", BAD_ROOM_LISTS)
            + vary(base, "UserId", BAD_GUIDS) + vary(base, "userId", BAD_GUIDS)
            + vary(base, "SkipCount", BAD_SKIPS)
            + vary(base, "MaxResultCount", BAD_PAGE_SIZES)
            + vary(base, "AccessToken", BAD_TOKENS))
    if event == "joinRoom":
        base = {"chatHeaderId": chat}
        return common + [{}, {"socketId": "abc"}] + (
            vary(base, "chatHeaderId", BAD_IDS)
            + vary({}, "otherUserId", BAD_GUIDS)
            + vary(base, "userId", BAD_GUIDS)
            + vary(base, "socketId", [5, [], "s" * 100_000])
            + vary(base, "accessToken", BAD_TOKENS))
    if event == "leaveRoom":
        base = {"chatHeaderId": chat}
        return common + [{}] + (
            vary(base, "chatHeaderId", BAD_IDS) + vary(base, "accessToken", BAD_TOKENS))
    if event == "roomTyping":
        base = {"chatHeaderId": chat, "isTyping": True, "name": "Ann"}
        return common + [{}, {"isTyping": True}] + (
            vary(base, "chatHeaderId", BAD_IDS) + vary(base, "isTyping", BAD_BOOLS)
            + vary(base, "name", BAD_NAMES))
    if event == "updateMessage":
        base = {"id": mid, "message": "BAD", "chatHeaderId": chat}
        return common + [{}, {"id": mid, "message": "BAD"}, {"id": mid, "chatHeaderId": chat},
                         {"message": "BAD", "chatHeaderId": chat}] + (
            vary(base, "id", BAD_IDS) + vary(base, "chatHeaderId", BAD_IDS)
            + vary(base, "message", BAD_TEXTS)
            + vary(base, "caption", [5, [], {}, "c" * 2001])
            + vary(base, "accessToken", BAD_TOKENS))
    if event == "removeMessage":
        base = {"chatHeaderId": chat, "id": mid}
        return common + [{}, {"id": mid}, {"chatHeaderId": chat},
                         {"chatHeaderId": chat, "id": None, "ids": None},
                         {"chatHeaderId": chat, "ids": []},
                         {"chatHeaderId": chat, "id": None, "ids": []}] + (
            vary(base, "chatHeaderId", BAD_IDS) + vary(base, "id", BAD_IDS)
            + vary(base, "ids", BAD_ID_LISTS)
            + [dict(base, ids=[mid] + list(range(2**40, 2**40 + 100)))]
            + vary(base, "accessToken", BAD_TOKENS))
    if event == "readMessage":
        base = {"chatHeaderId": chat}
        return common + [{}] + (
            vary(base, "chatHeaderId", BAD_IDS) + vary(base, "accessToken", BAD_TOKENS))
    if event in ("getMyFriendships", "getMyChats"):
        # Their only field is optional: an absent or null payload is a valid call.
        return NOT_OBJECTS + vary({}, "accessToken", BAD_TOKENS) + vary(
            {}, "AccessToken", BAD_TOKENS)
    raise AssertionError(event)


async def valid_call(event: str, w: World):
    """A valid call of the event on the same socket, and a check of its reply."""
    chat = w.chat
    if event == "createMessage":
        reply = await w.a.call(event, {"message": "ok", "chatHeaderId": chat})
        assert reply["chatMessage"]["message"] == "ok", reply
    elif event == "findAllMessages":
        assert "items" in await w.a.call(event, {"chatHeaderId": str(chat)})
    elif event == "findAllChatHeaders":
        assert (await w.a.call(event, {}))["totalCount"] == 1
    elif event == "joinRoom":
        assert (await w.a.call(event, {"chatHeaderId": chat}))["joined"] is True
    elif event == "leaveRoom":
        assert (await w.a.call(event, {"chatHeaderId": chat}))["left"] is True
    elif event == "roomTyping":
        assert await w.a.call(event, {"chatHeaderId": chat, "isTyping": False}) == {"ok": True}
    elif event == "updateMessage":
        reply = await w.a.call(event, {"id": w.message_id, "message": "edited",
                                       "chatHeaderId": chat})
        assert reply["chatMessage"]["message"] == "edited", reply
    elif event == "removeMessage":
        mid = (await send(w.a, chat, "to delete"))["id"]
        reply = await w.a.call(event, {"ids": [mid], "chatHeaderId": chat})
        assert reply["deletedIds"] == [mid], reply
    elif event == "readMessage":
        assert (await w.a.call(event, {"chatHeaderId": chat}))["chatHeaderId"] == chat
    else:
        assert isinstance(await w.a.call(event, {}), list)


EVENTS = ["createMessage", "findAllMessages", "findAllChatHeaders", "joinRoom",
          "leaveRoom", "roomTyping", "updateMessage", "removeMessage", "readMessage",
          "getMyFriendships", "getMyChats"]


@pytest.mark.parametrize("event", EVENTS)
async def test_bad_payloads_get_validation_and_the_socket_keeps_working(
        server, clients, event):
    w = await World.make(server, clients)
    bad = cases(event, w)
    for payload in bad:
        reply = await w.a.call(event, payload)
        assert isinstance(reply, dict) and reply.get("code") == "VALIDATION", (
            event, json.dumps(payload)[:200], reply)
        assert isinstance(reply["error"], str) and 0 < len(reply["error"]) < 300, reply
        await valid_call(event, w)
    # Nothing a refused payload carried was written.
    page = await w.b.call("findAllMessages", {"chatHeaderId": w.chat, "maxResultCount": 200})
    assert all(m["message"] != "BAD" for m in page["items"])
    assert any(m["id"] == w.message_id for m in page["items"])
    if event == "createMessage":
        assert page["totalCount"] == 1 + len(bad)
    elif event == "roomTyping":
        typing = await w.b.wait_for("typing", len(bad))
        assert all(t["isTyping"] is False for t in typing)


@pytest.mark.parametrize("event", EVENTS)
async def test_bad_payloads_without_ack_get_an_exception_event(server, clients, event):
    w = await World.make(server, clients)
    await w.a.emit(event, "not an object")
    await w.a.emit(event, {"accessToken": 42})
    got = await w.a.wait_for("exception", 2)
    assert [g["event"] for g in got] == [event, event]
    assert all(g["code"] == "VALIDATION" and g["error"] for g in got)
    await valid_call(event, w)
    assert len(w.a.received("exception")) == 2


async def test_unknown_event_and_unusual_tokens(server, clients):
    w = await World.make(server, clients)
    assert_error(await w.a.call("dropAllTables", {"chatHeaderId": w.chat}), "VALIDATION")
    for token in ("garbage", "Bearer garbage", "a.b.c",
                  mint(SECRET, "not-a-guid", "Nobody")):
        assert_error(await w.a.call("getMyChats", {"accessToken": token}), "UNAUTHORIZED")
    await valid_call("getMyChats", w)


async def test_long_or_broken_claims_do_not_break_the_store(server, clients):
    """Names and avatars come from the token; the users table has sizes to keep."""
    ann, bob = await people(server, "Ann", "Bob")
    b = await clients(bob)
    chat = await dm(b, ann)
    token = mint(SECRET, ann.id, "\ud800" + "N" * 5000,
                 avatar="https://a.example/" + "p" * 5000)
    a = await clients(ann, with_token=False)
    reply = await a.call("createMessage", {"message": "hi", "chatHeaderId": chat,
                                           "accessToken": token})
    assert reply["chatMessage"]["user"] == {"id": ann.id, "name": "?" + "N" * 254,
                                            "avatar": None}, reply
    assert [c["userName"] for c in await b.call("getMyChats", {})] == ["?" + "N" * 254]


async def test_a_frame_above_the_transport_limit_closes_only_that_socket(server, clients):
    """Socket.IO's maxPayload (max_http_buffer_size, 256 KiB): a larger frame is dropped
    with its connection, as every Socket.IO server does; the server and every other
    socket carry on."""
    w = await World.make(server, clients)
    await w.a.emit("createMessage", {"message": "x" * (PACKET_LIMIT + 10), "chatHeaderId": w.chat})
    for _ in range(100):
        if not w.a.sio.connected:
            break
        await w.a.settle(0.05)
    assert not w.a.sio.connected
    reply = await w.b.call("findAllMessages", {"chatHeaderId": w.chat})
    assert reply["totalCount"] == 1
    again = await clients(w.ann)
    await send(again, w.chat, "back again")


class RawSocket:
    """A bare Engine.IO 4 WebSocket that speaks Socket.IO packets as text, so a test
    can send what no Socket.IO client library would write."""

    def __init__(self, session, ws):
        self.session, self.ws = session, ws

    @classmethod
    async def open(cls, server, user):
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(
            f"{server.url}/socket.io/?EIO=4&transport=websocket&userId={user.id}",
            max_msg_size=0)
        raw = cls(session, ws)
        assert (await ws.receive_str(timeout=10)).startswith("0")  # Engine.IO open
        await ws.send_str("40" + json.dumps({"accessToken": user.token}))
        assert (await raw.text()).startswith("0{")  # Socket.IO CONNECT
        return raw

    async def text(self, timeout: float = 10) -> str | None:
        """The next Socket.IO packet (an Engine.IO message without its type), answering
        pings; None once the server closed."""
        while True:
            msg = await self.ws.receive(timeout)
            if msg.type != aiohttp.WSMsgType.TEXT or msg.data == "1":  # "1": close
                return None
            if msg.data == "2":
                await self.ws.send_str("3")
                continue
            return msg.data[1:]

    async def close(self):
        await self.ws.close()
        await self.session.close()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [1_050, 100_000])
async def test_deeply_nested_payloads_get_validation(server, clients, depth):
    """orjson refuses JSON nested deeper than 1,024 levels, and the standard library's
    parser, tried after it, runs out of stack; either way the event is answered."""
    w = await World.make(server, clients)
    log_start = len(server.log())
    raw = await RawSocket.open(server, w.ann)
    try:
        await raw.ws.send_str(f'421["createMessage",{nested(depth)}]')
        ack = await raw.text()
        assert ack is not None and ack.startswith("31["), ack[:100]
        (reply,) = json.loads(ack[2:])
        assert_error(reply, "VALIDATION")
        # Inside an object, and without an ack: the exception event.
        await raw.ws.send_str(
            '42["findAllMessages",{"chatHeaderId":%d,"x":%s}]' % (w.chat, nested(depth)))
        got = await raw.text()
        assert got.startswith("2["), got[:100]
        event, body = json.loads(got[1:])
        assert event == "exception" and body["event"] == "findAllMessages", body
        assert_error(body, "VALIDATION")
        # The same socket goes on working.
        await raw.ws.send_str('422["findAllMessages",{"chatHeaderId":%d}]' % w.chat)
        ack = await raw.text()
        assert ack.startswith("32") and json.loads(ack[2:])[0]["totalCount"] == 1, ack
    finally:
        await raw.close()
    assert "Traceback" not in server.log()[log_start:]


@pytest.mark.parametrize("packet", [
    '42["createMessage",{"message":', '42' + nested(100_000), '42{"a":1}', "4x",
    '4[' + '["createMessage",' * 2_000])
async def test_an_undecodable_packet_closes_only_that_connection(server, clients, packet):
    """A packet that no Socket.IO client writes (broken JSON, no event name) has no
    event to answer: the connection is closed, with a warning in the log and no
    traceback, as for an oversized packet."""
    w = await World.make(server, clients)
    log_start = len(server.log())
    raw = await RawSocket.open(server, w.ann)
    try:
        await raw.ws.send_str(packet)
        assert await raw.text() is None
    finally:
        await raw.close()
    await send(w.a, w.chat, "still here")
    log = server.log()[log_start:]
    assert "Traceback" not in log and "async handler error" not in log
    assert "WARNING syarah.transport: closing connection" in log


async def test_deeply_nested_payload_over_polling(server, clients):
    w = await World.make(server, clients)
    log_start = len(server.log())
    base = f"{server.url}/socket.io/?EIO=4&transport=polling&userId={w.ann.id}"
    async with aiohttp.ClientSession() as session:
        async with session.get(base) as r:
            sid = json.loads((await r.text())[1:])["sid"]
        url = f"{base}&sid={sid}"
        async with session.post(url, data="40" + json.dumps({"accessToken": w.ann.token})):
            pass
        async with session.get(url) as r:
            assert (await r.text()).startswith("40")
        async with session.post(url, data=f'427["createMessage",{nested(1_050)}]') as r:
            assert r.status == 200
        async with session.get(url) as r:
            packets = (await r.text()).split("\x1e")
        acks = [p for p in packets if p.startswith("437")]
        assert len(acks) == 1, packets
        ack = acks[0]
        assert_error(json.loads(ack[3:])[0], "VALIDATION")
    assert "Traceback" not in server.log()[log_start:]


def test_the_json_and_packet_behaviour_deep_nesting_relies_on():
    """What the deep-nesting answers rest on in orjson, python-engineio and
    python-socketio: a depth refusal that says so, and decoding failures that are
    ValueErrors, which python-engineio turns into plain text data."""
    import orjson
    from engineio import packet as eio_packet

    from syarah import jsonlib
    from syarah.transport.sockets import EventPacket, UnreadablePayload

    assert orjson.loads(nested(1_024)) is not None
    for depth in (1_025, 100_000):
        with pytest.raises(orjson.JSONDecodeError, match="depth"):
            orjson.loads(nested(depth))
        with pytest.raises(jsonlib.TooDeep):
            jsonlib.loads(nested(depth))
    # What orjson refuses for other reasons still reads.
    assert jsonlib.loads("[18446744073709551616]") == [2**64]
    assert issubclass(jsonlib.TooDeep, ValueError)
    eio_packet.Packet.json = jsonlib
    text = "[" * 2_000
    assert eio_packet.Packet(encoded_packet="4" + text).data == text
    EventPacket.json = jsonlib
    p = EventPacket(encoded_packet=f'25["createMessage",{nested(2_000)}]')
    assert (p.id, p.data[0]) == (5, "createMessage")
    assert isinstance(p.data[1], UnreadablePayload)
    for bad in ('2' + nested(2_000), '2{"a":1}', '2[1]', '2["x",{"a":'):
        with pytest.raises(ValueError):
            EventPacket(encoded_packet=bad)
