"""What each command does: one module per area, no SQL. ``dispatcher`` holds the table."""
