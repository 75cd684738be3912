"""FHIR R4B write-back of one AI reading of a single imaging study (pure builders).

One read (CT or MRI findings, chest X-ray localization, whole-slide description) is one transaction:
``[Device, Observation per box (CXR only), DiagnosticReport, Provenance]`` (`build_study_read`),
wrapped by `study_read_write` into a `PendingWrite` that also retires an older current read of the
same kind (`tools.writeback.supersede`).

The DiagnosticReport:

* ``meta.security`` AIAST, ``status`` preliminary, ``issued`` the run's clock, ``effectiveDateTime``
  the study's ``started``, ``imagingStudy`` [the study read] (one study: a comparison names two, or
  one when it had no prior);
* ``code``: LOINC 18748-4 "Diagnostic imaging study" (category v2-0074 ``RAD``) for CT, MRI and
  chest X-ray; LOINC 11526-1 "Pathology study" (category ``SP``, surgical pathology) for a
  whole-slide image, which is a pathology specimen and not a radiology study. A second coding
  ``urn:chartagent:imaging-read#<task>`` says which single-study read it is. It also keeps a read's
  *kind* (`supersede.report_kind`: subject, code codings, studies) apart from the comparison of the
  same study without a prior, whose only coding is 18748-4: neither retires the other;
* ``conclusion`` labelled AI-generated; ``presentedForm`` text/plain with the full result and, for
  a localization, ``image/png``: the boxes drawn on the image that was read (scaled down to at
  most ``OVERLAY_MAX_SIDE`` pixels on its longest side: a picture to review; the Observations hold
  the exact pixel coordinates);
* ``result``: the box Observations.

Box Observations (chest X-ray localization), one per box:

* ``code`` ``urn:chartagent:imaging-read#anatomy-box`` (no LOINC code names a localized structure),
  ``bodySite.text`` the Chest ImaGenome name (else the model's label);
* the box in ORIGINAL pixel coordinates of the image read, as four ``component``s ``x0, y0, x1, y1``
  (top-left and bottom-right corner edges, `tools.imaging.geometry.PixelBox`), each a
  ``valueQuantity`` in UCUM ``{pixel}`` (an annotated unity: UCUM has no pixel unit, and an
  annotation is its way to name a count of things);
* ``derivedFrom`` the ImagingStudy, and the extension ``urn:chartagent:dicom-image`` whose
  ``valueOid`` sub-extensions ``study``, ``series`` and ``instance`` name the DICOM UIDs of the
  image the box lies on. R4 has no reference to one DICOM instance (R5's ImagingSelection); an
  ``identifier`` would claim the Observation *is* that instance, so an extension says where it lies.

Identifiers: the report's is ``business_identifier(engine=<model identity>, task=<read task>,
inputs=[ImagingStudy/<id> = study UID : series UID : instance UIDs read], parameters=<prompt
version, question, generation settings>)``; each box's is the report's plus its index. A rerun on the
same image with the same model and prompt writes nothing new.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.resource import Resource
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from tools.imaging.geometry import PixelBox
from tools.imaging.overlay import LabelledBox, draw_boxes
from tools.medgemma.tasks.cxr_localization import CxrLocalization, LocalizedBox
from tools.medgemma.tasks.slide_description import SlideDescription
from tools.medgemma.tasks.volume_findings import VolumeFindings, VolumeModality
from tools.writeback.ai_labels import ModelIdentity, ai_meta, build_model_device
from tools.writeback.attachment import attachment
from tools.writeback.builders import build_provenance, check_subject, check_time
from tools.writeback.bundle import conditional_create_bundle
from tools.writeback.identifiers import Built, InputRef, Param, business_identifier
from tools.writeback.imaging_report import AI_REPORT_LABEL, IMAGING_REPORT_CODE, RADIOLOGY_CATEGORY
from tools.writeback.pending import PendingWrite, WriteKind
from tools.writeback.supersede import with_superseded

__all__ = [
    "BOX_CODE",
    "DICOM_IMAGE_URL",
    "OVERLAY_MAX_SIDE",
    "PATHOLOGY_REPORT_CODE",
    "PIXEL_UNIT",
    "READ_SYSTEM",
    "ReadStudy",
    "ReadTask",
    "StudyReadResult",
    "box_pixels",
    "build_study_read",
    "read_conclusion",
    "render_read_text",
    "study_read_write",
]

READ_SYSTEM: Final = "urn:chartagent:imaging-read"
DICOM_IMAGE_URL: Final = "urn:chartagent:dicom-image"
BOX_CODE: Final[dict[str, str]] = {
    "system": READ_SYSTEM,
    "code": "anatomy-box",
    "display": "Localized structure",
}
PATHOLOGY_REPORT_CODE: Final[dict[str, str]] = {
    "system": "http://loinc.org",
    "code": "11526-1",
    "display": "Pathology study",
}
PATHOLOGY_CATEGORY: Final[dict[str, str]] = {
    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
    "code": "SP",
    "display": "Surgical Pathology",
}
OVERLAY_MAX_SIDE: Final = 1024
OVERLAY_PNG_LEVEL: Final = 3  # zlib level: most of level 6's size at a third of its time
PIXEL_UNIT: Final[dict[str, str]] = {
    "unit": "pixel",
    "system": "http://unitsofmeasure.org",
    "code": "{pixel}",
}
_OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
_BOX_COMPONENTS: Final = (
    ("x0", "Left edge"),
    ("y0", "Top edge"),
    ("x1", "Right edge"),
    ("y1", "Bottom edge"),
)

StudyReadResult = VolumeFindings | CxrLocalization | SlideDescription


class ReadTask(StrEnum):
    """The task name in identifiers and in the report's second coding."""

    CT_FINDINGS = "ct-findings"
    MRI_FINDINGS = "mri-findings"
    CXR_LOCALIZATION = "cxr-localization"
    WSI_DESCRIPTION = "wsi-description"

    @classmethod
    def of(cls, result: StudyReadResult) -> ReadTask:
        if isinstance(result, CxrLocalization):
            return cls.CXR_LOCALIZATION
        if isinstance(result, SlideDescription):
            return cls.WSI_DESCRIPTION
        return cls.CT_FINDINGS if result.modality is VolumeModality.CT else cls.MRI_FINDINGS

    @property
    def what(self) -> str:
        return {
            ReadTask.CT_FINDINGS: "CT findings",
            ReadTask.MRI_FINDINGS: "MRI findings",
            ReadTask.CXR_LOCALIZATION: "chest X-ray localization",
            ReadTask.WSI_DESCRIPTION: "whole-slide pathology description",
        }[self]


