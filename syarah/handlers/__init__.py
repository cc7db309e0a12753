"""What each command does: one module per area, transport-neutral, no SQL.
``routes`` holds the table of Socket.IO events."""
