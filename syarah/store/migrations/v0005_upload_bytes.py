"""Bytes each user uploaded per UTC day, so that the daily upload quota holds across
restarts and on every node."""

STATEMENTS = [
    # day: days since 1970-01-01 (UTC).
    """CREATE TABLE upload_bytes (
        user_id CHAR(36) NOT NULL,
        day INT NOT NULL,
        bytes BIGINT NOT NULL,
        PRIMARY KEY (user_id, day)
    ) {table_options}""",
    # The sweep drops past days.
    "CREATE INDEX ix_upload_bytes_day ON upload_bytes (day)",
]
