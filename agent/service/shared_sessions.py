"""The SMART app's sessions in the shared database, encrypted, so that every API replica knows them
(and its launches in flight: the launch and its callback may reach different replicas).

With `CHARTAGENT_APP_SESSION_KEY` set (base64 of 32 random bytes), each session is also kept in
the shared state database (agent.state_database: the Postgres of `CHARTAGENT_CHECKPOINT_URL`, else
`<state dir>/service.sqlite`). A replica that is restarted, scaled away or replaced by a rolling
deploy then logs nobody out: the user's next request, wherever it lands, finds the session there.
Each process still holds the sessions it serves in memory (agent.service.sessions.SessionStore);
the database is the truth it checks them against at each request (one indexed read of the row's
generation), so a logout or a refused refresh on one replica ends the session on all.

A row is `(id, expires_at, generation, sealed)`:
- `id`: the SHA-256 of the session id (the browser's cookie), never the id itself: whoever reads
  the table cannot present its sessions;
- `sealed`: the whole session (tokens, patient, scopes, CSRF token) as JSON, sealed with
  AES-256-GCM under the key, with the row's id as associated data (a row copied onto another id
  does not open). A row that does not open (another key, tampering) is no session;
- `generation`: bumped by each refresh. A refresh runs with the row locked (`FOR UPDATE`; SQLite
  locks the file): a replica that finds a newer generation there takes those tokens instead of
  refreshing again. EHRs rotate refresh tokens and refuse a used one, so two replicas refreshing
  one session at once would otherwise log the user out.

A launch in flight is a row `(id, expires_at, sealed)` too, `id` the SHA-256 of its `state`, the
launch (PKCE verifier, nonce, the browser's binding) sealed the same way; the callback takes it
once, deleting the row in the same transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Final, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from agent.service.authz import session_cookie_name
from agent.service.runtime import runtime_of
from agent.service.sessions import LAUNCH_TTL_S, PendingLaunch, Session
from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings, decode_session_key
from agent.state_database import Database, TablesOwner, Tx, database_errors, open_owner
from fhir_adapters.smart_app_launch import Pkce, SmartConfiguration
from fhir_adapters.smart_scopes import ScopeSet

__all__ = [
    "SessionSync",
    "SharedSessions",
    "StoredLaunch",
    "StoredSession",
    "launch_from",
    "open_shared_sessions",
    "session_from",
    "stored_launch",
    "stored_of",
]

log = logging.getLogger(__name__)

_NONCE_BYTES: Final = 12
Sealed = TypeVar("Sealed", bound=BaseModel)

_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS app_sessions (
        id TEXT PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL,
        generation INTEGER NOT NULL,
        sealed TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS app_sessions_expires_at ON app_sessions (expires_at)",
    """CREATE TABLE IF NOT EXISTS app_launches (
        id TEXT PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL,
        sealed TEXT NOT NULL)""",
)
_SETUP_LOCK: Final = 4242120014


class StoredSession(BaseModel):
    """A session as its row seals it (agent.service.sessions.Session without its lock)."""

    id: str
    iss: str
    config: dict[str, Any]
    patient_id: str
    fhir_user: str | None
    scopes: str
    need_patient_banner: bool
    csrf_token: str
    expires_at: float
    access_token: str
    access_expires_at: float
    access_lifetime_s: float
    refresh_token: str | None
    generation: int


def stored_of(session: Session) -> StoredSession:
    refresh = session.refresh_token
    return StoredSession(
        id=session.id,
        iss=session.iss,
        config=session.config.model_dump(mode="json"),
        patient_id=session.patient_id,
        fhir_user=session.fhir_user,
        scopes=session.scopes.text,
        need_patient_banner=session.need_patient_banner,
        csrf_token=session.csrf_token,
        expires_at=session.expires_at,
        access_token=session.access_token.get_secret_value(),
        access_expires_at=session.access_expires_at,
        access_lifetime_s=session.access_lifetime_s,
        refresh_token=None if refresh is None else refresh.get_secret_value(),
        generation=session.generation,
    )


def session_from(stored: StoredSession) -> Session:
    return Session(
        id=stored.id,
        iss=stored.iss,
        config=SmartConfiguration.model_validate(stored.config),
        patient_id=stored.patient_id,
        fhir_user=stored.fhir_user,
        scopes=ScopeSet.parse(stored.scopes),
        need_patient_banner=stored.need_patient_banner,
        csrf_token=stored.csrf_token,
        expires_at=stored.expires_at,
        access_token=SecretStr(stored.access_token),
        access_expires_at=stored.access_expires_at,
        access_lifetime_s=stored.access_lifetime_s,
        refresh_token=None if stored.refresh_token is None else SecretStr(stored.refresh_token),
        generation=stored.generation,
    )


class StoredLaunch(BaseModel):
    """A launch in flight as its row seals it (agent.service.sessions.PendingLaunch)."""

    iss: str
    config: dict[str, Any]
    verifier: str
    nonce: str
    browser_binding: str
    created_at: float


def stored_launch(launch: PendingLaunch) -> StoredLaunch:
    return StoredLaunch(
        iss=launch.iss,
        config=launch.config.model_dump(mode="json"),
        verifier=launch.pkce.verifier.get_secret_value(),
        nonce=launch.nonce,
        browser_binding=launch.browser_binding,
        created_at=launch.created_at,
    )


def launch_from(stored: StoredLaunch) -> PendingLaunch:
    return PendingLaunch(
        iss=stored.iss,
        config=SmartConfiguration.model_validate(stored.config),
        pkce=Pkce(verifier=SecretStr(stored.verifier)),
        nonce=stored.nonce,
        browser_binding=stored.browser_binding,
        created_at=stored.created_at,
    )


def _row_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SharedSessions(TablesOwner):
    """Sealed sessions in the shared database; one connection, its transactions serialised."""

    def __init__(self, db: Database, key: bytes, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(db, _SCHEMA, _SETUP_LOCK)
        self._aead = AESGCM(key)
        self._clock = clock
        # Postgres waits for a row another replica is refreshing (SQLite's transaction locks the file).
        self._for_update = " FOR UPDATE" if db.postgres else ""

    def _seal(self, row_id: str, record: BaseModel) -> str:
        """`record` sealed for the row `row_id` (its associated data: a row copied onto another id
        does not open)."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, record.model_dump_json().encode(), row_id.encode())
        return base64.b64encode(nonce + sealed).decode()

    def _open(self, row_id: str, sealed: str, kind: type[Sealed]) -> Sealed | None:
        """The row's record; None when it does not open (another key, tampered with)."""
        try:
            raw = base64.b64decode(sealed, validate=True)
        except binascii.Error:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], row_id.encode())
        except (InvalidTag, ValueError):
            return None
        try:
            return kind.model_validate_json(plain)
        except ValidationError:
            return None

    async def _write(self, tx: Tx, stored: StoredSession) -> None:
        """Writes the session (a new one, or its refreshed tokens); the expired go."""
        row_id = _row_id(stored.id)
        await tx.run("DELETE FROM app_sessions WHERE expires_at < ?", (self._clock(),))
        await tx.run(
            "INSERT INTO app_sessions (id, expires_at, generation, sealed) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at,"
            " generation = excluded.generation, sealed = excluded.sealed",
            (row_id, stored.expires_at, stored.generation, self._seal(row_id, stored)),
        )

    async def _generation(self, session_id: str) -> int | None:
        """The session's generation, or None when it is not (or no longer) a live session."""
        async with self._reads() as tx:
            rows = await tx.fetch(
                "SELECT generation FROM app_sessions WHERE id = ? AND expires_at > ?",
                (_row_id(session_id), self._clock()),
            )
        return int(rows[0][0]) if rows else None

    async def _load(self, session_id: str) -> StoredSession | None:
        async with self._reads() as tx:
            return await self._read(tx, session_id, lock=False)

    async def _read(self, tx: Tx, session_id: str, *, lock: bool) -> StoredSession | None:
        row_id = _row_id(session_id)
        rows = await tx.fetch(
            "SELECT sealed FROM app_sessions WHERE id = ? AND expires_at > ?"
            + (self._for_update if lock else ""),
            (row_id, self._clock()),
        )
        return self._open(row_id, str(rows[0][0]), StoredSession) if rows else None

    # LaunchMirror (agent.service.sessions): rows named by the state's SHA-256, the launch sealed.

    async def put_launch(self, state: str, launch: PendingLaunch) -> None:
        row_id = _row_id(state)
        async with self._tx() as tx:
            await tx.run("DELETE FROM app_launches WHERE expires_at < ?", (self._clock(),))
            await tx.run(
                "INSERT INTO app_launches (id, expires_at, sealed) VALUES (?, ?, ?)",
                (row_id, launch.created_at + LAUNCH_TTL_S, self._seal(row_id, stored_launch(launch))),
            )

    async def take_launch(self, state: str) -> PendingLaunch | None:
        """The launch, its row deleted in the same transaction: of two replicas taking one state
        at once, one gets it (the other's delete finds no row)."""
        row_id = _row_id(state)
        async with self._tx() as tx:
            rows = await tx.fetch(
                "SELECT sealed FROM app_launches WHERE id = ? AND expires_at > ?" + self._for_update,
                (row_id, self._clock()),
            )
            taken = await tx.run("DELETE FROM app_launches WHERE id = ?", (row_id,))
        stored = self._open(row_id, str(rows[0][0]), StoredLaunch) if rows and taken == 1 else None
        return None if stored is None else launch_from(stored)

    # SessionMirror (agent.service.sessions)

    async def put(self, session: Session) -> None:
        async with self._tx() as tx:
            await self._write(tx, stored_of(session))

    async def remove(self, session_id: str) -> None:
        async with self._tx() as tx:
            await tx.run("DELETE FROM app_sessions WHERE id = ?", (_row_id(session_id),))

    async def current(self, session_id: str, mine: Session | None) -> Session | None:
        generation = await self._generation(session_id)
        if generation is None:
            return None
        if mine is not None and mine.generation == generation:
            return mine
        stored = await self._load(session_id)
        return None if stored is None else session_from(stored)

    async def refresh(self, session: Session, refresh: Callable[[], Awaitable[bool]]) -> bool:
        refreshed = False

        async def update(current: StoredSession | None) -> StoredSession | None:
            nonlocal refreshed
            if current is None:
                return None  # ended on another replica (a logout, a refused refresh)
            if current.generation != session.generation:
                session.adopt(session_from(current))  # refreshed elsewhere meanwhile: its tokens
                refreshed = True
                return current
            refreshed = await refresh()
            return stored_of(session) if refreshed else None

        await self._update(session.id, update)
        return refreshed

    async def _update(
        self, session_id: str, update: Callable[[StoredSession | None], Awaitable[StoredSession | None]]
    ) -> None:
        """Runs `update` on the session as stored, with its row locked, and stores what it returns
        (None: the session is over, its row deleted). Another replica's refresh of the same session
        waits until this one is stored, and then sees the new generation."""
        async with self._tx() as tx:
            current = await self._read(tx, session_id, lock=True)
            updated = await update(current)
            if updated is None:
                await tx.run("DELETE FROM app_sessions WHERE id = ?", (_row_id(session_id),))
            else:
                await self._write(tx, updated)


@asynccontextmanager
async def open_shared_sessions(settings: Settings, key: SecretStr) -> AsyncIterator[SharedSessions]:
    secret = decode_session_key(key)
    async with open_owner(settings, SERVICE_DATABASE_FILE, lambda db: SharedSessions(db, secret)) as sessions:
        yield sessions


class SessionSync:
    """ASGI middleware: before a request that carries the app's session cookie, this process's
    copy of the session is made current from the shared store (`SessionStore.sync`). The store
    unreachable: 503, not a request served on a session that may have ended elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            conn = HTTPConnection(scope)
            runtime = runtime_of(conn)
            # `sync` does nothing without a cookie, or before the lifespan opens the store.
            try:
                await runtime.sessions.sync(conn.cookies.get(session_cookie_name(runtime)))
            except database_errors() as exc:
                log.warning("session store unreachable: %s", type(exc).__name__)
                unavailable = JSONResponse(
                    {"detail": "the session store cannot be reached; try again"}, status_code=503
                )
                await unavailable(scope, receive, send)
                return
        await self.app(scope, receive, send)
