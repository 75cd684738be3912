"""`plan_imaging`: which cohort patients get which studies, with every UID, date and truth.

Pure and deterministic. Roles go by position in the cohort list, so the first patients
always carry imaging; the details (sites, sizes, dates, scan ranges, noise) come from an RNG
seeded by (seed, patient id), so a patient's studies do not depend on the cohort size.

| position | studies |
|---|---|
| 0 | CT chest prior + current, lesion grows; CXR prior + current, normal and stable |
| 1 | CT chest prior + current, lesion shrinks |
| 2 | MR brain (T1 and T2 series) with a white-matter lesion |
| 3 | CXR pair, CR MONOCHROME1 with a VOI LUT, nodule grows; current RLE lossless |
| 4 | CXR pair, DX, new opacity on the current |
| 5 | CXR pair, CR MONOCHROME1, opacity shrinks; current JPEG 2000 lossless |
| 6 | CXR pair, DX landscape, stable nodule |
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from datetime import date, time, timedelta

from pydantic import BaseModel, ConfigDict

from agent.testbed.cohort.imaging.ct_phantom import (
    CT_LESION_SITES,
    ChestAnatomy,
    ct_chest_geometry,
    lesion_site_centre,
)
from agent.testbed.cohort.imaging.cxr_phantom import CXR_ZONES, CxrAnatomy, CxrOpacity, opacity_finding
from agent.testbed.cohort.imaging.mr_phantom import (
    MR_LESION_SITES,
    HeadAnatomy,
    MrWeighting,
    mr_brain_geometry,
    mr_lesion_site_centre,
)
from agent.testbed.cohort.imaging.study import (
    CtChestSpec,
    CxrSpec,
    Modality,
    MrBrainSpec,
    Photometric,
    SeriesPlan,
    SopClass,
    StudyPlan,
    Timepoint,
    TransferSyntax,
    VoiKind,
)
from agent.testbed.cohort.imaging.truth import Change, CxrTruth, LesionTruth, SphereLesion, VolumeTruth
from agent.testbed.cohort.imaging.uids import derive_uid

__all__ = ["IMAGING_REFERENCE_DATE", "ImagingPlan", "plan_imaging"]

# The cohort's "today" (same as agent.testbed.cohort.generate.REFERENCE_DATE; not imported from
# there so that cohort generation may import this module). Pass the cohort's own date.
IMAGING_REFERENCE_DATE = date(2026, 6, 30)
_EXPLICIT = TransferSyntax.EXPLICIT_VR_LITTLE_ENDIAN


class ImagingPlan(BaseModel):
    model_config = ConfigDict(frozen=True)

    seed: int
    studies: tuple[StudyPlan, ...]

    def for_patient(self, patient_id: str) -> tuple[StudyPlan, ...]:
        return tuple(s for s in self.studies if s.patient_id == patient_id)

    def study(self, study_uid: str) -> StudyPlan:
        for s in self.studies:
            if s.uid == study_uid:
                return s
        raise KeyError(f"no planned study with StudyInstanceUID {study_uid}")

    def pairs(self) -> tuple[tuple[StudyPlan, StudyPlan], ...]:
        """(prior, current) for every current study that has a prior."""
        return tuple(
            (self.study(s.prior_study_uid), s) for s in self.studies if s.prior_study_uid is not None
        )


class _Dates(BaseModel):
    prior: date
    current: date
    prior_time: time
    current_time: time


def _dates(rng: random.Random, reference: date) -> _Dates:
    current = reference - timedelta(days=rng.randint(2, 20))
    prior = current - timedelta(days=rng.randint(90, 300))

    def clock() -> time:
        return time(rng.randint(8, 16), rng.choice((0, 15, 30, 45)))

    return _Dates(prior=prior, current=current, prior_time=clock(), current_time=clock())


def _accession(study_uid: str) -> str:
    digits = int(hashlib.sha256(study_uid.encode()).hexdigest(), 16) % 10**9
    return f"A{digits:09d}"


def _study(
    *,
    seed: int,
    patient_id: str,
    key: str,
    day: date,
    clock: time,
    description: str,
    timepoint: Timepoint,
    spec: CtChestSpec | MrBrainSpec | CxrSpec,
    series: Sequence[tuple[Modality, str, str, SopClass, int, TransferSyntax]],
    truth: VolumeTruth | CxrTruth,
    prior: StudyPlan | None = None,
    change: Change | None = None,
) -> StudyPlan:
    uid = derive_uid(seed, patient_id, key, "study")
    volume = not isinstance(spec, CxrSpec)
    frame_of_reference = derive_uid(uid, "frame-of-reference") if volume else None
    accession = _accession(uid)
    return StudyPlan(
        key=key,
        patient_id=patient_id,
        uid=uid,
        accession_number=accession,
        study_id=accession[-8:],
        study_date=day,
        study_time=clock,
        description=description,
        timepoint=timepoint,
        prior_study_uid=prior.uid if prior is not None else None,
        change=change,
        spec=spec,
        series=tuple(
            SeriesPlan(
                uid=derive_uid(uid, "series", number),
                number=number,
                modality=modality,
                description=series_description,
                body_part=body_part,
                sop_class=sop_class,
                instance_count=count,
                transfer_syntax=syntax,
                frame_of_reference_uid=frame_of_reference,
            )
            for number, (modality, series_description, body_part, sop_class, count, syntax) in enumerate(
                series, start=1
            )
        ),
        truth=truth,
    )


def _ct_pair(seed: int, patient_id: str, rng: random.Random, reference: date, grows: bool) -> list[StudyPlan]:
    anatomy = ChestAnatomy(scale=round(rng.uniform(0.9, 1.04), 3), vessel_seed=rng.randrange(2**31))
    site = rng.choice(CT_LESION_SITES)
    centre = lesion_site_centre(anatomy, site)
    prior_d = round(rng.uniform(8.0, 14.0) if grows else rng.uniform(18.0, 26.0), 1)
    current_d = round(prior_d * (rng.uniform(1.3, 1.6) if grows else rng.uniform(0.5, 0.7)), 1)
    dates = _dates(rng, reference)
    studies: list[StudyPlan] = []
    for timepoint, diameter, day, clock in (
        (Timepoint.PRIOR, prior_d, dates.prior, dates.prior_time),
        (Timepoint.CURRENT, current_d, dates.current, dates.current_time),
    ):
        # The scan range starts a little differently each time, as it does on a real scanner.
        geometry = ct_chest_geometry(first_z_mm=rng.randint(-10, 20) / 2)
        lesion = SphereLesion(site=site, centre_mm=centre, diameter_mm=diameter)
        spec = CtChestSpec(geometry=geometry, anatomy=anatomy, lesion=lesion, noise_seed=rng.randrange(2**31))
        prior = studies[0] if studies else None
        studies.append(
            _study(
                seed=seed,
                patient_id=patient_id,
                key=f"ct-chest-{timepoint}",
                day=day,
                clock=clock,
                description="CT CHEST WITH IV CONTRAST",
                timepoint=timepoint,
                spec=spec,
                series=[
                    (
                        Modality.CT,
                        "AXIAL 2.5MM SOFT TISSUE",
                        "CHEST",
                        SopClass.CT_IMAGE,
                        geometry.slices,
                        _EXPLICIT,
                    )
                ],
                truth=VolumeTruth(lesion=LesionTruth.from_lesion(lesion, geometry)),
                prior=prior,
                change=None if prior is None else (Change.WORSENED if grows else Change.IMPROVED),
            )
        )
    return studies


def _mr(seed: int, patient_id: str, rng: random.Random, reference: date) -> list[StudyPlan]:
    anatomy = HeadAnatomy(scale=round(rng.uniform(0.93, 1.07), 3))
    site = rng.choice(MR_LESION_SITES)
    lesion = SphereLesion(
        site=site,
        centre_mm=mr_lesion_site_centre(anatomy, site),
        diameter_mm=round(rng.uniform(8.0, 16.0), 1),
    )
    geometry = mr_brain_geometry()
    weightings = (MrWeighting.T1, MrWeighting.T2)
    dates = _dates(rng, reference)
    spec = MrBrainSpec(
        geometry=geometry,
        weightings=weightings,
        anatomy=anatomy,
        lesion=lesion,
        noise_seed=rng.randrange(2**31),
    )
    series = [
        (
            Modality.MR,
            f"AX {w} {'SE' if w is MrWeighting.T1 else 'TSE'}",
            "HEAD",
            SopClass.MR_IMAGE,
            geometry.slices,
            _EXPLICIT,
        )
        for w in weightings
    ]
    return [
        _study(
            seed=seed,
            patient_id=patient_id,
            key="mr-brain-current",
            day=dates.current,
            clock=dates.current_time,
            description="MRI BRAIN WITHOUT CONTRAST",
            timepoint=Timepoint.CURRENT,
            spec=spec,
            series=series,
            truth=VolumeTruth(lesion=LesionTruth.from_lesion(lesion, geometry)),
        )
    ]


class _CxrRole(BaseModel):
    modality: Modality
    photometric: Photometric
    voi: VoiKind
    landscape: bool = False
    # Opacity diameters (mm) on prior and current; None means no opacity on that image.
    prior_mm: tuple[float, float] | None = None
    current_mm: tuple[float, float] | None = None
    change: Change = Change.STABLE
    current_syntax: TransferSyntax = _EXPLICIT


_CXR_ROLES: dict[int, _CxrRole] = {
    0: _CxrRole(modality=Modality.DX, photometric=Photometric.MONOCHROME2, voi=VoiKind.WINDOW),
    3: _CxrRole(
        modality=Modality.CR,
        photometric=Photometric.MONOCHROME1,
        voi=VoiKind.LUT,
        prior_mm=(10.0, 15.0),
        current_mm=(20.0, 28.0),
        change=Change.WORSENED,
        current_syntax=TransferSyntax.RLE_LOSSLESS,
    ),
    4: _CxrRole(
        modality=Modality.DX,
        photometric=Photometric.MONOCHROME2,
        voi=VoiKind.WINDOW,
        current_mm=(30.0, 45.0),
        change=Change.WORSENED,
    ),
    5: _CxrRole(
        modality=Modality.CR,
        photometric=Photometric.MONOCHROME1,
        voi=VoiKind.WINDOW,
        prior_mm=(35.0, 50.0),
        current_mm=(15.0, 22.0),
        change=Change.IMPROVED,
        current_syntax=TransferSyntax.JPEG_2000_LOSSLESS,
    ),
    6: _CxrRole(
        modality=Modality.DX,
        photometric=Photometric.MONOCHROME2,
        voi=VoiKind.WINDOW,
        landscape=True,
        prior_mm=(14.0, 20.0),
        current_mm=(14.0, 20.0),
        change=Change.STABLE,
    ),
}


def _cxr_pair(
    seed: int, patient_id: str, rng: random.Random, reference: date, role: _CxrRole
) -> list[StudyPlan]:
    anatomy = CxrAnatomy(scale=round(rng.uniform(0.92, 1.05), 3))
    zone = rng.choice(CXR_ZONES)
    stable_mm = round(rng.uniform(*role.prior_mm), 1) if role.prior_mm else None
    sizes = {
        Timepoint.PRIOR: stable_mm,
        Timepoint.CURRENT: (
            stable_mm
            if role.change is Change.STABLE
            else (round(rng.uniform(*role.current_mm), 1) if role.current_mm else None)
        ),
    }
    rows, columns = (1024, 1280) if role.landscape else (1280, 1024)
    sop = SopClass.DX_IMAGE_FOR_PRESENTATION if role.modality is Modality.DX else SopClass.CR_IMAGE
    dates = _dates(rng, reference)
    studies: list[StudyPlan] = []
    for timepoint, day, clock in (
        (Timepoint.PRIOR, dates.prior, dates.prior_time),
        (Timepoint.CURRENT, dates.current, dates.current_time),
    ):
        diameter = sizes[timepoint]
        opacities = () if diameter is None else (CxrOpacity(zone=zone, diameter_mm=diameter),)
        spec = CxrSpec(
            rows=rows,
            columns=columns,
            pixel_spacing_mm=0.35,
            photometric=role.photometric,
            voi=role.voi,
            anatomy=anatomy,
            opacities=opacities,
            noise_seed=rng.randrange(2**31),
        )
        findings = tuple(opacity_finding(o, anatomy, rows, columns, 0.35) for o in opacities)
        prior = studies[0] if studies else None
        syntax = role.current_syntax if timepoint is Timepoint.CURRENT else _EXPLICIT
        studies.append(
            _study(
                seed=seed,
                patient_id=patient_id,
                key=f"cxr-{timepoint}",
                day=day,
                clock=clock,
                description="XR CHEST PA",
                timepoint=timepoint,
                spec=spec,
                series=[(role.modality, "PA", "CHEST", sop, 1, syntax)],
                truth=CxrTruth(findings=findings),
                prior=prior,
                change=None if prior is None else role.change,
            )
        )
    return studies


def plan_imaging(
    cohort_patient_ids: Sequence[str], seed: int, *, reference_date: date = IMAGING_REFERENCE_DATE
) -> ImagingPlan:
    """Plan the imaging of a cohort (see the module table); patients past position 6 get none."""
    if len(set(cohort_patient_ids)) != len(cohort_patient_ids):
        raise ValueError("cohort patient ids must be unique")
    studies: list[StudyPlan] = []
    for position, patient_id in enumerate(cohort_patient_ids[:7]):
        rng = random.Random(f"imaging|{seed}|{patient_id}")
        if position in (0, 1):
            studies += _ct_pair(seed, patient_id, rng, reference_date, grows=position == 0)
        if position == 2:
            studies += _mr(seed, patient_id, rng, reference_date)
        if position in _CXR_ROLES:
            studies += _cxr_pair(seed, patient_id, rng, reference_date, _CXR_ROLES[position])
    return ImagingPlan(seed=seed, studies=tuple(studies))
