"""One dataclass per client event, with the API document's field names and aliases.

``decode(EventClass, payload)`` builds one from the raw payload or raises Validation.
"""

from __future__ import annotations

from dataclasses import dataclass

from syarah.protocol.fields import (
    Bool, Guid, GuidList, Id, IdList, Int, ListOf, Object, Text, Token, decode, wire,
)

# Sizes a chat client never needs to exceed; anything larger is a mistake or an attack.
MAX_TEXT = 10_000
MAX_CAPTION = 2_000
MAX_CLIENT_MESSAGE_ID = 64
MAX_NAME = 100
PAGE_DEFAULT_MESSAGES = 50
PAGE_DEFAULT_HEADERS = 50
PAGE_MAX = 200
MAX_DELETE_IDS = 100
# A client syncs every room it holds after a reconnect, and a busy user holds
# thousands; at ~50 bytes an entry, 5 000 is what fits the 256 KiB Socket.IO packet.
# Only the entries of rooms on the returned page are used, in one query.
MAX_SYNC_ROOMS = 5_000
# An OFFSET makes the store read and drop every skipped row: deep pages go by
# lastMessageId, which an index answers at any depth.
MAX_SKIP = 10_000
SKIP_MESSAGES_BEYOND = ("To read further back, page with lastMessageId (the oldest "
                        "message you have) and skipCount 0.")

TOKEN = ("accessToken", "AccessToken")


def token_field():
    return wire(Token(), *TOKEN)


@dataclass
class CreateMessage:
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    message: str = wire(Text(MAX_TEXT, min_len=1), "message", "Message", required=True)
    message_type: int = wire(Int(0, 4), "messageType", "MessageType", default=0)
    caption: str | None = wire(Text(MAX_CAPTION), "caption", "Caption")
    client_message_id: str | None = wire(
        Text(MAX_CLIENT_MESSAGE_ID, min_len=1), "clientMessageId", "ClientMessageId")
    access_token: str | None = token_field()


@dataclass
class FindAllMessages:
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    last_message_id: int | None = wire(Id(), "lastMessageId", "LastMessageId")
    skip_count: int = wire(Int(0, MAX_SKIP, beyond=SKIP_MESSAGES_BEYOND),
                           "skipCount", "SkipCount", default=0)
    max_result_count: int = wire(
        Int(1, PAGE_MAX, clamp_hi=True), "maxResultCount", "MaxResultCount",
        default=PAGE_DEFAULT_MESSAGES)
    access_token: str | None = token_field()


@dataclass
class RoomLastMessage:
    chat_header_id: int = wire(Id(), "ChatHeaderId", "chatHeaderId", required=True)
    last_message_id: int = wire(Int(0, 2**53 - 1), "LastMessageId", "lastMessageId",
                                default=0)


@dataclass
class FindAllChatHeaders:
    user_id: str | None = wire(Guid(), "UserId", "userId")
    rooms_with_last_message_ids: list | None = wire(
        ListOf(Object(RoomLastMessage), MAX_SYNC_ROOMS),
        "RoomsWithLastMessageIds", "roomsWithLastMessageIds")
    skip_count: int = wire(Int(0, MAX_SKIP), "SkipCount", "skipCount", default=0)
    max_result_count: int = wire(
        Int(1, PAGE_MAX, clamp_hi=True), "MaxResultCount", "maxResultCount",
        default=PAGE_DEFAULT_HEADERS)
    access_token: str | None = token_field()


@dataclass
class JoinRoom:
    chat_header_id: int | None = wire(Id(), "chatHeaderId", "ChatHeaderId")
    other_user_id: str | None = wire(Guid(), "otherUserId", "OtherUserId")
    user_id: str | None = wire(Guid(), "userId", "UserId")
    # Accepted for compatibility and ignored: the server knows the socket.
    socket_id: str | None = wire(Text(200), "socketId", "SocketId")
    access_token: str | None = token_field()


@dataclass
class LeaveRoom:
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    access_token: str | None = token_field()


@dataclass
class RoomTyping:
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    is_typing: bool = wire(Bool(), "isTyping", "IsTyping", default=True)
    name: str | None = wire(Text(MAX_NAME), "name", "Name")
    access_token: str | None = token_field()


@dataclass
class UpdateMessage:
    id: int = wire(Id(), "id", "Id", required=True)
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    message: str = wire(Text(MAX_TEXT, min_len=1), "message", "Message", required=True)
    caption: str | None = wire(Text(MAX_CAPTION), "caption", "Caption")
    access_token: str | None = token_field()


@dataclass
class RemoveMessage:
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    id: int | None = wire(Id(), "id", "Id")
    # Clients send `ids: []` beside a single `id`; empty then means "not given".
    ids: list | None = wire(IdList(MAX_DELETE_IDS, allow_empty=True), "ids", "Ids")
    access_token: str | None = token_field()

    @property
    def target_ids(self) -> list[int]:
        # The document: "If both are provided, ids takes precedence."
        if self.ids:
            return self.ids
        return [self.id] if self.id is not None else []


@dataclass
class ReadMessage:
    chat_header_id: int = wire(Id(), "chatHeaderId", "ChatHeaderId", required=True)
    access_token: str | None = token_field()


@dataclass
class GetMyFriendships:
    access_token: str | None = token_field()


@dataclass
class GetMyChats:
    access_token: str | None = token_field()


# REST bodies share the same decoding and the same error messages.

@dataclass
class FriendRequest:
    user_id: str = wire(Guid(), "userId", "UserId", required=True)


@dataclass
class CreateGroup:
    name: str = wire(Text(MAX_NAME, min_len=1), "name", "Name", required=True)
    member_ids: list = wire(GuidList(500), "memberIds", "MemberIds", default=None)
    avatar: str | None = wire(Text(2048), "avatar", "Avatar")


@dataclass
class AddGroupMembers:
    user_ids: list = wire(GuidList(500), "userIds", "UserIds", required=True)


@dataclass
class AdminUser:
    name: str = wire(Text(MAX_NAME * 2, min_len=1), "name", "Name", required=True)
    avatar: str | None = wire(Text(2048), "avatar", "Avatar")


@dataclass
class RegisterDevice:
    # FCM registration tokens are ~160 characters; the column holds 512.
    token: str = wire(Text(512, min_len=1), "token", "Token", required=True)
    platform: str = wire(Text(20, min_len=1), "platform", "Platform", default="unknown")


__all__ = [name for name in dir() if name[0].isupper()] + ["decode"]
