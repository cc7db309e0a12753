"""Connections, transactions and the two ways of reaching a database.

``Database.run(fn, *args)`` runs ``fn(txn, *args)`` in one transaction, retried when the
engine reports a deadlock, and turns an unreachable or slow database into Unavailable,
so that an event answers quickly instead of hanging. What must follow the change
(a broadcast, a push wake-up, deleting a released file) is queued with
``txn.call_after`` and runs once, after the COMMIT: no I/O besides SQL inside a
transaction, and nothing done twice when a deadlock victim is retried.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as _ssl
import queue
import threading
import time
from urllib.parse import unquote, urlparse

from syarah.errors import Unavailable
from syarah.store.engines import Engine, MysqlEngine, SqliteEngine

log = logging.getLogger(__name__)

# A deadlock victim is retried this many times; more means real contention.
DEADLOCK_RETRIES = 5

if hasattr(asyncio, "timeout"):
    async def _within(coro, seconds):
        # asyncio.timeout (3.11+) bounds the call in the current task; wait_for would
        # create a task per transaction on the message path.
        async with asyncio.timeout(seconds):
            return await coro
else:  # pragma: no cover - Python 3.10
    _within = asyncio.wait_for


class CannotOpen(ValueError):
    """The store named by database_url cannot be opened at start: a setting to fix, so
    the commands report it as one (no traceback, exit 2)."""


def tls_context(ca: str = "", cert: str = "", key: str = "",
                verify: str = "identity") -> _ssl.SSLContext | None:
    """The TLS settings for MariaDB as an SSLContext, or None when none is set.

    The server's certificate is always verified (against ``ca``, else the system's
    CAs); ``verify="ca"`` only skips the host-name check, for a server reached by a
    name its certificate does not list.
    """
    if not (ca or cert or key):
        return None
    if verify not in ("identity", "ca"):
        raise CannotOpen(f"database_ssl_verify must be identity or ca, not {verify!r}")
    if key and not cert:
        raise CannotOpen("database_ssl_key needs database_ssl_cert")
    try:
        context = _ssl.create_default_context(cafile=ca or None)
        context.check_hostname = verify == "identity"
        if cert:
            context.load_cert_chain(cert, key or None)
    except (OSError, _ssl.SSLError) as exc:
        raise CannotOpen(f"cannot read the database TLS files: {exc}") from exc
    return context


def settings_tls(settings) -> _ssl.SSLContext | None:
    return tls_context(settings.database_ssl_ca, settings.database_ssl_cert,
                       settings.database_ssl_key, settings.database_ssl_verify)


class Result:
    __slots__ = ("rowcount", "lastrowid")

    def __init__(self, rowcount: int, lastrowid: int | None):
        self.rowcount = rowcount
        self.lastrowid = lastrowid


class Transaction:
    """The cursor side of a transaction: every statement is converted by the engine.

    ``call_after(fn, *args)`` queues work for after the COMMIT (a broadcast, a wake-up,
    deleting a file): it runs once when the commit succeeded, never after a rollback,
    and an attempt retried after a deadlock drops what it queued, so only the attempt
    that committed is counted.
    """

    def __init__(self, engine: Engine, cursor_factory, after: list | None = None):
        self.engine = engine
        self._cursor = cursor_factory
        self.after_commit = after if after is not None else []

    def call_after(self, fn, *args) -> None:
        self.after_commit.append((fn, args))

    async def execute(self, sql: str, *args) -> Result:
        raise NotImplementedError

    async def executemany(self, sql: str, rows) -> None:
        raise NotImplementedError

    async def fetchall(self, sql: str, *args) -> list[tuple]:
        raise NotImplementedError

    async def fetchone(self, sql: str, *args) -> tuple | None:
        rows = await self.fetchall(sql, *args)
        return rows[0] if rows else None

    # Set once the transaction's COMMIT went out with its last statement.
    committed = False

    async def execute_last(self, sql: str, *args, before: tuple = ()) -> None:
        """The transaction's last statement, after the ``(sql, args)`` statements of
        ``before``: where the engine allows, they all go out with the COMMIT, one
        round trip. Nothing may follow them."""
        for first, first_args in before:
            await self.execute(first, *first_args)
        await self.execute(sql, *args)


class Database:
    engine: Engine

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.in_use = 0

    @staticmethod
    async def connect(url: str, pool_size: int = 10, timeout: float = 5.0,
                      ssl: _ssl.SSLContext | None = None) -> "Database":
        parsed = urlparse(url)
        if parsed.scheme == "sqlite":
            db = SqliteDatabase(_sqlite_path(url), timeout)
        elif parsed.scheme in ("mysql", "mariadb"):
            db = MysqlDatabase(parsed, pool_size, timeout, ssl)
        else:
            raise ValueError(f"unsupported database_url scheme {parsed.scheme!r}")
        try:
            await db.open()
        except Exception as exc:
            where = (_sqlite_path(url) if parsed.scheme == "sqlite"
                     else f"{parsed.hostname}:{parsed.port or 3306}{parsed.path}")
            # aiomysql reports any failure to connect as 2003 "Can't connect"; the cause
            # (a refused certificate, a refused port) is what the operator must fix.
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
            raise CannotOpen(f"cannot open the database at {where}: {exc}{cause}") from exc
        return db

    async def open(self):
        raise NotImplementedError

    async def close(self):
        raise NotImplementedError

    async def _run_once(self, fn, args, after: list):
        raise NotImplementedError

    async def run_exclusive(self, fn, *args, name: str, wait: float):
        """Run ``fn(txn, *args)`` in a transaction that no other process of the
        deployment runs at the same time (a lock ``name`` of this database, waited
        for at most ``wait`` seconds). For what must happen once: migrations."""
        raise NotImplementedError

    async def run(self, fn, *args):
        """Run ``fn(txn, *args)`` in a transaction and return what it returns."""
        for attempt in range(DEADLOCK_RETRIES):
            # A fresh queue per attempt: a rolled-back attempt's work is dropped.
            after: list = []
            try:
                result = await _within(self._run_once(fn, args, after), self.timeout)
            except asyncio.TimeoutError:
                raise Unavailable("The chat store did not answer in time; try again.")
            except Exception as exc:
                if self.engine.is_deadlock(exc) and attempt + 1 < DEADLOCK_RETRIES:
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                if self.engine.is_connection_error(exc):
                    log.warning("database unreachable: %s", exc)
                    raise Unavailable() from exc
                raise
            await run_after_commit(after)
            return result

    async def read(self, fn, *args):
        """Like run, for a transaction that only reads: where the engine allows,
        it runs beside the writes instead of waiting for them."""
        return await self.run(fn, *args)

    # One-statement conveniences, each its own transaction.

    async def fetchall(self, sql: str, *args) -> list[tuple]:
        async def q(txn):
            return await txn.fetchall(sql, *args)
        return await self.read(q)

    async def fetchone(self, sql: str, *args) -> tuple | None:
        async def q(txn):
            return await txn.fetchone(sql, *args)
        return await self.read(q)

    async def execute(self, sql: str, *args) -> Result:
        async def q(txn):
            return await txn.execute(sql, *args)
        return await self.run(q)

    async def ping(self) -> bool:
        try:
            await self.fetchone("SELECT 1")
            return True
        except Exception:
            return False


async def run_after_commit(after: list) -> None:
    """The work a committed transaction queued, in order. The change is stored
    whatever happens here, so a failing callback is logged and the rest still run."""
    for fn, args in after:
        try:
            done = fn(*args)
            if asyncio.iscoroutine(done):
                await done
        except Exception:
            log.exception("work queued after a commit failed: %r", fn)


def _sqlite_path(url: str) -> str:
    # sqlite:///relative/path.db or sqlite:////absolute/path.db (SQLAlchemy's form)
    rest = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite:"):]
    if rest in ("", ":memory:"):
        return ":memory:"
    return os.path.abspath(rest)


class _SqliteTxn(Transaction):
    """Statements on a sqlite3 connection, run on the connection's own thread: none of
    them suspends, so a transaction's whole coroutine runs there at once (_complete)."""

    async def execute(self, sql, *args):
        cur = self._cursor.execute(self.engine.convert(sql), args)
        return Result(cur.rowcount, cur.lastrowid)

    async def executemany(self, sql, rows):
        self._cursor.executemany(self.engine.convert(sql), rows)

    async def fetchall(self, sql, *args):
        return self._cursor.execute(self.engine.convert(sql), args).fetchall()


