"""DicomWebClient against a real Orthanc (DICOMweb + GDCM plugins) on loopback: STOW, QIDO, WADO-RS
instance/series/frames round trips, compressed transfer syntaxes, sources over DICOMweb."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
    generate_uid,
)

from agent.testbed.cohort.imaging.plain_ct import plain_ct_series
from tools.imaging.dicomweb import DicomWebClient, DicomWebNotFound
from tools.imaging.sources import load_dicomweb

pytestmark = pytest.mark.integration

LOSSLESS = {JPEG2000Lossless, JPEGLosslessSV1, RLELossless}


def ct_series(n: int, size: int = 512) -> list[bytes]:
    """`n` CT slices, int16 with rescale, one study and series of fresh UIDs."""
    return list(plain_ct_series(n, size, patient_id="it-dicomweb", seed=n))


def with_new_uids(name: str) -> tuple[Dataset, bytes]:
    """A pydicom test file under fresh study/series/instance UIDs (the shared server keeps all)."""
    path = get_testdata_file(name)
    assert path is not None, name
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        generate_uid(),
        generate_uid(),
        generate_uid(),
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return ds, buf.getvalue()


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))


async def test_stow_qido_and_wado_round_trip_a_ct_series(dicomweb_base_url: str) -> None:
    files = ct_series(6)
    first = read(files[0])
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    sops = [str(read(f).SOPInstanceUID) for f in files]
    async with DicomWebClient(dicomweb_base_url) as c:
        stored = await c.store(files)
        assert stored.ok
        assert sorted(s.sop_instance_uid for s in stored.stored) == sorted(sops)

        studies = await c.search_studies({"StudyInstanceUID": study})
        assert [s.study_instance_uid for s in studies] == [study]
        assert studies[0].number_of_study_related_instances == 6
        assert "CT" in studies[0].modalities_in_study
        series_found = await c.search_series(study)
        assert [
            (s.series_instance_uid, s.modality, s.number_of_series_related_instances) for s in series_found
        ] == [(series, "CT", 6)]
        instances = await c.search_instances(study, series)
        assert sorted(i.sop_instance_uid for i in instances) == sorted(sops)
        assert {(i.rows, i.columns) for i in instances} == {(512, 512)}
        one = await c.search_instances(study, series, {"InstanceNumber": 3})
        assert [i.sop_instance_uid for i in one] == [sops[2]]

        # WADO-RS: the stored file comes back byte for byte.
        assert await c.retrieve_instance(study, series, sops[0]) == files[0]
        by_sop = {str(read(f).SOPInstanceUID): f for f in files}
        for strategy in ("per-instance", "multipart"):
            got = [d async for d in c.retrieve_series(study, series, strategy=strategy)]
            assert sorted(got) == sorted(files), strategy
            assert all(read(d).PixelData == read(by_sop[str(read(d).SOPInstanceUID)]).PixelData for d in got)

        meta = await c.retrieve_metadata(study, series)
        assert sorted(m["00080018"]["Value"][0] for m in meta) == sorted(sops)
        assert all("7FE00010" not in m or "BulkDataURI" in m["7FE00010"] for m in meta)


async def test_frames_of_a_single_frame_instance(dicomweb_base_url: str) -> None:
    files = ct_series(1, size=64)
    ds = read(files[0])
    async with DicomWebClient(dicomweb_base_url) as c:
        assert (await c.store(files)).ok
        frames = await c.retrieve_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [1])
    assert frames == [ds.PixelData]


async def test_frames_of_enhanced_ct_multiframe(dicomweb_base_url: str) -> None:
    ds, data = with_new_uids("eCT_Supplemental.dcm")
    assert ds.NumberOfFrames == 2
    frame_bytes = ds.Rows * ds.Columns * 2
    async with DicomWebClient(dicomweb_base_url) as c:
        assert (await c.store([data])).ok
        found = await c.search_instances(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert [i.number_of_frames for i in found] == [2]
        frames = await c.retrieve_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [2, 1])
    assert frames == [ds.PixelData[frame_bytes:], ds.PixelData[:frame_bytes]]


async def test_frames_of_jpeg2000_multiframe_come_back_decoded(dicomweb_base_url: str) -> None:
    ds, data = with_new_uids("emri_small_jpeg_2k_lossless.dcm")
    expected = ds.pixel_array  # (10, 64, 64) uint16, decoded by pylibjpeg/openjpeg
    async with DicomWebClient(dicomweb_base_url) as c:
        assert (await c.store([data])).ok
        frames = await c.retrieve_frames(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [*range(10, 0, -1)]
        )
    got = np.stack([np.frombuffer(f, dtype=expected.dtype).reshape(expected.shape[1:]) for f in frames])
    np.testing.assert_array_equal(got, expected[::-1])


async def test_frames_of_jpeg2000_multiframe_as_stored(dicomweb_base_url: str) -> None:
    ds, data = with_new_uids("emri_small_jpeg_2k_lossless.dcm")
    stored = list(generate_frames(ds.PixelData, number_of_frames=10))
    async with DicomWebClient(dicomweb_base_url) as c:
        assert (await c.store([data])).ok
        frames = await c.retrieve_frames(
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [10, 1, 2], transfer_syntax="*"
        )
    assert frames == [stored[9], stored[0], stored[1]]
    assert frames[0][:2] == b"\xff\x4f"  # JPEG 2000 start of codestream


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
        "JPEG2000.dcm",  # JPEG 2000
        "JPEG-LL.dcm",  # JPEG lossless, process 14
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
        "SC_rgb_rle.dcm",  # RLE lossless
    ],
)
async def test_compressed_transfer_syntaxes_are_stored_and_retrieved_as_is(
    dicomweb_base_url: str, name: str
) -> None:
    ds, data = with_new_uids(name)
    syntax = ds.file_meta.TransferSyntaxUID
    assert syntax.is_compressed
    async with DicomWebClient(dicomweb_base_url) as c:
        assert (await c.store([data])).ok
        back = await c.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        # Asked explicitly for Explicit VR Little Endian, Orthanc decodes (GDCM for JPEG 2000).
        frame = (await c.retrieve_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [1]))[
            0
        ]
    assert back == data
    got = read(back)
    assert got.file_meta.TransferSyntaxUID == syntax
    assert got.PixelData == ds.PixelData
    assert len(frame) == ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * ds.BitsAllocated // 8
    if syntax in LOSSLESS and ds.get("SamplesPerPixel", 1) == 1:
        np.testing.assert_array_equal(
            np.frombuffer(frame, dtype=ds.pixel_array.dtype).reshape(ds.pixel_array.shape), ds.pixel_array
        )


async def test_unknown_instance_is_not_found_naming_the_uids(dicomweb_base_url: str) -> None:
    async with DicomWebClient(dicomweb_base_url) as c:
        with pytest.raises(
            DicomWebNotFound,
            match=r"GET studies/1\.2\.3/series/1\.2\.3\.4/instances/1\.2\.3\.4\.5 -> HTTP 404",
        ):
            await c.retrieve_instance("1.2.3", "1.2.3.4", "1.2.3.4.5")
        assert await c.search_studies({"StudyInstanceUID": "1.2.3.999"}) == []


async def test_load_dicomweb_reads_every_instance_of_a_study(dicomweb_base_url: str) -> None:
    files = ct_series(4, size=32)
    first = read(files[0])
    async with DicomWebClient(dicomweb_base_url) as c:
        assert (await c.store(files)).ok
        result = await load_dicomweb(c, str(first.StudyInstanceUID))
        headers = await load_dicomweb(
            c, str(first.StudyInstanceUID), str(first.SeriesInstanceUID), stop_before_pixels=True
        )
    assert result.failures == ()
    assert sorted(int(i.dataset.InstanceNumber) for i in result.instances) == [1, 2, 3, 4]
    assert {i.dataset.PixelData for i in result.instances} == {read(f).PixelData for f in files}
    assert all(
        i.origin.startswith(f"dicomweb:{first.StudyInstanceUID}/{first.SeriesInstanceUID}/")
        for i in result.instances
    )
    assert len(headers.instances) == 4
    assert all("PixelData" not in i.dataset for i in headers.instances)
