"""NIfTI loading (scaling, 4D, NaN, broken headers) and masks saved on the source grid."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

import bmeviz
from bmeviz import BmevizWarning, NotAVolumeError, ParameterError, UnreadableFileError
from helpers import oblique_affine, shared

SIJ_IDS = ["1007", "1013", "1234", "4386", "2014"]


@pytest.mark.parametrize("sid", SIJ_IDS)
def test_sij_stir_loads_with_scale_applied(sid):
    path = shared("sij-stir-dev", "images", f"{sid}_STIR.nii.gz")
    img = nib.load(str(path))
    vol = bmeviz.load(path)
    expected = img.get_fdata(dtype=np.float64).transpose(2, 1, 0)
    assert vol.shape == expected.shape
    assert np.allclose(vol.array, expected, rtol=1e-6)
    # independent: the raw header fields, read with nibabel's header parser
    raw_hdr = nib.Nifti1Header.from_fileobj(__import__("gzip").open(path))
    slope = float(raw_hdr["scl_slope"]) if np.isfinite(raw_hdr["scl_slope"]) and raw_hdr["scl_slope"] != 0 else 1.0
    assert vol.metadata["rescale"]["applied"] == (slope != 1.0)
    assert vol.metadata["rescale"]["slopes"] == [pytest.approx(slope)]
    if sid != "1234":  # 1234 is stored unscaled (data README)
        assert 2.0 < slope < 3.5  # the data README says "~3.3"; real slopes are 2.36-3.32
    assert vol.spacing == pytest.approx((3.3, 0.595, 0.595), abs=0.02)
    assert vol.metadata["sequence"] == "STIR"  # from the file name


@pytest.mark.parametrize("sid", ["1013", "4386"])
def test_mask_saved_by_bmeviz_overlays_the_source_in_nibabel(tmp_path, sid):
    src_path = shared("sij-stir-dev", "images", f"{sid}_STIR.nii.gz")
    reader_path = shared("sij-stir-dev", "inflammation", f"{sid}_inflammation_R11.nii.gz")
    vol = bmeviz.load(src_path)
    reader = bmeviz.load(reader_path).array > 0
    out = bmeviz.save_mask(reader, vol, tmp_path / "mask.nii.gz")
    src, back = nib.load(str(src_path)), nib.load(str(out))
    # independent reader: nibabel sees the source's shape and affine, and the same voxels
    assert back.shape == src.shape
    assert np.allclose(back.affine, src.affine, atol=1e-6)
    assert np.array_equal(np.asarray(back.dataobj) > 0, np.asarray(nib.load(str(reader_path)).dataobj) > 0)
    assert back.get_data_dtype() == np.uint8


def test_save_mask_labels_dtype_and_grid(tmp_path):
    vol = bmeviz.Volume(np.zeros((6, 8, 10), np.float32), oblique_affine())
    labels = np.zeros(vol.shape, np.int32)
    labels[2, 3, 4] = 300
    out = bmeviz.save_mask(labels, vol, tmp_path / "sub" / "labels.nii.gz")
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.uint16
    assert np.asarray(img.dataobj)[4, 3, 2] == 300
    assert np.allclose(img.affine, vol.to_nifti().affine)
    # no temp files left behind
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["labels.nii.gz"]
    with pytest.raises(ParameterError, match="same grid"):
        bmeviz.save_mask(labels[:-1], vol, tmp_path / "bad.nii.gz")
    with pytest.raises(ParameterError, match="negative"):
        bmeviz.save_mask(-labels, vol, tmp_path / "bad.nii.gz")


def _write(tmp_path, data, affine=None, name="img.nii.gz", slope=None):
    img = nib.Nifti1Image(data, np.diag([0.6, 0.6, 3.0, 1.0]) if affine is None else affine)
    if slope is not None:
        img.header.set_slope_inter(slope, 0)
    p = tmp_path / name
    nib.save(img, str(p))
    return p


def test_4d_needs_an_index(tmp_path):
    data = np.random.default_rng(0).normal(size=(8, 9, 5, 3)).astype(np.float32)
    p = _write(tmp_path, data)
    with pytest.raises(ParameterError, match="volume=<index>"):
        bmeviz.load(p)
    vol = bmeviz.load(p, volume=2)
    assert np.allclose(vol.array, data[..., 2].transpose(2, 1, 0))
    with pytest.raises(ParameterError, match="out of range"):
        bmeviz.load(p, volume=3)


def test_nan_voxels_warn_and_are_treated_as_missing(tmp_path):
    data = np.ones((8, 9, 5), np.float32)
    data[1, 2, 3] = np.nan
    data[2, 2, 3] = np.inf
    p = _write(tmp_path, data)
    with pytest.warns(BmevizWarning, match="2 voxel"):
        vol = bmeviz.load(p)
    assert np.isnan(vol.array[3, 2, 1]) and np.isnan(vol.array[3, 2, 2])
    data[:] = np.nan
    with pytest.raises(NotAVolumeError, match="every voxel"):
        bmeviz.load(_write(tmp_path, data, name="allnan.nii.gz"))


def test_broken_nifti_files(tmp_path):
    p = _write(tmp_path, np.ones((30, 30, 20), np.float32), name="ok.nii.gz")
    raw = gzip.decompress(p.read_bytes())
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(UnreadableFileError, match="trunc.nii.gz"):
        bmeviz.load(trunc)
    bad = tmp_path / "garbage.nii"
    bad.write_bytes(b"not a nifti" * 40)
    with pytest.raises(UnreadableFileError, match="garbage.nii"):
        bmeviz.load(bad)
    flat = _write(tmp_path, np.ones((30, 30), np.float32), name="flat.nii.gz")
    with pytest.raises(NotAVolumeError, match="2D"):
        bmeviz.load(flat)


def test_scale_slope_is_applied(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    p = _write(tmp_path, data, slope=3.3)
    vol = bmeviz.load(p)
    assert np.allclose(vol.array, data.transpose(2, 1, 0) * 3.3, rtol=1e-6)
    assert vol.metadata["rescale"]["applied"]


def test_outputs_get_the_usual_file_mode_not_private(tmp_path):
    import os

    vol = bmeviz.Volume(np.zeros((3, 4, 5), np.float32), oblique_affine())
    out = bmeviz.save_mask(np.ones(vol.shape, bool), vol, tmp_path / "m.nii.gz")
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~umask)
