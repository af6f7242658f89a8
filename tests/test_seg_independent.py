"""DICOM SEG written by ``Result.save(out, seg=True)``, checked with readers that are not
bmeviz's: highdicom reads the SEG (frames per source SOP instance), SimpleITK reads the source
series and bme_mask.nii.gz (geometry in LPS), nibabel reads bme_mask.nii.gz (voxels, affine).

Every source image's frame in the SEG must equal the mask slice that the image's position
lands on, by SimpleITK's and by nibabel's mapping: a writer bug cannot be hidden by a reader
bug of the same hand. On a synthetic oblique series (scrambled file names) and on a real GE
knee series (big-endian multi-echo spin echo, echo 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bmeviz
from helpers import shared

hd = pytest.importorskip("highdicom")
sitk = pytest.importorskip("SimpleITK")


def _sources(files):
    """{SOPInstanceUID: (ImagePositionPatient, file)} and the orientation, read with pydicom."""
    import pydicom

    out, iop = {}, None
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = (np.array([float(v) for v in ds.ImagePositionPatient]), Path(f))
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    return out, iop


def _check_seg(out: Path, files) -> dict:
    import nibabel as nib

    sources, iop = _sources(files)
    normal = np.cross(iop[:3], iop[3:])
    order = sorted(sources.values(), key=lambda pf: float(pf[0] @ normal))
    src = sitk.ReadImage([str(f) for _, f in order])  # ITK's own geometry of the source series
    msk = sitk.ReadImage(str(out / "bme_mask.nii.gz"))
    # the NIfTI mask is on the source grid, as ITK sees both
    assert msk.GetSize() == src.GetSize()
    np.testing.assert_allclose(msk.GetOrigin(), src.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(msk.GetSpacing(), src.GetSpacing(), rtol=1e-4)
    np.testing.assert_allclose(msk.GetDirection(), src.GetDirection(), atol=1e-4)
    itk_mask = sitk.GetArrayFromImage(msk)  # (slice, row, column)
    nii = nib.load(str(out / "bme_mask.nii.gz"))
    nib_mask = np.asarray(nii.dataobj).astype(int)  # (column, row, slice)
    inv = np.linalg.inv(nii.affine)

    seg = hd.seg.segread(str(out / "bme_seg.dcm"))
    uids = list(sources)
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    assert frames.shape == (len(uids), *itk_mask.shape[1:])
    slices = set()
    for uid, frame in zip(uids, frames):
        pos = sources[uid][0]
        x, y, z = msk.TransformPhysicalPointToContinuousIndex([float(v) for v in pos])  # LPS mm -> index
        assert abs(x) < 0.01 and abs(y) < 0.01 and abs(z - round(z)) < 0.01  # NIfTI stores float32
        k = int(round(z))
        np.testing.assert_array_equal(frame, itk_mask[k])
        i, j, kk = inv[:3, :3] @ (np.array([-1.0, -1.0, 1.0]) * pos) + inv[:3, 3]  # LPS -> RAS -> (i, j, k)
        assert abs(i) < 0.01 and abs(j) < 0.01 and int(round(kk)) == k
        np.testing.assert_array_equal(frame, nib_mask[:, :, k].T)
        slices.add(k)
    assert slices == set(range(itk_mask.shape[0]))  # every source image has its frame
    labels = sorted(int(v) for v in np.unique(itk_mask) if v)
    assert labels and sorted(int(v) for v in np.unique(frames) if v) == labels
    numbers = [int(s.SegmentNumber) for s in seg.SegmentSequence]
    assert numbers == labels  # one segment per lesion, numbered as the mask's labels
    return {"frames": len(uids), "labels": labels, "voxels": int(np.count_nonzero(itk_mask))}


def test_synthetic_oblique_series(tmp_path):
    from bmeviz.data import make_phantom
    from bmeviz.io.dicom_write import write_dicom_series

    ph = make_phantom(shape=(20, 96, 96), spacing=(3.0, 1.4, 1.4), seed=8)
    folder = write_dicom_series(ph.volume, tmp_path / "dicom", shuffle_names=True, seed=2)
    vol = bmeviz.load(folder)
    ref = bmeviz.resample_to(bmeviz.Volume(ph.reference, ph.volume.affine), vol).array
    bone = bmeviz.resample_to(bmeviz.Volume(ph.bone, ph.volume.affine), vol).array
    res = bmeviz.segment(vol, reference=ref, region=bone, seeds_mm=ph.volume.index_to_ras(ph.seeds))
    assert res.n_lesions == len(ph.lesion_volumes_ml)
    out = tmp_path / "out"
    res.save(out, seg=True, overlay=False)
    got = _check_seg(out, sorted(folder.iterdir()))
    assert got["labels"] == list(range(1, res.n_lesions + 1))
    assert got["voxels"] == int(np.count_nonzero(res.labels))


@pytest.mark.shared_data
def test_real_ge_knee_series_echo_1(tmp_path):
    import pydicom

    folder = shared("knee-dicom", "mese-t2-multiecho")
    vol = bmeviz.load(folder, echo=1)
    # fluid-bright structures: a reference in the middle, seeds at the brightest voxels of 3 slices
    centre = tuple(int(s // 2) for s in vol.shape)
    arr = vol.array
    seeds = []
    for z in (6, 12, 18):
        r, c = np.unravel_index(int(np.argmax(arr[z])), arr.shape[1:])
        seeds.append((z, int(r), int(c)))
    res = bmeviz.segment(vol, reference=centre, reference_radius_mm=10, seeds=seeds, max_volume_ml=50)
    assert res.n_lesions >= 1
    out = tmp_path / "out"
    res.save(out, seg=True, overlay=False)
    echo1 = [f for f in sorted(folder.iterdir())
             if int(pydicom.dcmread(f, stop_before_pixels=True).EchoNumbers) == 1]
    assert len(echo1) == vol.shape[0] == 24
    got = _check_seg(out, echo1)
    assert got["frames"] == 24 and got["voxels"] == int(np.count_nonzero(res.labels))
