"""Uploaded media: who uploaded what and when, and whether a message uses it, so that
files no message ever used can be removed."""

STATEMENTS = [
    # path is exactly what uploadFile returned (ASCII, at most ~80 characters).
    # used_ms stays NULL until a message refers to the file.
    """CREATE TABLE uploads (
        path VARCHAR(255) NOT NULL PRIMARY KEY,
        user_id CHAR(36) NOT NULL,
        message_type INT NOT NULL,
        size BIGINT NOT NULL,
        creation_ms BIGINT NOT NULL,
        used_ms BIGINT NULL
    ) {table_options}""",
    # The orphan sweep: unused uploads, oldest first.
    "CREATE INDEX ix_uploads_unused ON uploads (used_ms, creation_ms)",
]
