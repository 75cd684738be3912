"""Chest X-ray tasks: boxes mapped back through real padding, anatomy labels, prior/current comparison."""

from __future__ import annotations

import io
import json
from datetime import date

import numpy as np
import pydicom
import pytest

from agent.testbed.cohort.imaging import (
    CxrTruth,
    PatientIdentity,
    PatientSex,
    StudyPlan,
    plan_imaging,
    render_study,
)
from tools.imaging.cxr import prepare_cxr
from tools.imaging.geometry import Padding, PixelBox, pixels_to_model_box
from tools.imaging.prepared import PreparedImages
from tools.imaging.volume import Instance, assemble
from tools.medgemma.tasks import cxr_comparison, cxr_localization
from tools.medgemma.tasks.anatomy import IMAGENOME_ANATOMY, normalise_label
from tools.medgemma.tasks.cxr_comparison import Change
from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.types import ImagePart, TextPart

IDS = [f"cxr-task-{i}" for i in range(7)]


def prepared_study(study: StudyPlan) -> PreparedImages:
    person = PatientIdentity(
        patient_id=study.patient_id,
        family="Testperson",
        given="Ada",
        birth_date=date(1961, 3, 4),
        sex=PatientSex.FEMALE,
    )
    (instance,) = render_study(study, person)
    ds = pydicom.dcmread(io.BytesIO(instance.data))
    return prepare_cxr(assemble([Instance("cxr.dcm", ds)]).select("t"), source="cxr.dcm")


@pytest.fixture(scope="module")
def cxr_studies() -> list[StudyPlan]:
    plan = plan_imaging(IDS, seed=11)
    return [
        s
        for s in plan.studies
        if s.key == "cxr-current" and isinstance(s.truth, CxrTruth) and s.truth.findings
    ]


def test_truth_boxes_come_back_within_one_pixel_through_real_padding(cxr_studies: list[StudyPlan]) -> None:
    shapes = set()
    for study in cxr_studies:
        prepared = prepared_study(study)
        padding = prepared.metadata.padding
        assert padding is not None
        shapes.add(padding.height > padding.width)
        assert isinstance(study.truth, CxrTruth)
        answer = []
        for finding in study.truth.findings:
            b = finding.box
            model = pixels_to_model_box(PixelBox(y0=b.y0, x0=b.x0, y1=b.y1, x1=b.x1), padding)
            # The model answers whole numbers on 0..1000.
            answer.append({"box_2d": [round(v) for v in model], "label": finding.anatomy.upper()})
        raw = f"Final Answer: ```json\n{json.dumps(answer)}\n```"
        result = cxr_localization.parse(raw, padding)
        assert (result.image_height, result.image_width) == (padding.height, padding.width)
        for finding, box in zip(study.truth.findings, result.boxes, strict=True):
            b = finding.box
            assert np.allclose(box.box.as_list(), [b.y0, b.x0, b.y1, b.x1], atol=1.0), (box, b)
            assert box.anatomy == finding.anatomy
    assert shapes == {True, False}  # portrait and landscape radiographs both covered


def test_localization_request_is_the_padded_image_then_the_query() -> None:
    square = np.zeros((20, 20, 3), dtype=np.uint8)
    (message,) = cxr_localization.build_request(square).messages
    image, prompt = message.content
    assert isinstance(image, ImagePart)
    assert isinstance(prompt, TextPart)
    assert "Locate: right lung, left lung, cardiac silhouette." in prompt.text
    assert "box_2d" in prompt.text
    assert "Final Answer:" in prompt.text
    (message,) = cxr_localization.build_request(square, query="Where is the aortic knob?").messages
    assert isinstance(message.content[1], TextPart)
    assert message.content[1].text.endswith("User query: Where is the aortic knob?")
    with pytest.raises(ValueError, match="padded square"):
        cxr_localization.build_request(np.zeros((20, 10, 3), dtype=np.uint8))


PADDING = Padding.centred(1000, 500)  # a 1000 x 500 image in a 1000 square, 250 px black each side


