"""The handlers called in-process, without Socket.IO or Tornado: a real SQLite store,
in-process presence, a broadcaster that records, and a clock the test moves."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from syarah.clock import FakeClock
from syarah.errors import Forbidden
from syarah.handlers import chats, messages, rooms
from syarah.handlers.context import Context, Services
from syarah.handlers.users import UserDirectory
from syarah.presence import LocalPresence
from syarah.protocol import inbound as dto
from syarah.protocol.fields import decode
from syarah.store import open_store
from syarah.types import User


class RecordingRooms:
    """What handlers broadcast, kept for the test to read."""

    def __init__(self):
        self.sent: list[tuple] = []
        self._joined: dict[str, set[int]] = {}

    async def to_chat(self, chat_id, event, data, skip_sid=None):
        self.sent.append(("chat", chat_id, event, data, skip_sid))

    async def to_users(self, user_ids, event, data):
        self.sent.append(("users", tuple(user_ids), event, data, None))

    async def to_socket(self, sid, event, data):
        self.sent.append(("socket", sid, event, data, None))

    async def join(self, sid, chat_id):
        self._joined.setdefault(sid, set()).add(chat_id)

    async def leave(self, sid, chat_id):
        self._joined.get(sid, set()).discard(chat_id)

    def joined(self, sid):
        return self._joined.get(sid, set())

    def has_joined(self, sid, chat_id):
        return chat_id in self.joined(sid)

    async def evict(self, user_id, chat_id):
        return []

    async def join_user(self, sid, user_id):
        pass


@pytest.fixture
async def services(tmp_path):
    store = await open_store(f"sqlite:///{tmp_path}/chat.db")
    clock = FakeClock(start=1_800_000_000.0)
    services = Services(store=store, presence=LocalPresence(), verifier=None,
                        rooms=RecordingRooms(), users=UserDirectory(store, clock),
                        settings=None, clock=clock)
    yield services
    await store.close()


async def person(services: Services, name: str, sid: str) -> Context:
    user = await services.users.ensure(User(str(uuid.uuid4()), name, None))
    return Context(services, user, sid, "web")


async def test_create_message_stores_at_the_clocks_time_and_broadcasts_to_the_room(services):
    ann = await person(services, "Ann", "sid-ann")
    bob = await person(services, "Bob", "sid-bob")
    joined = await rooms.join_room(ann, decode(dto.JoinRoom, {"otherUserId": bob.user.id}))
    chat_id = joined.chat_header_id
    services.clock.advance(60)
    reply = await messages.create_message(ann, decode(dto.CreateMessage, {
        "chatHeaderId": chat_id, "message": "hello", "clientMessageId": "c-1"}))
    message = reply["chatMessage"]
    assert message["message"] == "hello" and message["userId"] == ann.user.id
    at = datetime.fromtimestamp(services.clock.time(), timezone.utc)
    assert message["creationTime"] == at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    broadcasts = [s for s in services.rooms.sent if s[2] == "message"]
    assert broadcasts == [("chat", chat_id, "message", reply, None)]
    # A resend with the same clientMessageId answers the same and broadcasts nothing.
    again = await messages.create_message(ann, decode(dto.CreateMessage, {
        "chatHeaderId": chat_id, "message": "hello", "clientMessageId": "c-1"}))
    assert again.chat_message.id == message["id"]
    assert len([s for s in services.rooms.sent if s[2] == "message"]) == 1
    page = await messages.find_all_messages(bob, decode(dto.FindAllMessages, {
        "chatHeaderId": chat_id}))
    assert page.total_count == 1


async def test_only_members_read_a_chat(services):
    ann = await person(services, "Ann", "sid-ann")
    bob = await person(services, "Bob", "sid-bob")
    eve = await person(services, "Eve", "sid-eve")
    chat = await chats.individual_chat(ann, bob.user.id)
    with pytest.raises(Forbidden):
        await messages.find_all_messages(eve, decode(dto.FindAllMessages, {
            "chatHeaderId": chat.id}))
