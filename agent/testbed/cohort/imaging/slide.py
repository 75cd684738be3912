"""One whole-slide pathology study for the synthetic cohort: an H&E slide for the patient at position 7.

`plan_slide` is pure: UIDs, date, description, slide geometry and the tissue islands (the
known answers) follow from (seed, patient id, reference date). `render_slide` writes the
pyramidal TIFF (`wsi_synth.make_slide_tiff`), converts it with OrthancWSIDicomizer
(`wsi_synth.dicomize`) under the patient's identity and returns the DICOM Part-10 bytes.

The slide is 20X (0.5 um/px) with downsamples 1/2/8, so level 1 is exactly 10X (1.0 um/px),
the level MedGemma's patches are cut from: at 8192 x 8192 that level is a 4 x 4 grid of
896 px patches. Rendering and dicomizing take about 2.5 s.

Determinism: the TIFF is byte-identical for a plan. OrthancWSIDicomizer 1.1 is not: it
stamps every file with fresh random UIDs (SOPInstanceUID, DimensionOrganizationUID), takes
study/series/content dates and times from the clock, and with several threads writes the
frames in the order they finish. `render_slide` passes the dates and times in the dataset,
runs one thread (as fast here: JPEG tiles are copied, not re-encoded) and replaces every UID
the dicomizer generated with one derived from the series UID, so two renders of a plan give
byte-identical files, and a re-sent slide carries the SOPInstanceUIDs the PACS already has.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import pydicom
from pydantic import BaseModel, ConfigDict, Field
from pydicom.dataset import Dataset

from agent.testbed.cohort.imaging.identity import PatientIdentity
from agent.testbed.cohort.imaging.uids import derive_uid
from agent.testbed.cohort.imaging.wsi_synth import SlideTruth, dicomize, make_slide_tiff, plan_islands

__all__ = [
    "SLIDE_DESCRIPTION",
    "SLIDE_POSITION",
    "BodySite",
    "SlidePlan",
    "SlideSpec",
    "plan_slide",
    "render_slide",
    "slide_overrides",
]

SLIDE_POSITION: Final = 7
SLIDE_KEY: Final = "wsi"
SLIDE_DESCRIPTION: Final = "H&E whole-slide image, synthetic"
SLIDE_TIFF_NAME: Final = "slide.tiff"
# Root of the UIDs dcmtk (inside the dicomizer) generates: site root + ".1." (instances).
_DCMTK_GENERATED_ROOT: Final = "1.2.276.0.7230010.3.1."


class BodySite(BaseModel):
    """SNOMED CT body structure of the specimen (ImagingStudy.series.bodySite)."""

    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=r"^[0-9]{6,18}$")
    display: str = Field(min_length=1)


class SlideSpec(BaseModel):
    """The `make_slide_tiff` arguments: level 0 at `mpp` um/px, `downsamples` starting at 1."""

    model_config = ConfigDict(frozen=True)

    seed: int = Field(ge=0)
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    mpp: float = Field(gt=0)
    downsamples: tuple[int, ...] = Field(min_length=1)
    n_islands: int = Field(ge=1)
    tile_size: int = 256

    @property
    def level_mpps(self) -> tuple[float, ...]:
        return tuple(self.mpp * d for d in self.downsamples)


class SlidePlan(BaseModel):
    """One slide study (one series): identifiers, date, geometry and the islands it will show."""

    model_config = ConfigDict(frozen=True)

    key: str = SLIDE_KEY
    patient_id: str
    uid: str
    series_uid: str
    accession_number: str = Field(max_length=16)
    study_id: str = Field(max_length=16)
    study_date: date
    study_time: time
    description: str = SLIDE_DESCRIPTION
    series_description: str
    body_site: BodySite | None = None
    spec: SlideSpec
    # `truth.path` is the TIFF's name inside `render_slide`'s workdir.
    truth: SlideTruth

    @property
    def started(self) -> datetime:
        """Study date and time; the synthetic site's clock is UTC."""
        return datetime.combine(self.study_date, self.study_time, tzinfo=UTC)

    @property
    def min_instances(self) -> int:
        """The dicomizer writes at least one instance per pyramid level (see `wsi_synth.dicomize`)."""
        return len(self.spec.downsamples)


def _accession(study_uid: str) -> str:
    digits = int(hashlib.sha256(study_uid.encode()).hexdigest(), 16) % 10**9
    return f"A{digits:09d}"


