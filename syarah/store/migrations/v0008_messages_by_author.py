"""Who has written in which chat, read by index: presence goes to the partners of a
one-to-one chat only once the user has written there."""

STATEMENTS = [
    "CREATE INDEX ix_messages_author_chat ON messages (user_id, chat_header_id)",
]
