"""Uploads: the client's own file name (documents download under it), and how many
messages carry each upload, so that deleting the last of them frees the file."""

STATEMENTS = [
    # Sanitised for a header and cut to 255 characters; NULL for uploads made before.
    "ALTER TABLE uploads ADD COLUMN original_name VARCHAR(255) NULL",
    "ALTER TABLE uploads ADD COLUMN use_count INT NOT NULL DEFAULT 0",
    # A message carries only its sender's uploads of its own type (the handlers check
    # that), so counting needs no index on the message text: the author's messages of
    # that type are enough.
    """UPDATE uploads SET use_count = (
        SELECT COUNT(*) FROM messages m WHERE m.user_id = uploads.user_id
        AND m.message_type = uploads.message_type AND m.message = uploads.path)
     WHERE used_ms IS NOT NULL""",
    # Uploads of messages deleted before this release: the sweep takes them now.
    "UPDATE uploads SET used_ms = NULL WHERE used_ms IS NOT NULL AND use_count = 0",
]
