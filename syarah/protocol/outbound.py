"""Objects the server sends, and the one serialiser that writes them.

Dataclass fields are snake_case; ``to_wire`` writes them in the document's camelCase,
times as ISO 8601 UTC with milliseconds and ``Z``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from syarah import types


_EPOCH = datetime(1970, 1, 1)


def iso_time(ms: int | None) -> str | None:
    if ms is None:
        return None
    # Whole milliseconds added to a naive epoch: exact, and twice as fast as going
    # through a float timestamp and strftime (a chat list writes two per chat).
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


class Time(int):
    """Milliseconds that are written as an ISO time on the wire."""


@dataclass
class UserRef:
    id: str
    name: str
    avatar: str | None


@dataclass
class ChatMessage:
    id: int
    chat_header_id: int
    user_id: str
    message: str
    message_type: int
    caption: str | None
    creation_time: Time
    last_modification_time: Time | None
    client_message_id: str | None
    user: UserRef

    @classmethod
    def of(cls, m: types.Message) -> "ChatMessage":
        author = m.author or types.User(m.user_id, "", None)
        return cls(
            id=m.id, chat_header_id=m.chat_header_id, user_id=m.user_id,
            message=m.message, message_type=m.message_type, caption=m.caption,
            creation_time=Time(m.creation_ms),
            last_modification_time=(Time(m.last_modification_ms)
                                    if m.last_modification_ms is not None else None),
            client_message_id=m.client_message_id,
            user=UserRef(author.id, author.name, author.avatar),
        )


@dataclass
class Member:
    user_id: str
    name: str
    avatar: str | None
    is_online: bool
    last_read_message_id: int | None

    @classmethod
    def of(cls, m: types.Member, online: bool) -> "Member":
        return cls(m.user.id, m.user.name, m.user.avatar, online,
                   m.last_read_message_id or None)


@dataclass
class ChatHeader:
    id: int
    is_group: bool
    name: str | None
    avatar: str | None
    creation_time: Time
    last_message: ChatMessage | None
    last_message_time: Time | None
    unread_count: int
    members: list[Member]
    # Only present after a missed-message sync (RoomsWithLastMessageIds), each list
    # at most 200 long, oldest first, its hasMore... flag true when more were left
    # out: the messages after the client's last one; the messages up to it edited
    # since it was written; the ids up to it deleted since (that flag is also true
    # when records of such deletions were already pruned).
    new_messages: list[ChatMessage] | None = field(default=None)
    has_more_new_messages: bool | None = field(default=None)
    updated_messages: list[ChatMessage] | None = field(default=None)
    has_more_updated_messages: bool | None = field(default=None)
    deleted_message_ids: list[int] | None = field(default=None)
    has_more_deleted_message_ids: bool | None = field(default=None)


@dataclass
class MessageReply:
    chat_header_id: int
    chat_message: ChatMessage


@dataclass
class Page:
    items: list
    total_count: int


@dataclass
class Friendship:
    user_id: str
    name: str
    avatar: str | None
    is_online: bool
    chat_header_id: int | None


@dataclass
class MyChat:
    chat_header_id: int
    user_id: str | None
    user_name: str | None
    user_avatar: str | None
    last_message: str | None
    # Beside lastMessage, so that a media path is not shown as text (None: no message).
    last_message_type: int | None
    last_message_time: Time | None
    creation_time: Time
    is_online: bool
    unread_count: int
    friendship_status: int | None

    @staticmethod
    def wire(chat: types.MyChatEntry, is_online: bool) -> "Wire":
        """What ``to_wire`` writes for this chat's MyChat, written without the object
        in between: one user's list is a thousand of them, and the generic walk over
        the dataclass fields was most of the time spent building it."""
        return Wire(
            chatHeaderId=chat.chat_header_id, userId=chat.user_id, userName=chat.user_name,
            userAvatar=chat.user_avatar, lastMessage=chat.last_message,
            lastMessageType=chat.last_message_type,
            lastMessageTime=iso_time(chat.last_message_ms),
            creationTime=iso_time(chat.creation_ms), isOnline=is_online,
            unreadCount=chat.unread_count, friendshipStatus=chat.friendship_status)


@dataclass
class JoinRoomReply:
    chat_header_id: int
    joined: bool
    room_members: list[Member]
    current_member: Member | None
    members: list[Member]
    friendship_status: int | None
    chat_header: ChatHeader


@dataclass
class ClientStatus:
    user_id: str
    client_type: str
    active_now: bool


@dataclass
class Typing:
    name: str
    is_typing: bool
    chat_header_id: int
    user_id: str


@dataclass
class MemberJoined:
    chat_header_id: int
    member: Member


@dataclass
class FriendshipRecord:
    """A friendship as the REST API lists it, pending and blocked ones included."""

    user_id: str
    name: str
    avatar: str | None
    status: int
    requested_by: str
    is_online: bool
    chat_header_id: int | None


@dataclass
class MessagesDeleted:
    """removeMessage's ack."""

    chat_header_id: int
    deleted_ids: list[int]


@dataclass
class ReadMarker:
    """readMessage's ack: where the caller's read marker now is."""

    chat_header_id: int
    last_read_message_id: int | None


@dataclass
class RoomLeft:
    chat_header_id: int
    left: bool = True


@dataclass
class Ok:
    """The ack of an event that answers nothing but that it was done."""

    ok: bool = True


@dataclass
class FriendshipChanged:
    """A friendship action's answer: the pair's new status (None: no friendship)."""

    user_id: str
    status: int | None


@dataclass
class MemberRemoved:
    chat_header_id: int
    user_id: str
    removed: bool = True


@dataclass
class Device:
    token: str
    platform: str


@dataclass
class DeviceRemoved:
    token: str
    removed: bool = True


_NAMES: dict[type, list[tuple[str, str, bool]]] = {}

# Fields that the wire omits when empty rather than sending null.
_OMIT_WHEN_NONE = {"new_messages", "has_more_new_messages", "updated_messages",
                   "has_more_updated_messages", "deleted_message_ids",
                   "has_more_deleted_message_ids"}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.capitalize() for p in rest)


def _names(cls) -> list[tuple[str, str, bool]]:
    names = _NAMES.get(cls)
    if names is None:
        names = [(f.name, _camel(f.name), f.name in _OMIT_WHEN_NONE)
                 for f in dataclasses.fields(cls)]
        _NAMES[cls] = names
    return names


class Wire(dict):
    """An object already serialised: sent as it is, however often it is passed on (a
    new message goes out as the broadcast and as the ack)."""


# Types sent as they are. Checked first, by exact type (Time is an int that is not):
# most of what an object holds is one of them, and the checks below cost several
# times as much for each.
_PLAIN = frozenset((str, int, bool, float, type(None)))


def to_wire(value: Any) -> Any:
    """Serialise an outbound object (or a list / dict of them) to JSON-ready data."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, Wire):
        return value
    if isinstance(value, Time):
        return iso_time(int(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = Wire()
        for attr, key, omit in _names(type(value)):
            item = getattr(value, attr)
            if item is None and omit:
                continue
            out[key] = to_wire(item)
        return out
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value
