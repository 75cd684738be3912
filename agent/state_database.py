"""The SQL database that holds what several processes share: the job ledger, the hook tokens seen.

Where it lives: `CHARTAGENT_CHECKPOINT_URL` when that is `postgresql://...` (the checkpoints, the
change marks, the ledger and the service's shared state then use one database, which every
worker and API replica reaches); otherwise a SQLite file in the state dir, named by its user (WAL,
one writer transaction at a time across the processes of one host).

One interface over both (`Database`): transactions of statements written with `?` placeholders.
SQLite transactions take the write lock at their start (`BEGIN IMMEDIATE`); Postgres locks what a
statement asks (`Database.lock_rows`).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agent.settings import Settings, SettingsError

__all__ = [
    "Database",
    "TablesOwner",
    "Tx",
    "create_tables",
    "database_errors",
    "failing_as",
    "open_database",
    "open_owner",
]


class Tx(Protocol):
    """One transaction's statements; SQL is written with `?` placeholders."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class Database(Protocol):
    # True for Postgres (concurrent DDL there needs an advisory lock).
    postgres: bool
    # Appended to a SELECT whose rows are updated next: Postgres locks the rows it picks (SQLite
    # locks the file).
    lock_rows: str
    # How many columns named (table, column) exist: 0 or 1.
    count_columns: str

    def transaction(self) -> AbstractAsyncContextManager[Tx]: ...

    def reads(self) -> AbstractAsyncContextManager[Tx]:
        """Statements outside a transaction, each on its own: for single reads, which then take no
        lock (SQLite's transactions here take the file's write lock at their start)."""
        ...


class _SqliteTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return [tuple(r) for r in await cursor.fetchall()]

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return int(cursor.rowcount)


class _Sqlite:
    postgres = False
    lock_rows = ""
    count_columns = "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        # IMMEDIATE: the write lock is taken at the start, so a read-then-update cannot race
        # another process's (a deferred transaction would fail with SQLITE_BUSY on upgrade).
        await self._conn.execute("BEGIN IMMEDIATE")
        committed = False
        try:
            yield _SqliteTx(self._conn)
            committed = True
        finally:
            await self._conn.execute("COMMIT" if committed else "ROLLBACK")

    @asynccontextmanager
    async def reads(self) -> AsyncIterator[Tx]:
        yield _SqliteTx(self._conn)  # isolation_level None: each statement commits on its own


class _PostgresTx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = await self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return [tuple(r) for r in await cursor.fetchall()]

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._conn.execute(sql.replace("?", "%s"), tuple(params))
        return int(cursor.rowcount)


class _Postgres:
    postgres = True
    lock_rows = " FOR UPDATE SKIP LOCKED"
    count_columns = (
        "SELECT COUNT(*) FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?"
    )

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self._conn.transaction():
            yield _PostgresTx(self._conn)

    @asynccontextmanager
    async def reads(self) -> AsyncIterator[Tx]:
        yield _PostgresTx(self._conn)  # an autocommit connection


class TablesOwner:
    """A user of the shared database with tables of its own: one connection, whose transactions
    its tasks take in turn (`_lock`), and its tables created by `setup`."""

    def __init__(self, db: Database, schema: Sequence[str], lock_key: int) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self._schema = tuple(schema)
        self._lock_key = lock_key

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        """A transaction, when this owner's earlier ones are over."""
        async with self._lock, self._db.transaction() as tx:
            yield tx

    @asynccontextmanager
    async def _reads(self) -> AsyncIterator[Tx]:
        """Single reads outside a transaction (`Database.reads`), in the same turn."""
        async with self._lock, self._db.reads() as tx:
            yield tx

    async def setup(self) -> None:
        async with self._tx() as tx:
            await create_tables(self._db, tx, self._schema, self._lock_key)


Owner = TypeVar("Owner", bound=TablesOwner)


@asynccontextmanager
async def open_owner(
    settings: Settings, sqlite_file: str, make: Callable[[Database], Owner]
) -> AsyncIterator[Owner]:
    """`make`'s store over its own connection to the shared database, its tables created if new."""
    async with open_database(settings, sqlite_file) as db:
        owner = make(db)
        await owner.setup()
        yield owner


async def create_tables(db: Database, tx: Tx, statements: Sequence[str], lock_key: int) -> None:
    """Runs a user's `CREATE ... IF NOT EXISTS` statements in `tx`. Postgres: under the user's own
    advisory lock, since processes starting at once can collide in its catalog."""
    if db.postgres:
        await tx.run(f"SELECT pg_advisory_xact_lock({int(lock_key)})")
    for statement in statements:
        await tx.run(statement)


@functools.cache
def database_errors() -> tuple[type[Exception], ...]:
    """What either database raises when it cannot be reached or fails a statement."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error, OSError)
    return (sqlite3.Error, OSError, psycopg.Error)


@asynccontextmanager
async def failing_as(error: Callable[[str], Exception], what: str) -> AsyncIterator[None]:
    """A database failure inside raised as `error("<what> (<its class>)")`: the message names
    the store's operation, never a row or a value."""
    try:
        yield
    except database_errors() as exc:
        raise error(f"{what} ({type(exc).__name__})") from None


def _location(settings: Settings, sqlite_file: str) -> str | Path:
    """The Postgres URL, or the SQLite file `sqlite_file` in the state dir (see the module docstring)."""
    url = settings.checkpoint_url
    if url is not None and url.startswith(("postgresql://", "postgres://")):
        return url
    return settings.state_dir / sqlite_file


@asynccontextmanager
async def open_database(settings: Settings, sqlite_file: str) -> AsyncIterator[Database]:
    """One connection to the shared database: its transactions must not overlap (callers that
    share it among tasks serialise them)."""
    where = _location(settings, sqlite_file)
    if isinstance(where, str):
        try:
            import psycopg
        except ImportError:
            need = "Postgres needs the postgres extra (psycopg)"
            raise SettingsError((f"CHARTAGENT_CHECKPOINT_URL: {need}",)) from None
        async with await psycopg.AsyncConnection.connect(where, autocommit=True) as conn:
            yield _Postgres(conn)
        return
    import aiosqlite

    where.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level None: no implicit transactions; ours are explicit (BEGIN IMMEDIATE).
    async with aiosqlite.connect(where, isolation_level=None, timeout=60) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        # Commits survive a killed process without an fsync each; a power cut may lose the last
        # few commits (a job's patients then run again: at least once, idempotent write-back).
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=60000")
        yield _Sqlite(conn)
