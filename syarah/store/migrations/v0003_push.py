"""Push notifications: registered devices and the durable outbox."""

STATEMENTS = [
    # FCM registration tokens are about 160 characters today; 512 leaves room for
    # growth and still fits an InnoDB utf8mb4 key (2048 of 3072 bytes).
    # A token names one app install, so it is the key: registering it again, by
    # whichever user is now signed in on that phone, moves it.
    """CREATE TABLE push_devices (
        token VARCHAR(512) NOT NULL PRIMARY KEY,
        user_id CHAR(36) NOT NULL,
        platform VARCHAR(20) NOT NULL,
        creation_ms BIGINT NOT NULL,
        update_ms BIGINT NOT NULL,
        CONSTRAINT fk_push_devices_user FOREIGN KEY (user_id) REFERENCES users (id)
    ) {table_options}""",
    "CREATE INDEX ix_push_devices_user ON push_devices (user_id)",

    # One row per (message, device), written in the message's transaction. A sent row
    # is deleted; status 2 (failed) rows stay for inspection. claim_id/claimed_until_ms
    # are the lease that keeps two nodes from sending one row: no foreign key to
    # messages, so deleting a message never waits on the outbox, and the worker can
    # count the rows it drops for that reason.
    """CREATE TABLE push_outbox (
        id {pk},
        message_id BIGINT NOT NULL,
        chat_header_id BIGINT NOT NULL,
        user_id CHAR(36) NOT NULL,
        token VARCHAR(512) NOT NULL,
        status INT NOT NULL DEFAULT 0,
        attempts INT NOT NULL DEFAULT 0,
        due_ms BIGINT NOT NULL,
        claim_id VARCHAR(64) NULL,
        claimed_until_ms BIGINT NULL,
        last_error VARCHAR(500) NULL,
        creation_ms BIGINT NOT NULL
    ) {table_options}""",
    "CREATE INDEX ix_push_outbox_due ON push_outbox (status, due_ms)",
    "CREATE INDEX ix_push_outbox_claim ON push_outbox (claim_id)",
    "CREATE INDEX ix_push_outbox_token ON push_outbox (token)",
]
