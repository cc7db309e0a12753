"""Users, chats, members, messages and friendships."""

STATEMENTS = [
    """CREATE TABLE users (
        id CHAR(36) NOT NULL PRIMARY KEY,
        name VARCHAR(255) NOT NULL,
        avatar VARCHAR(2048) NULL,
        creation_ms BIGINT NOT NULL,
        update_ms BIGINT NOT NULL
    ) {table_options}""",

    # user_low/user_high are set only for an individual chat: their unique key is what
    # makes get-or-create of a pair's chat race-free. Both NULL for a group.
    # activity_ms = last message time, or creation time before the first message.
    """CREATE TABLE chat_headers (
        id {pk},
        is_group {bool} NOT NULL,
        name VARCHAR(255) NULL,
        avatar VARCHAR(2048) NULL,
        creator_id CHAR(36) NULL,
        user_low CHAR(36) NULL,
        user_high CHAR(36) NULL,
        creation_ms BIGINT NOT NULL,
        last_message_id BIGINT NULL,
        last_message_ms BIGINT NULL,
        activity_ms BIGINT NOT NULL,
        message_count BIGINT NOT NULL DEFAULT 0,
        CONSTRAINT uq_chat_headers_pair UNIQUE (user_low, user_high)
    ) {table_options}""",

    """CREATE TABLE chat_members (
        chat_header_id BIGINT NOT NULL,
        user_id CHAR(36) NOT NULL,
        joined_ms BIGINT NOT NULL,
        last_read_message_id BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (chat_header_id, user_id),
        CONSTRAINT fk_chat_members_chat FOREIGN KEY (chat_header_id)
            REFERENCES chat_headers (id) ON DELETE CASCADE,
        CONSTRAINT fk_chat_members_user FOREIGN KEY (user_id) REFERENCES users (id)
    ) {table_options}""",
    "CREATE INDEX ix_chat_members_user ON chat_members (user_id, chat_header_id)",

    """CREATE TABLE messages (
        id {pk},
        chat_header_id BIGINT NOT NULL,
        user_id CHAR(36) NOT NULL,
        message {text} NOT NULL,
        message_type INT NOT NULL,
        caption {text} NULL,
        client_message_id VARCHAR(64) NULL,
        creation_ms BIGINT NOT NULL,
        last_modification_ms BIGINT NULL,
        CONSTRAINT fk_messages_chat FOREIGN KEY (chat_header_id)
            REFERENCES chat_headers (id) ON DELETE CASCADE,
        CONSTRAINT fk_messages_user FOREIGN KEY (user_id) REFERENCES users (id)
    ) {table_options}""",
    # History pages walk this index backwards from a message id (keyset paging).
    "CREATE INDEX ix_messages_chat ON messages (chat_header_id, id)",
    # clientMessageId idempotency: one message per (author, client id).
    "CREATE UNIQUE INDEX uq_messages_client ON messages (user_id, client_message_id)",

    # One row per direction, so "my friends" is a primary-key range either way.
    """CREATE TABLE friendships (
        user_id CHAR(36) NOT NULL,
        other_user_id CHAR(36) NOT NULL,
        status INT NOT NULL,
        requested_by CHAR(36) NOT NULL,
        blocked_by CHAR(36) NULL,
        creation_ms BIGINT NOT NULL,
        update_ms BIGINT NOT NULL,
        PRIMARY KEY (user_id, other_user_id)
    ) {table_options}""",
]
