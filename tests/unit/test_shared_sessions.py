"""Sessions shared by replicas through the database (agent.service.shared_sessions), on SQLite:
each `SessionStore` here is one replica with its own connection. Sealed rows (no token, id or
patient readable; a row moved to another id, or opened with another key, is no session), a
session taken up by another replica, ended on all, and a refresh that another replica already
made adopted instead of repeated (EHRs refuse a rotated refresh token used twice). Launches in
flight likewise: sealed, taken once by whichever replica the callback reaches."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import SecretStr

from agent.service import sessions
from agent.service.sessions import LaunchStore, PendingLaunch, Session, SessionStore
from agent.service.shared_sessions import open_shared_sessions
from agent.service.token_uses import SERVICE_DATABASE_FILE
from agent.settings import Settings, SettingsError, load_settings
from fhir_adapters.smart_app_launch import Pkce, SmartConfiguration
from fhir_adapters.smart_scopes import ScopeSet

KEY = SecretStr(base64.b64encode(os.urandom(32)).decode())


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, checkpoint_url=None)


Store = TypeVar("Store", SessionStore, LaunchStore)


@asynccontextmanager
async def _stores(
    tmp_path: Path, n: int, kind: type[Store], key: SecretStr = KEY
) -> AsyncIterator[list[Store]]:
    """`n` replicas' stores, each with its own connection to one SQLite file as its mirror."""
    async with AsyncExitStack() as stack:
        stores = [kind() for _ in range(n)]
        for store in stores:
            store.mirror = await stack.enter_async_context(open_shared_sessions(_settings(tmp_path), key))
        yield stores


def _replicas(
    tmp_path: Path, n: int, key: SecretStr = KEY
) -> AbstractAsyncContextManager[list[SessionStore]]:
    return _stores(tmp_path, n, SessionStore, key)


def _new(store: SessionStore) -> Session:
    config = SmartConfiguration(
        authorization_endpoint="https://ehr.test/auth/authorize",
        token_endpoint="https://ehr.test/auth/token",
        code_challenge_methods_supported=("S256",),
    )
    return store.create(
        iss="https://ehr.test/fhir",
        config=config,
        patient_id="patient-in-the-row",
        fhir_user="Practitioner/p1",
        scopes=ScopeSet.parse("patient/*.rs"),
        need_patient_banner=True,
        access_token=SecretStr("access-token-0"),
        expires_in=300,
        refresh_token=SecretStr("refresh-token-0"),
        lifetime_s=3600,
    )


def _rotate(session: Session, calls: list[str]) -> None:
    """What a refresh at a rotating EHR does to the session (`SessionAuth._refresh_tokens`)."""
    n = session.generation + 1
    calls.append(session.refresh_token.get_secret_value() if session.refresh_token else "")
    session.access_token = SecretStr(f"access-token-{n}")
    session.refresh_token = SecretStr(f"refresh-token-{n}")
    session.generation = n


async def test_another_replica_takes_up_the_session_as_sealed(tmp_path: Path) -> None:
    async with _replicas(tmp_path, 2) as (a, b):
        session = _new(a)
        await a.share(session)
        assert b.get(session.id) is None
        await b.sync(session.id)
        there = b.get(session.id)
        assert there is not None
        assert there is not session
        assert (there.patient_id, there.scopes, there.csrf_token, there.fhir_user) == (
            session.patient_id,
            session.scopes,
            session.csrf_token,
            session.fhir_user,
        )
        assert there.access_token.get_secret_value() == "access-token-0"
        assert there.config == session.config
    raw = (tmp_path / SERVICE_DATABASE_FILE).read_bytes()
    wal = tmp_path / f"{SERVICE_DATABASE_FILE}-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    for secret in ("access-token-0", "refresh-token-0", session.id, "patient-in-the-row", session.csrf_token):
        assert secret.encode() not in raw


async def test_a_row_under_another_id_or_another_key_is_no_session(tmp_path: Path) -> None:
    async with _replicas(tmp_path, 1) as (a,):
        first, second = _new(a), _new(a)
        await a.share(first)
        await a.share(second)
    with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
        rows = dict(db.execute("SELECT id, sealed FROM app_sessions").fetchall())
        one, other = sorted(rows)
        db.execute("UPDATE app_sessions SET sealed = ? WHERE id = ?", (rows[one], other))  # swapped in
    async with _replicas(tmp_path, 1) as (b,):
        await b.sync(first.id)
        await b.sync(second.id)
        assert [b.get(first.id) is None, b.get(second.id) is None].count(True) == 1
    other_key = SecretStr(base64.b64encode(os.urandom(32)).decode())
    async with _replicas(tmp_path, 1, other_key) as (c,):
        await c.sync(first.id)
        await c.sync(second.id)
        assert c.get(first.id) is None
        assert c.get(second.id) is None


async def test_a_session_ended_on_one_replica_is_ended_on_all(tmp_path: Path) -> None:
    async with _replicas(tmp_path, 2) as (a, b):
        session = _new(a)
        await a.share(session)
        await b.sync(session.id)
        assert b.get(session.id) is not None
        await a.end(session.id)
        await b.sync(session.id)
        assert b.get(session.id) is None
        assert a.get(session.id) is None


