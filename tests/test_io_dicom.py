"""DICOM loading: real vendor cases against dicom2nifti's ground truth, real knee series,
the refused cases, and broken input built from a synthetic series."""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pydicom
import pytest

import bmeviz
from bmeviz import (
    BmevizError,
    BmevizWarning,
    InconsistentGeometryError,
    NotAVolumeError,
    SeriesSelectionError,
    UnreadableFileError,
)
from helpers import shared

GOOD_CASES = [
    "generic/anatomical/001",
    "generic/compressed/001",  # JPEG lossless
    "generic/compressed_j2k/001",
    "generic/compressed_jpeg/001",  # JPEG baseline (lossy)
    "generic/compressed_jpegls/001",
    "generic/compressed_rle/001",
    "ge/anatomical/001",
    "philips/anatomical/001",
    "siemens/anatomical/001",
    "hitachi/anatomical/001",
    "philips_enhanced/anatomical/001",
    "siemens_multiframe/anatomical/001",
]


def _canonical(img):
    """Both images in nibabel's closest-canonical (RAS) axis order: the documented convention."""
    c = nib.as_closest_canonical(img)
    return np.asarray(c.dataobj, dtype=np.float64).squeeze(), c.affine


@pytest.mark.parametrize("case", GOOD_CASES)
def test_vendor_case_matches_ground_truth(case):
    folder = shared("dicom-series-cases", case)
    truth = nib.load(str(folder) + "_ground_truth.nii.gz")
    vol = bmeviz.load(folder)
    mine, mine_aff = _canonical(vol.to_nifti())
    gt_img = nib.Nifti1Image(np.asarray(truth.dataobj).squeeze(), truth.affine)
    ref, ref_aff = _canonical(gt_img)
    assert mine.shape == ref.shape
    assert np.abs(mine_aff - ref_aff).max() < 1e-3
    assert np.allclose(mine, ref, atol=1e-3 * max(1.0, float(np.abs(ref).max())))


def test_implicit_vr_matches_pydicom_and_ground_truth_geometry():
    folder = shared("dicom-series-cases", "generic/anatomical/001_implicit")
    vol = bmeviz.load(folder)
    assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    truth = nib.load(str(folder.parent / "001_ground_truth.nii.gz"))
    _, mine_aff = _canonical(vol.to_nifti())
    _, ref_aff = _canonical(truth)
    assert np.abs(mine_aff - ref_aff).max() < 1e-3
    # voxels: the implicit copy carries its own pixels; compare with a plain pydicom read,
    # slices ordered by ImagePositionPatient along the normal
    dss = [pydicom.dcmread(f) for f in folder.iterdir()]
    iop = np.array(dss[0].ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), n)))
    assert np.array_equal(vol.array, np.stack([d.pixel_array for d in dss]))


def test_rescale_from_per_frame_functional_groups_is_applied_and_recorded():
    folder = shared("dicom-series-cases", "philips_enhanced/anatomical/001")
    vol = bmeviz.load(next(folder.iterdir()))  # the single enhanced file
    rescale = vol.metadata["rescale"]
    assert rescale["applied"] and rescale["slopes"] == [pytest.approx(4.25885225885225)]
    assert "per-frame" in rescale["source"]
    assert vol.dtype == np.float32 and vol.shape == (8, 256, 256)


@pytest.mark.parametrize(
    "case, error, words",
    [
        ("slicecount", NotAVolumeError, "too few slices"),
        ("sliceorientation", InconsistentGeometryError, "mixed slice orientations"),
        ("gantrytilting", InconsistentGeometryError, "gantry tilt"),
        ("notavolume", NotAVolumeError, "not a volume"),
        ("sliceincrement", InconsistentGeometryError, "uneven slice increment"),
    ],
)
def test_failing_cases_are_refused_with_the_reason(case, error, words):
    folder = shared("dicom-series-cases", "failing", case)
    with pytest.raises(error) as info:
        bmeviz.load(folder)
    assert words in str(info.value)
    assert str(folder) in str(info.value)


