"""Box geometry: model boxes on 0..1000 of the padded square <-> original pixels."""

from __future__ import annotations

import pytest

from tools.imaging.errors import BoxError
from tools.imaging.geometry import Padding, PixelBox, clip_box, model_box_to_pixels, pixels_to_model_box


def test_centred_padding_puts_the_odd_pixel_at_the_end() -> None:
    p = Padding.centred(301, 200)
    assert (p.size, p.top, p.left, p.bottom, p.right) == (301, 0, 50, 0, 51)
    q = Padding.centred(100, 100)
    assert (q.size, q.top, q.left) == (100, 0, 0)


def test_round_trip_within_one_pixel() -> None:
    padding = Padding.centred(1955, 1841)
    lesion = PixelBox(y0=812, x0=400, y1=1033, x1=655)
    model = [round(v) for v in pixels_to_model_box(lesion, padding)]  # the model answers integers
    back = model_box_to_pixels(model, padding)
    for a, b in zip(back.as_list(), lesion.as_list(), strict=True):
        assert abs(a - b) <= 1.0


def test_known_mapping_undoes_the_padding() -> None:
    padding = Padding.centred(1000, 500)  # left = 250
    box = model_box_to_pixels([100, 250, 500, 500], padding)
    assert box.as_list() == [100.0, 0.0, 500.0, 250.0]


def test_boxes_are_ordered_and_clipped() -> None:
    padding = Padding.centred(1000, 500)
    box = model_box_to_pixels([500, 900, 100, 100], padding)  # corners swapped, right edge in the padding
    assert box.as_list() == [100.0, 0.0, 500.0, 500.0]


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([10, 10, 10, 20], "empty"),
        ([0, 0, 1000, 100], "empty"),  # wholly in the left padding
        ([1, 2, 3], "four numbers"),
        ("0,0,1,1", "four numbers"),
        ([0, 0, "a", 1], "not a number"),
        ([0, 0, float("nan"), 1], "finite"),
        ([0, 0, True, 1], "not a number"),
    ],
)
def test_bad_boxes_are_rejected(box: object, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        model_box_to_pixels(box, Padding.centred(1000, 500))


def test_clip_box_rejects_boxes_outside_the_image() -> None:
    with pytest.raises(BoxError, match="empty once ordered and clipped to the 10x10 image"):
        clip_box([20, 20, 30, 30], 10, 10)
    assert clip_box([-5, 2, 4, 50], 10, 10).as_list() == [0.0, 2.0, 4.0, 10.0]


def test_padding_validates() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        Padding(height=10, width=5, top=0, left=6)
