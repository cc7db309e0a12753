"""The missed-message sync of findAllChatHeaders: edits and deletions made while a
client was away, found by index ranges however long the chat."""

STATEMENTS = [
    # Edits of one chat since a moment: a range of this index. Never-edited messages
    # (NULL) sort first and are never in such a range.
    "CREATE INDEX ix_messages_edited ON messages (chat_header_id, last_modification_ms)",

    # A deleted message leaves this record behind, written in the deleting
    # transaction, so that a client holding the message learns it is gone. Kept for
    # deleted_message_retention_days, then pruned. creation_ms is the message's own:
    # a client whose last message was deleted is still synced from that moment.
    """CREATE TABLE deleted_messages (
        message_id BIGINT NOT NULL PRIMARY KEY,
        chat_header_id BIGINT NOT NULL,
        creation_ms BIGINT NOT NULL,
        deletion_ms BIGINT NOT NULL,
        CONSTRAINT fk_deleted_messages_chat FOREIGN KEY (chat_header_id)
            REFERENCES chat_headers (id) ON DELETE CASCADE
    ) {table_options}""",
    # The sync: one chat's deletions since a moment, in order, from the index alone.
    "CREATE INDEX ix_deleted_messages_chat ON deleted_messages"
    " (chat_header_id, deletion_ms, message_id)",
    # The pruning: the oldest records of every chat.
    "CREATE INDEX ix_deleted_messages_time ON deleted_messages (deletion_ms)",
    # The newest deletion time whose records were pruned from this chat (NULL: none
    # ever): a client synced from before it may have missed deletions and must
    # reload the chat.
    "ALTER TABLE chat_headers ADD COLUMN deletions_pruned_ms BIGINT NULL",
]
