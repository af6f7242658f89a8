"""Follow-up building blocks without real data: geometry converter, transforms, matching, errors."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from bmeviz import ParameterError, Volume
from bmeviz.followup._sitk import from_sitk, ras_matrix_to_transform, to_sitk, transform_to_ras_matrix
from bmeviz.followup.match import match_lesions
from bmeviz.followup.synthetic import rigid_matrix
from bmeviz.lesions import lesion_table
from helpers import oblique_affine


def _oblique_volume(seed=0):
    rng = np.random.default_rng(seed)
    return Volume(rng.normal(size=(7, 30, 40)).astype(np.float32), oblique_affine(angle_deg=23.0))


def test_sitk_round_trip_and_a_known_point_maps_to_the_same_voxel():
    vol = _oblique_volume()
    img = to_sitk(vol)
    back = from_sitk(img)
    assert np.allclose(back.affine, vol.affine, atol=1e-9)
    assert np.array_equal(back.array, vol.array)
    # a RAS point -> bmeviz index and -> SimpleITK continuous index (x=col, y=row, z=slice)
    idx = np.array([3.0, 17.25, 8.5])
    ras = vol.index_to_ras(idx)
    lps = [-ras[0], -ras[1], ras[2]]
    sitk_idx = np.array(img.TransformPhysicalPointToContinuousIndex(lps))
    assert np.allclose(sitk_idx[::-1], idx, atol=1e-9)
    assert np.allclose(vol.ras_to_index(ras), idx)
    # the value SimpleITK reads at that voxel is the array's
    assert img.GetPixel(8, 17, 3) == pytest.approx(float(vol.array[3, 17, 8]))


def test_sitk_geometry_matches_what_simpleitk_reads_from_the_nifti(tmp_path):
    """Independent reader: the NIfTI bmeviz writes, opened by SimpleITK, has to_sitk's geometry."""
    from bmeviz.io import save_volume

    vol = _oblique_volume(1)
    path = save_volume(vol, tmp_path / "v.nii.gz")
    read = sitk.ReadImage(str(path))
    mine = to_sitk(vol)
    assert read.GetSize() == mine.GetSize()
    assert np.allclose(read.GetOrigin(), mine.GetOrigin(), atol=1e-4)
    assert np.allclose(read.GetSpacing(), mine.GetSpacing(), atol=1e-5)
    assert np.allclose(read.GetDirection(), mine.GetDirection(), atol=1e-5)
    assert np.allclose(sitk.GetArrayFromImage(read), vol.array)


def test_ras_matrix_and_transform_round_trip_and_tfm_file(tmp_path):
    m = rigid_matrix((3.0, -4.0, 5.5), (6.0, -2.0, 3.5), (10.0, -20.0, 30.0))
    tx = ras_matrix_to_transform(m)
    assert np.allclose(transform_to_ras_matrix(tx), m, atol=1e-9)
    # an LPS point through the transform equals the RAS point through the matrix
    p = np.array([12.0, -40.0, 7.0])
    q = m[:3, :3] @ p + m[:3, 3]
    out = np.array(tx.TransformPoint([-p[0], -p[1], p[2]]))
    assert np.allclose([-out[0], -out[1], out[2]], q, atol=1e-9)
    e = sitk.Euler3DTransform()
    e.SetCenter([1.0, 2.0, 3.0])
    e.SetRotation(0.05, -0.03, 0.08)
    e.SetTranslation([4.0, -5.0, 6.0])
    sitk.WriteTransform(e, str(tmp_path / "t.tfm"))
    r = sitk.ReadTransform(str(tmp_path / "t.tfm"))
    for pt in ([0.0, 0.0, 0.0], [100.0, -50.0, 20.0]):
        assert np.allclose(r.TransformPoint(pt), e.TransformPoint(pt), atol=1e-9)


def _tables(b, f):
    img = np.ones(b.shape)
    return lesion_table(b, img, affine=np.eye(4)), lesion_table(f, img, affine=np.eye(4))


def test_match_statuses_split_and_distance():
    b = np.zeros((4, 40, 40), np.int32)
    f = np.zeros_like(b)
    b[1:3, 2:10, 2:10] = 1          # persists (same)
    f[1:3, 2:10, 2:10] = 1
    b[1:3, 20:30, 2:12] = 2         # splits in two smaller pieces: one track, shrunk
    f[1:3, 20:24, 2:12] = 2
    f[1:3, 27:30, 2:12] = 3
    b[1, 33:36, 33:36] = 3          # moves 6 mm without overlap: matched by distance
    f[1, 33:36, 27:30] = 4
    b[3, 2:5, 30:33] = 4            # resolves
    f[3, 12:15, 22:25] = 5          # new, far from everything
    bt, ft = _tables(b, f)
    t = match_lesions(b, f, bt, ft)
    by_b = {int(r.baseline_id): r for _, r in t[t.baseline_id.notna()].iterrows()}
    assert by_b[1].status == "persisting" and by_b[1].change_pct == 0
    assert by_b[2].status == "shrunk" and by_b[2].followup_ids == "2;3" and "split" in by_b[2].note
    assert by_b[3].matched_by == "distance" and by_b[3].status == "persisting"
    assert by_b[4].status == "resolved"
    new = t[t.status == "new"]
    assert new.followup_id.tolist() == [5]
    # stricter distance: the moved lesion becomes resolved + new
    t2 = match_lesions(b, f, bt, ft, max_distance_mm=3.0)
    assert (t2.status == "new").sum() == 2 and (t2.status == "resolved").sum() == 2


def test_smallest_detectable_change_raises_the_threshold():
    b = np.zeros((2, 20, 20), np.int32)
    f = np.zeros_like(b)
    b[0, 0:10, 0:10] = 1            # 100 voxels = 0.1 mL
    f[0, 0:6, 0:10] = 1             # -40 %
    bt, ft = _tables(b, f)
    assert match_lesions(b, f, bt, ft).status.tolist() == ["shrunk"]
    t = match_lesions(b, f, bt, ft, sdc_ml=0.05)  # 0.05 mL of 0.1 mL: threshold 50 %
    assert t.status.tolist() == ["persisting"] and t.threshold_pct.tolist() == [50.0]


def test_match_refuses_bad_rules_by_name():
    b = np.zeros((2, 5, 5), np.int32)
    bt, ft = _tables(b, b)
    with pytest.raises(ParameterError, match="max_distance_mm"):
        match_lesions(b, b, bt, ft, max_distance_mm=-1)
    with pytest.raises(ParameterError, match="sdc_ml"):
        match_lesions(b, b, bt, ft, sdc_ml=float("nan"))
    with pytest.raises(ParameterError, match="one grid"):
        match_lesions(b, np.zeros((2, 5, 6), np.int32), bt, ft)