class ReadStudy(BaseModel):
    """The study as it was read: ImagingStudy id, its date, and the DICOM UIDs of what was shown."""

    model_config = ConfigDict(frozen=True)

    imaging_study_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    study_uid: str = Field(min_length=1)
    series_uid: str = Field(min_length=1)
    # The SOP instances of the images shown (CT/MRI slices, the radiograph); empty for a slide,
    # whose tiles come from the pyramid level's instance(s) the reader chose.
    instance_uids: tuple[str, ...] = ()
    started: str = Field(min_length=4)

    @property
    def reference(self) -> str:
        return f"ImagingStudy/{self.imaging_study_id}"

    def input_ref(self) -> InputRef:
        # The pixels read, not the ImagingStudy's version: a re-sent ImagingStudy must not duplicate.
        value = f"{self.study_uid}:{self.series_uid}:{','.join(self.instance_uids)}"
        return InputRef(reference=self.reference, value=value)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def box_pixels(box: LocalizedBox) -> dict[str, float]:
    """x0, y0, x1, y1 in original pixels (edges)."""
    return {"x0": box.box.x0, "y0": box.box.y0, "x1": box.box.x1, "y1": box.box.y1}


def _box_name(box: LocalizedBox) -> str:
    return box.anatomy or box.label


def read_conclusion(result: StudyReadResult, study: ReadStudy) -> str:
    """The report's conclusion: the AI label, then the impression, the structures or the description."""
    task = ReadTask.of(result)
    head = f"{AI_REPORT_LABEL}. {task.what} of {study.started[:10]}:"
    if isinstance(result, VolumeFindings):
        return f"{head} {result.impression}"
    if isinstance(result, SlideDescription):
        return f"{head} {result.description}"
    if not result.boxes:
        return f"{head} no structure localized."
    return (
        f"{head} {len(result.boxes)} structure(s) localized: " + ", ".join(map(_box_name, result.boxes)) + "."
    )


