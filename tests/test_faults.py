"""Real-world faults: relative paths in error locations, Siemens mosaics, frames of reference,
third-party warnings (one bmeviz warning per file)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import bmeviz
from bmeviz.errors import BmevizWarning, InconsistentGeometryError, NotAVolumeError
from bmeviz.io.dicom_write import write_dicom_series
from helpers import oblique_affine


def _series(folder, n=6, shape=(40, 36), **kw):
    rng = np.random.default_rng(2)
    vol = bmeviz.Volume(rng.normal(300, 20, (n, *shape)).astype(np.float32), oblique_affine(),
                        {"sequence": "STIR"})
    return write_dicom_series(vol, folder, **kw), vol


def _location(message: str) -> str:
    """The path an error names: what precedes the first ': '."""
    return message.split(": ")[0]


# ----------------------------------------------------------------------------- error locations
def test_relative_file_names_give_a_real_location(tmp_path, monkeypatch):
    import pydicom

    folder, _ = _series(tmp_path / "study")
    # a missing slice in the middle: an uneven increment names the series' folder
    files = sorted(folder.iterdir(), key=lambda f: int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber))
    files[3].unlink()
    monkeypatch.chdir(folder)
    name = files[0].name
    with pytest.raises(InconsistentGeometryError) as err:
        bmeviz.load(name)  # a file relative to the working folder: its series from "."
    where = _location(str(err.value))
    assert where and Path(where).exists(), str(err.value)
    assert Path(where).resolve() == folder.resolve()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InconsistentGeometryError) as err:
        bmeviz.load("study")  # a relative folder
    where = _location(str(err.value))
    assert where == "study" and Path(where).is_dir()


def test_common_folder_is_never_empty(tmp_path, monkeypatch):
    from bmeviz.io.dicom import common_folder

    monkeypatch.chdir(tmp_path)
    assert os.path.commonpath(["a.dcm", "b.dcm"]) == ""  # the trap
    assert common_folder(["a.dcm", "b.dcm"]) == str(tmp_path)
    assert common_folder(["x/a.dcm", "x/b.dcm"]) == "x"
    assert common_folder(["../a.dcm", "b/c.dcm"]) == str(tmp_path.parent)
    assert common_folder([str(tmp_path / "q" / "a.dcm"), "q/b.dcm"]) == str(tmp_path / "q")  # mixed
    assert common_folder(["one.dcm"]) == "one.dcm"


# ----------------------------------------------------------------------------- mosaics
def _make_mosaic(folder, *, implicit=False, with_count=True, tiles=9):
    """A synthetic Siemens mosaic series: each file tiles ``tiles`` slices (3 x 3) of 16 x 12."""
    import pydicom
    from pydicom.uid import ImplicitVRLittleEndian

    folder, _ = _series(folder, n=4, shape=(48, 36))  # 3 x 3 tiles of 16 x 12
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "MOSAIC"]
        ds.Manufacturer = "SIEMENS"
        ds.ImagePositionPatient = [-100.0, -90.0, 20.0]  # a time series: one position per volume
        if with_count:
            block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            block.add_new(0x0A, "US", tiles)
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            pydicom.dcmwrite(f, ds, implicit_vr=True, little_endian=True)
        else:
            pydicom.dcmwrite(f, ds)
    return folder


@pytest.mark.parametrize("implicit,with_count,words", [
    (False, True, "a Siemens mosaic (9 slices tiled in each 48 x 36 image"),
    (True, True, "a Siemens mosaic (9 slices tiled"),  # the private tag read as UN bytes
    (False, False, "a Siemens mosaic (several slices tiled"),  # ImageType MOSAIC only
])
def test_siemens_mosaic_is_refused_by_name(tmp_path, implicit, with_count, words):
    folder = _make_mosaic(tmp_path / "mosaic", implicit=implicit, with_count=with_count)
    with pytest.raises(NotAVolumeError) as err:
        bmeviz.load(folder)
    msg = str(err.value)
    assert words in msg and "not supported" in msg and "dcm2niix" in msg
    assert "too few slices" not in msg and "one position" not in msg
    assert Path(_location(msg)).is_dir()


def test_mosaic_refusal_is_one_cli_line(tmp_path, capsys):
    from bmeviz.cli import main

    folder = _make_mosaic(tmp_path / "mosaic")
    assert main(["info", str(folder)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bmeviz: error:")]
    assert len(lines) == 1 and "Siemens mosaic" in lines[0] and "Traceback" not in err


def test_an_ordinary_series_is_no_mosaic(tmp_path):
    folder, vol = _series(tmp_path / "plain")
    loaded = bmeviz.load(folder)
    assert loaded.shape == vol.shape
    assert loaded.metadata["frame_of_reference_uid"]


# ----------------------------------------------------------------------------- frames of reference
def test_dicom_mask_from_another_session_is_refused_same_session_resampled(tmp_path):
    """Masks saved as DICOM series: another FrameOfReferenceUID is refused; the same one, on
    another grid, is resampled with a warning."""
    rng = np.random.default_rng(0)
    arr = rng.normal(200, 10, (10, 40, 36)).astype(np.float32)
    arr[3:7, 12:26, 10:24] += 300  # a bright block (the "lesion")
    image_vol = bmeviz.Volume(arr, oblique_affine(), {"sequence": "STIR"})
    write_dicom_series(image_vol, tmp_path / "stir", frame_of_reference_uid="1.2.826.0.1.3680043.9.1.1")
    image = bmeviz.load(tmp_path / "stir")
    region = np.zeros(arr.shape, np.int16)
    region[1:9, 5:35, 4:32] = 1
    turned = oblique_affine(angle_deg=22.0, origin=(-19.5, 35.0, 10.3))  # another series: 2 degrees off
    on_other = bmeviz.resample_to(bmeviz.Volume(region, image.affine), bmeviz.Volume(region, turned))
    for name, uid in (("same", "1.2.826.0.1.3680043.9.1.1"), ("other", "1.2.826.0.1.3680043.9.1.2")):
        write_dicom_series(bmeviz.Volume(on_other.array, turned, {"sequence": "T1"}), tmp_path / name,
                           sequence="T1", frame_of_reference_uid=uid)
    ref = np.zeros(arr.shape, bool)
    ref[8:10, 28:36, 2:8] = True  # plain marrow, away from the block
    with pytest.raises(InconsistentGeometryError, match="another frame of reference"):
        bmeviz.segment(image, reference=ref, region=str(tmp_path / "other"), seeds=[(5, 19, 17)])
    with pytest.warns(BmevizWarning, match="the same frame of reference.*resampled onto the image"):
        res = bmeviz.segment(image, reference=ref, region=str(tmp_path / "same"), seeds=[(5, 19, 17)])
    assert res.n_lesions == 1
    assert res.table["volume_mm3"].iloc[0] == pytest.approx(4 * 14 * 14 * image.voxel_volume_mm3, rel=0.02)


# ----------------------------------------------------------------------------- third-party warnings
def _negative_pixdim_nifti(path, *, sform=True):
    """A NIfTI whose pixdim holds negative voxel sizes (what some converters write)."""
    import gzip
    import struct

    import nibabel as nib

    img = nib.Nifti1Image(np.random.default_rng(0).normal(100, 5, (20, 24, 8)).astype(np.float32), None)
    aff = np.diag([0.8, 0.8, 3, 1])
    img.set_qform(aff, code=1)
    img.set_sform(aff if sform else None, code=1 if sform else 0)
    plain = path.with_name("plain.nii")
    nib.save(img, str(plain))
    raw = bytearray(plain.read_bytes())
    plain.unlink()
    struct.pack_into("<3f", raw, 80, -0.8, 0.8, -3.0)  # pixdim[1..3] (pixdim[0], the qfac, is at 76)
    with gzip.open(path, "wb") as f:
        f.write(bytes(raw))
    return path


def test_nibabel_pixdim_warning_becomes_one_bmeviz_warning(tmp_path, capfd):
    path = _negative_pixdim_nifti(tmp_path / "neg.nii.gz", sform=False)
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        vol = bmeviz.load(path)
    assert vol.spacing == pytest.approx((3.0, 0.8, 0.8))
    ours = [w for w in got if issubclass(w.category, BmevizWarning)]
    others = [w for w in got if not issubclass(w.category, BmevizWarning)]
    assert not others, [str(w.message) for w in others]
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert str(path) in msg and "pixdim[1,2,3] should be positive" in msg and "qform" in msg
    assert "pixdim" not in capfd.readouterr().err  # nibabel's raw line no longer reaches the terminal


def test_nibabel_header_fix_is_silenced_when_the_sform_rules(tmp_path, capfd):
    import nibabel as nib

    path = _negative_pixdim_nifti(tmp_path / "neg_sform.nii.gz")
    hdr = nib.Nifti1Header.from_fileobj(nib.openers.ImageOpener(str(path)), check=False)
    assert hdr.get_sform(coded=True)[1] == 1 and hdr["pixdim"][1] < 0
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        vol = bmeviz.load(path)
    assert vol.spacing == pytest.approx((3.0, 0.8, 0.8))
    assert not got, [str(w.message) for w in got]
    assert "pixdim" not in capfd.readouterr().err  # nothing raw on the terminal either
