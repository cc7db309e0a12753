"""What differs between MariaDB and SQLite, and nothing else.

All SQL in the store is written once, with ``?`` placeholders and the DDL tokens
below; the engine rewrites it. Code outside this module never asks which engine runs.
"""

from __future__ import annotations

import functools
import re


class Engine:
    name = "base"
    # DDL tokens that the migrations use where the two dialects differ.
    ddl_tokens: dict[str, str] = {}

    def convert(self, sql: str) -> str:
        return sql

    def ddl(self, sql: str) -> str:
        for token, text in self.ddl_tokens.items():
            sql = sql.replace("{" + token + "}", text)
        return sql

    def is_unique_violation(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def is_deadlock(self, exc: BaseException) -> bool:
        return False

    def is_connection_error(self, exc: BaseException) -> bool:
        return False

    def use_index(self, index: str) -> str:
        """Text to put after a table reference so that the engine walks ``index``."""
        return ""

    # Appended to a SELECT whose rows the transaction goes on to change: it locks
    # them, so that a concurrent transaction waits instead of acting on what it read
    # before this one's change. Empty where one writer at a time is the rule.
    for_update = ""

    # Whether transactions of one process may write side by side (else one writer
    # at a time, however many are started).
    concurrent_writers = True

    # How a transaction that must run alone across every process starts, and the
    # named lock (with its release) that keeps other processes out meanwhile: None
    # where the transaction's own BEGIN is that lock.
    begin_exclusive = "BEGIN"

    def named_lock(self, name: str, seconds: int) -> tuple[str, tuple] | None:
        return None

    def named_unlock(self, name: str) -> tuple[str, tuple] | None:
        return None

    def insert_or_ignore(self, sql: str) -> str:
        """Turn ``INSERT INTO`` into the engine's insert that skips duplicate keys."""
        raise NotImplementedError

    def upsert(self, table: str, keys: tuple[str, ...], columns: tuple[str, ...],
               updates: tuple[str, ...]) -> str:
        """An insert of ``columns`` that, on a duplicate of ``keys``, updates ``updates``."""
        raise NotImplementedError

    def add_up_to(self, table: str, keys: tuple[str, ...], column: str) -> str:
        """One statement that adds to ``column`` of the row at ``keys`` (created
        holding the amount when missing) unless the sum would pass a limit. Its
        parameters: the keys, the amount, the limit. It changes one row when it
        added, none when the limit stood in the way."""
        raise NotImplementedError


class SqliteEngine(Engine):
    name = "sqlite"
    ddl_tokens = {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "table_options": "",
        "text": "TEXT",
        "bool": "INTEGER",
    }

    concurrent_writers = False

    # EXCLUSIVE (not IMMEDIATE) so no other connection, in any process, writes
    # until it commits: DDL and the version that records it commit together.
    begin_exclusive = "BEGIN EXCLUSIVE"

    def is_unique_violation(self, exc):
        import sqlite3
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def is_deadlock(self, exc):
        import sqlite3
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def use_index(self, index):
        # After ANALYZE of a database where one long chat dominates, SQLite walks
        # "chat_header_id = ? AND id > ?" along the rowid instead, through every
        # other chat's newer messages too (bench/sync_plans.py shows the plans).
        return f" INDEXED BY {index}"

    def insert_or_ignore(self, sql):
        return sql.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)

    def upsert(self, table, keys, columns, updates):
        sets = ", ".join(f"{c} = excluded.{c}" for c in updates)
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"({', '.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")

    def add_up_to(self, table, keys, column):
        return (f"INSERT INTO {table} ({', '.join(keys)}, {column}) VALUES "
                f"({', '.join('?' * (len(keys) + 1))}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                f"{column} = {column} + excluded.{column} "
                f"WHERE {column} + excluded.{column} <= ?")


# MySQL error numbers: duplicate key, deadlock, lock wait timeout.
_ER_DUP_ENTRY = 1062
_ER_LOCK_DEADLOCK = 1213
_ER_LOCK_WAIT_TIMEOUT = 1205
# Client-side errors that mean the server is gone: can't connect, lost, gone away.
_CONNECTION_ERRORS = {2002, 2003, 2006, 2013, 2055}


@functools.lru_cache(maxsize=1024)
def _pyformat(sql: str) -> str:
    # pymysql formats with %; a literal % must be doubled before ? becomes %s.
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


class MysqlEngine(Engine):
    name = "mysql"
    ddl_tokens = {
        "pk": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "table_options": "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
        "text": "MEDIUMTEXT",
        "bool": "TINYINT",
    }

    # InnoDB's plain SELECT reads a snapshot without locking.
    for_update = " FOR UPDATE"

    def convert(self, sql: str) -> str:
        return _pyformat(sql)

    @staticmethod
    def _errno(exc) -> int | None:
        args = getattr(exc, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    def is_unique_violation(self, exc):
        return self._errno(exc) == _ER_DUP_ENTRY

    def is_deadlock(self, exc):
        return self._errno(exc) in (_ER_LOCK_DEADLOCK, _ER_LOCK_WAIT_TIMEOUT)

    def is_connection_error(self, exc):
        return self._errno(exc) in _CONNECTION_ERRORS or isinstance(
            exc, (ConnectionError, OSError))

    def use_index(self, index):
        # MariaDB 10.11 picks `ref` on the index's first column for
        # "chat_header_id = ? AND id < ? ORDER BY id DESC LIMIT n" and walks the whole
        # chat from its newest message: a page 25k messages deep into a 50k-message
        # chat took 104 ms, against 0.4 ms as a range scan (bench/RESULTS.md, growth).
        return f" FORCE INDEX ({index})"

    def insert_or_ignore(self, sql):
        return sql.replace("INSERT INTO", "INSERT IGNORE INTO", 1)

    def named_lock(self, name, seconds):
        # MariaDB commits each DDL statement on its own, so no transaction can hold
        # a migration together; a lock named per database serialises the processes.
        # GET_LOCK answers 1 once held, 0 when the wait ran out.
        return "SELECT GET_LOCK(CONCAT(DATABASE(), ?), ?)", (name, seconds)

    def named_unlock(self, name):
        return "SELECT RELEASE_LOCK(CONCAT(DATABASE(), ?))", (name,)

    def upsert(self, table, keys, columns, updates):
        sets = ", ".join(f"{c} = VALUES({c})" for c in updates)
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"({', '.join('?' * len(columns))}) ON DUPLICATE KEY UPDATE {sets}")

    def add_up_to(self, table, keys, column):
        # On a duplicate InnoDB takes the row's exclusive lock at once (a plain
        # INSERT IGNORE takes a shared one, and two of those waiting to update
        # the row deadlock). Left unchanged, the row counts as none changed.
        return (f"INSERT INTO {table} ({', '.join(keys)}, {column}) VALUES "
                f"({', '.join('?' * (len(keys) + 1))}) ON DUPLICATE KEY UPDATE "
                f"{column} = IF({column} + VALUES({column}) <= ?, "
                f"{column} + VALUES({column}), {column})")
