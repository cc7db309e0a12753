"""Domain records as the store hands them to the handlers. Times are integer
milliseconds since the epoch (UTC), the one form both engines store and sort alike."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple


class MessageType(IntEnum):
    TEXT = 0
    AUDIO = 1
    IMAGE = 2
    FILE = 3
    VIDEO = 4


class FriendshipStatus(IntEnum):
    PENDING = 0
    ACCEPTED = 1
    REJECTED = 2
    BLOCKED = 3


@dataclass(frozen=True)
class User:
    id: str
    name: str
    avatar: str | None = None


@dataclass
class Message:
    id: int
    chat_header_id: int
    user_id: str
    message: str
    message_type: int
    caption: str | None
    creation_ms: int
    last_modification_ms: int | None
    client_message_id: str | None
    # The author, joined in by the store so a message never needs a second lookup.
    author: User | None = None


@dataclass
class Chat:
    id: int
    is_group: bool
    name: str | None
    avatar: str | None
    creator_id: str | None
    creation_ms: int
    last_message_id: int | None
    last_message_ms: int | None
    # For an individual chat: the two users, lower id first.
    user_low: str | None = None
    user_high: str | None = None

    def other_user(self, user_id: str) -> str | None:
        if self.is_group:
            return None
        return self.user_high if self.user_low == user_id else self.user_low


@dataclass
class Member:
    chat_header_id: int
    user: User
    last_read_message_id: int


@dataclass
class Friend:
    user: User
    status: int
    requested_by: str
    chat_header_id: int | None = None


@dataclass(frozen=True)
class FriendshipRow:
    """A pair's friendship as one side's row holds it (both rows carry the same)."""

    status: int
    requested_by: str | None
    blocked_by: str | None = None


@dataclass
class ChatSummary:
    """A chat as a user's chat list shows it: the chat, its last message, the caller's
    unread count, and (individual chats) the other user and the friendship status."""

    chat: Chat
    last_message: Message | None
    unread_count: int
    other_user: User | None = None
    friendship_status: int | None = None


class MyChatEntry(NamedTuple):
    """An individual chat as a user's chat list (getMyChats) shows it: the other user,
    the last message's text and type, the friendship status and the unread count. A
    tuple, as one user's list holds thousands."""

    chat_header_id: int
    creation_ms: int
    last_message_ms: int | None
    last_message: str | None
    last_message_type: int | None
    user_id: str | None
    user_name: str | None
    user_avatar: str | None
    friendship_status: int | None
    unread_count: int


@dataclass
class ChatSync:
    """What a client that holds a chat's history up to some message has missed: each
    list bounded, with a flag when more were left out."""

    new_messages: list[Message]
    more_new_messages: bool
    updated_messages: list[Message]
    more_updated_messages: bool
    deleted_message_ids: list[int]
    # Also true when deletions the client may not know of were pruned.
    more_deleted_message_ids: bool


@dataclass
class PushJob:
    """An outbox row claimed for sending, with what deciding and sending it needs."""

    id: int
    token: str
    user_id: str
    chat_header_id: int
    message_id: int
    attempts: int
    # None when the device was removed or now belongs to another user.
    platform: str | None
    device_user_id: str | None
    # None when the message was deleted.
    message: Message | None
    chat_is_group: bool
    chat_name: str | None
    # None when the user is no longer a member of the chat.
    last_read_message_id: int | None
    # The user's unread messages over all chats: the app icon badge.
    unread_count: int


@dataclass(frozen=True)
class RecoverySession:
    pid: str
    user_id: str
    chat_ids: list[int]
    update_ms: int
    # None while its socket is connected (or its node died with it).
    expires_ms: int | None
