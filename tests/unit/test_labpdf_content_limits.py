"""What a page draws (tools.labs.pdf.content_limits): inline images over the image and stream
limits, and forms drawn inside forms past what a page may draw, are refused before mupdf draws
them; reports with small inline images and forms drawn a few times are read as before."""

from __future__ import annotations

import base64
import random
import zlib

import bad_files
import pymupdf
import pytest
from bad_files import form_xobject, one_page_pdf

from agent.testbed.cohort.labpdf.bad import deterministic_encrypted_pdf
from tools.labs.pdf import PdfOverLimitError, extract_labs
from tools.labs.pdf.content_limits import MAX_INLINE_IMAGES, content_problem
from tools.labs.pdf.reader import check_limits

MIB = 1 << 20
INLINE_BOMB = (
    "page 1 draws an inline image of 16000 x 16000 pixels that decodes to 732 MiB, over the 128 MiB "
    "a stream may decode to (a decompression bomb?)"
)
INLINE_DATA_BOMB = (
    "page 1 draws an inline image whose data decode to more than 128 MiB (a decompression bomb?)"
)
REUSE = "object 8 1,000,000,000 times, in forms drawn inside forms), over the 128 MiB a page may draw"


def _refusal(pdf: bytes) -> str:
    with pytest.raises(PdfOverLimitError) as refused:
        check_limits(pymupdf.open(stream=pdf, filetype="pdf"), "report.pdf", pdf)
    assert str(refused.value).startswith("report.pdf: refused: ")
    return refused.value.detail


def _problem(pdf: bytes, limit: int = 128 * MIB) -> str | None:
    return content_problem(pymupdf.open(stream=pdf, filetype="pdf"), max_stream_bytes=limit)


# ---------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (bad_files.pdf_inline_image_bomb, INLINE_BOMB),
        (
            bad_files.pdf_inline_huge_image,
            "page 1 draws an inline image of 100000 x 100000 pixels, over the 268 million an image may "
            "have (a decompression bomb?)",
        ),
        (
            bad_files.pdf_form_cycle,
            "page 1 draws form XObject object 6, which draws itself through object 7 (a cycle)",
        ),
    ],
    ids=["inline-image-bomb", "inline-huge-image", "form-cycle"],
)
def test_each_bomb_is_refused_with_its_problem(make: object, expected: str) -> None:
    assert _refusal(make()) == expected  # type: ignore[operator]


def test_a_billion_form_draws_are_refused() -> None:
    detail = _refusal(bad_files.pdf_form_reuse_bomb())
    assert detail.startswith("page 1 draws ")
    assert detail.endswith(REUSE)


def test_inline_data_decoding_past_the_stream_limit_are_refused_whatever_the_image_declares() -> None:
    # 100 x 100 pixels declared; Flate, LZW and ASCII85 around Flate (abbreviated, in an array).
    assert _refusal(bad_files.pdf_inline_image_bomb(100, 256 * MIB)) == INLINE_DATA_BOMB
    lzw = bad_files.pdf_inline_image_bomb(100, 40 * MIB, lzw=True)
    assert _problem(lzw, 16 * MIB) == INLINE_DATA_BOMB.replace("128", "16")
    wrapped = base64.a85encode(bad_files.zlib_zeros(200 * MIB)) + b"~>"
    pdf = bad_files._inline_image_page(b"/W 100 /H 100 /BPC 8 /CS /G /F [/A85 /Fl]", wrapped)
    assert _refusal(pdf) == INLINE_DATA_BOMB


def test_an_inline_image_declaring_more_than_a_stream_may_decode_to_is_refused_without_its_data() -> None:
    # mupdf makes the whole pixmap whatever the data hold: 1 KB of them here.
    pdf = bad_files._inline_image_page(
        b"/W 16000 /H 16000 /BPC 8 /CS /RGB /F /Fl", zlib.compress(bytes(1000))
    )
    assert _refusal(pdf) == INLINE_BOMB


@pytest.mark.parametrize(
    "draw",
    [b"/X Do", b"/X 0 Do", b"/X (a) Do", b"/X/Y Do", b"/X % a comment\nDo", b"/X ((((a)))) Do", b"/#58 Do"],
    ids=["plain", "number-between", "string-between", "first-name", "comment", "deep-string", "escaped"],
)
def test_a_draw_is_counted_however_its_name_is_written(draw: bytes) -> None:
    """mupdf draws the first name after the operator before: each spelling draws the bomb, not
    the empty form Y (a string nested deeper than read here: the Do counts as drawing every form)."""
    forms = [(b"q /X Do Q\n" * 1000, b"<</X 7 0 R>>"), (b"q /X Do Q\n" * 1000, b"<</X 8 0 R>>")]
    pdf = bad_files._forms_pdf(
        (b"q " + draw + b" Q\n") * 1000, [*forms, (b"0 0 1 1 re f\n", b""), (b"", b"")]
    )
    pdf = pdf.replace(b"/XObject<</X 6 0 R>>", b"/XObject<</X 6 0 R/Y 9 0 R>>")
    assert _refusal(pdf).endswith(REUSE)


