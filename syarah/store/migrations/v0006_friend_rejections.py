"""When a user last rejected another's friend request, so that the sender cannot ask
again at once. Kept apart from the friendship rows: deleting the friendship, or
blocking and unblocking, removes those rows and must not wipe the rejection."""

STATEMENTS = [
    # user_id asked and rejected_by said no.
    """CREATE TABLE friend_rejections (
        user_id CHAR(36) NOT NULL,
        rejected_by CHAR(36) NOT NULL,
        rejected_ms BIGINT NOT NULL,
        PRIMARY KEY (user_id, rejected_by)
    ) {table_options}""",
]
