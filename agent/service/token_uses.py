"""Which signed tokens were used already: a CDS hook call's `(iss, jti)` is accepted once.

Two stores with one question (`TokenUses.first_use`), each forgetting a token once it has expired
(it can no longer be replayed):

- `MemoryTokenUses`: this process's (a heap of expiry instants); what a bare app without its
  lifespan uses.
- `DatabaseTokenUses`: the shared state database (agent.state_database: Postgres at
  `CHARTAGENT_CHECKPOINT_URL`, else `<state dir>/service.sqlite`), so that a call replayed to
  another API replica or worker process is refused there too. A hook call's JWT reaches the
  service from the EHR's server, which carries no session cookie, so a cookie-sticky route sends
  it to any replica. The insert is the check: of two replicas inserting the same token at once,
  the database lets one in (the primary key), and the other finds the row.

A database that cannot be reached refuses the call (`TokenUsesUnavailable`): a replay must not
pass for want of a check.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Protocol

from agent.settings import Settings
from agent.state_database import Database, TablesOwner, database_errors, open_owner
from fhir_adapters.error_tree import ChartAgentError

__all__ = [
    "SERVICE_DATABASE_FILE",
    "DatabaseTokenUses",
    "MemoryTokenUses",
    "TokenUses",
    "TokenUsesUnavailable",
    "open_token_uses",
]

# The service's SQLite file in the state dir (without a Postgres URL).
SERVICE_DATABASE_FILE: Final = "service.sqlite"

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS token_uses (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        forget_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (issuer, jti))""",
    "CREATE INDEX IF NOT EXISTS token_uses_forget_at ON token_uses (forget_at)",
)
# Serialises the schema's creation among replicas starting at once (Postgres's catalog).
_SETUP_LOCK: Final = 4242120013


class TokenUsesUnavailable(ChartAgentError):
    """The store of used tokens could not be read or written: the call is refused."""


class TokenUses(Protocol):
    async def first_use(self, issuer: str, jti: str, *, forget_at: float, now: float) -> bool:
        """Records the token as used; False when it was used before (a replay). `forget_at`: when
        the token has expired (epoch seconds), after which its record may go."""
        ...


class MemoryTokenUses:
    """One process's used tokens."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        # (when it may be forgotten, (iss, jti)), earliest first.
        self._expiry: list[tuple[float, tuple[str, str]]] = []
        self._lock = asyncio.Lock()

    async def first_use(self, issuer: str, jti: str, *, forget_at: float, now: float) -> bool:
        async with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(heapq.heappop(self._expiry)[1])
            if (issuer, jti) in self._seen:
                return False
            self._seen.add((issuer, jti))
            heapq.heappush(self._expiry, (forget_at, (issuer, jti)))
            return True


class DatabaseTokenUses(TablesOwner):
    """Used tokens in the shared state database; one connection, its transactions serialised."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, _SCHEMA, _SETUP_LOCK)

    async def first_use(self, issuer: str, jti: str, *, forget_at: float, now: float) -> bool:
        try:
            async with self._tx() as tx:
                # The expired go first (a handful: tokens live five minutes at most).
                await tx.run("DELETE FROM token_uses WHERE forget_at < ?", (now,))
                inserted = await tx.run(
                    "INSERT INTO token_uses (issuer, jti, forget_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (issuer, jti) DO NOTHING",
                    (issuer, jti, forget_at),
                )
        except database_errors() as exc:
            raise TokenUsesUnavailable(
                f"the record of used tokens could not be checked ({type(exc).__name__})"
            ) from None
        return inserted == 1


@asynccontextmanager
async def open_token_uses(settings: Settings) -> AsyncIterator[DatabaseTokenUses]:
    """The shared store of used tokens, its table created if new."""
    async with open_owner(settings, SERVICE_DATABASE_FILE, DatabaseTokenUses) as uses:
        yield uses