class NotOnlyStatements(RuntimeError):
    """A transaction awaited something besides its own statements (I/O, a lock, a
    sleep): on SQLite it runs whole on the connection's thread, where nothing else
    may be waited for."""

    code = "TRANSACTION_AWAITED_IO"


def _complete(coro):
    """Run to its end a coroutine that awaits only the statements of a _SqliteTxn."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise NotOnlyStatements("a transaction may await only its own statements")


class _Abandoned(Exception):
    """Its caller gave up on the transaction before its COMMIT: it is rolled back."""


class _Attempt:
    """One transaction handed to a connection's thread. ``abandoned`` is set when its
    caller gave up on it (db_timeout): if it is not committed yet, it is rolled back."""

    __slots__ = ("abandoned",)

    def __init__(self):
        self.abandoned = False


def _transaction(conn, begin, engine, fn, args, after, attempt):
    """On the connection's thread: BEGIN, ``fn``'s statements, COMMIT (or ROLLBACK)."""
    if attempt.abandoned:
        raise _Abandoned()   # given up on while it waited its turn
    if begin:
        conn.execute(begin)
    try:
        result = _complete(fn(_SqliteTxn(engine, conn, after), *args))
        if attempt.abandoned:
            raise _Abandoned()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _exclusive(conn, engine, fn, args, after, attempt, deadline):
    import sqlite3

    while True:
        try:
            conn.execute(engine.begin_exclusive)
            break
        except sqlite3.OperationalError as exc:
            # Another process holds the file (busy_timeout ran out): wait on. Only
            # migrations at start come here, so nobody else waits for this thread.
            if not engine.is_deadlock(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return _transaction(conn, None, engine, fn, args, after, attempt)


def _connect(path: str, pragmas: tuple[str, ...]):
    import sqlite3

    # isolation_level=None: the transactions are begun here, explicitly.
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in pragmas:
        conn.execute(pragma)
    return conn


def _succeed(future: asyncio.Future, result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class SqliteConnection:
    """A sqlite3 connection and the one thread that uses it.

    A transaction goes to the thread whole (BEGIN, its statements, COMMIT) and comes
    back once: a hand-off to the thread and one back to the event loop per
    transaction, where a statement at a time costs both per statement. The thread
    shares the event loop's core, so each hand-off saved is CPU the messages get.

    The hand-off is a queue and a future of the loop's, not run_in_executor: on one
    core, a call through a one-thread ThreadPoolExecutor costs 31-35 us of CPU there
    and back, through a queue 15-17 us (its Future, locks and the chaining of two
    futures are the difference).
    """

    def __init__(self):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._conn = None
        # A daemon: a store nobody closed does not keep the process from exiting, and
        # SQLite's WAL keeps what was committed whatever the moment.
        self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            loop, future, fn, args = call
            try:
                result = fn(self._conn, *args)
                done, value = _succeed, result
            except BaseException as exc:
                done, value = _fail, exc
            try:
                loop.call_soon_threadsafe(done, future, value)
            except RuntimeError:
                pass     # the loop closed meanwhile: nobody waits for the answer

    async def call(self, fn, *args):
        """``fn(connection, *args)`` on the connection's thread."""
        future = asyncio.get_running_loop().create_future()
        self._calls.put((future.get_loop(), future, fn, args))
        return await future

    async def open(self, path: str, pragmas: tuple[str, ...]) -> None:
        try:
            self._conn = await self.call(lambda _, *a: _connect(*a), path, pragmas)
        except BaseException:
            self._calls.put(None)
            raise

    async def close(self) -> None:
        if self._conn is not None:
            await self.call(lambda conn: conn.close())
            self._conn = None
        self._calls.put(None)

    async def transaction(self, begin, engine, fn, args, after):
        attempt = _Attempt()
        try:
            return await self.call(_transaction, begin, engine, fn, args, after, attempt)
        except asyncio.CancelledError:
            attempt.abandoned = True
            raise

    async def exclusive(self, engine, fn, args, after, wait: float):
        attempt = _Attempt()
        try:
            return await self.call(_exclusive, engine, fn, args, after, attempt,
                                   time.monotonic() + wait)
        except asyncio.CancelledError:
            attempt.abandoned = True
            raise


