"""The AsyncAPI 3.0 document of the Socket.IO protocol.

Payloads come from the inbound DTOs of the route table (syarah.handlers.routes) and the outbound
dataclasses; what the schemas cannot say (what an event does, who hears a broadcast)
is written here, one entry per event. An event of the table without an entry here is
left out of the document, which the tests catch.
"""

from __future__ import annotations

from syarah import __version__
from syarah.docs.schemas import Registry
from syarah.errors import ChatError
from syarah.handlers.routes import EVENTS
from syarah.protocol import outbound

REF = "#/components/schemas/"
CHANNEL = {"$ref": "#/channels/chat"}


def error_codes() -> list[str]:
    codes, todo = set(), [ChatError]
    while todo:
        cls = todo.pop()
        codes.add(cls.code)
        todo += cls.__subclasses__()
    return sorted(codes)


def _object(**properties) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


INTEGER = {"type": "integer"}


def _replies(r: Registry) -> dict:
    """The success ack of each client event (the error ack is shared)."""
    return {
        "createMessage": r.ref(outbound.MessageReply),
        "findAllMessages": r.page("ChatMessagePage", outbound.ChatMessage),
        "updateMessage": r.ref(outbound.MessageReply),
        "removeMessage": _object(chatHeaderId=INTEGER,
                                 deletedIds={"type": "array", "items": INTEGER}),
        "readMessage": _object(chatHeaderId=INTEGER,
                               lastReadMessageId={"type": ["integer", "null"]}),
        "findAllChatHeaders": r.page("ChatHeaderPage", outbound.ChatHeader),
        "getMyChats": {"type": "array", "items": r.ref(outbound.MyChat)},
        "joinRoom": r.ref(outbound.JoinRoomReply),
        "leaveRoom": _object(chatHeaderId=INTEGER, left={"const": True}),
        "roomTyping": _object(ok={"const": True}),
        "getMyFriendships": {"type": "array", "items": r.ref(outbound.Friendship)},
    }


# What each client event does, in the API document's words where it has them.
CLIENT_EVENTS = {
    "createMessage": (
        "Send a message to a chat",
        "Stores the message and sends `message` to every socket in the chat's room, "
        "the sender's included; members who are not viewing the chat get a push. "
        "For messageType 1-4, `message` is the path that `POST /api/chat/uploadFile` "
        "returned; a `message` that is not an upload path at all is stored as text "
        "(messageType 0). The same `clientMessageId` sent twice returns the first "
        "message. FORBIDDEN in a blocked individual chat."),
    "findAllMessages": (
        "Read a chat's messages, newest first",
        "With `lastMessageId`, only messages older than it; `skipCount` after that "
        "(at most 10000: page with `lastMessageId`). `totalCount` counts every "
        "visible message of the chat."),
    "updateMessage": (
        "Edit one of your messages",
        "Only the author may edit. Sends `messageUpdated` to the chat's room."),
    "removeMessage": (
        "Delete one or several of your messages",
        "`ids` wins over `id`; at most 100, all or nothing, only your own. Sends "
        "`messageDeleted` once per id to the chat's room."),
    "readMessage": (
        "Mark a chat as read",
        "Moves your last read message to the chat's newest and sends "
        "`messageHasBeenRead` with the chatHeaderId to the chat's room."),
    "findAllChatHeaders": (
        "List your chats, group and individual, most recent activity first",
        "For each room named in `RoomsWithLastMessageIds`, the header also carries "
        "what a client holding the room up to that `LastMessageId` missed (the sync "
        "after a reconnect): `newMessages`, the messages after it, oldest first; "
        "`updatedMessages`, the messages up to it edited since it was written (its "
        "creation time, less a second for clocks), as they are now; "
        "`deletedMessageIds`, the ids up to it deleted since. Each holds at most 200, "
        "with `hasMoreNewMessages` / `hasMoreUpdatedMessages` / "
        "`hasMoreDeletedMessageIds` true when more were left out. Deletions are "
        "remembered for `deleted_message_retention_days` (30): "
        "`hasMoreDeletedMessageIds` is also true when deletions the client may have "
        "missed are older than that. On `hasMoreNewMessages`, sync again from the last "
        "message received; on either other flag, reload the room's history."),
    "getMyChats": (
        "List your individual chats, most recent first",
        "With the other user's name, avatar and presence, the last message, the "
        "unread count and the friendship status (0 Pending, 1 Accepted, 2 Rejected, "
        "3 Blocked, null none)."),
    "joinRoom": (
        "Open a chat: join its room and view it",
        "Give `chatHeaderId`, or `otherUserId` to get or create the individual chat "
        "with that user. While joined you get the room's events and no push for it. "
        "Sends `onMemberJoin` to the others in the room. `socketId` is ignored."),
    "leaveRoom": (
        "Stop viewing a chat",
        "Leaves the chat's room; pushes for it resume."),
    "roomTyping": (
        "Say that you are typing",
        "Relayed as `typing` to the chat's room, the sender excluded; only for a "
        "socket that has joined that room."),
    "getMyFriendships": (
        "List your accepted friends with their presence",
        "`chatHeaderId` is null when you have no chat with that friend yet; "
        "`joinRoom` with `otherUserId` creates it."),
}

