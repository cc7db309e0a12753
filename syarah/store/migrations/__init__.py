"""Versioned schema migrations.

Each module ``vNNNN_name.py`` holds ``STATEMENTS``, a list of DDL strings using the
engine tokens ``{pk}``, ``{text}``, ``{bool}`` and ``{table_options}``. Versions are
applied in order, each recorded in ``schema_version``; a migration never changes once
it has shipped: a later one alters what it made.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time

log = logging.getLogger(__name__)


def available() -> list[tuple[int, str, list[str]]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("v"):
            continue
        version = int(info.name[1:5])
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append((version, info.name, module.STATEMENTS))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


# Several nodes may start at once on an empty database: one applies the migrations,
# the others wait for it this long (a migration of a large table takes minutes).
LOCK_NAME = "syarah_migrations"
LOCK_WAIT_SECONDS = 600


async def _version(txn) -> int:
    await txn.execute(txn.engine.ddl(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INT NOT NULL PRIMARY KEY,"
        " name VARCHAR(200) NOT NULL,"
        " applied_ms BIGINT NOT NULL) {table_options}"))
    row = await txn.fetchone("SELECT MAX(version) FROM schema_version")
    return row[0] or 0


async def current_version(db) -> int:
    return await db.run(_version)


class SchemaOutOfDate(ValueError):
    """The database lacks migrations and the server was told not to apply them."""


async def pending(db) -> list[str]:
    """Names of the migrations this code knows that the database has not had."""
    done = await current_version(db)
    return [name for version, name, _ in available() if version > done]


async def migrate(db) -> list[str]:
    """Apply every migration newer than the database. Returns the names applied."""
    async def apply_pending(txn):
        # Read under the lock: a process that waited for it finds the work done.
        done = await _version(txn)
        applied = []
        for version, name, statements in available():
            if version <= done:
                continue
            log.info("applying migration %s", name)
            for statement in statements:
                await txn.execute(txn.engine.ddl(statement))
            await txn.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                version, name, int(time.time() * 1000))
            applied.append(name)
        return applied

    return await db.run_exclusive(apply_pending, name=LOCK_NAME, wait=LOCK_WAIT_SECONDS)
