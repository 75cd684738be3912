"""Server-side sessions of the SMART app (backend-for-frontend) and the launches in flight.

Each process holds the sessions it serves in memory. By default that is all: a restart logs every
user out (they launch again from the EHR), and several replicas need sticky routing (the Helm
chart's Service and Ingress keep each user on one replica). With `CHARTAGENT_APP_SESSION_KEY` the
store has a mirror (`SessionMirror`: agent.service.shared_sessions, sealed rows in the shared
database) that every replica reads: a session is found wherever the user's request lands, and ends
everywhere when it ends on one. Tokens never reach the browser: it holds only an opaque random
session id in an HttpOnly cookie (`agent.service.smart_launch` sets it).

A session is bound to its launch's patient and issuer. Its FHIR access is `SessionAuth`: the
current access token, refreshed with the refresh token (which the EHR may rotate) shortly
before it expires or after a 401; one refresh at a time per session (its lock).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from pydantic import SecretStr

from fhir_adapters.smart_app_launch import Pkce, SmartAppClient, SmartConfiguration, SmartTokenRefused
from fhir_adapters.smart_scopes import ScopeSet

# Refresh this long before the access token expires (at most a quarter of its lifetime), so a
# request never starts on a dying token.
REFRESH_MARGIN_S = 30.0
# A launch must come back to the callback within this time.
LAUNCH_TTL_S = 600.0
# Anyone may open /app/launch: the launches in flight are capped (the oldest give way).
MAX_PENDING_LAUNCHES = 10_000


def opaque_label(secret: str, prefix: str) -> str:
    """A PHI- and secret-free name for logs: a short hash of an id."""
    return f"{prefix}:{hashlib.sha256(secret.encode()).hexdigest()[:12]}"


@dataclass
class Session:
    id: str
    iss: str
    config: SmartConfiguration
    patient_id: str
    fhir_user: str | None
    scopes: ScopeSet
    need_patient_banner: bool
    csrf_token: str
    expires_at: float
    access_token: SecretStr
    access_expires_at: float
    access_lifetime_s: float
    refresh_token: SecretStr | None
    # Bumped at each refresh: a request that saw generation n and got a 401 refreshes only if
    # nobody has refreshed since.
    generation: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def label(self) -> str:
        return opaque_label(self.id, "session")

    def adopt(self, other: Session) -> None:
        """Takes `other`'s state (the same session as another replica left it), in place: requests
        in flight keep this object and its lock."""
        self.scopes = other.scopes
        self.expires_at = other.expires_at
        self.access_token = other.access_token
        self.access_expires_at = other.access_expires_at
        self.access_lifetime_s = other.access_lifetime_s
        self.refresh_token = other.refresh_token
        self.generation = other.generation


class SessionMirror(Protocol):
    """Where every replica finds the sessions (agent.service.shared_sessions.SharedSessions)."""

    async def put(self, session: Session) -> None: ...

    async def remove(self, session_id: str) -> None: ...

    async def current(self, session_id: str, mine: Session | None) -> Session | None:
        """The session as the mirror has it: `mine` when that is current, None when it is over."""
        ...

    async def refresh(self, session: Session, refresh: Callable[[], Awaitable[bool]]) -> bool:
        """Runs `refresh` (which updates `session`) with the session locked on every replica,
        unless another replica refreshed it meanwhile (its tokens are then adopted). False: the
        session is over."""
        ...


class SessionStore:
    """Sessions by id (in memory, this process's); expired ones are dropped when met. With a
    `mirror`, `share`, `end` and `sync` keep it and this process's copies in step."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        # Set for the app's lifetime when sessions are shared (agent.service.shared_sessions).
        self.mirror: SessionMirror | None = None

    def create(
        self,
        *,
        iss: str,
        config: SmartConfiguration,
        patient_id: str,
        fhir_user: str | None,
        scopes: ScopeSet,
        need_patient_banner: bool,
        access_token: SecretStr,
        expires_in: float | None,
        refresh_token: SecretStr | None,
        lifetime_s: float,
    ) -> Session:
        now = self._clock()
        self._evict(now)
        lifetime = expires_in if expires_in is not None else 300.0
        session = Session(
            id=secrets.token_urlsafe(32),
            iss=iss,
            config=config,
            patient_id=patient_id,
            fhir_user=fhir_user,
            scopes=scopes,
            need_patient_banner=need_patient_banner,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + lifetime_s,
            access_token=access_token,
            access_expires_at=now + lifetime,
            access_lifetime_s=lifetime,
            refresh_token=refresh_token,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            self._sessions.pop(session_id, None)
            return None
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def share(self, session: Session) -> None:
        """A new session, stored where every replica finds it (with a mirror)."""
        if self.mirror is not None:
            await self.mirror.put(session)

    async def end(self, session_id: str) -> None:
        """The session ends here and, with a mirror, on every replica."""
        self.drop(session_id)
        if self.mirror is not None:
            await self.mirror.remove(session_id)

    async def sync(self, session_id: str | None) -> None:
        """With a mirror, before a request uses the session: this process's copy made current (taken
        from the mirror when this process has none or an older one; dropped when it is over)."""
        if self.mirror is None or not session_id:
            return
        mine = self._sessions.get(session_id)
        current = await self.mirror.current(session_id, mine)
        if current is None:
            self._sessions.pop(session_id, None)
        elif mine is None:
            self._sessions[session_id] = current
        elif current is not mine:
            mine.adopt(current)

    def __len__(self) -> int:
        return len(self._sessions)

    def _evict(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[sid]


@dataclass(frozen=True)
class PendingLaunch:
    """What /app/launch remembers until the callback: never sent to the browser."""

    iss: str
    config: SmartConfiguration
    pkce: Pkce
    nonce: str
    # sha256 of the pre-session cookie: the callback must come from the browser that launched.
    browser_binding: str
    created_at: float


class LaunchMirror(Protocol):
    """Where every replica finds the launches in flight (agent.service.shared_sessions)."""

    async def put_launch(self, state: str, launch: PendingLaunch) -> None: ...

    async def take_launch(self, state: str) -> PendingLaunch | None:
        """The launch, removed for every replica (taken once), or None."""
        ...


class LaunchStore:
    """Launches in flight by `state`; a state is taken once, whatever the callback's outcome. In
    this process's memory, or, with a `mirror` (set for the app's lifetime when sessions are
    shared), only there: the callback may then reach another replica than the launch."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._launches: dict[str, PendingLaunch] = {}
        self.mirror: LaunchMirror | None = None

    async def put(self, state: str, launch: PendingLaunch) -> None:
        if self.mirror is not None:
            await self.mirror.put_launch(state, launch)
            return
        now = self._clock()
        if len(self._launches) >= MAX_PENDING_LAUNCHES:
            for s in [s for s, p in self._launches.items() if now - p.created_at > LAUNCH_TTL_S]:
                del self._launches[s]
            while len(self._launches) >= MAX_PENDING_LAUNCHES:
                del self._launches[next(iter(self._launches))]
        self._launches[state] = launch

    async def take(self, state: str) -> PendingLaunch | None:
        if self.mirror is not None:
            launch = await self.mirror.take_launch(state)
        else:
            launch = self._launches.pop(state, None)
        if launch is None or self._clock() - launch.created_at > LAUNCH_TTL_S:
            return None
        return launch

    def now(self) -> float:
        return self._clock()


def browser_binding(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


class SessionAuth:
    """The session's FHIR credentials (`fhir_adapters.auth.AuthProvider`): its access token,
    refreshed when it is about to expire or after a 401. A refused refresh ends the session."""

    def __init__(
        self,
        session: Session,
        store: SessionStore,
        *,
        client_id: str,
        client_secret: SecretStr | None,
        redirect_uri: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._store = store
        self._client_id = client_id
        self._secret = client_secret
        self._redirect_uri = redirect_uri
        self._clock = clock
        self._used_generation = session.generation
        self.refreshes = 0  # observable for tests

    def __repr__(self) -> str:
        return f"SessionAuth({self._session.label})"

    async def authorization(self, http: httpx.AsyncClient, base_url: str) -> str | None:
        s = self._session
        margin = min(REFRESH_MARGIN_S, s.access_lifetime_s / 4)
        if s.refresh_token is not None and self._clock() >= s.access_expires_at - margin:
            await self._refresh(http, seen=s.generation)
        self._used_generation = s.generation
        return f"Bearer {s.access_token.get_secret_value()}"

    async def refresh(self, http: httpx.AsyncClient, base_url: str) -> bool:
        if self._session.refresh_token is None:
            return False
        return await self._refresh(http, seen=self._used_generation)

    async def _refresh(self, http: httpx.AsyncClient, *, seen: int) -> bool:
        s = self._session
        async with s.lock:
            if s.generation != seen:  # another request of this session refreshed meanwhile
                return True
            mirror = self._store.mirror
            if mirror is None:
                return await self._refresh_tokens(http)
            if await mirror.refresh(s, lambda: self._refresh_tokens(http)):
                return True
            self._store.drop(s.id)  # over on another replica, or its grant refused
            return False

    async def _refresh_tokens(self, http: httpx.AsyncClient) -> bool:
        """A refresh at the EHR's token endpoint, the session updated; False when there is no
        refresh token, or (the session dropped) when the EHR refuses it. Holding the session's lock."""
        s = self._session
        if s.refresh_token is None:
            return False
        client = SmartAppClient(
            http,
            s.config,
            iss=s.iss,
            client_id=self._client_id,
            redirect_uri=self._redirect_uri,
            client_secret=self._secret,
        )
        try:
            tokens = await client.refresh(s.refresh_token)
        except SmartTokenRefused:
            # The grant is gone (revoked, expired, a rotated token reused): so is the session.
            s.refresh_token = None
            self._store.drop(s.id)
            return False
        self.refreshes += 1
        s.access_token = tokens.access_token
        lifetime = tokens.expires_in if tokens.expires_in is not None else 300.0
        s.access_expires_at = self._clock() + lifetime
        s.access_lifetime_s = lifetime
        if tokens.refresh_token is not None:  # rotated
            s.refresh_token = tokens.refresh_token
        if tokens.scope:  # a refresh may narrow the grant, never widen it
            s.scopes = s.scopes.narrowed_to(ScopeSet.parse(tokens.scope))
        s.generation += 1
        return True