def test_forms_nested_deeper_than_mupdf_runs_them_are_refused() -> None:
    assert _problem(bad_files.pdf_deep_forms(32)) is None
    assert _refusal(bad_files.pdf_deep_forms(33)) == (
        "page 1 draws forms nested more than 32 deep (mupdf stops past 61)"
    )


def test_a_form_drawing_itself_is_refused() -> None:
    pdf = bad_files._forms_pdf(b"/X Do\n", [(b"/X Do\n", b"<</X 6 0 R>>")])
    assert _refusal(pdf) == "page 1 draws form XObject object 6, which draws itself (a cycle)"


def test_a_form_sharing_its_pages_resources_is_not_guessed_to_draw_itself() -> None:
    # Form X has no resources of its own (it runs with the page's, which name X and Y); its Do
    # follows an operand this reader does not parse, so it counts as every form but X itself.
    pdf = one_page_pdf(
        b"/X Do\n",
        resources=b"/XObject<</X 6 0 R/Y 7 0 R>>",
        extra=(form_xobject(b"[[1]] /Y Do\n"), form_xobject(b"0 0 1 1 re f\n")),
    )
    assert _problem(pdf) is None
    # Written the same way, a real cycle through Y is still found.
    pdf = one_page_pdf(
        b"/X Do\n",
        resources=b"/XObject<</X 6 0 R/Y 7 0 R>>",
        extra=(form_xobject(b"[[1]] /Y Do\n"), form_xobject(b"/X Do\n")),
    )
    assert _problem(pdf) == (
        "page 1 draws form XObject object 6, which draws itself through object 7 (a cycle)"
    )


def test_an_annotation_appearance_is_drawn_with_the_page() -> None:
    forms = [
        form_xobject(b"q /X Do Q\n" * 1000, b"/Resources<</XObject<</X %d 0 R>>>>" % (7 + k))
        for k in range(3)
    ]
    pdf = one_page_pdf(
        b"",
        extra=(
            *forms,
            form_xobject(b"0 0 1 1 re f\n"),
            b"<</Type/Annot/Subtype/Square/Rect[0 0 9 9]/AP<</N 6 0 R>>>>",
        ),
    ).replace(b"/MediaBox", b"/Annots[10 0 R]/MediaBox")
    assert pymupdf.open(stream=pdf)[0].first_annot is not None
    assert _refusal(pdf).endswith(REUSE.replace("object 8", "object 9"))


def test_an_encrypted_bomb_is_read_through_mupdf() -> None:
    pdf = deterministic_encrypted_pdf(bad_files.pdf_form_reuse_bomb(), b"chartagent-bad-3", user_password="")
    assert b"/X Do" not in pdf
    assert _refusal(pdf).endswith(REUSE)


# ---------------------------------------------------------------------------- accepted


def test_reports_with_a_letterhead_form_on_each_page_are_read() -> None:
    letterhead = pymupdf.open()
    head = letterhead.new_page(width=595, height=100)
    head.insert_text((40, 50), "City Hospital Laboratory", fontsize=14)
    head.draw_rect(pymupdf.Rect(30, 20, 565, 80))
    doc = pymupdf.open(stream=bad_files.write_pdf([list(bad_files._REPORT_ROWS)] * 3))
    for page in doc:
        page.show_pdf_page(pymupdf.Rect(0, 742, 595, 842), letterhead, 0)
    pdf = doc.tobytes()
    reopened = pymupdf.open(stream=pdf)
    forms = {x for p in reopened for x in reopened.get_page_xobjects(p.number)}
    assert forms  # show_pdf_page draws the letterhead as a form XObject
    check_limits(reopened, "report.pdf", pdf)
    got = extract_labs(pdf)
    assert [r.page for r in got.results] == [1, 2, 3]