# Events the server emits, with who hears them.
SERVER_EVENTS = {
    "message": ("A new message in a chat whose room you joined",
                lambda r: r.ref(outbound.MessageReply)),
    "typing": ("Someone in a joined chat started or stopped typing",
               lambda r: r.ref(outbound.Typing)),
    "messageUpdated": ("A message in a joined chat was edited (the ChatMessage)",
                       lambda r: r.ref(outbound.ChatMessage)),
    "messageDeleted": ("A message in a joined chat was deleted: its id, one event per "
                       "deleted message", lambda r: INTEGER),
    "messageHasBeenRead": ("Someone read a joined chat: its chatHeaderId",
                           lambda r: INTEGER),
    "onMemberJoin": ("Someone joined the room of a chat you joined, or was added to "
                     "a group", lambda r: r.ref(outbound.MemberJoined)),
    "clientStatus": ("A user who knows you (a friend, or the partner of a one-to-one "
                     "chat you both wrote in) came online or went offline",
                     lambda r: r.ref(outbound.ClientStatus)),
    "exception": ("The error reply of an event that was sent without an ack callback, "
                  "with the event's name", lambda r: _error_schema(event=True)),
}


def _error_schema(event: bool = False) -> dict:
    schema = _object(
        error={"type": "string", "description": "A sentence a person can read."},
        code={"type": "string", "enum": error_codes()})
    if event:
        schema["properties"]["event"] = {"type": "string",
                                         "description": "The event that failed."}
        schema["required"].append("event")
    else:
        schema["description"] = "The reply of any event that failed."
    return schema


def _connection_query() -> dict:
    return {
        "type": "object",
        "properties": {
            "userId": {"type": "string", "format": "uuid",
                       "description": "Your user id. Required unless the connection "
                                      "carries an access token (whose subject it must "
                                      "equal when both are given)."},
            "clientType": {"type": "string", "maxLength": 40, "default": "unknown",
                           "description": "web, android, ios, ...; echoed in "
                                          "clientStatus."},
            "accessToken": {"type": "string",
                            "description": "The access token, when it cannot go in "
                                           "`auth`."},
        },
    }


def _connection_auth() -> dict:
    return {
        "type": "object",
        "description": "The Socket.IO CONNECT packet's auth object "
                       "(`io(url, {auth: {accessToken}})`).",
        "properties": {
            "accessToken": {"type": "string", "description": "The access token (JWT)."},
            "token": {"type": "string", "description": "Alias of `accessToken`."},
            "AccessToken": {"type": "string", "description": "Alias of `accessToken`."},
            "pid": {"type": "string",
                    "description": "Sent by socket.io-client 4.6+ by itself on a "
                                   "reconnect: the rooms of the previous socket come "
                                   "back."},
        },
    }


