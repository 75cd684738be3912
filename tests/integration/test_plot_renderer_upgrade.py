"""A server that holds summaries drawn by an older plot renderer (issue 12: the renderer is part
of the report's identifier): the first run of the new renderer writes no duplicate, a patient with
nothing new keeps its older summary (no rewrite just for new pixels), and the next summary of a
patient with a new result supersedes the older renderer's report rather than standing beside it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import pytest
from fhir_reads import duplicate_identifiers, get, post_newer_creatinine, search, server_with
from PIL import Image

from agent.context import RunContext
from agent.jobs.summarize import summarize_many
from agent.testbed.cohort import Cohort, generate_cohort
from fhir_adapters import FhirClient
from tools.trends import Trend
from tools.writeback.supersede import SUPERSEDED_BY_URL
from tools.writeback.trend_plots import render_trend_plot

pytestmark = pytest.mark.integration

SUMMARY_CODE = "http://loinc.org|11502-2"


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return generate_cohort(1, 29)


async def summaries(base: str, patient_id: str) -> list[dict[str, Any]]:
    return await search(base, "DiagnosticReport", subject=f"Patient/{patient_id}", code=SUMMARY_CODE)


def older_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an older renderer wrote: other pixels under another revision."""

    def drawn_otherwise(t: Trend, refs: frozenset[str] = frozenset()) -> bytes:
        image = Image.open(io.BytesIO(render_trend_plot(t, refs))).convert("RGB")
        image.putpixel((0, 0), (0, 0, 0))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()

    monkeypatch.setattr("tools.writeback.builders.render_trend_plot", drawn_otherwise)
    monkeypatch.setattr("tools.writeback.builders.RENDERER", "older-renderer/1")


async def test_a_summary_of_an_older_renderer_is_superseded_not_duplicated(
    fhir_server_factory: Callable[..., str], cohort: Cohort, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = await asyncio.to_thread(server_with, fhir_server_factory, cohort)
    patient = cohort.patients[0].id
    async with FhirClient(base) as client:
        with monkeypatch.context() as patched:
            older_renderer(patched)
            (first,) = await summarize_many(RunContext(fhir=client), [patient])
        assert first.status == "written"
        (old,) = await summaries(base, patient)
        assert any(f["contentType"] == "image/png" for f in old["presentedForm"])

        # The new renderer, nothing new in the record: nothing rewritten, nothing twice.
        (second,) = await summarize_many(RunContext(fhir=client), [patient])
        assert second.status == "unchanged"
        assert [r["id"] for r in await summaries(base, patient)] == [old["id"]]

        # A new result: the new renderer's summary replaces the older renderer's.
        await post_newer_creatinine(client, base, patient)
        (third,) = await summarize_many(RunContext(fhir=client), [patient])
        assert third.status == "written"
        assert third.superseded == [f"DiagnosticReport/{old['id']}"]
        current = [r for r in await summaries(base, patient) if r["status"] == "preliminary"]
        assert len(current) == 1
        assert current[0]["id"] != old["id"]
        retired = await get(f"{base}/DiagnosticReport/{old['id']}")
        assert retired["status"] == "cancelled"
        links = [
            e["valueReference"]["reference"] for e in retired["extension"] if e["url"] == SUPERSEDED_BY_URL
        ]
        assert links == [f"DiagnosticReport/{current[0]['id']}"]
    assert await duplicate_identifiers(base) == {}