def test_a_form_drawn_a_few_times_within_the_page_budget_is_accepted() -> None:
    # A 1 MiB form drawn 100 times is 100 MiB; 200 times is over 128 MiB. Forms are counted per page.
    body = b"0 0 1 1 re f\n" * (MIB // 13)
    assert _problem(bad_files._forms_pdf(b"q /X Do Q\n" * 100, [(body, b"")])) is None
    detail = _problem(bad_files._forms_pdf(b"q /X Do Q\n" * 200, [(body, b"")]))
    assert detail == (
        "page 1 draws 200 MiB of content (form XObject object 6 200 times), over the 128 MiB a page may draw"
    )


def _checkerboard() -> bytes:
    return bytes(0 if (x // 2 + y // 2) % 2 else 255 for y in range(8) for x in range(8))


@pytest.mark.parametrize(
    ("head", "data"),
    [
        (b"/W 8 /H 8 /BPC 8 /CS /G /F /Fl", zlib.compress(_checkerboard())),
        (b"/Width 8 /Height 8 /BitsPerComponent 8 /ColorSpace /DeviceGray", _checkerboard()),
        (b"/W 8 /H 8 /BPC 8 /CS /G /F [/AHx]", _checkerboard().hex().encode() + b">"),
    ],
    ids=["flate", "unfiltered", "ascii-hex"],
)
def test_a_small_inline_image_is_drawn_and_accepted(head: bytes, data: bytes) -> None:
    pdf = bad_files._inline_image_page(head, data)
    doc = pymupdf.open(stream=pdf)
    pix = doc[0].get_pixmap(dpi=36, colorspace=pymupdf.csGRAY)
    assert min(pix.samples) < 64  # mupdf draws the dark squares
    check_limits(doc, "report.pdf", pdf)
    assert [r.value for r in extract_labs(pdf).results] == [4.2]


def test_inline_images_past_the_count_limit_are_refused() -> None:
    image = b"BI /W 1 /H 1 /CS /G /BPC 8 ID x EI\n"
    assert _problem(one_page_pdf(image * MAX_INLINE_IMAGES)) is None
    assert _problem(one_page_pdf(image * (MAX_INLINE_IMAGES + 1))) == (
        f"page 1 draws more than {MAX_INLINE_IMAGES:,} inline images from one content stream"
    )


def test_unfiltered_inline_data_are_skipped_as_mupdf_skips_them() -> None:
    """Data bytes that spell draws are image, not content: the form they name is not drawn."""
    data = b"/X Do\n" * 1000  # 6,000 bytes: an image of 100 x 60 grey pixels
    pdf = one_page_pdf(
        b"q 100 0 0 60 50 50 cm BI /W 100 /H 60 /BPC 8 /CS /G ID\n" + data + b"\nEI Q\n",
        resources=b"/XObject<</X 6 0 R>>",
        extra=(form_xobject(b"0 0 1 1 re f\n" * 1000),),
    )
    assert _problem(pdf, limit=1 * MIB) is None
    assert _problem(pdf.replace(b"/H 60 ", b"/H 6 "), limit=1 * MIB) is not None  # then they are content


def test_do_in_text_draws_nothing() -> None:
    text = b"BT /F1 10 Tf 40 600 Td (Do not fast) Tj (Call us; Do) Tj [(Do)] TJ ET\n" * 600
    pdf = one_page_pdf(
        text, resources=b"/XObject<</X 6 0 R>>", extra=(form_xobject(b"0 0 1 1 re f\n" * 20_000),)
    )
    assert _problem(pdf, limit=1 * MIB) is None


def test_past_the_slow_name_budget_a_do_counts_as_drawing_every_form() -> None:
    # 3,000 Do's whose name is not right before them: past 2,000 read the slow way, each counts
    # as drawing every form (bounded time; a report writes "/Name Do").
    text = b"BT /F1 10 Tf 40 600 Td (Do not fast) Tj (Call us; Do) Tj [(Do)] TJ ET\n" * 1000
    pdf = one_page_pdf(
        text, resources=b"/XObject<</X 6 0 R>>", extra=(form_xobject(b"0 0 1 1 re f\n" * 20_000),)
    )
    assert _problem(pdf, limit=1 * MIB) == (
        "page 1 draws 248 MiB of content (form XObject object 6 1,000 times), over the 1 MiB a page may draw"
    )


@pytest.mark.parametrize(
    "content",
    [
        b"BI",
        b"BI /W",
        b"BI /W 10 /H 10 ID",
        b"BI /W 10 /H 10 /CS /G /BPC 8 ID \x00\x01",
        b"BI /W 10 /H 10 /F /Fl ID garbage EI",
        b"BI ((((((",
        b"BI <<<<<<<<",
        b"BI [[[[[[[[ ID",
        b"BI /W 1.2.3 /H 10 ID x EI",
        b"BI /W -5 /H 10 ID x EI",
        b"BI /DP <</Predictor 12>> /W 2 /H 2 ID xxxx EI",
        b"BI /W 1e5 /H 1e5 ID xxxx EI",
        b"Do",
        b"/X Do /Y Do Do",
        b"/ Do /#zz Do /#41 Do",
        b"(unbalanced ( Do",
        b"%BI /W 100000 /H 100000 ID",
        b") ] >> } Do",
    ],
)
def test_garbage_content_is_left_to_mupdf(content: bytes) -> None:
    pdf = one_page_pdf(
        content + b"\n", resources=b"/XObject<</X 6 0 R>>", extra=(form_xobject(b"0 0 1 1 re f\n"),)
    )
    assert _problem(pdf) is None


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_left_to_mupdf(seed: int) -> None:
    rng = random.Random(seed)
    noise = rng.randbytes(200_000)
    noise += b" BI /W 3 /H 3 /F /Fl ID " + rng.randbytes(5000) + b" /X Do " + rng.randbytes(5000)
    pdf = one_page_pdf(noise, resources=b"/XObject<</X 6 0 R>>", extra=(form_xobject(b"0 0 1 1 re f\n"),))
    assert _problem(pdf) is None


def test_a_normal_report_and_the_corpus_layouts_pass() -> None:
    assert _problem(bad_files.normal_pdf()) is None
    assert _problem(bad_files.pdf_many_paths()) is None
    assert _problem(bad_files.pdf_huge_image()) is None  # an image XObject: stream_problem's