def test_multi_echo_series_lists_eight_echoes_and_loads_one():
    folder = shared("knee-dicom", "mese-t2-multiecho")
    infos = bmeviz.list_series(folder)
    assert len({s.uid for s in infos}) == 1
    assert sorted(s.echo for s in infos) == list(range(1, 9))
    assert all(s.n_slices == 24 and s.spacing[0] == pytest.approx(4.0, abs=1e-3) for s in infos)
    with pytest.raises(SeriesSelectionError, match="8 echoes"):
        bmeviz.load(folder)
    vol = bmeviz.load(folder, echo=3)
    assert vol.shape == (24, 256, 256)
    assert vol.spacing == pytest.approx((4.0, 0.625, 0.625), abs=1e-3)  # positions, not SliceThickness 3
    assert vol.metadata["echo"] == 3 and vol.metadata["echo_time"] == pytest.approx(18.936)
    assert vol.dtype.isnative  # big-endian files give native arrays
    assert "SliceThickness" in vol.metadata["geometry"]["note"]


def test_multi_echo_geometry_matches_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    folder = shared("knee-dicom", "mese-t2-multiecho")
    vol = bmeviz.load(folder, echo=5)
    files = []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if int(ds.EchoNumbers) == 5:
            files.append((int(ds.InstanceNumber), str(f)))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([f for _, f in sorted(files)])
    img = reader.Execute()
    arr = sitk.GetArrayFromImage(img)  # (slice, row, column)
    d = np.array(img.GetDirection()).reshape(3, 3)
    sp = img.GetSpacing()
    aff_lps = np.eye(4)
    aff_lps[:3, 0] = d[:, 2] * sp[2]
    aff_lps[:3, 1] = d[:, 1] * sp[1]
    aff_lps[:3, 2] = d[:, 0] * sp[0]
    aff_lps[:3, 3] = img.GetOrigin()
    aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff_lps
    if np.dot(aff[:3, 0], vol.affine[:3, 0]) < 0:  # SimpleITK kept the files' order: flip to compare
        arr = arr[::-1]
        aff[:3, 3] = aff[:3, 3] + aff[:3, 0] * (arr.shape[0] - 1)
        aff[:3, 0] *= -1
    assert np.abs(aff - vol.affine).max() < 1e-3
    assert np.array_equal(arr, vol.array)


def test_cubequant_loads_sagittal_fat_suppressed_despite_interleaved_numbers():
    folder = shared("knee-dicom", "cubequant-fs-sagittal")
    [info] = bmeviz.list_series(folder)
    assert info.fat_suppressed and info.plane == "sagittal" and info.n_slices == 80
    vol = bmeviz.load(folder)
    assert vol.shape == (80, 512, 512)
    assert vol.spacing[0] == pytest.approx(1.5, abs=1e-3)
    assert vol.plane == "sagittal" and vol.metadata["fat_suppressed"]
    # slices strictly ordered in space even though InstanceNumbers go 1, 5, 9, ...
    centres = vol.index_to_ras(np.c_[np.arange(80), np.full(80, 256), np.full(80, 256)])
    steps = np.diff(centres, axis=0)
    assert np.allclose(np.linalg.norm(steps, axis=1), 1.5, atol=1e-3)


