"""The command table: every Socket.IO event as clients send it, the DTO its payload
decodes into, the handler that performs it, and the policy the transport applies
before calling it. A handler returns an outbound object (the ack) or raises a
ChatError.
"""

from __future__ import annotations

from typing import NamedTuple

from syarah.handlers import chats, friendships, messages, rooms
from syarah.protocol import inbound as dto


class Policy(NamedTuple):
    # Also counted against the socket's cap on joined chat rooms.
    room_cap: bool = False
    # Changes the socket's rooms: its recovery session is written after it.
    saves_rooms: bool = False
    # Answered UNAVAILABLE, not performed, once its client has been ahead of the
    # server for busy_after_ms: past its ceiling a node catches up by answering at
    # once what it could only answer late, and the client can send it again.
    sheds: bool = False


class Route(NamedTuple):
    dto: type
    handler: object
    policy: Policy = Policy()


JOINS_ROOM = Policy(room_cap=True, saves_rooms=True)
LEAVES_ROOM = Policy(saves_rooms=True)
SHEDS = Policy(sheds=True)

# Every event needs a caller proven by a token (the event's own, else the
# connection's) and has a per-user rate limit named after the event.
EVENTS: dict[str, Route] = {
    "createMessage":      Route(dto.CreateMessage,      messages.create_message, SHEDS),
    "findAllMessages":    Route(dto.FindAllMessages,    messages.find_all_messages),
    "updateMessage":      Route(dto.UpdateMessage,      messages.update_message),
    "removeMessage":      Route(dto.RemoveMessage,      messages.remove_message),
    "readMessage":        Route(dto.ReadMessage,        messages.read_message),
    "findAllChatHeaders": Route(dto.FindAllChatHeaders, chats.find_all_chat_headers),
    "getMyChats":         Route(dto.GetMyChats,         chats.get_my_chats),
    "joinRoom":           Route(dto.JoinRoom,           rooms.join_room, JOINS_ROOM),
    "leaveRoom":          Route(dto.LeaveRoom,          rooms.leave_room, LEAVES_ROOM),
    "roomTyping":         Route(dto.RoomTyping,         rooms.room_typing),
    "getMyFriendships":   Route(dto.GetMyFriendships,   friendships.get_my_friendships),
}
