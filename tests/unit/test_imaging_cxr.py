"""Chest X-ray preparation: grey levels (VOI LUT, window, min-max, MONOCHROME1), centred square, boxes."""

from __future__ import annotations

import imaging_series
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from tools.imaging.cxr import pad_square, prepare_cxr
from tools.imaging.errors import SeriesError, WrongModalityError
from tools.imaging.geometry import model_box_to_pixels
from tools.imaging.prepared import PreparedImages
from tools.imaging.volume import Instance, assemble


def prepare(ds: pydicom.Dataset) -> PreparedImages:
    return prepare_cxr(assemble([Instance("cxr.dcm", ds)]).select("t"), source="cxr.dcm")


def test_min_max_without_voi() -> None:
    stored = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    prepared = prepare(imaging_series.chest_xray(2, 2, stored=stored))
    assert prepared.images[0, ..., 0].tolist() == [[0, 26], [51, 255]]
    assert prepared.metadata.windows[0].name == "min-max"
    assert not prepared.metadata.inverted


def test_monochrome1_is_inverted() -> None:
    stored = np.array([[100, 200], [300, 1100]], dtype=np.uint16)
    mono1 = prepare(imaging_series.chest_xray(2, 2, stored=stored, photometric="MONOCHROME1"))
    assert mono1.images[0, ..., 0].tolist() == [[255, 229], [204, 0]]
    assert mono1.metadata.inverted


def test_window_center_width() -> None:
    stored = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    # LINEAR window c=2000, w=2001: [1000, 3000] maps onto 0..4095 (12 bits stored), then onto 0..255.
    prepared = prepare(imaging_series.chest_xray(2, 2, stored=stored, window=(2000.5, 2001)))
    assert prepared.images[0, ..., 0].tolist() == [[0, 0], [128, 255]]
    window = prepared.metadata.windows[0]
    assert (window.name, window.low, window.high) == ("window", 0.0, 4095.0)


def test_voi_lut_sequence() -> None:
    stored = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    ds = imaging_series.chest_xray(2, 2, stored=stored)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.LUTData = [0, 60000, 30000, 1000]  # not monotone: applied as given
    ds.VOILUTSequence = DicomSequence([item])
    prepared = prepare(ds)
    # Output range of the LUT is [0, 60000].
    assert prepared.images[0, ..., 0].tolist() == [[0, 255], [128, 4]]
    assert prepared.metadata.windows[0].name == "VOI LUT"


def test_padding_is_centred_black_and_recorded() -> None:
    square, padding = pad_square(np.full((3, 6), 9, dtype=np.uint8))
    assert square.tolist() == [[0] * 6, [9] * 6, [9] * 6, [9] * 6, [0] * 6, [0] * 6]
    assert (padding.top, padding.bottom, padding.left, padding.right) == (1, 2, 0, 0)


def test_lesion_box_maps_back_within_one_pixel() -> None:
    rows, cols = 500, 301
    stored = np.full((rows, cols), 100, dtype=np.uint16)
    lesion = (210, 40, 287, 133)  # y0, x0, y1, x1 edges
    stored[lesion[0] : lesion[2], lesion[1] : lesion[3]] = 4000
    prepared = prepare(imaging_series.chest_xray(rows, cols, stored=stored))
    padding = prepared.metadata.padding
    assert padding is not None
    assert prepared.images.shape == (1, 500, 500, 3)
    # Where the lesion is in the prepared square, as the model would answer it: integers on 0..1000.
    ys, xs = np.nonzero(prepared.images[0, ..., 0] == 255)
    size = padding.size
    box_2d = [
        round(ys.min() / size * 1000),
        round(xs.min() / size * 1000),
        round((ys.max() + 1) / size * 1000),
        round((xs.max() + 1) / size * 1000),
    ]
    back = model_box_to_pixels(box_2d, padding)
    for got, want in zip(back.as_list(), lesion, strict=True):
        assert abs(got - want) <= 1.0


def test_multi_frame_takes_the_first_frame() -> None:
    ds = imaging_series.chest_xray(4, 4)
    frames = np.stack([np.full((4, 4), v, dtype=np.uint16) for v in (0, 4000, 4000)])
    frames[0, 0, 0] = 4000
    imaging_series.set_pixels(ds, frames)
    prepared = prepare(ds)
    assert prepared.images.shape == (1, 4, 4, 3)
    assert prepared.images[0, 0, 0, 0] == 255
    assert prepared.images[0, 1, 1, 0] == 0
    assert "used frame 1 of 3" in prepared.metadata.warnings[-1]


def test_two_images_in_one_series_is_an_error() -> None:
    a = imaging_series.chest_xray(4, 4)
    b = imaging_series.chest_xray(4, 4)
    b.SeriesInstanceUID = a.SeriesInstanceUID
    volume = assemble([Instance("pa.dcm", a), Instance("lat.dcm", b)]).select("t")
    with pytest.raises(SeriesError, match="2 images in the series"):
        prepare_cxr(volume, source="t")


def test_cxr_task_refuses_ct() -> None:
    volume = assemble([Instance("c", ds) for ds in imaging_series.ct_series(1)]).select("t")
    with pytest.raises(WrongModalityError, match="expects CR, DX"):
        prepare_cxr(volume, source="t")