def _slide_seed(seed: int, patient_id: str) -> int:
    """The slide's RNG seed (a 63-bit int from SHA-256: stable across processes)."""
    digest = hashlib.sha256(f"slide|{seed}|{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def plan_slide(
    cohort_patient_ids: Sequence[str],
    seed: int,
    *,
    reference_date: date,
    size: tuple[int, int] = (8192, 8192),
    mpp: float = 0.5,
    downsamples: tuple[int, ...] = (1, 2, 8),
    n_islands: int = 4,
) -> SlidePlan | None:
    """The slide of the patient at cohort position 7, or None when the cohort is smaller (pure)."""
    if len(set(cohort_patient_ids)) != len(cohort_patient_ids):
        raise ValueError("cohort patient ids must be unique")
    if len(cohort_patient_ids) <= SLIDE_POSITION:
        return None
    patient_id = cohort_patient_ids[SLIDE_POSITION]
    rng = random.Random(f"imaging|{seed}|{patient_id}|{SLIDE_KEY}")
    day = reference_date - timedelta(days=rng.randint(2, 30))
    clock = time(rng.randint(8, 16), rng.choice((0, 15, 30, 45)))
    spec = SlideSpec(
        seed=_slide_seed(seed, patient_id),
        width=size[0],
        height=size[1],
        mpp=mpp,
        downsamples=downsamples,
        n_islands=n_islands,
    )
    # make_slide_tiff draws the islands first from default_rng(seed): the same islands, no pixels.
    islands = plan_islands(np.random.default_rng(spec.seed), spec.width, spec.height, spec.n_islands)
    truth = SlideTruth(
        path=Path(SLIDE_TIFF_NAME),
        seed=spec.seed,
        width=spec.width,
        height=spec.height,
        mpp=spec.mpp,
        downsamples=spec.downsamples,
        tile_size=spec.tile_size,
        compression="jpeg",
        islands=islands,
    )
    uid = derive_uid(seed, patient_id, SLIDE_KEY)
    accession = _accession(uid)
    return SlidePlan(
        patient_id=patient_id,
        uid=uid,
        series_uid=derive_uid(seed, patient_id, SLIDE_KEY, "series"),
        accession_number=accession,
        study_id=accession[-8:],
        study_date=day,
        study_time=clock,
        series_description=f"H&E {round(10 / spec.mpp)}X",
        spec=spec,
        truth=truth,
    )


def slide_overrides(plan: SlidePlan, identity: PatientIdentity) -> dict[str, str]:
    """The dicomizer dataset values beyond PatientID and the UIDs (pure)."""
    if identity.patient_id != plan.patient_id:
        raise ValueError(f"slide {plan.uid} belongs to {plan.patient_id}, not {identity.patient_id}")
    day = plan.study_date.strftime("%Y%m%d")
    clock = plan.study_time.strftime("%H%M%S")
    return {
        "PatientName": identity.dicom_name,
        "PatientBirthDate": identity.birth_date.strftime("%Y%m%d"),
        "PatientSex": str(identity.sex),
        "AccessionNumber": plan.accession_number,
        "StudyID": plan.study_id,
        "StudyDescription": plan.description,
        "SeriesDescription": plan.series_description,
        "SeriesNumber": "1",
        "StudyDate": day,
        "StudyTime": clock,
        "SeriesDate": day,
        "SeriesTime": clock,
        "ContentDate": day,
        "ContentTime": clock,
        "AcquisitionDateTime": day + clock,
    }


def _replace_generated_uids(datasets: Sequence[Dataset], series_uid: str) -> None:
    """Every UID the dicomizer generated -> a UID derived from the series and its order of appearance."""
    derived: dict[str, str] = {}

    def derive(value: str) -> str:
        if value not in derived:
            derived[value] = derive_uid(series_uid, "dicomizer-uid", len(derived))
        return derived[value]

    def fix(ds: Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR == "UI" and isinstance(elem.value, str) and elem.value.startswith(_DCMTK_GENERATED_ROOT):
            elem.value = derive(elem.value)

    for ds in datasets:
        ds.file_meta.walk(fix)
        ds.walk(fix)


def render_slide(plan: SlidePlan, identity: PatientIdentity, workdir: Path) -> list[bytes]:
    """The slide's DICOM WSI files (Part 10, one instance per level), deterministic for a plan.

    Writes the TIFF and the dicomizer's files under `workdir` (which the caller removes).
    Raises `DicomizeError` when the dicomizer is missing or fails.
    """
    overrides = slide_overrides(plan, identity)
    spec = plan.spec
    tiff = workdir / plan.truth.path.name
    truth = make_slide_tiff(
        tiff,
        seed=spec.seed,
        size=(spec.width, spec.height),
        mpp=spec.mpp,
        downsamples=spec.downsamples,
        n_islands=spec.n_islands,
        tile_size=spec.tile_size,
    )
    if truth.islands != plan.truth.islands:
        raise RuntimeError(f"slide {plan.uid}: make_slide_tiff drew other islands than plan_slide")
    files = dicomize(
        tiff,
        workdir / "dicom",
        patient_id=identity.patient_id,
        study_uid=plan.uid,
        series_uid=plan.series_uid,
        overrides=overrides,
        threads=1,
    )
    datasets = [pydicom.dcmread(f) for f in files]
    _replace_generated_uids(datasets, plan.series_uid)
    out: list[bytes] = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out
