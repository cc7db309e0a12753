"""Tornado request handlers for the REST endpoints. Thin: they decode,
authenticate and call the same handler functions the socket events use."""
