"""Connection state recovery: the chat rooms a socket was in, under the pid its
CONNECT reply carried, so that a reconnect within the recovery window, on any node,
gets them back."""

STATEMENTS = [
    # chat_ids: the joined chats, comma-separated. expires_ms: NULL while the socket
    # is connected (or its node died with it); set when it disconnects.
    """CREATE TABLE recovery_sessions (
        pid CHAR(32) NOT NULL PRIMARY KEY,
        user_id CHAR(36) NOT NULL,
        chat_ids {text} NOT NULL,
        update_ms BIGINT NOT NULL,
        expires_ms BIGINT
    ) {table_options}""",
    "CREATE INDEX ix_recovery_sessions_expires ON recovery_sessions (expires_ms)",
    "CREATE INDEX ix_recovery_sessions_update ON recovery_sessions (update_ms)",
]
