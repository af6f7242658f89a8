"""Hand-made hostile inputs, one per kind listed in docs/robustness.md: each must give a
correct volume or the documented BmevizError (naming the file), up front, without a
traceback, a hang or a giant allocation."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest

import bmeviz
from bmeviz import (
    BmevizError,
    BmevizWarning,
    NotAVolumeError,
    ResourceLimitError,
    UnreadableFileError,
)
from fuzz import harness as H


def _copy(src: Path, tmp: Path, name: str = "case") -> Path:
    dst = tmp / name
    shutil.copytree(src, dst)
    return dst


def _edit_all(folder: Path, op) -> None:
    for f in sorted(folder.iterdir()):
        f.write_bytes(H.apply_op(f.read_bytes(), op))


def _edit_one(folder: Path, op, index: int = 2) -> Path:
    f = sorted(folder.iterdir())[index]
    f.write_bytes(H.apply_op(f.read_bytes(), op))
    return f


def _set_tag(folder: Path, keyword: str, value, files=None) -> None:
    """Set a tag with pydicom (values it can write) in some or all files."""
    for f in sorted(folder.iterdir()) if files is None else files:
        ds = pydicom.dcmread(f)
        setattr(ds, keyword, value)
        ds.save_as(f)


def _outcome(fn, **kw) -> H.Outcome:
    out = H.run_case(fn, **kw)
    assert out.ok, f"{out.kind}: {out.detail}"
    return out


# ----------------------------------------------------------------------------- DICOM: sizes
@pytest.mark.parametrize("encoding", ["classic", "rle"])
def test_absurd_matrix_is_refused_up_front_with_the_size(seeds, tmp_path, encoding):
    """Rows = Columns = 65535: decoding would allocate 4 x 8.6 GB; bmeviz refuses before reading."""
    folder = _copy(seeds[encoding], tmp_path)
    _set_tag(folder, "Rows", 65535)
    _set_tag(folder, "Columns", 65535)
    out = _outcome(lambda: bmeviz.load(folder))
    assert isinstance(out.exc, ResourceLimitError), out.detail
    assert "GB" in str(out.exc) and "65535" in str(out.exc) and str(folder) in str(out.exc)


def test_absurd_number_of_frames_in_an_enhanced_file(seeds, tmp_path):
    folder = _copy(seeds["enhanced"], tmp_path)
    _set_tag(folder, "NumberOfFrames", 2**31 - 1)
    out = _outcome(lambda: bmeviz.load(folder))
    assert isinstance(out.exc, NotAVolumeError) and "NumberOfFrames" in str(out.exc)


def test_number_of_frames_in_a_classic_file_is_refused_before_decoding(seeds, tmp_path):
    folder = _copy(seeds["rle"], tmp_path)
    victim = sorted(folder.iterdir())[1]
    _set_tag(folder, "NumberOfFrames", 1_000_000, files=[victim])
    out = _outcome(lambda: bmeviz.load(folder))
    assert isinstance(out.exc, NotAVolumeError) and victim.name in str(out.exc)


@pytest.mark.parametrize("bits", [0, 1, 7, 12, 24, 48, 65535])
def test_wrong_bits_allocated(seeds, tmp_path, bits):
    folder = _copy(seeds["classic"], tmp_path)
    _set_tag(folder, "BitsAllocated", bits)
    out = _outcome(lambda: bmeviz.load(folder))
    assert out.kind == "error" and str(folder) in str(out.exc)


def test_bits_allocated_8_on_16_bit_data_is_not_read_as_half_the_pixels(seeds, tmp_path):
    """The fast path must not read 8-bit pixels out of 16-bit data (pydicom refuses the length)."""
    folder = _copy(seeds["classic"], tmp_path)
    _set_tag(folder, "BitsAllocated", 8)
    _set_tag(folder, "BitsStored", 8)
    _set_tag(folder, "HighBit", 7)
    out = _outcome(lambda: bmeviz.load(folder))
    assert out.kind == "error"


# ----------------------------------------------------------------------------- DICOM: tags
REQUIRED = ["ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "PixelData",
            "BitsAllocated", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation",
            "TransferSyntaxUID", "SeriesInstanceUID"]


@pytest.mark.parametrize("keyword", REQUIRED)
@pytest.mark.parametrize("where", ["one file", "every file"])
def test_missing_required_tag(seeds, tmp_path, keyword, where):
    """Refused naming the file, or the file skipped with a warning naming it (then the rest
    must still be a volume), or, for tags with a safe default, the same volume."""
    folder = _copy(seeds["classic"], tmp_path)
    victim = _edit_one(folder, ("delete", keyword)) if where == "one file" else None
    if victim is None:
        _edit_all(folder, ("delete", keyword))
    out = _outcome(lambda: bmeviz.load(folder))
    warned = " ".join(out.warnings)
    if out.kind == "error":
        assert str(folder) in str(out.exc)
        if victim is not None and keyword not in ("SeriesInstanceUID", "TransferSyntaxUID"):
            assert victim.name in out.said
        return
    good = bmeviz.load(seeds["classic"])
    if victim is not None and victim.name in warned:  # skipped: an end slice, so the rest is a volume
        assert out.value.shape[0] == good.shape[0] - 1
    elif victim is not None and keyword == "SeriesInstanceUID":  # a series of its own; the other is picked
        assert "series found; picked" in warned and out.value.shape[0] == good.shape[0] - 1
    else:  # a tag with a default that holds for this series (DICOM's own default or the same UID)
        assert keyword in ("SeriesInstanceUID", "SamplesPerPixel", "TransferSyntaxUID", "PhotometricInterpretation",
                           "PixelRepresentation"), f"{keyword}: loaded without it"
        assert out.value.shape == good.shape


@pytest.mark.parametrize("keyword, values", [
    ("ImagePositionPatient", [b"nan\\nan\\nan", b"1e308\\1e308\\1e308", b"abc", b"0\\0", b""]),
    ("ImageOrientationPatient", [b"0\\0\\0\\0\\0\\0", b"1\\0\\0\\1\\0\\0", b"nan\\0\\0\\0\\1\\0", b"1\\0\\0"]),
    ("PixelSpacing", [b"0\\0", b"-0.7\\-0.7", b"nan\\1", b"1e5\\1e5", b"abc"]),
    ("RescaleSlope", [b"nan", b"0", b"abc", b"1e38", b"inf"]),
    ("RescaleIntercept", [b"nan", b"1e309", b"1e38"]),
])
def test_corrupt_geometry_and_rescale_values(seeds, tmp_path, keyword, values):
    for i, value in enumerate(values):
        folder = _copy(seeds["classic"], tmp_path, f"c{i}")
        f = sorted(folder.iterdir())[2]
        data = f.read_bytes()
        [span] = [s for s in H.element_spans(data) if s.tag == H.tag_of(keyword)]
        f.write_bytes(H.replace_value(data, span, H._pad(value, b" ")))
        out = _outcome(lambda: bmeviz.load(folder))
        if out.kind == "volume":  # only a value that is valid DICOM may load
            assert (keyword, value) in {("PixelSpacing", b"1e5\\1e5"), ("RescaleIntercept", b"1e38")} \
                or (keyword == "RescaleSlope" and value == b"1e38"), (keyword, value)
        else:
            assert str(folder) in str(out.exc), out.detail


def test_rescale_overflow_is_refused_not_infinite(seeds, tmp_path):
    folder = _copy(seeds["classic"], tmp_path)
    victim = _edit_one(folder, ("set", "RescaleSlope", 0))  # any value; overwritten below
    ds = pydicom.dcmread(victim)
    ds.RescaleSlope = "1e38"
    ds.save_as(victim)
    out = _outcome(lambda: bmeviz.load(folder))
    assert out.kind == "error" and victim.name in str(out.exc) and "Rescale" in str(out.exc)


@pytest.mark.parametrize("uid", [u.rstrip(b"\0").decode("latin-1") for u in H.INTERESTING_UIDS])
def test_transfer_syntax_relabelled(seeds, tmp_path, uid):
    """Every file claims another transfer syntax than its encoding: a correct volume
    (pydicom detects the real VR encoding) or a BmevizError, never shifted pixels."""
    folder = _copy(seeds["classic"], tmp_path)
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        [span] = [s for s in H.element_spans(data) if s.tag == 0x00020010]
        f.write_bytes(H.replace_value(data, span, H._pad(uid.encode("latin-1"), b"\0")))
    out = _outcome(lambda: bmeviz.load(folder))
    if out.kind == "volume":
        good = bmeviz.load(seeds["classic"])
        assert np.array_equal(out.value.array, good.array)
        assert np.allclose(out.value.affine, good.affine)


def test_explicit_data_labelled_implicit_reads_the_same_pixels(seeds, tmp_path):
    """Regression: the fast path read pixel data 4 bytes early (2 pixels shifted) when a
    file written explicit VR was labelled implicit VR."""
    folder = _copy(seeds["classic"], tmp_path)
    _edit_all(folder, ("set", "TransferSyntaxUID", 1))  # choice 1 -> 1.2.840.10008.1.2 (implicit)
    assert str(pydicom.dcmread(sorted(folder.iterdir())[0]).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2"
    assert np.array_equal(bmeviz.load(folder).array, bmeviz.load(seeds["classic"]).array)


# ----------------------------------------------------------------------------- DICOM: files
@pytest.mark.parametrize("encoding", ["classic", "rle", "enhanced", "bigendian"])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 0.999])
def test_truncated_file(seeds, tmp_path, encoding, fraction):
    folder = _copy(seeds[encoding], tmp_path)
    victim = _edit_one(folder, ("truncate", fraction), index=0)
    out = _outcome(lambda: bmeviz.load(folder))
    if out.kind == "error":  # named, or skipped with a warning naming it and the gap found
        assert victim.name in out.said or "slice" in str(out.exc), out.said
    elif victim.name not in out.said:  # only the trailing delimiter was cut: the pixels are whole
        assert np.array_equal(out.value.array, bmeviz.load(seeds[encoding]).array)


def test_decompression_bomb_is_skipped_with_a_warning(seeds, tmp_path):
    folder = _copy(seeds["classic"], tmp_path)
    H.deflate_bomb(sorted(folder.iterdir())[0], folder / "zz_bomb.dcm", 2 << 30)
    assert (folder / "zz_bomb.dcm").stat().st_size < 4 << 20
    with pytest.warns(BmevizWarning, match="zz_bomb.dcm.*decompression bomb"):
        vol = bmeviz.load(folder)
    assert vol.shape == seeds["volume"].shape
    out = _outcome(lambda: bmeviz.load(folder / "zz_bomb.dcm"))
    assert isinstance(out.exc, UnreadableFileError) and "decompression bomb" in str(out.exc)


def test_deflated_series_loads(seeds):
    assert np.array_equal(bmeviz.load(seeds["deflated"]).array, bmeviz.load(seeds["classic"]).array)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_named_pipe_in_the_folder_does_not_hang(seeds, tmp_path):
    folder = _copy(seeds["classic"], tmp_path)
    os.mkfifo(folder / "pipe.dcm")
    out = _outcome(lambda: bmeviz.load(folder), timeout_s=20)
    assert out.kind == "volume" and "pipe.dcm (not a regular file)" in out.said


def test_odd_entries_in_the_folder_are_skipped(seeds, tmp_path):
    folder = _copy(seeds["classic"], tmp_path)
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "dir.dcm").mkdir()
    (folder / "garbage.dcm").write_bytes(os.urandom(5000))
    (folder / "DICM_only").write_bytes(b"\0" * 128 + b"DICM")
    (folder / "loop_a").symlink_to(folder / "loop_b")
    (folder / "loop_b").symlink_to(folder / "loop_a")
    (folder / "self").symlink_to(folder, target_is_directory=True)
    with pytest.warns(BmevizWarning) as record:
        vol = bmeviz.load(folder)
    text = " ".join(str(w.message) for w in record)
    for name in ("empty.dcm", "garbage.dcm", "DICM_only", "loop_a"):
        assert name in text
    assert vol.shape == seeds["volume"].shape


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file_and_folder_are_named(seeds, tmp_path):
    folder = _copy(seeds["classic"], tmp_path)
    sub = folder / "locked"
    sub.mkdir()
    shutil.copy(sorted(folder.iterdir())[0], sub / "x.dcm")
    victim = sorted(p for p in folder.iterdir() if p.is_file())[0]
    victim.chmod(0)
    sub.chmod(0)
    try:
        with pytest.warns(BmevizWarning) as record:
            with pytest.raises(BmevizError):  # the unreadable slice leaves a gap or too few slices
                bmeviz.load(folder)
        text = " ".join(str(w.message) for w in record)
        assert victim.name in text and "locked" in text
    finally:
        victim.chmod(0o644)
        sub.chmod(0o755)


def test_bad_paths_and_parameters_raise_bmeviz_errors(seeds, tmp_path):
    for path in ("", "x" * 5000, "a\0b", 5, None, tmp_path / "missing"):
        for fn in (bmeviz.load, bmeviz.list_series):
            with pytest.raises(BmevizError):
                fn(path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(UnreadableFileError, match="not a regular file"):
            bmeviz.load(tmp_path / "pipe")
    for kw in ({"echo": "abc"}, {"echo": float("nan")}, {"series": 2.5}, {"volume": 0}):
        with pytest.raises(BmevizError):
            bmeviz.load(seeds["classic"], **kw)
    for kw in ({"volume": "1"}, {"volume": 1.5}, {"volume": -1}, {"series": 1}):
        with pytest.raises(BmevizError):
            bmeviz.load(seeds["nifti_int"], **kw)


# ----------------------------------------------------------------------------- NIfTI
def _nifti_bytes(seeds, base="nifti_int") -> bytes:
    return seeds[base].read_bytes()


def _write(tmp_path, data: bytes, name: str, gz: bool = False) -> Path:
    p = tmp_path / (name + (".nii.gz" if gz else ".nii"))
    p.write_bytes(H.gz_bytes(data) if gz else data)
    return p


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims, dtype_code", [
    ((32767, 32767, 32767), 16),  # 3.5e13 voxels: past MAX_VOXELS
    ((1200, 1200, 1200), 64),  # 1.7e9 float64 voxels: 14 GB, under MAX_VOXELS
    ((4096, 4096, 512), 4),  # 8.6e9 voxels
    ((32767, 32767, 1, 32767), 16),  # 4D
])
def test_absurd_nifti_dims_are_refused_up_front(seeds, tmp_path, monkeypatch, gz, dims, dtype_code):
    monkeypatch.setenv("BMEVIZ_MAX_MEMORY_GB", "2")
    data = _nifti_bytes(seeds, "nifti_float")
    hdr = H.nifti_set(data[:348], "dim", 0, len(dims))
    for i, n in enumerate(dims, start=1):
        hdr = H.nifti_set(hdr, "dim", i, n)
    hdr = H.nifti_set(hdr, "datatype", 0, dtype_code)
    hdr = H.nifti_set(hdr, "bitpix", 0, {4: 16, 16: 32, 64: 64}[dtype_code])
    p = _write(tmp_path, hdr + data[348:], "huge", gz)
    out = _outcome(lambda: bmeviz.load(p, volume=0 if len(dims) > 3 else None))
    assert out.kind == "error" and str(p) in str(out.exc)
    if gz or isinstance(out.exc, ResourceLimitError):
        assert isinstance(out.exc, ResourceLimitError) and "GB" in str(out.exc)
    else:  # an uncompressed file that cannot hold the data: truncated, said up front
        assert isinstance(out.exc, UnreadableFileError) and "holds" in str(out.exc)


@pytest.mark.parametrize("name, value, expected", [
    ("pixdim", float("nan"), NotAVolumeError),
    ("pixdim", float("inf"), NotAVolumeError),
    ("pixdim", 0.0, None),  # sform carries the geometry; nibabel repairs pixdim
    ("pixdim", -1.0, None),
    ("scl_slope", float("nan"), "warn"),
    ("scl_slope", float("inf"), "warn"),
    ("scl_slope", 0.0, None),  # the NIfTI rule: 0 = no scaling
    ("scl_inter", float("nan"), UnreadableFileError),
    ("scl_inter", float("inf"), UnreadableFileError),
    ("datatype", 128, NotAVolumeError),  # RGB
    ("datatype", 2304, NotAVolumeError),  # RGBA
    ("datatype", 32, NotAVolumeError),  # complex
    ("datatype", 1792, NotAVolumeError),  # complex128
    ("datatype", 0, UnreadableFileError),
    ("dim", -1, BmevizError),
    ("dim", 0, BmevizError),
    ("sform_code", 0, None),  # falls back to qform
    ("quatern", 2.0, None),  # sform still set
    ("magic", b"xxxx", UnreadableFileError),
    ("vox_offset", 1e12, UnreadableFileError),
    ("vox_offset", float("nan"), BmevizError),
])
def test_corrupt_nifti_header_fields(seeds, tmp_path, name, value, expected):
    data = _nifti_bytes(seeds)
    index = 1 if name in ("pixdim", "dim") else 0
    p = _write(tmp_path, H.nifti_set(data[:348], name, index, value) + data[348:], "bad")
    out = _outcome(lambda: bmeviz.load(p))
    if expected in (None, "warn"):
        assert out.kind == "volume", out.detail
        if expected == "warn":
            assert "scl_slope" in out.said
    else:
        assert isinstance(out.exc, expected), out.detail
        assert str(p) in str(out.exc)


def test_nifti_with_invalid_quaternion_and_no_sform(seeds, tmp_path):
    data = _nifti_bytes(seeds)
    hdr = H.nifti_set(H.nifti_set(data[:348], "sform_code", 0, 0), "quatern", 0, 2.0)
    p = _write(tmp_path, hdr + data[348:], "quat")
    out = _outcome(lambda: bmeviz.load(p))
    assert out.kind == "error" and str(p) in str(out.exc)  # nibabel refuses the quaternion already


@pytest.mark.parametrize("esize", [0x7FFFFFF0, 1 << 20])
@pytest.mark.parametrize("gz", [False, True])
def test_nifti_extension_larger_than_the_file(seeds, tmp_path, esize, gz):
    data = _nifti_bytes(seeds)
    hdr = H.nifti_set(data[:348], "vox_offset", 0, 2048.0)
    p = _write(tmp_path, hdr + b"\x01\0\0\0" + struct.pack("<Ii", esize, 4) + data[356:], "ext", gz)
    out = _outcome(lambda: bmeviz.load(p))
    assert out.kind == "error" and str(p) in str(out.exc)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.3, 0.6, 0.9, 0.999])
def test_truncated_nifti_gz(seeds, tmp_path, fraction):
    p = tmp_path / "t.nii.gz"
    p.write_bytes(H.truncate(gzip.compress(_nifti_bytes(seeds)), fraction))
    out = _outcome(lambda: bmeviz.load(p))
    if out.kind == "volume":  # only the gzip trailer was cut: every voxel is there
        assert np.array_equal(out.value.array, bmeviz.load(seeds["nifti_int"]).array)
    else:
        assert isinstance(out.exc, UnreadableFileError) and "t.nii.gz" in str(out.exc)


def test_corrupt_gzip_crc(seeds, tmp_path):
    z = bytearray(gzip.compress(_nifti_bytes(seeds)))
    z[-8] ^= 0xFF  # CRC32 of the trailer
    p = tmp_path / "crc.nii.gz"
    p.write_bytes(bytes(z))
    out = _outcome(lambda: bmeviz.load(p))
    assert out.kind in ("error", "volume")  # nibabel may not check the CRC of the last block


def test_nan_and_inf_voxels(seeds, tmp_path):
    vol = seeds["volume"]
    arr = vol.array.copy()
    arr[0, 0, :3] = [np.nan, np.inf, -np.inf]
    p = H.write_nifti(tmp_path / "nan.nii.gz", bmeviz.Volume(arr, vol.affine), dtype=np.float32, slope=None)
    with pytest.warns(BmevizWarning, match="3 voxel"):
        got = bmeviz.load(p)
    assert np.isnan(got.array[0, 0, :3]).all() and np.isfinite(got.array[1:]).all()
    all_nan = H.write_nifti(tmp_path / "allnan.nii", bmeviz.Volume(np.full(arr.shape, np.nan, np.float32),
                                                                    vol.affine), dtype=np.float32, slope=None)
    with pytest.raises(NotAVolumeError, match="every voxel"):
        bmeviz.load(all_nan)


def test_memory_limit_message_names_the_size(seeds, monkeypatch):
    monkeypatch.setenv("BMEVIZ_MAX_MEMORY_GB", "0.000001")
    with pytest.raises(ResourceLimitError, match=r"needs .*kB of memory, more than the BMEVIZ_MAX_MEMORY_GB"):
        bmeviz.load(seeds["classic"])
    with pytest.raises(ResourceLimitError, match="BMEVIZ_MAX_MEMORY_GB"):
        bmeviz.load(seeds["nifti_int"])
    monkeypatch.setenv("BMEVIZ_MAX_MEMORY_GB", "lots")
    with pytest.raises(bmeviz.ParameterError, match="BMEVIZ_MAX_MEMORY_GB"):
        bmeviz.load(seeds["classic"])


# ----------------------------------------------------------------------------- segment() parameters
@pytest.fixture(scope="module")
def small_phantom():
    from bmeviz.data import make_phantom

    return make_phantom(seed=0, shape=(20, 128, 128))


_HOSTILE = [None, 0, -1, 2.5, float("nan"), float("inf"), -float("inf"), 1e308, "abc", "", [], [1, 2], True,
            10**30, object()]


def test_segment_parameters_fuzz(small_phantom):
    """Hostile values for segment()'s options (hypothesis, fixed seed): a Result or a
    ParameterError, nothing else."""
    from hypothesis import given
    from hypothesis import strategies as st

    ph = small_phantom
    option = {
        "rule": st.sampled_from(["q3-iqr", "mean-sd", "percentile", "otsu", "magic", None, 3]),
        "k": st.sampled_from(_HOSTILE + ["adaptive"]),
        "high_k": st.sampled_from(_HOSTILE),
        "upper": st.sampled_from(_HOSTILE),
        "method": st.sampled_from(["connected", "confidence", "x", None]),
        "min_volume_mm3": st.sampled_from(_HOSTILE),
        "min_slices": st.sampled_from(_HOSTILE),
        "fill_holes": st.sampled_from([True, False, None, "yes", 2]),
        "connectivity": st.sampled_from([6, 18, 26, 4, 0, None, "26", 26.0, True]),
        "max_volume_ml": st.sampled_from(_HOSTILE),
        "confidence_k": st.sampled_from(_HOSTILE),
        "edge": st.sampled_from(["threshold", "half-max", "x", None]),
        "seeds": st.sampled_from([None, [], ph.seeds, [[0, 0, 0]], [[-1, 0, 0]], [[1e9, 0, 0]], [[np.nan, 1, 1]],
                                  [[1, 2]], np.zeros((0, 3)), [[1.4, 2.6, 3.5]], [ph.seeds[0], ph.seeds[0]]]),
        "region": st.sampled_from([None, ph.bone, np.zeros(ph.bone.shape, bool), ph.bone[:, :-1],
                                   ph.bone.astype(np.float32) * np.nan, ph.bone.astype(np.int8)]),
        "reference": st.sampled_from([ph.reference, ph.reference_point, {"x": 1}, np.zeros(ph.bone.shape, bool),
                                      ph.reference[:-1], [1, 2, 3, 4], 5, {"point_mm": [1e9, 0, 0]}]),
    }
    calls = []

    @H.fuzz_settings(150)
    @H.fuzz_seed
    @given(kw=st.fixed_dictionaries({}, optional=option))
    def case(kw):
        calls.append(1)
        kw.setdefault("reference", ph.reference)
        out = _outcome(lambda: bmeviz.segment(ph.volume, **kw), timeout_s=60)
        assert out.kind in ("volume", "error") and (out.exc is None or isinstance(out.exc, bmeviz.ParameterError)), \
            out.detail

    case()
    assert len(calls) >= H.expected_examples(150)


@pytest.mark.parametrize("kwargs", [
    {"reference_radius_mm": "abc", "reference": "POINT"},
    {"reference_radius_mm": [], "reference": "POINT"},
    {"reference": {"point": "abc"}},
    {"reference": "POINT_RADIUS_X"},
    {"seeds": "abc"},
    {"seeds_mm": "x"},
    {"seeds": [[1, 2, 3], [1, 2]]},
    {"max_radius_mm": 1e30},
    {"max_radius_mm": 1e308},
    {"reference_radius_mm": float("nan"), "reference": "POINT"},
    {"reference": {"point_mm": [np.nan, 0, 0]}},
    {"max_radius_mm": float("inf")},
    {"upper": "x"},
])
def test_segment_parameters_that_crashed(small_phantom, kwargs):
    """Regressions: the first nine raised ValueError/TypeError/IndexError/OverflowError
    (pipeline.resolve_reference, resolve_seeds; grow's ball for a huge max_radius_mm)."""
    ph = small_phantom
    kw = {"reference": ph.reference, "region": ph.bone, "seeds": ph.seeds, **kwargs}
    ref = kw["reference"]
    if isinstance(ref, str):  # the phantom's point is only known here
        kw["reference"] = ph.reference_point if ref == "POINT" else {"point": ph.reference_point, "radius_mm": "x"}
    with pytest.raises(bmeviz.ParameterError):
        bmeviz.segment(ph.volume, **kw)


@pytest.mark.parametrize("op", [
    ("set", "NumberOfFrames", 997),  # IS '1e309': pydicom cannot convert it
    ("set", "NumberOfFrames", 1),  # blank
    ("set", "PixelRepresentation", 273),  # two values
    ("set", "PixelRepresentation", 2),  # 2
    ("delete", "PhotometricInterpretation"),
])
def test_pixel_module_values_pydicom_refuses_are_not_guessed(seeds, tmp_path, op):
    """Regression: the fast native path read pixels for headers pydicom refuses to decode
    (an unreadable value was taken as absent); now both paths agree."""
    folder = _copy(seeds["classic"], tmp_path)
    _edit_one(folder, op, index=0)
    assert H.check_dicom_folder(folder) == []


def test_bytes_after_the_pixel_data_are_not_ignored(seeds, tmp_path):
    """Regression: bytes spliced into the pixel data (file longer than its elements say)
    were read by the fast path as an image; pydicom refuses the trailing garbage."""
    folder = _copy(seeds["classic"], tmp_path)
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes() + b"\xa7\xe1\x07s\x02\xfb\"N\xc9~\x81\xf4_\xaf\x8e\x0cz\xb4jWK")
    assert H.check_dicom_folder(folder) == []


