"""Lazy file reads: our header reader against pydicom's, deferred pixel data, direct native decoding.

Folders and files are read with pixel data left in the files (sources' `defer_pixels`, the default);
these tests pin down that this changes nothing a caller can see except when the bytes are read:
the same elements and values as pydicom, the same decoded pixels, and bad files still named.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import imaging_series
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from pydicom.charset import default_encoding
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ImplicitVRLittleEndian

from tools.imaging.ct import CtWindower, prepare_ct, window_hu
from tools.imaging.errors import DicomFileError
from tools.imaging.sources import (
    DEFER_SIZE,
    DicomSourceError,
    LoadedInstance,
    _read_header,
    load_file,
    load_folder,
    read_instance,
)
from tools.imaging.tags import shared_tag
from tools.imaging.volume import Instance, apply_slice_rescale, assemble, native_slice, slices_of

PIXEL_DATA = 0x7FE00010


def data_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    assert found is not None, f"{name} is not installed (pydicom / pydicom-data)"
    return Path(found)


def raw(ds: Dataset, tag: int) -> DataElement | RawDataElement:
    elem: DataElement | RawDataElement = ds.get_item(tag, keep_deferred=True)
    return elem


# Explicit and implicit VR little endian files our reader takes, and files it hands to pydicom
# (big endian, encapsulated pixel data, undefined-length sequences, no file meta).
FAST = ["CT_small.dcm", "MR_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm", "emri_small.dcm",
        "SC_rgb.dcm", "rtdose.dcm", "mlut_18.dcm", "vlut_04.dcm"]  # fmt: skip
PYDICOM = ["MR_small_bigendian.dcm", "OBXXXX1A.dcm", "JPEG2000.dcm", "MR_small_jp2klossless.dcm",
           "SC_rgb_rle.dcm", "liver.dcm"]  # fmt: skip


def read_header(fp: BinaryIO) -> FileDataset | None:
    stat = os.fstat(fp.fileno())
    return _read_header(fp, stat.st_size, stat.st_mtime)


@pytest.mark.parametrize("name", FAST)
def test_our_header_reader_takes_simple_little_endian_files(name: str) -> None:
    with data_file(name).open("rb") as fp:
        assert read_header(fp) is not None


@pytest.mark.parametrize("name", PYDICOM)
def test_other_files_are_left_to_pydicom(name: str) -> None:
    with data_file(name).open("rb") as fp:
        assert read_header(fp) is None


def attributes(ds: Dataset) -> dict[str, Any]:
    """A dataset's Python attributes, less its elements and file meta (compared on their own)."""
    return {k: v for k, v in vars(ds).items() if k not in ("_dict", "file_meta")}


@pytest.mark.parametrize("name", FAST)
def test_our_datasets_are_what_pydicoms_constructors_build(name: str) -> None:
    # Our reader fills new datasets from blank attributes instead of running pydicom's constructors.
    path = data_file(name)
    with path.open("rb") as fp:
        ours = read_header(fp)
        assert ours is not None
        implicit = bool(ours.original_encoding[0])
        meta = FileMetaDataset(ours.file_meta._dict)
        meta.set_original_encoding(False, True, default_encoding)
        theirs = FileDataset(fp, dict(ours._dict), ours.preamble, meta, implicit, True)
        theirs.set_original_encoding(implicit, True, theirs._character_set)
    assert attributes(ours) == attributes(theirs)
    assert attributes(ours.file_meta) == attributes(theirs.file_meta)
    assert ours.timestamp == path.stat().st_mtime
    other = load_file(path).dataset  # no mutable state shared between datasets
    assert ours._private_blocks is not other._private_blocks
    assert ours._pixel_array_opts is not other._pixel_array_opts


@pytest.mark.parametrize("name", FAST + PYDICOM)
def test_lazy_reads_give_pydicoms_elements_and_values(name: str) -> None:
    path = data_file(name)
    lazy = load_file(path).dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        eager = pydicom.dcmread(path)
        assert list(lazy.keys()) == list(eager.keys())
        assert list(lazy.file_meta.keys()) == list(eager.file_meta.keys())
        for tag in eager.file_meta.keys():  # noqa: SIM118 (iterating would convert)
            assert lazy.file_meta[tag].value == eager.file_meta[tag].value
        for tag in eager.keys():  # noqa: SIM118
            if tag == PIXEL_DATA:
                continue
            assert lazy[tag].VR == eager[tag].VR, tag
            assert lazy[tag].value == eager[tag].value, tag
        assert lazy.preamble == eager.preamble
        assert lazy.original_encoding == eager.original_encoding
        assert lazy.original_character_set == eager.original_character_set
        # Large pixel data stay in the file until asked for; then they are the same bytes.
        if PIXEL_DATA in eager:
            elem = raw(lazy, PIXEL_DATA)
            if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF:
                assert (elem.value is None) == (elem.length > DEFER_SIZE)
            assert lazy.PixelData == eager.PixelData
            assert np.array_equal(lazy.pixel_array, eager.pixel_array)