class SqliteDatabase(Database):
    """The embedded default. SQLite has one writer at a time, so transactions that
    write are serialised here, on one connection, rather than left to fail with
    'database is locked' (new messages are batched into them, see batch.py).

    The file is in WAL mode, so reads run on connections of their own beside the
    writer and see what was committed when they began, never waiting for a write.
    synchronous=NORMAL: a COMMIT reaches the WAL file but is synced to the disk only
    at a checkpoint, so a crash of the process loses nothing committed, a power loss
    may lose the last transactions committed before it.

    Each connection has a thread of its own and takes a transaction whole (see
    SqliteConnection): a transaction awaits only its statements, as everywhere.
    """

    engine = SqliteEngine()
    READERS = 2
    # busy_timeout first: switching to WAL takes a lock that another process
    # opening the same file at the same moment may hold.
    WRITER_PRAGMAS = ("PRAGMA busy_timeout=5000", "PRAGMA journal_mode=WAL",
                      "PRAGMA foreign_keys=ON", "PRAGMA synchronous=NORMAL")
    READER_PRAGMAS = ("PRAGMA busy_timeout=5000", "PRAGMA query_only=ON")

    def __init__(self, path: str, timeout: float):
        super().__init__(timeout)
        self.path = path
        self._conn: SqliteConnection | None = None
        self._readers: asyncio.Queue | None = None
        self._reader_conns: list[SqliteConnection] = []
        self._writing = 0

    async def open(self):
        if self.path != ":memory:":
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._conn = SqliteConnection()
        await self._conn.open(self.path, self.WRITER_PRAGMAS)
        if self.path == ":memory:":
            return   # a memory database is the one connection's own
        self._readers = asyncio.Queue()
        for _ in range(self.READERS):
            conn = SqliteConnection()
            self._reader_conns.append(conn)
            await conn.open(self.path, self.READER_PRAGMAS)
            self._readers.put_nowait(conn)

    async def close(self):
        readers, self._reader_conns, self._readers = self._reader_conns, [], None
        for conn in readers:
            await conn.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def read(self, fn, *args):
        if self._readers is None:
            return await self.run(fn, *args)
        readers = self._readers
        try:
            return await _within(self._read_once(readers, fn, args), self.timeout)
        except asyncio.TimeoutError:
            raise Unavailable("The chat store did not answer in time; try again.")

    async def _read_once(self, readers: asyncio.Queue, fn, args):
        conn = await readers.get()
        try:
            # One snapshot for every statement of fn.
            return await conn.transaction("BEGIN", self.engine, fn, args, [])
        finally:
            readers.put_nowait(conn)

    async def run_exclusive(self, fn, *args, name: str, wait: float):
        after: list = []
        result = await self._conn.exclusive(self.engine, fn, args, after, wait)
        await run_after_commit(after)
        return result

    async def _run_once(self, fn, args, after: list):
        conn = self._conn
        if conn is None:
            raise Unavailable("The chat store is closed.")
        # The connection's one thread runs its transactions one after the other, in
        # the order they were handed to it; those waiting their turn use no other.
        self._writing += 1
        self.in_use = 1
        try:
            return await conn.transaction("BEGIN IMMEDIATE", self.engine, fn, args, after)
        finally:
            self._writing -= 1
            self.in_use = 1 if self._writing else 0


