"""DICOM SEG export (bmeviz.io.seg): written with highdicom, read back with highdicom and
pydicom, the frames land on the voxels of bme_mask.nii.gz (read with nibabel)."""

from __future__ import annotations

import shutil
import types

import numpy as np
import pytest

import bmeviz
from bmeviz.errors import InconsistentGeometryError, ParameterError

pytest.importorskip("highdicom")

PLANTED = {"PatientName": "Doe^Jane", "PatientID": "PID-778899", "PatientBirthDate": "19700101",
           "AccessionNumber": "ACC-445566", "InstitutionName": "Hospital Zeta"}


def on_grid(array, src, dst):
    """``array`` on ``src``'s grid resampled (axes permuted/flipped, no interpolation) onto ``dst``'s."""
    m = np.linalg.inv(src.affine) @ dst.affine
    assert np.allclose(m[:3, :3], np.rint(m[:3, :3]), atol=1e-4), "grids are not permutations of each other"
    idx = np.indices(dst.shape).reshape(3, -1).T
    s = np.rint(idx @ m[:3, :3].T + m[:3, 3]).astype(int)
    return np.asarray(array)[s[:, 0], s[:, 1], s[:, 2]].reshape(dst.shape)


@pytest.fixture(scope="module")
def dicom_result(tmp_path_factory):
    """A phantom written as DICOM (scrambled file names, planted identifiers), loaded, segmented."""
    from bmeviz.data import make_phantom
    from bmeviz.io.dicom_write import write_dicom_series

    root = tmp_path_factory.mktemp("seg")
    ph = make_phantom(shape=(20, 96, 96), spacing=(3.0, 1.4, 1.4), seed=5)
    folder = write_dicom_series(ph.volume, root / "dicom", patient=PLANTED, shuffle_names=True, seed=3)
    vol = bmeviz.load(folder)
    res = bmeviz.segment(vol, reference=on_grid(ph.reference, ph.volume, vol), region=on_grid(ph.bone, ph.volume, vol),
                         seeds_mm=ph.volume.index_to_ras(ph.seeds), edge="half-max")
    assert res.n_lesions == 4
    out = root / "out"
    res.save(out, seg=True, overlay=False)
    return types.SimpleNamespace(root=root, folder=folder, vol=vol, res=res, out=out)


def _source_positions(folder):
    import pydicom

    out = {}
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = np.array([float(v) for v in ds.ImagePositionPatient])
    return out


def test_seg_frames_land_on_the_nifti_mask_voxels(dicom_result):
    """highdicom reads the SEG per source instance; each source image's position, mapped through
    the NIfTI mask's own affine (nibabel), says which mask slice its frame must equal."""
    import highdicom as hd
    import nibabel as nib

    d = dicom_result
    img = nib.load(str(d.out / "bme_mask.nii.gz"))
    mask = np.asarray(img.dataobj).astype(int)  # (column, row, slice)
    inv = np.linalg.inv(img.affine)
    seg = hd.seg.segread(str(d.out / "bme_seg.dcm"))
    positions = _source_positions(d.folder)
    uids = list(positions)
    frames = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    assert frames.shape == (len(uids), 96, 96)
    seen = set()
    for uid, frame in zip(uids, frames):
        ras = np.diag([-1.0, -1.0, 1.0]) @ positions[uid]  # DICOM LPS -> RAS
        i, j, k = inv[:3, :3] @ ras + inv[:3, 3]
        assert abs(i) < 1e-3 and abs(j) < 1e-3, "a source image's first voxel is the mask's (0, 0, k)"
        k = int(round(k))
        seen.add(k)
        np.testing.assert_array_equal(frame, mask[:, :, k].T)
    assert seen == set(range(mask.shape[2]))
    assert int(mask.max()) == 4 and frames.max() == 4


def test_read_seg_matches_labels_and_nifti(dicom_result):
    import nibabel as nib

    from bmeviz.io.seg import read_seg

    d = dicom_result
    labels = read_seg(d.out / "bme_seg.dcm", d.vol)
    np.testing.assert_array_equal(labels, d.res.labels)
    mask = np.asarray(nib.load(str(d.out / "bme_mask.nii.gz")).dataobj)
    np.testing.assert_array_equal(labels, mask.transpose(2, 1, 0))


