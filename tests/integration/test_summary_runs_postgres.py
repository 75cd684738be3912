""" "Summarize now" runs on Postgres, as API replicas share them: of three replicas starting the
same patients' runs at once, one run starts per patient (the partial unique index and its
`ON CONFLICT` target, which SQLite runs in tests/unit/test_run_store.py); a run whose replica
stopped reads as failed and the patient's next start replaces it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from postgres_server import postgres_cluster

from agent.service.run_store import STOPPED, open_run_store
from agent.settings import Settings

pytestmark = pytest.mark.integration

EHR = "https://ehr.example/fhir"


async def test_replicas_on_postgres_start_one_run_per_patient(tmp_path: Path) -> None:
    patients = [f"p{i}" for i in range(8)]
    with postgres_cluster() as url:
        settings = Settings(state_dir=tmp_path, checkpoint_url=url)
        async with (
            open_run_store(settings, beat_ttl_s=0.5) as a,
            open_run_store(settings, beat_ttl_s=0.5) as b,
            open_run_store(settings, beat_ttl_s=0.5) as c,
        ):
            replicas = (a, b, c)
            started = await asyncio.gather(
                *(s.start(f"{p}-{i}", EHR, p) for p in patients for i, s in enumerate(replicas))
            )
            for p in patients:
                mine = [(run_id, new) for run_id, new in started if run_id.startswith(f"{p}-")]
                assert len({run_id for run_id, _ in mine}) == 1, mine
                assert sum(new for _, new in mine) == 1, mine
            orphan = next(run_id for run_id, new in started if new and run_id.startswith("p0-"))
            await asyncio.sleep(0.7)  # no replica beats for it
            stopped = await b.get(orphan)
            assert stopped is not None
            assert (stopped.status, stopped.error) == ("failed", STOPPED)
            assert await c.start("p0-next", EHR, "p0") == ("p0-next", True)
    assert not (tmp_path / "service.sqlite").exists()  # Postgres, not the SQLite fallback