def test_unknown_labels_are_kept_and_flagged_and_synonyms_normalised() -> None:
    raw = json.dumps(
        [
            {"box_2d": [100, 300, 500, 480], "label": "Heart"},
            {"box_2d": [100, 300, 500, 480], "label": "the right upper zone"},
            {"box_2d": [100, 300, 500, 480], "label": "right upper lobe"},
        ]
    )
    result = cxr_localization.parse(raw, PADDING)
    assert [b.anatomy for b in result.boxes] == ["cardiac silhouette", "right upper lung zone", None]
    assert result.unknown_labels == ("right upper lobe",)
    assert result.boxes[0].box.as_list() == [100.0, 50.0, 500.0, 230.0]


def test_single_object_and_empty_list() -> None:
    result = cxr_localization.parse('{"box_2d": [0, 250, 1000, 750], "label": "left lung"}', PADDING)
    assert result.boxes[0].box.as_list() == [0.0, 0.0, 1000.0, 500.0]
    assert "a single box object taken as a list of one" in result.parse_notes
    assert cxr_localization.parse("Final Answer: ```json [] ```", PADDING).boxes == ()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('[{"box_2d": [0, 0, 1000, 200], "label": "right lung"}]', "box 0 \\(right lung\\): empty"),
        ('[{"box_2d": [1, 2, 3], "label": "x"}]', "box_2d"),
        ('[{"box_2d": ["1", 2, 3, 4], "label": "x"}]', "box_2d"),
        ('[{"box_2d": [1, 2, 3, 4]}]', "label"),
        ('[{"box_2d": [1, 2, 3, 4], "label": "x"}, {"box_2d": [5, 6', "inside a number"),
        ("The right lung is at the left of the image.", "no JSON"),
    ],
)
def test_bad_boxes_are_errors(raw: str, reason: str) -> None:
    with pytest.raises(ModelOutputError, match=reason) as info:
        cxr_localization.parse(raw, PADDING)
    assert info.value.raw_text == raw


def test_anatomy_table() -> None:
    assert len(IMAGENOME_ANATOMY) == 36
    for name in IMAGENOME_ANATOMY:
        assert normalise_label(name) == name
    assert normalise_label("Left CP angle.") == "left costophrenic angle"
    assert normalise_label("right-hilum") == "right hilar structures"
    assert normalise_label("Aortic knob") == "aortic arch"
    assert normalise_label("superior vena cava") == "svc"
    assert normalise_label("left apex") == "left apical zone"
    assert normalise_label("left lower lobe") is None
    assert normalise_label("lung") is None


def test_comparison_request_is_prior_then_current_then_prompt() -> None:
    prior = np.full((4, 4, 3), 1, dtype=np.uint8)
    current = np.full((4, 4, 3), 2, dtype=np.uint8)
    (message,) = cxr_comparison.build_request(prior, current, prior_date="2025-01-02").messages
    first, second, prompt = message.content
    assert isinstance(first, ImagePart)
    assert int(first.image[0, 0, 0]) == 1
    assert isinstance(second, ImagePart)
    assert int(second.image[0, 0, 0]) == 2
    assert isinstance(prompt, TextPart)
    assert prompt.text.startswith("The first image is the prior chest X-ray (2025-01-02)")
    assert "pleural effusion" in prompt.text


def test_comparison_answers() -> None:
    raw = (
        "<unused94>thought compare<unused95>```json\n"
        '{"comparisons": [{"finding": "pleural effusion", "change": "Improving", "evidence": "smaller"},'
        ' {"finding": "edema", "change": "no change"}, {"finding": "consolidation", "change": "worse"}],'
        ' "summary": "Effusion smaller."}\n```'
    )
    result = cxr_comparison.parse(raw)
    assert [(c.finding, c.change) for c in result.comparisons] == [
        ("pleural effusion", Change.IMPROVED),
        ("edema", Change.STABLE),
        ("consolidation", Change.WORSENED),
    ]
    assert result.summary == "Effusion smaller."
    for bad in ('{"comparisons": [{"finding": "edema", "change": "decreased"}]}', "It got better."):
        with pytest.raises(ModelOutputError) as info:
            cxr_comparison.parse(bad)
        assert info.value.raw_text == bad
