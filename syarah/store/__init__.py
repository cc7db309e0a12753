"""All SQL lives below this package; nothing else knows a table name. The store
returns facts and the handlers decide: where a rule must hold inside a transaction,
the handler hands the store a function that decides on what the transaction read.

``DataStore`` gathers one store class per table group over one Database.
"""

from __future__ import annotations

from syarah.store.chats import ChatStore
from syarah.store.database import Database
from syarah.store.friendships import FriendshipStore
from syarah.store.messages import Duplicate, MessageStore, Refused
from syarah.store.migrations import SchemaOutOfDate, migrate, pending
from syarah.store.push import PushStore
from syarah.store.recovery import RecoveryStore
from syarah.store.sync import SyncStore
from syarah.store.uploads import UploadStore
from syarah.store.users import UserStore

__all__ = ["DataStore", "Database", "Duplicate", "Refused", "open_store"]


class DataStore(UserStore, ChatStore, MessageStore, FriendshipStore, PushStore,
                UploadStore, RecoveryStore, SyncStore):
    def __init__(self, db: Database):
        self.db = db

    async def close(self):
        await self.db.close()

    async def ping(self) -> bool:
        return await self.db.ping()


async def open_store(url: str, *, pool_size: int = 10, timeout: float = 5.0,
                     run_migrations: bool = True, ssl=None) -> DataStore:
    db = await Database.connect(url, pool_size=pool_size, timeout=timeout, ssl=ssl)
    if run_migrations:
        await migrate(db)
    else:
        missing = await pending(db)
        if missing:
            # Serving on an older schema fails on the first query; say so at start.
            await db.close()
            raise SchemaOutOfDate(
                f"the database lacks migration(s) {', '.join(missing)}: run "
                "syarah-migrate first, or start with --migrate-on-start=true")
    return DataStore(db)