def test_header_scan_reads_no_pixel_data(monkeypatch):
    folder = shared("knee-dicom", "mese-t2-multiecho")
    calls = []
    real = pydicom.dcmread

    def spy(*args, **kwargs):
        calls.append(kwargs.get("stop_before_pixels", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", spy)
    infos = bmeviz.list_series(folder)
    assert len(calls) == 192 and all(calls)
    assert len(infos) == 8


def test_study_folder_picks_the_fluid_sensitive_series_and_says_so(tmp_path, small_volume):
    from bmeviz.io.dicom_write import write_dicom_series

    write_dicom_series(small_volume, tmp_path / "t1", sequence="T1", description="T1 TSE cor", series_number=2)
    write_dicom_series(small_volume, tmp_path / "stir", sequence="STIR", description="Cor STIR", series_number=5)
    write_dicom_series(small_volume, tmp_path / "pdfs", sequence="PD FS", description="PD FS sag", series_number=7)
    infos = bmeviz.list_series(tmp_path)
    assert [s.sequence for s in infos] == ["T1", "STIR", "PD FS"]
    with pytest.warns(BmevizWarning, match="picked the fluid-sensitive"):
        vol = bmeviz.load(tmp_path)
    assert vol.metadata["sequence"] == "STIR" and vol.metadata["series_number"] == 5
    assert bmeviz.load(tmp_path, series=7).metadata["description"] == "PD FS sag"
    assert bmeviz.load(tmp_path, series="T1 TSE").metadata["sequence"] == "T1"
    assert bmeviz.load(tmp_path, series=infos[2]).metadata["series_number"] == 7
    with pytest.raises(SeriesSelectionError, match="no series matches"):
        bmeviz.load(tmp_path, series=99)


def test_synthetic_series_round_trips_geometry_and_values(dicom_series, small_volume):
    vol = bmeviz.load(dicom_series)
    assert np.allclose(vol.affine, small_volume.affine, atol=1e-4)
    step = (small_volume.array.max() - small_volume.array.min()) / 30000
    assert np.allclose(vol.array, small_volume.array, atol=step)
    # a single classic file loads the series it belongs to
    one = bmeviz.load(next(dicom_series.iterdir()))
    assert one.shape == small_volume.shape


def test_localizers_are_left_out(tmp_path, small_volume):
    from bmeviz.io.dicom_write import write_dicom_series

    folder = write_dicom_series(small_volume, tmp_path / "s", sequence="STIR")
    for f in list(folder.iterdir())[:3]:
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.SeriesInstanceUID = "1.2.3.4.5"
        ds.save_as(tmp_path / ("loc_" + f.name))
    infos = bmeviz.list_series(tmp_path)
    assert len(infos) == 1 and infos[0].n_slices == small_volume.shape[0]


# ---------------------------------------------------------------------------- bad input
def test_non_dicom_files_are_skipped_with_a_warning_naming_them(dicom_series, small_volume):
    (dicom_series / "notes.txt").write_text("reader notes")
    (dicom_series / "junk.bin").write_bytes(b"\x00\x01garbage" * 50)
    with pytest.warns(BmevizWarning) as record:
        vol = bmeviz.load(dicom_series)
    text = " ".join(str(w.message) for w in record)
    assert "junk.bin" in text and "notes.txt" in text
    assert vol.shape == small_volume.shape


def test_truncated_file_gives_a_clear_error_naming_it(dicom_series):
    victim = sorted(dicom_series.iterdir())[4]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 3000])
    with pytest.raises(BmevizError) as info:
        bmeviz.load(dicom_series)
    assert victim.name in str(info.value)


def test_dicom_without_pixel_data(dicom_series):
    victim = sorted(dicom_series.iterdir())[2]
    ds = pydicom.dcmread(victim)
    del ds.PixelData
    ds.save_as(victim)
    with pytest.raises(NotAVolumeError, match="no pixel data") as info:
        bmeviz.load(dicom_series)
    assert victim.name in str(info.value)


def test_empty_and_missing_paths(tmp_path):
    with pytest.raises(UnreadableFileError, match="no DICOM images found"):
        bmeviz.load(tmp_path)
    with pytest.raises(UnreadableFileError, match="no such file"):
        bmeviz.load(tmp_path / "nope")
    with pytest.raises(UnreadableFileError, match="no such file"):
        bmeviz.list_series(tmp_path / "nope")


def test_missing_slice_is_refused(dicom_series):
    files = sorted(dicom_series.iterdir(), key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
    files[5].unlink()
    with pytest.raises(InconsistentGeometryError, match="missing slice"):
        bmeviz.load(dicom_series)


def test_inputs_are_not_modified(dicom_series):
    before = {f.name: f.read_bytes() for f in dicom_series.iterdir()}
    bmeviz.list_series(dicom_series)
    bmeviz.load(dicom_series)
    assert {f.name: f.read_bytes() for f in dicom_series.iterdir()} == before


@pytest.mark.parametrize("case", [*GOOD_CASES, "generic/anatomical/001_implicit", "KNEE:mese-t2-multiecho",
                                  "KNEE:cubequant-fs-sagittal"])
def test_fast_native_read_equals_pydicom_decoding(case):
    """The scan-offset fast path must give exactly what pydicom's pixel_array gives."""
    from bmeviz.io.dicom import group, read_stack, scan

    folder = shared("knee-dicom", case[5:]) if case.startswith("KNEE:") else shared("dicom-series-cases", case)
    info = group(scan(folder))[0]
    fast, slow = read_stack(info), read_stack(info, fast=False)
    assert fast.array.dtype == slow.array.dtype and fast.array.dtype.isnative
    assert np.array_equal(fast.array, slow.array)
    assert np.array_equal(fast.affine, slow.affine)
