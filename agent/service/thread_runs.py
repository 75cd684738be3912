"""Chat threads with a run in progress, as every API replica sees them.

A chat run must not interleave with another on the same thread: both would continue the thread's
last checkpoint, and one turn would be lost. `BusyThreads` (agent.service.threads) refuses a
second run within a process; this table refuses it across the replicas that share the state
database (agent.state_database: Postgres at `CHARTAGENT_CHECKPOINT_URL`, where the checkpoints
live too, else `<state dir>/service.sqlite`), so a request that reaches another replica than the
run's (a lost sticky cookie, a second browser) gets the same 409.

A run claims its thread for `CLAIM_TTL_S` (the store's `ttl_s`) and renews the claim every third
of that while it streams; the claim is deleted when the run ends. A replica that dies mid-run
leaves a claim that expires: the thread answers 409 for at most that long. The insert is the check: of two
replicas claiming one thread at once the database lets one in (the primary key), and the other's
insert finds the live claim and adds nothing.

A database that cannot be reached refuses the run (`ThreadRunsUnavailable`, a 503): running it
unchecked could interleave it with another replica's.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings
from agent.state_database import Database, TablesOwner, failing_as, open_owner
from fhir_adapters.error_tree import ChartAgentError

__all__ = ["CLAIM_TTL_S", "SharedThreadRuns", "ThreadRunsUnavailable", "open_thread_runs"]

# How long a claim outlives its last renewal (a run renews it every third of this).
CLAIM_TTL_S: Final = 60.0

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS chat_thread_runs (
        thread TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL)""",
)
# Serialises the schema's creation among replicas starting at once (Postgres's catalog).
_SETUP_LOCK: Final = 4242120016


class ThreadRunsUnavailable(ChartAgentError):
    """The shared record of running chat threads could not be read or written."""


class SharedThreadRuns(TablesOwner):
    """The claims on chat threads in the shared database (see the module docstring)."""

    def __init__(self, db: Database, ttl_s: float = CLAIM_TTL_S) -> None:
        super().__init__(db, _SCHEMA, _SETUP_LOCK)
        self.ttl_s = ttl_s

    async def claim(self, thread: str, holder: str) -> bool:
        """Claims `thread` for `holder` for `ttl_s`; False while another holder's claim is live."""
        now = time.time()
        async with (
            failing_as(ThreadRunsUnavailable, "the chat's running threads could not be checked"),
            self._tx() as tx,
        ):
            # Claims left by replicas that died: the table holds only runs in progress.
            await tx.run("DELETE FROM chat_thread_runs WHERE expires_at < ?", (now,))
            claimed = await tx.run(
                "INSERT INTO chat_thread_runs (thread, holder, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (thread) DO NOTHING",
                (thread, holder, now + self.ttl_s),
            )
        return claimed == 1

    async def renew(self, thread: str, holder: str) -> bool:
        """Extends `holder`'s claim by `ttl_s`; False when it was lost (expired, claimed by another)."""
        async with _claim_failing("renewed"), self._tx() as tx:
            renewed = await tx.run(
                "UPDATE chat_thread_runs SET expires_at = ? WHERE thread = ? AND holder = ?",
                (time.time() + self.ttl_s, thread, holder),
            )
        return renewed == 1

    async def release(self, thread: str, holder: str) -> None:
        async with _claim_failing("released"), self._tx() as tx:
            await tx.run("DELETE FROM chat_thread_runs WHERE thread = ? AND holder = ?", (thread, holder))


def _claim_failing(what: str) -> AbstractAsyncContextManager[None]:
    return failing_as(ThreadRunsUnavailable, f"the chat's claim on its thread could not be {what}")


@asynccontextmanager
async def open_thread_runs(settings: Settings, ttl_s: float = CLAIM_TTL_S) -> AsyncIterator[SharedThreadRuns]:
    """The shared claims on chat threads, their table created if new."""
    async with open_owner(settings, SERVICE_DATABASE_FILE, lambda db: SharedThreadRuns(db, ttl_s)) as runs:
        yield runs
