"""CT and MRI findings: the 85-slice prompt layout and strict parsing of JSON and report sections."""

from __future__ import annotations

import numpy as np
import pytest

from tools.medgemma.tasks.errors import ModelOutputError
from tools.medgemma.tasks.prompting import THINKING_INSTRUCTION
from tools.medgemma.tasks.volume_findings import VolumeModality, build_request, parse
from tools.medgemma.types import ImagePart, TextPart

CT = VolumeModality.CT


def slices(n: int) -> np.ndarray:
    # Slice k is filled with k so that the test can tell which image sits where.
    return np.stack([np.full((8, 8, 3), k, dtype=np.uint8) for k in range(n)])


def test_ct_request_is_instruction_then_85_images_each_labelled_then_question() -> None:
    request = build_request(slices(85), modality=CT, series_description="CHEST W/O", question="Any nodule?")
    (message,) = request.messages
    assert message.role == "user"
    parts = message.content
    assert len(parts) == 1 + 2 * 85 + 1
    assert isinstance(parts[0], TextPart)
    assert "85 axial slices" in parts[0].text
    assert '"CHEST W/O"' in parts[0].text
    for n in range(1, 86):
        image, label = parts[2 * n - 1], parts[2 * n]
        assert isinstance(image, ImagePart)
        assert int(image.image[0, 0, 0]) == n - 1  # in series order
        assert isinstance(label, TextPart)
        assert label.text == f"SLICE {n}"
    last = parts[-1]
    assert isinstance(last, TextPart)
    assert last.text.startswith("Any nodule?")
    assert '"findings"' in last.text
    assert '"impression"' in last.text
    assert request.image_count == 85


def test_mri_default_question_and_thinking_system_turn() -> None:
    request = build_request(slices(3), modality=VolumeModality.MRI, thinking=True)
    system, user = request.messages
    assert system.role == "system"
    assert system.content == (TextPart(text=THINKING_INSTRUCTION),)
    last = user.content[-1]
    assert isinstance(last, TextPart)
    assert "MRI series" in last.text
    with pytest.raises(ValueError, match="at least one image"):
        build_request(np.zeros((0, 8, 8, 3), dtype=np.uint8), modality=CT)


GOOD = (
    '{"findings": [{"description": "2 cm nodule in the right upper lobe", "slices": [30, 31]}, '
    '"small left pleural effusion"], "impression": "Right upper lobe nodule."}'
)


def test_json_answer() -> None:
    result = parse(GOOD, modality=CT, slice_count=85)
    assert result.answer_format == "json"
    assert [f.description for f in result.findings] == [
        "2 cm nodule in the right upper lobe",
        "small left pleural effusion",
    ]
    assert result.findings[0].slices == (30, 31)
    assert result.findings[1].slices == ()
    assert result.impression == "Right upper lobe nodule."
    assert result.parse_notes == ()


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        (f"<unused94>thought\nLooking at SLICE 30...<unused95>```json\n{GOOD}\n```", "thinking"),
        (f"```json\n{GOOD}\n```\nLet me know if you need more.", None),
        (f"Final Answer: {GOOD} Done.", "text after"),
        (GOOD[: GOOD.index(', "impression"')] + ', "impression": "Nodule."', "truncated"),
    ],
)
def test_json_answer_variants(raw: str, note: str | None) -> None:
    result = parse(raw, modality=CT, slice_count=85)
    assert result.findings[0].slices == (30, 31)
    if note:
        assert any(note in n for n in result.parse_notes), result.parse_notes


def test_report_sections_are_read_strictly() -> None:
    raw = (
        "Technique: non-contrast chest CT.\n\n"
        "**Findings:**\n"
        "- 2 cm nodule in the right upper lobe (SLICE 30-32).\n"
        "2. Small left pleural effusion, SLICE 70.\n\n"
        "IMPRESSION: Right upper lobe nodule;\nfollow-up advised."
    )
    result = parse(raw, modality=CT, slice_count=85)
    assert result.answer_format == "sections"
    assert [(f.description, f.slices) for f in result.findings] == [
        ("2 cm nodule in the right upper lobe (SLICE 30-32).", (30, 31, 32)),
        ("Small left pleural effusion, SLICE 70.", (70,)),
    ]
    assert result.impression == "Right upper lobe nodule; follow-up advised."
    assert "text before 'Findings:' ignored" in result.parse_notes


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("The scan shows a nodule in the right lung.", "no JSON"),
        ("Impression: nodule.\nFindings: nodule.", "Findings then Impression"),
        ("Findings: nodule\nImpression:", "impression"),
        ('{"findings": [], "impression": ""}', "impression"),
        ('{"findings": [{"description": "x", "slices": [90]}], "impression": "y"}', "only 1..85"),
        ('{"findings": [{"description": "x", "slices": ["a"]}], "impression": "y"}', "slices"),
        ('{"findings": [{"description": "nodule in the right up', "inside a string"),
        ("<unused94>thought counting slices 1, 2, 3", "still thinking"),
    ],
)
def test_unreadable_answers_are_errors_with_raw_text(raw: str, reason: str) -> None:
    with pytest.raises(ModelOutputError, match=reason) as info:
        parse(raw, modality=CT, slice_count=85)
    assert info.value.raw_text == raw
    assert info.value.task == "ct-findings"


def test_empty_findings_is_a_normal_study() -> None:
    result = parse('{"findings": [], "impression": "No acute abnormality."}', modality=VolumeModality.MRI)
    assert result.findings == ()
    assert result.modality is VolumeModality.MRI