def test_seg_references_the_source_and_describes_lesions(dicom_result):
    import pydicom

    d = dicom_result
    ds = pydicom.dcmread(d.out / "bme_seg.dcm")
    src = pydicom.dcmread(next(d.folder.iterdir()), stop_before_pixels=True)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    referenced = {item.ReferencedSOPInstanceUID for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == set(_source_positions(d.folder))
    labels = [s.SegmentLabel for s in ds.SegmentSequence]
    assert labels == [f"BME lesion {i}" for i in range(1, 5)]
    assert ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Edema"
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"


def test_seg_has_no_identifiers_unless_asked(dicom_result):
    import pydicom

    from bmeviz.export import save_seg  # Result-level; bmeviz.io.seg.save_seg takes arrays

    d = dicom_result
    raw = (d.out / "bme_seg.dcm").read_bytes()
    for value in PLANTED.values():
        assert value.encode() not in raw and value.split("^")[0].encode() not in raw, value
    ds = pydicom.dcmread(d.out / "bme_seg.dcm")
    assert str(ds.PatientName) == "" and ds.PatientID == "" and "InstitutionName" not in ds
    with_phi = save_seg(d.res, d.root / "phi.dcm", include_phi=True)
    ds = pydicom.dcmread(with_phi)
    assert str(ds.PatientName) == "Doe^Jane" and ds.PatientID == "PID-778899"
    assert ds.AccessionNumber == "ACC-445566" and ds.PatientBirthDate == "19700101"


def test_single_segment_and_empty_result(dicom_result):
    from bmeviz.export import save_seg  # Result-level; bmeviz.io.seg.save_seg takes arrays
    from bmeviz.io.seg import read_seg

    d = dicom_result
    one = save_seg(d.res, d.root / "one.dcm", per_lesion=False)
    np.testing.assert_array_equal(read_seg(one, d.vol), d.res.labels > 0)
    ref = bmeviz.segment(d.vol, reference=d.res.reference, k=1000)  # nothing above: no lesion
    assert ref.n_lesions == 0
    empty = save_seg(ref, d.root / "empty.dcm")
    assert not read_seg(empty, d.vol).any()


def test_non_dicom_source_is_refused(tmp_path):
    from bmeviz.data import make_phantom
    from bmeviz.export import save_seg  # Result-level; bmeviz.io.seg.save_seg takes arrays

    ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=1)
    res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    with pytest.raises(ParameterError, match="DICOM SEG export needs a DICOM source"):
        save_seg(res, tmp_path / "x.dcm")
    with pytest.raises(ParameterError, match="DICOM source"):
        res.save(tmp_path / "out", seg=True, overlay=False)
    assert not (tmp_path / "x.dcm").exists()


def test_read_seg_refuses_another_grid(dicom_result):
    from bmeviz.io.seg import read_seg

    d = dicom_result
    moved = bmeviz.Volume(d.vol.array, d.vol.affine + np.array([[0, 0, 0, 5.0]] * 3 + [[0, 0, 0, 0]]))
    with pytest.raises(InconsistentGeometryError, match="not on this grid"):
        read_seg(d.out / "bme_seg.dcm", moved)


def test_source_gone_is_a_clear_error(dicom_result, tmp_path):
    from bmeviz.errors import UnreadableFileError
    from bmeviz.export import save_seg  # Result-level; bmeviz.io.seg.save_seg takes arrays

    d = dicom_result
    folder = shutil.copytree(d.folder, tmp_path / "copy")
    vol = bmeviz.load(folder)
    res = bmeviz.segment(vol, reference=d.res.reference, region=d.res.region, seeds=d.res.params["seeds"])
    next(folder.iterdir()).unlink()
    with pytest.raises(UnreadableFileError, match="source image is gone"):
        save_seg(res, tmp_path / "x.dcm")


def test_enhanced_multiframe_source(shared_data, tmp_path):
    """A real Enhanced MR file (one multi-frame file; pixel measures stored per frame)."""
    import pydicom
    from pydicom.uid import generate_uid

    from bmeviz.export import save_seg  # Result-level; bmeviz.io.seg.save_seg takes arrays
    from bmeviz.io.seg import read_seg

    src = shared_data("dicom-series-cases", "philips_enhanced", "anatomical")
    folder = shutil.copytree(src, tmp_path / "src")
    uid = generate_uid()
    for f in folder.rglob("*"):
        if f.is_file() and f.suffix.lower() != ".gz":
            try:
                ds = pydicom.dcmread(f)
            except Exception:
                continue
            ds.FrameOfReferenceUID = uid  # the anonymised sample lacks it; a SEG needs it
            ds.save_as(f)
    vol = bmeviz.load(folder)
    labels = np.zeros(vol.shape, np.int32)
    s = vol.shape
    labels[1:3, s[1] // 3: s[1] // 2, s[2] // 4: s[2] // 2] = 1
    labels[0:2, 5:9, 5:12] = 2
    thr = bmeviz.segment(vol, reference=(1, s[1] // 2, s[2] // 2), reference_radius_mm=5).threshold
    fake = types.SimpleNamespace(volume=vol, labels=labels, params={"seeds": [], "edge": "threshold", "mode": "x"},
                                 threshold=thr, table=[1, 2], total_volume_ml=1.0)
    path = save_seg(fake, tmp_path / "seg.dcm")
    np.testing.assert_array_equal(read_seg(path, vol), labels)
