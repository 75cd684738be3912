"""The imaging plan: roles, UIDs, dates, independence from cohort size, and byte-level determinism."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from datetime import date

import pytest

import agent.testbed.cohort.imaging as imaging
from agent.testbed.cohort.imaging import (
    IMAGING_REFERENCE_DATE,
    CtChestSpec,
    CxrSpec,
    ImagingPlan,
    MrBrainSpec,
    PatientIdentity,
    PatientSex,
    StudyPlan,
    Timepoint,
    plan_imaging,
    render_study,
)
from agent.testbed.cohort.imaging.ct_phantom import ct_chest_geometry

IDS = [f"ca-7-{i}" for i in range(12)]
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")


def identity(patient_id: str) -> PatientIdentity:
    return PatientIdentity(
        patient_id=patient_id,
        family="Testperson",
        given="Di",
        birth_date=date(1949, 7, 1),
        sex=PatientSex.FEMALE,
    )


def small_ct(study: StudyPlan) -> StudyPlan:
    """The planned CT with a 4-slice 64x64 geometry, to render in milliseconds."""
    assert isinstance(study.spec, CtChestSpec)
    geometry = ct_chest_geometry(slices=4, size=64, first_z_mm=-150.0)
    return study.model_copy(
        update={
            "spec": study.spec.model_copy(update={"geometry": geometry}),
            "series": (study.series[0].model_copy(update={"instance_count": 4}),),
        }
    )


def digest(plan: ImagingPlan) -> str:
    """SHA-256 over the plan and the files of a compressed CXR and a small CT."""
    h = hashlib.sha256(plan.model_dump_json().encode())
    rle = next(s for s in plan.studies if s.series[0].transfer_syntax.name == "RLE_LOSSLESS")
    ct = next(s for s in plan.studies if isinstance(s.spec, CtChestSpec))
    for study in (rle, small_ct(ct)):
        for instance in render_study(study, identity(study.patient_id)):
            h.update(instance.data)
    return h.hexdigest()


@pytest.fixture(scope="module")
def plan() -> ImagingPlan:
    return plan_imaging(IDS, seed=7)


def kinds(plan: ImagingPlan, patient_id: str) -> list[str]:
    return [s.key for s in plan.for_patient(patient_id)]


def test_roles_by_position(plan: ImagingPlan) -> None:
    assert kinds(plan, IDS[0]) == ["ct-chest-prior", "ct-chest-current", "cxr-prior", "cxr-current"]
    assert kinds(plan, IDS[1]) == ["ct-chest-prior", "ct-chest-current"]
    assert kinds(plan, IDS[2]) == ["mr-brain-current"]
    for pid in IDS[3:7]:
        assert kinds(plan, pid) == ["cxr-prior", "cxr-current"]
    for pid in IDS[7:]:
        assert kinds(plan, pid) == []
    assert sum(isinstance(s.spec, CtChestSpec) for s in plan.studies) == 4
    assert sum(isinstance(s.spec, MrBrainSpec) for s in plan.studies) == 1
    assert sum(isinstance(s.spec, CxrSpec) for s in plan.studies) == 10


def test_uids_are_valid_and_unique(plan: ImagingPlan) -> None:
    uids: list[str] = []
    for study in plan.studies:
        uids.append(study.uid)
        for series in study.series:
            uids.append(series.uid)
            uids += [series.instance_uid(n) for n in range(1, series.instance_count + 1)]
    for uid in uids:
        assert len(uid) <= 64
        assert _UID.match(uid), uid
        assert uid.startswith(imaging.uids.UID_ROOT)
    assert len(set(uids)) == len(uids)
    frames = [s.series[0].frame_of_reference_uid for s in plan.studies if not isinstance(s.spec, CxrSpec)]
    assert None not in frames
    assert len(set(frames)) == len(frames)


def test_dates_are_fixed_and_priors_are_months_earlier(plan: ImagingPlan) -> None:
    for study in plan.studies:
        assert study.study_date < IMAGING_REFERENCE_DATE
        assert study.started.tzinfo is not None
        assert len(study.accession_number) <= 16
    pairs = plan.pairs()
    assert len(pairs) == 7
    for prior, current in pairs:
        assert prior.timepoint is Timepoint.PRIOR
        assert current.timepoint is Timepoint.CURRENT
        assert 90 <= (current.study_date - prior.study_date).days <= 320
        assert prior.uid != current.uid
    moved = plan_imaging(IDS, seed=7, reference_date=date(2020, 1, 1))
    assert all(s.study_date < date(2020, 1, 1) for s in moved.studies)


def test_same_seed_same_plan_other_seed_other_uids(plan: ImagingPlan) -> None:
    assert plan_imaging(IDS, seed=7) == plan
    other = plan_imaging(IDS, seed=8)
    assert {s.uid for s in other.studies}.isdisjoint({s.uid for s in plan.studies})


def test_a_patient_s_studies_do_not_depend_on_cohort_size(plan: ImagingPlan) -> None:
    small = plan_imaging(IDS[:3], seed=7)
    assert small.studies == plan.studies[: len(small.studies)]
    assert len(small.studies) == 7


def test_plan_round_trips_through_json(plan: ImagingPlan) -> None:
    assert ImagingPlan.model_validate_json(plan.model_dump_json()) == plan


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan_imaging(["a", "a"], seed=1)
    plan = plan_imaging(["ca-1-0"], seed=1)
    with pytest.raises(KeyError, match=r"1\.2\.3"):
        plan.study("1.2.3")
    with pytest.raises(ValueError, match=re.escape(plan.studies[0].uid)):
        next(render_study(small_ct(plan.studies[0]), identity("someone-else")))
    with pytest.raises(ValueError, match="has 4 instances, not number 5"):
        small_ct(plan.studies[0]).series[0].instance_uid(5)


def test_files_are_byte_identical_across_processes(plan: ImagingPlan) -> None:
    here = digest(plan)
    assert digest(plan_imaging(IDS, seed=7)) == here
    # Another interpreter with another hash seed: nothing may depend on set or dict hashing.
    script = (
        "from tests.unit.test_synthetic_imaging_plan import digest, IDS\n"
        "from agent.testbed.cohort.imaging import plan_imaging\n"
        "print(digest(plan_imaging(IDS, seed=7)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    assert out.stdout.strip() == here
    assert digest(plan_imaging(IDS, seed=8)) != here


def test_public_exports_resolve() -> None:
    for name in imaging.__all__:
        assert getattr(imaging, name) is not None, name
