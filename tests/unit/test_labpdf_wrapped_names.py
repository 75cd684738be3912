"""A result row's name wrapped onto a second line with no values of its own: the second line
completes the name when the two together name another test of the same specimen (the fuzzer's
"LDL" over "Cholesterol (calc)" was read as plain LDL, 2089-1, instead of 13457-7). A section
heading under a result does not move it to another specimen."""

from __future__ import annotations

from test_labpdf_families import read, table

_HEADER = [
    (40, 60, "Collected: 03/15/2024 08:30"),
    *table(100, (40, "Test"), (200, "Result"), (280, "Units"), (340, "Reference Range")),
]


def _coded(page: list[tuple[float, float, str]]) -> list[tuple[str, str | None]]:
    return [(r.name, r.loinc) for r in read(page).results]


def test_a_known_test_completed_by_its_second_line_is_the_other_test() -> None:
    page = [
        *_HEADER,
        *table(115, (40, "LDL"), (200, "87"), (280, "mg/dL"), (340, "<100")),
        (40, 126, "Cholesterol (calc)"),
        *table(141, (40, "Hemoglobin"), (200, "6.1"), (280, "%"), (340, "4.0-5.6")),
        (40, 152, "A1c"),
        *table(167, (40, "HDL"), (200, "45"), (280, "mg/dL"), (340, ">40")),
    ]
    assert _coded(page) == [
        ("LDL Cholesterol (calc)", "13457-7"),
        ("Hemoglobin A1c", "4548-4"),
        ("HDL", "2085-9"),
    ]


def test_a_section_heading_under_a_result_does_not_change_its_specimen() -> None:
    page = [
        *_HEADER,
        *table(115, (40, "Protein"), (200, "7.0"), (280, "g/dL"), (340, "6.0-8.3")),
        (40, 126, "Urine"),
        *table(141, (40, "Creatinine"), (200, "80"), (280, "mg/dL"), (340, "20-300")),
    ]
    # "Urine" heads the rows below it, not the serum protein above.
    assert _coded(page) == [("Protein", "2885-2"), ("Creatinine", "2161-8")]