def _fmt(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def render_read_text(result: StudyReadResult, study: ReadStudy, identity: ModelIdentity) -> str:
    """The full structured result as plain text (the report's presentedForm)."""
    task = ReadTask.of(result)
    lines = [
        f"{task.what} - {AI_REPORT_LABEL}",
        f"Model: {identity.name} version {identity.version}, prompt {identity.prompt_version or 'unknown'}",
        f"Study: {study.reference}, started {study.started}, StudyInstanceUID {study.study_uid}, "
        f"series {study.series_uid}"
        + (f", {len(study.instance_uids)} instance(s) shown" if study.instance_uids else ""),
    ]
    if isinstance(result, VolumeFindings):
        lines.append("Findings:")
        for f in result.findings:
            where = f" (SLICE {', '.join(map(str, f.slices))})" if f.slices else ""
            lines.append(f"- {f.description}{where}")
        if not result.findings:
            lines.append("- no abnormal finding reported")
        lines.append(f"Impression: {result.impression}")
    elif isinstance(result, SlideDescription):
        lines.append(f"Description: {result.description}")
        lines.append("Findings:")
        lines += [f"- {f}" for f in result.findings] or ["- none listed"]
    else:
        lines.append(
            f"Boxes in original pixels of the {result.image_width} x {result.image_height} image "
            "(x0, y0, x1, y1: top-left and bottom-right edges):"
        )
        for b in result.boxes:
            p = box_pixels(b)
            lines.append(f"- {_box_name(b)}: " + ", ".join(_fmt(p[k]) for k in ("x0", "y0", "x1", "y1")))
        if not result.boxes:
            lines.append("- none")
    if result.parse_notes:
        lines.append("Parsing notes: " + "; ".join(result.parse_notes))
    return "\n".join(lines) + "\n"


def _overlay_png(result: CxrLocalization, image: npt.NDArray[np.uint8]) -> bytes:
    if image.shape[:2] != (result.image_height, result.image_width):
        raise ValueError(
            f"the overlay image is {image.shape[:2]}, "
            f"the boxes are on {result.image_height} x {result.image_width}"
        )
    # A review picture, not the pixels of record: at most OVERLAY_MAX_SIDE on its longest side
    # (a full 3000 px radiograph is ~6 MB of PNG inline in the report, and ~1 s of zlib).
    scale = min(1.0, OVERLAY_MAX_SIDE / max(image.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = np.asarray(
            Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR)
        )
    boxes = [
        LabelledBox(
            box=PixelBox(y0=b.box.y0 * scale, x0=b.box.x0 * scale, y1=b.box.y1 * scale, x1=b.box.x1 * scale),
            label=_box_name(b),
        )
        for b in result.boxes
    ]
    out = io.BytesIO()
    draw_boxes(image, boxes).save(out, format="PNG", compress_level=OVERLAY_PNG_LEVEL)
    return out.getvalue()


def _dicom_image_extension(study: ReadStudy) -> dict[str, Any]:
    parts = [("study", study.study_uid), ("series", study.series_uid)]
    if len(study.instance_uids) == 1:
        parts.append(("instance", study.instance_uids[0]))
    return {
        "url": DICOM_IMAGE_URL,
        "extension": [{"url": name, "valueOid": f"urn:oid:{uid}"} for name, uid in parts],
    }


def _box_observation(
    index: int,
    box: LocalizedBox,
    *,
    report_ident: str,
    subject: str,
    study: ReadStudy,
    device: Built[Device],
    identity: ModelIdentity,
    issued: datetime,
) -> Built[Observation]:
    ident = business_identifier(
        engine=identity.key(),
        task="cxr-localization-box",
        parameters={"report": report_ident, "index": index},
    )
    pixels = box_pixels(box)
    name = _box_name(box)
    obs = Observation.model_validate(
        {
            "resourceType": "Observation",
            "meta": ai_meta(),
            "identifier": [ident.as_fhir()],
            "extension": [_dicom_image_extension(study)],
            "status": "preliminary",
            "category": [{"coding": [{"system": _OBS_CATEGORY, "code": "imaging"}]}],
            "code": {"coding": [dict(BOX_CODE)], "text": f"Localized {name} (AI-generated)"},
            "subject": {"reference": subject},
            "effectiveDateTime": study.started,
            "issued": issued.isoformat(),
            "bodySite": {"text": name},
            "device": {"reference": device.full_url},
            "derivedFrom": [{"reference": study.reference}],
            "method": {
                "text": f"{identity.name} chest X-ray localization; the model's box on 0..1000 of the "
                "padded square mapped back to the original pixels"
            },
            "note": [
                {
                    "text": f"Model label {box.label!r}; box_2d as answered [y0, x0, y1, x1] = "
                    f"{[_fmt(v) for v in box.box_2d]} on 0..1000 of the padded square"
                }
            ],
            "component": [
                {
                    "code": {"coding": [{"system": READ_SYSTEM, "code": f"box-{k}", "display": display}]},
                    "valueQuantity": {"value": pixels[k], **PIXEL_UNIT},
                }
                for k, display in _BOX_COMPONENTS
            ],
        }
    )
    return Built(resource=obs, resource_type="Observation", identifier=ident)


def build_study_read(
    *,
    subject: str,
    result: StudyReadResult,
    study: ReadStudy,
    identity: ModelIdentity,
    issued: datetime,
    image: npt.NDArray[np.uint8] | None = None,
    parameters: Mapping[str, Param] | None = None,
) -> list[Built[Any]]:
    """[Device, box Observations..., DiagnosticReport, Provenance] of one read; ``ValueError`` on bad input.

    ``image``: for a localization, the image read in its original pixels (H x W or H x W x 3 uint8),
    on which the boxes are drawn for the report's PNG; required then, refused otherwise.
    ``issued`` is also the Provenance's ``recorded`` (the caller's clock: this stays pure).
    """
    check_subject(subject)
    check_time("issued", issued)
    task = ReadTask.of(result)
    localization = isinstance(result, CxrLocalization)
    if localization != (image is not None):
        raise ValueError("the image read is needed for, and only for, a chest X-ray localization")
    if localization and len(study.instance_uids) != 1:
        raise ValueError("a chest X-ray localization reads exactly one instance")
    device: Built[Device] = build_model_device(identity)
    ident = business_identifier(
        engine=identity.key(),
        task=task.value,
        inputs=[study.input_ref()],
        parameters={"prompt_version": identity.prompt_version, **(parameters or {})},
    )
    observations: list[Built[Observation]] = []
    if isinstance(result, CxrLocalization):
        observations = [
            _box_observation(
                i,
                b,
                report_ident=ident.value,
                subject=subject,
                study=study,
                device=device,
                identity=identity,
                issued=issued,
            )
            for i, b in enumerate(result.boxes)
        ]
    text = render_read_text(result, study, identity)
    forms = [
        attachment(
            "text/plain; charset=utf-8", text.encode("utf-8"), f"{task.what} ({AI_REPORT_LABEL})", issued
        )
    ]
    if isinstance(result, CxrLocalization) and image is not None:
        png = _overlay_png(result, image)
        forms.append(
            attachment(
                "image/png", png, "Localized structures drawn on the image read (AI-generated)", issued
            )
        )
    pathology = task is ReadTask.WSI_DESCRIPTION
    report = DiagnosticReport.model_validate(
        {
            "resourceType": "DiagnosticReport",
            "meta": ai_meta(),
            "identifier": [ident.as_fhir()],
            "status": "preliminary",
            "category": [{"coding": [dict(PATHOLOGY_CATEGORY if pathology else RADIOLOGY_CATEGORY)]}],
            "code": {
                "coding": [
                    dict(PATHOLOGY_REPORT_CODE if pathology else IMAGING_REPORT_CODE),
                    {"system": READ_SYSTEM, "code": task.value, "display": f"AI {task.what}"},
                ],
                "text": f"AI {task.what}",
            },
            "subject": {"reference": subject},
            "effectiveDateTime": study.started,
            "issued": issued.isoformat(),
            "imagingStudy": [{"reference": study.reference}],
            "result": [
                {"reference": o.full_url, "display": f"Localized {_box_name(b)}"}
                for o, b in zip(
                    observations, result.boxes if isinstance(result, CxrLocalization) else (), strict=True
                )
            ]
            or None,
            "conclusion": read_conclusion(result, study),
            "presentedForm": forms,
        }
    )
    built_report = Built(resource=report, resource_type="DiagnosticReport", identifier=ident)
    provenance = build_provenance(
        targets=[built_report, *observations],
        device=device,
        sources=[study.reference],
        identity=identity,
        recorded=issued,
    )
    return [device, *observations, built_report, provenance]


def study_read_write(
    built: Sequence[Built[Any]], study: ReadStudy, current: Iterable[Resource] = ()
) -> PendingWrite:
    """The read's transaction as a `PendingWrite`; it retires an older current read of the same
    kind (same study and read task) among ``current`` (the record's resources)."""
    task = next(
        str(c["code"])
        for b in built
        if b.resource_type == "DiagnosticReport"
        for c in b.resource.model_dump(mode="json")["code"]["coding"]
        if c.get("system") == READ_SYSTEM
    )
    return PendingWrite.of(
        WriteKind.IMAGING_REPORT,
        with_superseded(conditional_create_bundle(built), current),
        reason=f"AI {task} of {study.reference} (single study)",
        inputs=(study.reference, f"urn:oid:{study.study_uid}"),
    )
