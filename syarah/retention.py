"""Pruning the records of deleted messages once they are older than the retention.

The missed-message sync tells a client which of the messages it holds were deleted
while it was away, from these records; a client away longer than
``deleted_message_retention_days`` is told to reload the chat instead. Every node
prunes; a record pruned twice is simply gone.
"""

from __future__ import annotations

import logging

from syarah.clock import now_ms
from syarah.periodic import Periodic

log = logging.getLogger("syarah.retention")

DAY_MS = 86_400_000


class DeletionPruner:
    def __init__(self, settings, store):
        self.store = store
        self.retention_ms = int(settings.deleted_message_retention_days * DAY_MS)
        self._periodic = Periodic(settings.deleted_message_prune_interval, self.prune,
                                  "pruning deleted-message records")

    def start(self) -> None:
        if self.retention_ms > 0:
            self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def prune(self) -> int:
        """Drop the records older than the retention; returns how many."""
        dropped = await self.store.prune_deleted_messages(now_ms() - self.retention_ms)
        if dropped:
            log.info("pruned %d records of messages deleted over %g days ago", dropped,
                     self.retention_ms / DAY_MS)
        return dropped
