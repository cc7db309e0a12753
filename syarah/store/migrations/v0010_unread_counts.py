"""Each member's unread count, kept up to date by every write that changes it, so
that listing a user's chats reads it instead of counting messages: messages from
others after the member's read marker. Filled here from the messages stored."""

STATEMENTS = [
    "ALTER TABLE chat_members ADD COLUMN unread_count INT NOT NULL DEFAULT 0",
    # The marker is read per row, so each member's count walks its chat's index
    # once: a migration's cost, paid once.
    "UPDATE chat_members SET unread_count = (SELECT COUNT(*) FROM messages m"
    " WHERE m.chat_header_id = chat_members.chat_header_id"
    " AND m.id > chat_members.last_read_message_id"
    " AND m.user_id <> chat_members.user_id)",
]
