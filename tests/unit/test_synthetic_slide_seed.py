"""Seeding the slide against a fake PACS (MockTransport): QIDO first; render and STOW only when missing."""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest

from agent.testbed.cohort.imaging import PatientIdentity, PatientSex
from agent.testbed.cohort.imaging.seed import _seed_slide
from agent.testbed.cohort.imaging.slide import SlidePlan, plan_slide
from tools.imaging.dicomweb import DicomWebClient

IDS = [f"ca-7-{i}" for i in range(8)]
BASE = "http://pacs.test/dicom-web"
IDENTITY = PatientIdentity(
    patient_id=IDS[7], family="Okafor", given="Ada", birth_date=date(1961, 3, 9), sex=PatientSex.FEMALE
)


@pytest.fixture(scope="module")
def small() -> SlidePlan:
    slide = plan_slide(IDS, 7, reference_date=date(2026, 6, 30), size=(2048, 2048))
    assert slide is not None
    return slide


def study_match(uid: str, instances: int) -> list[dict[str, object]]:
    return [
        {
            "0020000D": {"vr": "UI", "Value": [uid]},
            "00201208": {"vr": "IS", "Value": [instances]},
        }
    ]


async def test_a_slide_the_pacs_holds_is_not_rendered_again(small: SlidePlan) -> None:
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.method)
        assert request.method == "GET"
        return httpx.Response(200, json=study_match(small.uid, small.min_instances))

    async with DicomWebClient(BASE, transport=httpx.MockTransport(handler)) as pacs:
        outcome = await _seed_slide(pacs, small, IDENTITY)
    assert (outcome.held, outcome.stored, outcome.already, outcome.failure) == (3, 0, True, None)
    assert requests == ["GET"]


async def test_a_refused_slide_is_reported_with_its_uid(small: SlidePlan) -> None:
    posted: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            # Partly stored earlier (fewer instances than levels): rendered and sent again.
            return httpx.Response(200, json=study_match(small.uid, 1))
        posted.append(len(request.content))
        body = {"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [0xA700]}}]}}
        return httpx.Response(
            409, content=json.dumps(body), headers={"content-type": "application/dicom+json"}
        )

    async with DicomWebClient(BASE, transport=httpx.MockTransport(handler)) as pacs:
        outcome = await _seed_slide(pacs, small, IDENTITY)
    assert posted
    assert outcome.held == 0
    assert outcome.already is False
    assert outcome.failure is not None
    assert outcome.failure.startswith(f"{small.uid}: ")