class _MysqlTxn(Transaction):
    async def execute(self, sql, *args):
        cur = self._cursor
        await cur.execute(self.engine.convert(sql), args)
        return Result(cur.rowcount, cur.lastrowid)

    async def executemany(self, sql, rows):
        await self._cursor.executemany(self.engine.convert(sql), rows)

    async def fetchall(self, sql, *args):
        cur = self._cursor
        await cur.execute(self.engine.convert(sql), args)
        return list(await cur.fetchall())

    async def execute_last(self, sql, *args, before=()):
        if not self.one_trip_commit:
            return await super().execute_last(sql, *args, before=before)
        # aiomysql's connections accept several statements in one query.
        cur = self._cursor
        text = "; ".join([first for first, _ in before] + [sql, "COMMIT"])
        params = [v for _, first_args in before for v in first_args] + list(args)
        await cur.execute(self.engine.convert(text), params)
        while await cur.nextset():
            pass
        self.committed = True

    one_trip_commit = True


class MysqlDatabase(Database):
    engine = MysqlEngine()

    def __init__(self, parsed, pool_size: int, timeout: float,
                 ssl: _ssl.SSLContext | None = None):
        super().__init__(timeout)
        self.ssl = ssl
        self.params = dict(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 3306,
            user=unquote(parsed.username or "root"),
            password=unquote(parsed.password or ""),
            db=parsed.path.lstrip("/") or "syarah",
        )
        self.pool_size = pool_size
        self._pool = None

    async def open(self):
        import warnings

        import aiomysql
        import pymysql

        # INSERT IGNORE reports each skipped duplicate as a warning; that is its purpose.
        warnings.filterwarnings("ignore", category=pymysql.Warning)
        self._pool = await aiomysql.create_pool(
            minsize=1, maxsize=self.pool_size, autocommit=False, charset="utf8mb4",
            # Recycle before MariaDB's wait_timeout can close an idle connection.
            pool_recycle=3600, connect_timeout=max(1, int(self.timeout)),
            init_command="SET time_zone = '+00:00'",
            # Never offer LOAD DATA LOCAL: with it, whoever answers on the database
            # address (a rogue or hijacked server) may ask for any file we can read.
            local_infile=False, ssl=self.ssl,
            **self.params)

    async def close(self):
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), self.timeout)
            except asyncio.TimeoutError:
                # A connection still busy (a hung query) would keep wait_closed
                # waiting forever; the server rolls back what it was doing.
                pool.terminate()
                await pool.wait_closed()

    async def run_exclusive(self, fn, *args, name: str, wait: float):
        pool = self._pool
        conn = await pool.acquire()
        try:
            async with conn.cursor() as cur:
                sql, params = self.engine.named_lock(name, int(wait))
                await cur.execute(self.engine.convert(sql), params)
                (held,) = await cur.fetchone()
                if held != 1:
                    raise RuntimeError(f"another process held the lock {name!r} of this "
                                       f"database for {wait:.0f}s; try again later")
                after: list = []
                try:
                    result = await fn(_MysqlTxn(self.engine, cur, after), *args)
                    await conn.commit()
                except BaseException:
                    await conn.rollback()
                    raise
                finally:
                    # The lock belongs to the session: a lost connection frees it too.
                    sql, params = self.engine.named_unlock(name)
                    await cur.execute(self.engine.convert(sql), params)
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)
        await run_after_commit(after)
        return result

    async def _run_once(self, fn, args, after: list):
        pool = self._pool
        if pool is None:
            raise Unavailable("The chat store is closed.")
        conn = await pool.acquire()
        self.in_use += 1
        try:
            try:
                # The pool's connections run with autocommit off, so the first
                # statement opens the transaction: an explicit BEGIN would only cost
                # a round trip per transaction.
                async with conn.cursor() as cur:
                    txn = _MysqlTxn(self.engine, cur, after)
                    result = await fn(txn, *args)
                if not txn.committed:
                    await conn.commit()
                return result
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError) or self.engine.is_connection_error(exc):
                    # Cancelled mid-statement (db_timeout) or cut off: the protocol
                    # state is unknown and a ROLLBACK could wait forever on a silent
                    # network. Closing drops it from the pool; the server rolls back.
                    conn.close()
                else:
                    try:
                        await conn.rollback()
                    except Exception:
                        conn.close()
                raise
        finally:
            self.in_use -= 1
            pool.release(conn)