def test_text_tag_stored_as_a_number(seeds, tmp_path):
    """Regression: ScanningSequence with VR DS ('1.5') crashed the sequence classifier."""
    folder = _copy(seeds["classic"], tmp_path)
    for f in sorted(folder.iterdir()):
        data = f.read_bytes()
        [span] = [s for s in H.element_spans(data) if s.tag == H.tag_of("ScanningSequence")]
        data = H.replace_value(data, span, b"1.5 ")
        [span] = [s for s in H.element_spans(data) if s.tag == H.tag_of("ScanningSequence")]
        f.write_bytes(data[:span.start + 4] + b"DS" + data[span.start + 6:])
    assert H.check_dicom_folder(folder) == []
    assert bmeviz.list_series(folder)[0].n_slices == seeds["volume"].shape[0]


@pytest.mark.parametrize("sizeof_hdr", [348, 0, -348, 1 << 30])
def test_nifti_extension_bomb_with_a_wrong_sizeof_hdr(seeds, tmp_path, sizeof_hdr):
    """Regression: nibabel reads a .nii with a wrong sizeof_hdr anyway; the extension
    check gave up on it and nibabel allocated the 2 GB extension."""
    data = _nifti_bytes(seeds)
    hdr = H.nifti_set(H.nifti_set(data[:348], "sizeof_hdr", 0, sizeof_hdr), "vox_offset", 0, 0.0)
    p = _write(tmp_path, hdr + b"\x01\0\0\0" + struct.pack("<Ii", 0x7FFFFFF0, 4) + data[356:], "ext")
    assert H.check_nifti_file(p) == []
