"""Column lists and row readers shared by the store modules, so that a SELECT and the
code reading its row can never disagree on column order."""

from __future__ import annotations

from syarah import types

CHAT_COLUMNS = ("ch.id, ch.is_group, ch.name, ch.avatar, ch.creator_id, ch.creation_ms, "
                "ch.last_message_id, ch.last_message_ms, ch.user_low, ch.user_high")
CHAT_WIDTH = 10

# A message with its author: LEFT JOIN users u ON u.id = m.user_id
MESSAGE_COLUMNS = ("m.id, m.chat_header_id, m.user_id, m.message, m.message_type, "
                   "m.caption, m.creation_ms, m.last_modification_ms, "
                   "m.client_message_id, u.name, u.avatar")
MESSAGE_WIDTH = 11
MESSAGE_SELECT = (f"SELECT {MESSAGE_COLUMNS} FROM messages m"
                  " LEFT JOIN users u ON u.id = m.user_id")


def in_list(values) -> str:
    return ", ".join("?" * len(values))


def chat(row) -> types.Chat:
    return types.Chat(
        id=row[0], is_group=bool(row[1]), name=row[2], avatar=row[3], creator_id=row[4],
        creation_ms=row[5], last_message_id=row[6], last_message_ms=row[7],
        user_low=row[8], user_high=row[9])


def message(row) -> types.Message | None:
    if row[0] is None:
        return None
    return types.Message(
        id=row[0], chat_header_id=row[1], user_id=row[2], message=row[3],
        message_type=row[4], caption=row[5], creation_ms=row[6],
        last_modification_ms=row[7], client_message_id=row[8],
        author=types.User(row[2], row[9] or "", row[10]))


def user(row) -> types.User | None:
    if row[0] is None:
        return None
    return types.User(row[0], row[1] or "", row[2])
