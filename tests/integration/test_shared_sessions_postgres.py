"""SMART app sessions shared on Postgres (agent.service.shared_sessions), as API replicas on several
hosts share them: two replicas refreshing one session at the same moment, each from its own copy,
ask the EHR once (the row is locked `FOR UPDATE`; the second finds the new generation and adopts
its tokens), and a logout on one ends the session on the other; a launch in flight is taken by
one of the replicas racing for its callback (`FOR UPDATE`, then the delete)."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest
from postgres_server import postgres_cluster
from pydantic import SecretStr

from agent.service.sessions import LaunchStore, PendingLaunch, Session, SessionStore
from agent.service.shared_sessions import open_shared_sessions
from agent.settings import Settings
from fhir_adapters.smart_app_launch import Pkce, SmartConfiguration
from fhir_adapters.smart_scopes import ScopeSet

pytestmark = pytest.mark.integration

KEY = SecretStr(base64.b64encode(os.urandom(32)).decode())


def _new(store: SessionStore) -> Session:
    config = SmartConfiguration(
        authorization_endpoint="https://ehr.test/auth/authorize", token_endpoint="https://ehr.test/auth/token"
    )
    return store.create(
        iss="https://ehr.test/fhir",
        config=config,
        patient_id="p",
        fhir_user=None,
        scopes=ScopeSet.parse("patient/*.rs"),
        need_patient_banner=False,
        access_token=SecretStr("access-0"),
        expires_in=300,
        refresh_token=SecretStr("refresh-0"),
        lifetime_s=3600,
    )


async def test_two_replicas_on_postgres_refresh_a_session_once(tmp_path: Path) -> None:
    asked: list[str] = []
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with open_shared_sessions(settings, KEY) as one, open_shared_sessions(settings, KEY) as two:
            a, b = SessionStore(), SessionStore()
            a.mirror, b.mirror = one, two
            session = _new(a)
            await a.share(session)
            await b.sync(session.id)
            copy = b.get(session.id)
            assert copy is not None
            assert copy is not session

            def at_the_ehr(s: Session) -> object:
                async def refresh() -> bool:
                    asked.append(s.refresh_token.get_secret_value() if s.refresh_token else "")
                    await asyncio.sleep(0.3)  # the token endpoint's round trip, the row locked
                    s.access_token, s.refresh_token = SecretStr("access-1"), SecretStr("refresh-1")
                    s.generation += 1
                    return True

                return refresh

            both = await asyncio.gather(
                one.refresh(session, at_the_ehr(session)),  # type: ignore[arg-type]
                two.refresh(copy, at_the_ehr(copy)),  # type: ignore[arg-type]
            )
            assert both == [True, True]
            assert asked == ["refresh-0"]
            for s in (session, copy):
                assert (s.generation, s.access_token.get_secret_value()) == (1, "access-1")
            await b.end(session.id)
            await a.sync(session.id)
            assert a.get(session.id) is None
    assert not (tmp_path / "service.sqlite").exists()


async def test_a_launch_on_postgres_is_taken_once_by_replicas_racing_for_it(tmp_path: Path) -> None:
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with (
            open_shared_sessions(settings, KEY) as a,
            open_shared_sessions(settings, KEY) as b,
            open_shared_sessions(settings, KEY) as c,
        ):
            stores = [LaunchStore(), LaunchStore(), LaunchStore()]
            for store, mirror in zip(stores, (a, b, c), strict=True):
                store.mirror = mirror
            launch = PendingLaunch(
                iss="https://ehr.test/fhir",
                config=SmartConfiguration(
                    authorization_endpoint="https://ehr.test/auth/authorize",
                    token_endpoint="https://ehr.test/auth/token",
                ),
                pkce=Pkce.new(),
                nonce="n",
                browser_binding="b",
                created_at=stores[0].now(),
            )
            await stores[0].put("the-state", launch)
            taken = await asyncio.gather(*(s.take("the-state") for s in stores for _ in range(3)))
    assert [t for t in taken if t is not None] == [launch]