def write_ct(folder: Path, n: int, size: int = 128) -> list[Path]:
    """`n` CT slices of size x size int16: 32 KiB of pixel data each, more than DEFER_SIZE."""
    return imaging_series.write_series(folder, imaging_series.ct_series(n, rows=size, cols=size))


def test_folder_pixel_data_stay_in_the_files_and_prepare_identically(tmp_path: Path) -> None:
    write_ct(tmp_path, 100)
    lazy = load_folder(tmp_path)
    whole = load_folder(tmp_path, defer_pixels=False)
    assert lazy.failures == whole.failures == ()
    assert all(raw(i.dataset, PIXEL_DATA).value is None for i in lazy.instances)
    assert all(isinstance(raw(i.dataset, PIXEL_DATA).value, bytes) for i in whole.instances)
    got = prepare_ct(assemble(lazy.instances).select("t"), source="t")
    expected = prepare_ct(assemble(whole.instances).select("t"), source="t")
    assert np.array_equal(got.images, expected.images)
    assert got.metadata == expected.metadata


def test_a_file_cut_in_deferred_pixel_data_is_a_failure_naming_it(tmp_path: Path) -> None:
    good, cut = write_ct(tmp_path, 2)
    cut.write_bytes(cut.read_bytes()[:-1000])
    result = load_folder(tmp_path)
    assert [i.origin for i in result.instances] == [str(good)]
    (failure,) = result.failures
    assert failure.origin == str(cut)
    assert "truncated" in failure.reason
    assert "(7FE0,0010)" in failure.reason


def test_every_cut_of_a_file_read_lazily_is_a_failure(tmp_path: Path) -> None:
    (path,) = write_ct(tmp_path, 1, size=96)
    data = path.read_bytes()
    probe = tmp_path / "cut.dcm"
    for cut in [*range(0, 700), *range(700, len(data), 211)]:
        probe.write_bytes(data[:cut])
        with pytest.raises(DicomSourceError, match=r"cut\.dcm") as info:
            load_file(probe)
        assert any(w in info.value.reason for w in ("truncated", "not a DICOM", "no SOPInstanceUID")), cut


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_jp2klossless.dcm"])
def test_every_cut_of_a_real_file_read_lazily_is_a_failure(tmp_path: Path, name: str) -> None:
    data = data_file(name).read_bytes()
    probe = tmp_path / name
    end = len(data) - 150  # the last bytes of the encapsulated file hold only the sequence's end
    for cut in [*range(0, min(end, 1500)), *range(1500, end, 97)]:
        probe.write_bytes(data[:cut])
        with pytest.raises(DicomSourceError, match=name) as info:
            load_file(probe)
        assert any(w in info.value.reason for w in ("truncated", "not a DICOM", "no SOPInstanceUID")), cut


def test_a_file_cut_or_removed_after_loading_fails_when_decoded_naming_it(tmp_path: Path) -> None:
    first, second = write_ct(tmp_path, 2)
    volume = assemble(load_folder(tmp_path).instances).select("t")
    first.write_bytes(first.read_bytes()[:-5000])
    second.unlink()
    for i, path in enumerate((first, second)):
        k = next(k for k, s in enumerate(volume.slices) if s.origin == str(path))
        with pytest.raises(DicomFileError, match="pixel data cannot be decoded") as info:
            volume.stored(k)
        assert info.value.origin == str(path), i


def test_a_corrupt_header_is_read_by_pydicom_and_still_named(tmp_path: Path) -> None:
    (path,) = write_ct(tmp_path, 1)
    data = bytearray(path.read_bytes())
    at = data.index(b"CS", 132)  # the first CS element's VR: make it unknown
    data[at : at + 2] = b"c$"
    path.write_bytes(bytes(data))
    with pytest.raises(DicomSourceError, match=str(path)):
        load_file(path)


def test_implicit_vr_files_are_read_lazily_too(tmp_path: Path) -> None:
    series = imaging_series.ct_series(3, rows=128, cols=128)
    for ds in series:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    imaging_series.write_series(tmp_path, series)
    result = load_folder(tmp_path)
    assert result.failures == ()
    assert all(raw(i.dataset, PIXEL_DATA).value is None for i in result.instances)
    volume = assemble(result.instances).select("t")
    expected = {str(ds.SOPInstanceUID): ds.pixel_array for ds in series}
    for k, sl in enumerate(volume.slices):
        assert np.array_equal(volume.stored(k), expected[str(sl.dataset.SOPInstanceUID)])


def test_the_repr_of_an_instance_leaves_the_dataset_alone(tmp_path: Path) -> None:
    (path,) = write_ct(tmp_path, 1)
    inst = load_file(path)
    assert repr(inst) == f"LoadedInstance(origin={str(path)!r})"
    assert raw(inst.dataset, PIXEL_DATA).value is None  # nothing read by the repr
    assert isinstance(read_instance(path, "x"), LoadedInstance)


# ---------------------------------------------------------------------------- native decoding