async def test_a_refresh_another_replica_made_is_adopted_not_repeated(tmp_path: Path) -> None:
    calls: list[str] = []
    async with _replicas(tmp_path, 2) as (a, b):
        session = _new(a)
        await a.share(session)
        await b.sync(session.id)
        stale = b.get(session.id)
        assert stale is not None
        assert stale.generation == 0
        assert a.mirror is not None
        assert b.mirror is not None

        async def refresh(s: Session) -> bool:
            _rotate(s, calls)
            return True

        assert await a.mirror.refresh(session, lambda: refresh(session))
        # B still holds generation 0 (no request synced it): its refresh adopts A's tokens.
        assert await b.mirror.refresh(stale, lambda: refresh(stale))
        assert calls == ["refresh-token-0"]  # the EHR was asked once
        assert (stale.generation, stale.access_token.get_secret_value()) == (1, "access-token-1")
        assert stale.refresh_token is not None
        assert stale.refresh_token.get_secret_value() == "refresh-token-1"
        # A later refresh on B (its copy current now) asks the EHR with the rotated token.
        assert await b.mirror.refresh(stale, lambda: refresh(stale))
        assert calls == ["refresh-token-0", "refresh-token-1"]
        await a.sync(session.id)
        assert session.generation == 2
        assert session.access_token.get_secret_value() == "access-token-2"


async def test_a_refused_refresh_ends_the_session_everywhere(tmp_path: Path) -> None:
    async with _replicas(tmp_path, 2) as (a, b):
        session = _new(a)
        await a.share(session)
        await b.sync(session.id)
        assert a.mirror is not None

        async def refused() -> bool:
            return False

        assert not await a.mirror.refresh(session, refused)
        await b.sync(session.id)
        assert b.get(session.id) is None


def test_a_session_key_that_is_not_32_bytes_of_base64_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("not base64 at all!", base64.b64encode(b"short").decode()):
        monkeypatch.setenv("CHARTAGENT_APP_SESSION_KEY", bad)
        with pytest.raises(SettingsError) as caught:
            load_settings()
        assert "CHARTAGENT_APP_SESSION_KEY" in str(caught.value)
        assert bad not in str(caught.value)
    monkeypatch.setenv(
        "CHARTAGENT_APP_SESSION_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    )
    assert load_settings().app_session_key is not None


def test_a_session_request_gets_503_when_the_shared_store_fails(tmp_path: Path) -> None:
    """The middleware (SessionSync) cannot check the session: 503 with the security headers, never
    the route on a session that may have ended on another replica."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from agent.service import smart_launch
    from agent.service.authz import session_cookie_name
    from agent.service.runtime import ServiceRuntime

    settings = Settings(state_dir=tmp_path, checkpoint_url=None, app_session_key=KEY)
    runtime = ServiceRuntime(
        settings=settings, public_url="http://chartagent.test", fhir_url="http://fhir.test", dicomweb_url=None
    )
    app = FastAPI()
    app.state.runtime = runtime
    smart_launch.install(app)
    with TestClient(app, base_url="http://chartagent.test") as client:
        session = _new(runtime.sessions)
        client.portal.call(runtime.sessions.share, session)  # type: ignore[union-attr]
        client.cookies.set(session_cookie_name(runtime), session.id)
        assert client.get("/api/session").status_code == 200
        with sqlite3.connect(tmp_path / SERVICE_DATABASE_FILE) as db:
            db.execute("DROP TABLE app_sessions")
        failed = client.get("/api/session")
        assert failed.status_code == 503
        assert failed.json() == {"detail": "the session store cannot be reached; try again"}
        assert failed.headers["x-content-type-options"] == "nosniff"
        assert session.id not in failed.text
        client.cookies.clear()
        assert client.get("/api/session").status_code == 401  # without a session: not the store's business


def _launch(store: LaunchStore, verifier: str) -> PendingLaunch:
    return PendingLaunch(
        iss="https://ehr.test/fhir",
        config=SmartConfiguration(
            authorization_endpoint="https://ehr.test/auth/authorize",
            token_endpoint="https://ehr.test/auth/token",
            code_challenge_methods_supported=("S256",),
        ),
        pkce=Pkce(verifier=SecretStr(verifier)),
        nonce="nonce-in-the-row",
        browser_binding="binding-in-the-row",
        created_at=store.now(),
    )


async def test_a_launch_started_on_one_replica_is_taken_once_on_another(tmp_path: Path) -> None:
    verifier = "v" * 64
    async with _stores(tmp_path, 3, LaunchStore) as (a, b, c):
        launch = _launch(a, verifier)
        await a.put("state-in-the-url", launch)
        raw = (tmp_path / SERVICE_DATABASE_FILE).read_bytes()
        wal = tmp_path / f"{SERVICE_DATABASE_FILE}-wal"
        raw += wal.read_bytes() if wal.exists() else b""
        for secret in (verifier, "nonce-in-the-row", "binding-in-the-row", "state-in-the-url"):
            assert secret.encode() not in raw  # sealed; the row is named by the state's hash
        taken = await asyncio.gather(b.take("state-in-the-url"), c.take("state-in-the-url"))
        assert [t for t in taken if t is not None] == [launch]  # one replica gets it
        assert await a.take("state-in-the-url") is None  # taken once, on every replica
        assert await a.take("another-state") is None


async def test_an_expired_launch_or_one_sealed_with_another_key_is_no_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_key = SecretStr(base64.b64encode(os.urandom(32)).decode())
    async with (
        _stores(tmp_path, 1, LaunchStore) as (a,),
        _stores(tmp_path, 1, LaunchStore, other_key) as (b,),
    ):
        await a.put("s1", _launch(a, "w" * 64))
        assert await b.take("s1") is None  # another key: it does not open (and it is gone)
        await a.put("s2", _launch(a, "x" * 64))
        monkeypatch.setattr(sessions, "LAUNCH_TTL_S", -1.0)  # every launch has expired
        assert await a.take("s2") is None