DESCRIPTION = """\
Real-time chat over Socket.IO v4 (Engine.IO 4), namespace `/`, path `/socket.io/`,
transports `websocket` and `polling`.

Connect with the query `userId` (GUID) and `clientType`, and the access token in the
CONNECT packet's auth: `io(url, {query: {userId, clientType: 'web'}, auth:
{accessToken}})`. A refused connection gets `connect_error` whose message says why
and whose `data.code` is one of the error codes. Without a token a socket is accepted
(unless the server requires one) but every event needs its own `accessToken`, and the
socket hears nothing addressed to the user until one has proven it.

Every client event takes an optional ack callback: the success reply described for
the event, or the Error object `{error, code}`. Sent without a callback, a failed
event's Error comes back as the `exception` event instead. Numeric ids may be sent as
numbers or numeric strings; times are ISO 8601 UTC with milliseconds.

Every event has a per-user rate limit (`rate_<event>_user` in the server's settings),
far above what a person does; beyond it the event answers `RATE_LIMITED`, saying
when to try again.
"""


def document() -> dict:
    r = Registry(REF)
    replies = _replies(r)
    messages, operations = {}, {}
    for event, route in EVENTS.items():
        if event not in CLIENT_EVENTS:
            continue
        summary, description = CLIENT_EVENTS[event]
        messages[event] = {
            "name": event, "title": event, "summary": summary,
            "payload": r.ref(route.dto)}
        messages[event + "Ack"] = {
            "name": event, "title": f"{event} ack", "summary": f"The ack of {event}.",
            "payload": replies[event]}
        operations[event] = {
            "action": "receive", "channel": CHANNEL,
            "title": event, "summary": summary, "description": description,
            "messages": [{"$ref": f"#/channels/chat/messages/{event}"}],
            "reply": {"channel": CHANNEL, "messages": [
                {"$ref": f"#/channels/chat/messages/{event}Ack"},
                {"$ref": "#/channels/chat/messages/errorAck"}]},
        }
    r.add("Error", _error_schema())
    messages["errorAck"] = {"name": "error", "title": "Error ack",
                            "summary": "The ack of any event that failed.",
                            "payload": {"$ref": REF + "Error"}}
    for event, (summary, payload) in SERVER_EVENTS.items():
        messages[event] = {"name": event, "title": event, "summary": summary,
                           "payload": payload(r)}
        operations["on_" + event] = {
            "action": "send", "channel": CHANNEL, "title": event, "summary": summary,
            "messages": [{"$ref": f"#/channels/chat/messages/{event}"}]}
    r.add("ConnectionQuery", _connection_query())
    r.add("ConnectionAuth", _connection_auth())
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Syarah Chat (Socket.IO)", "version": __version__,
                 "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:3005", "protocol": "ws", "pathname": "/socket.io/",
                "description": "Socket.IO v4 over WebSocket (or HTTP long-polling).",
                "security": [{"$ref": "#/components/securitySchemes/accessToken"},
                             {"$ref": "#/components/securitySchemes/bearer"}],
            },
        },
        "channels": {
            "chat": {
                "address": "/",
                "title": "The default namespace",
                "description": "Every event of a connection. Each socket is in its "
                               "user's personal room and in the room of each chat it "
                               "joined; broadcasts go to those rooms.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"}
                             for name in messages},
                "bindings": {"ws": {"query": {"$ref": REF + "ConnectionQuery"}}},
            },
        },
        "operations": operations,
        "components": {
            "schemas": r.schemas,
            "messages": messages,
            "securitySchemes": {
                "accessToken": {
                    "type": "httpApiKey", "in": "query", "name": "accessToken",
                    "description": "The access token (JWT). Socket.IO clients send it "
                                   "in the CONNECT packet's auth "
                                   "(components/schemas/ConnectionAuth); the query "
                                   "parameter of this name works too."},
                "bearer": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "The access token as Authorization: Bearer on the "
                                   "handshake, where the client can set headers."},
            },
        },
    }
