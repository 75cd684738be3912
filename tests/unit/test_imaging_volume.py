"""Series assembly: grouping, ordering, warnings, skipped objects and bad pixel data."""

from __future__ import annotations

from pathlib import Path

import imaging_series
import numpy as np
import pydicom
import pytest

from tools.imaging.ct import prepare_ct
from tools.imaging.errors import DicomFileError, SeriesSelectionError
from tools.imaging.volume import Instance, assemble, sample_slice_indices


def instances(datasets: list[pydicom.Dataset], prefix: str = "f") -> list[Instance]:
    return [Instance(f"{prefix}{i}.dcm", ds) for i, ds in enumerate(datasets)]


def test_instance_numbers_falling_along_the_normal_still_come_out_rising() -> None:
    # InstanceNumber 1 at the feet: the order follows InstanceNumber, i.e. foot to head here.
    series = imaging_series.ct_series(6, positions=[-50.0 + 5 * i for i in range(6)])
    volume = assemble(instances(series[::-1])).select("t")
    assert [s.instance_number for s in volume.slices] == [1, 2, 3, 4, 5, 6]
    assert volume.positions == [-50.0 + 5 * i for i in range(6)]


def test_without_instance_numbers_the_order_is_head_to_foot() -> None:
    series = imaging_series.ct_series(5)
    for ds in series:
        del ds.InstanceNumber
    volume = assemble(instances(series[::-1])).select("t")
    assert volume.positions == [100.0, 97.5, 95.0, 92.5, 90.0]


def test_missing_geometry_falls_back_to_instance_number() -> None:
    series = imaging_series.ct_series(4)
    for ds in series:
        del ds.ImagePositionPatient
    volume = assemble(instances(series[::-1])).select("t")
    assert volume.order == "instance_number"
    assert [s.instance_number for s in volume.slices] == [1, 2, 3, 4]
    assert any("lack ImagePositionPatient" in w for w in volume.warnings)


def test_duplicates_gaps_and_uneven_spacing_are_warnings() -> None:
    dup = assemble(instances(imaging_series.ct_series(4, positions=[10, 7.5, 7.5, 5]))).select("t")
    assert any("1 duplicate slice positions" in w for w in dup.warnings)
    gap = assemble(instances(imaging_series.ct_series(5, positions=[10, 7.5, 5, -5, -7.5]))).select("t")
    assert any("gap of 10.00 mm after slice 3" in w and "about 3 slice(s) missing" in w for w in gap.warnings)
    uneven = assemble(instances(imaging_series.ct_series(5, positions=[10, 8, 5, 3, 0]))).select("t")
    assert any(w.startswith("uneven slice spacing: 2.00 to 3.00 mm") for w in uneven.warnings)
    regular = assemble(instances(imaging_series.ct_series(5))).select("t")
    assert regular.warnings == ()


def test_localizer_with_another_orientation_is_left_out() -> None:
    series = imaging_series.ct_series(4)
    series[0].ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    volume = assemble(instances(series)).select("t")
    assert len(volume) == 3
    assert any("another orientation" in w and "f0.dcm" in w for w in volume.warnings)


def test_mixed_series_folder_lists_the_series_and_selects_one() -> None:
    a = imaging_series.ct_series(3, seed=1)
    b = imaging_series.mr_series(2, seed=2)
    assembly = assemble(instances(a + b))
    with pytest.raises(SeriesSelectionError) as info:
        assembly.select("folder/")
    message = str(info.value)
    assert "2 image series; choose one with --series" in message
    assert a[0].SeriesInstanceUID in message
    assert b[0].SeriesInstanceUID in message
    assert len(assembly.select("folder/", b[0].SeriesInstanceUID)) == 2
    with pytest.raises(SeriesSelectionError, match=r"no image series 1\.2\.3"):
        assembly.select("folder/", "1.2.3")


@pytest.mark.parametrize("kind", ["SR", "SEG", "KO", "PR", "RTSTRUCT"])
def test_non_image_objects_are_skipped_with_a_reason(kind: str) -> None:
    series = imaging_series.ct_series(3)
    other = imaging_series.non_image(kind, series_uid=series[0].SeriesInstanceUID)
    assembly = assemble([*instances(series), Instance("other.dcm", other)])
    assert len(assembly.select("t")) == 3
    (skipped,) = assembly.skipped
    assert skipped.origin == "other.dcm"
    assert skipped.modality == kind
    assert skipped.reason == f"not an image ({kind})"


def test_only_non_image_objects_is_a_clear_error() -> None:
    assembly = assemble([Instance("report.dcm", imaging_series.non_image("SR"))])
    with pytest.raises(
        SeriesSelectionError, match=r"no usable image series \(report.dcm: not an image \(SR\)\)"
    ):
        assembly.select("folder/")


def test_one_slice_series() -> None:
    volume = assemble(instances(imaging_series.ct_series(1))).select("t")
    prepared = prepare_ct(volume, source="t")
    assert prepared.images.shape == (1, 32, 32, 3)
    assert volume.warnings == ()


def test_three_thousand_slices_decode_only_the_sampled_ones() -> None:
    series = imaging_series.ct_series(3000, rows=64, cols=64, spacing=0.5)
    chosen = set(sample_slice_indices(3000))
    for i, ds in enumerate(series):
        if i not in chosen:
            ds.PixelData = b"\x00"  # would fail to decode if anyone touched it
    volume = assemble(instances(series)).select("t")
    prepared = prepare_ct(volume, source="t")
    assert prepared.images.shape == (85, 64, 64, 3)
    assert [s.index for s in prepared.metadata.slices] == sorted(chosen)


def test_corrupt_pixel_data_names_the_file() -> None:
    series = imaging_series.ct_series(2)
    series[1].PixelData = series[1].PixelData[:100]
    volume = assemble(instances(series, prefix="/data/ct/")).select("t")
    with pytest.raises(DicomFileError) as info:
        prepare_ct(volume, source="t")
    assert info.value.origin == "/data/ct/1.dcm"
    assert "pixel data cannot be decoded" in str(info.value)


def test_truncated_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (path,) = imaging_series.write_series(tmp_path, imaging_series.ct_series(1, rows=64, cols=64))
    path.write_bytes(path.read_bytes()[:-3000])
    ds = pydicom.dcmread(path)
    volume = assemble([Instance(str(path), ds)]).select(str(tmp_path))
    with pytest.raises(DicomFileError, match=str(path)):
        volume.stored(0)


def test_enhanced_ct_uses_per_frame_position_and_rescale() -> None:
    ds = imaging_series.enhanced_ct(4)
    volume = assemble([Instance("enh.dcm", ds)]).select("t")
    # One object, frames given foot to head, frame number rises with them: kept in frame order.
    assert [s.frame for s in volume.slices] == [0, 1, 2, 3]
    assert volume.positions == [-50.0, -45.0, -40.0, -35.0]
    stored = ds.pixel_array
    for k in range(4):
        expected = stored[k].astype(np.float64) * (1.0 + k) - 1024.0
        assert np.array_equal(volume.modality_values(k), expected)
    assert prepare_ct(volume, source="t").images.shape == (4, 16, 16, 3)


def test_objects_without_series_uid_are_skipped() -> None:
    series = imaging_series.ct_series(2)
    del series[0].SeriesInstanceUID
    assembly = assemble(instances(series))
    assert [s.reason for s in assembly.skipped] == ["no SeriesInstanceUID"]