def stored_cases() -> list[tuple[str, npt.NDArray[np.integer], int, str]]:
    rng = np.random.default_rng(7)
    return [
        ("int16, 16 bits", rng.integers(-3000, 3000, (140, 96)).astype(np.int16), 16, "MONOCHROME2"),
        # Bits above BitsStored are garbage here: pydicom shifts them out (sign-extending when signed).
        ("int16, 12 bits", rng.integers(-32768, 32767, (140, 96)).astype(np.int16), 12, "MONOCHROME2"),
        ("uint16, 12 bits", rng.integers(0, 65535, (140, 96)).astype(np.uint16), 12, "MONOCHROME1"),
        ("uint8, 8 bits", rng.integers(0, 255, (161, 117)).astype(np.uint8), 8, "MONOCHROME2"),
        ("int8, 7 bits", rng.integers(-128, 127, (161, 117)).astype(np.int8), 7, "MONOCHROME1"),
        ("odd 8-bit frame, padded", rng.integers(0, 255, (5, 7)).astype(np.uint8), 8, "MONOCHROME2"),
    ]


@pytest.mark.parametrize(("label", "stored", "bits", "photometric"), stored_cases())
@pytest.mark.parametrize("where", ["memory", "file"])
def test_native_decoding_matches_pydicom(
    tmp_path: Path, label: str, stored: npt.NDArray[np.integer], bits: int, photometric: str, where: str
) -> None:
    ds = imaging_series.ct_series(1)[0]
    imaging_series.set_pixels(ds, stored, photometric=photometric)
    ds.BitsStored, ds.HighBit = bits, bits - 1
    if where == "file":
        (path,) = imaging_series.write_series(tmp_path, [ds])
        ds = load_file(path).dataset
        assert (raw(ds, PIXEL_DATA).value is None) == (stored.nbytes > DEFER_SIZE)
    (sl,) = slices_of(Instance("x", ds))
    got = native_slice(sl)
    assert got is not None, label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pixel_array(pydicom.dcmread(path) if where == "file" else ds)
    assert got.dtype == expected.dtype
    assert np.array_equal(got, expected), label
    assert got.flags.writeable


@pytest.mark.parametrize("extra", [2, 100, 40 * 24 * 2 - 2, 40 * 24 * 2, 3 * 40 * 24 * 2 + 6])
def test_excess_pixel_bytes_are_treated_as_pydicom_treats_them(tmp_path: Path, extra: int) -> None:
    """Less than a frame more: ignored. A whole frame or more: pydicom returns the extra frames,
    which assembly refuses (one greyscale frame expected); the direct read must not hide that.
    A file is refused as it is read, before any decoding (dicom_limits)."""
    ds = imaging_series.ct_series(1, rows=40, cols=24)[0]
    ds.PixelData = ds.PixelData + bytes(extra)
    for where, dataset in (("memory", ds), ("file", None)):
        if dataset is None:
            (path,) = imaging_series.write_series(tmp_path, [ds])
            if extra >= 40 * 24 * 2:
                with pytest.raises(DicomSourceError, match="at least one frame more than the 1920 bytes"):
                    load_file(path)
                continue
            dataset = load_file(path).dataset
        volume = assemble([Instance("x.dcm", dataset)]).select("t")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if extra < 40 * 24 * 2:
                assert np.array_equal(volume.stored(0), ds.pixel_array), where
            else:
                with pytest.raises(DicomFileError, match="expected one greyscale frame"):
                    volume.stored(0)


def test_native_decoding_leaves_compressed_and_multiframe_data_to_pydicom() -> None:
    for name in ("MR_small_jp2klossless.dcm", "emri_small.dcm", "MR_small_bigendian.dcm", "SC_rgb.dcm"):
        ds = pydicom.dcmread(data_file(name))
        assert all(native_slice(sl) is None for sl in slices_of(Instance(name, ds))), name


# ---------------------------------------------------------------------------- CT lookup


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 5), (7, 1), (64, 64), (31, 33)])
def test_packed_lookup_writes_every_pixel_of_any_shape(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    stored = rng.integers(-32768, 32767, shape).astype(np.int16)
    ds = imaging_series.ct_series(1)[0]
    (sl,) = slices_of(Instance("x", ds))
    out = np.full((*shape, 3), 77, dtype=np.uint8)
    CtWindower().window_into(stored, sl, out)
    assert np.array_equal(out, window_hu(apply_slice_rescale(stored, sl)))


def test_our_reader_keys_elements_by_the_shared_tags(tmp_path: Path) -> None:
    # volume's look-ups use the same BaseTag objects: a dict then compares identity, not BaseTag.__eq__.
    a, b = (load_file(p).dataset for p in write_ct(tmp_path, 2))
    assert all(key is shared_tag(key) for key in a._dict)
    assert all(key is shared_tag(key) for key in a.file_meta._dict)
    assert [id(k) for k in a._dict] == [id(k) for k in b._dict]
    assert shared_tag("Rows") is shared_tag(0x00280010) is shared_tag((0x0028, 0x0010))
