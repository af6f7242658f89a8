"""Tests of bmeviz.lesions: labelling, clean-up rules, the lesion table and totals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bmeviz.errors import ParameterError
from bmeviz.lesions import TABLE_COLUMNS, clean, label, lesion_table, summarize
from bmeviz.threshold import compute_threshold, reference_stats, sphere_mask

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIJ = DATA / "sij-stir-dev"


def _components(labels):
    """The lesions as a set of frozensets of flat indices (independent of ids)."""
    flat = labels.reshape(-1)
    return {frozenset(np.flatnonzero(flat == i).tolist()) for i in np.unique(flat) if i}


# ---------------------------------------------------------------------------------------
# label
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "offset, n6, n18, n26",
    [
        ((0, 0, 1), 1, 1, 1),  # faces touch
        ((0, 1, 1), 2, 1, 1),  # edges touch
        ((1, 1, 1), 2, 2, 1),  # corners touch
    ],
)
def test_label_connectivity(offset, n6, n18, n26):
    m = np.zeros((3, 3, 3), bool)
    m[0, 0, 0] = True
    m[offset] = True
    for conn, expected in ((6, n6), (18, n18), (26, n26)):
        lab = label(m, connectivity=conn)
        assert lab.dtype == np.int32
        assert lab.max() == expected
        assert set(np.unique(lab)) == set(range(expected + 1))


def test_label_accepts_01_numbers_and_keeps_input():
    m = np.zeros((2, 4, 4), np.uint8)
    m[0, 0, 0] = m[1, 3, 3] = 1
    before = m.copy()
    assert label(m).max() == 2
    np.testing.assert_array_equal(m, before)


@pytest.mark.parametrize("conn", [4, 8, 27, 0, True, "26", None])
def test_label_bad_connectivity(conn):
    with pytest.raises(ParameterError, match="connectivity"):
        label(np.zeros((2, 2, 2), bool), connectivity=conn)


def test_label_needs_3d():
    with pytest.raises(ParameterError, match="3D"):
        label(np.zeros((4, 4), bool))


# ---------------------------------------------------------------------------------------
# clean
# ---------------------------------------------------------------------------------------
SPACING = (2.0, 1.0, 1.0)  # 2 mm³ voxels


@pytest.fixture()
def cubes():
    """Cubes of 1, 8, 27 and 64 voxels (2, 16, 54, 128 mm³) on 1, 2, 3 and 4 slices."""
    m = np.zeros((6, 30, 30), bool)
    m[0, 1, 1] = True  # 1 voxel
    m[1:3, 5:7, 5:7] = True  # 8
    m[1:4, 12:15, 12:15] = True  # 27
    m[1:5, 20:24, 20:24] = True  # 64
    return m


def test_clean_min_volume_drops_exactly_the_small_ones(cubes):
    out = clean(cubes, spacing=SPACING, min_volume_mm3=54.0)  # 27 voxels is exactly 54 mm³
    assert out.dtype == np.int32
    assert [int((out == i).sum()) for i in range(1, out.max() + 1)] == [64, 27]
    out = clean(cubes, spacing=SPACING, min_volume_mm3=54.01)
    assert [int((out == i).sum()) for i in range(1, out.max() + 1)] == [64]
    out = clean(cubes, spacing=SPACING, min_volume_mm3=2.0)
    assert out.max() == 4
    # the kept voxels are exactly the input's
    np.testing.assert_array_equal(out > 0, cubes)


def test_clean_volume_boundary_is_robust_to_rounding():
    # 0.3 mm isotropic: 1000 voxels is 27 mm³ although 0.3**3 * 1000 rounds below 27
    m = np.zeros((10, 12, 12), bool)
    m[:, :10, :10] = True
    assert clean(m, spacing=(0.3, 0.3, 0.3), min_volume_mm3=27.0).max() == 1


def test_clean_min_slices_drops_single_slice_lesions(cubes):
    m = cubes.copy()
    m[5, 2:28, 26:29] = True  # the biggest lesion (78 voxels) but on one slice only
    out = clean(m, spacing=SPACING, min_slices=2)
    sizes = sorted(int((out == i).sum()) for i in range(1, out.max() + 1))
    assert sizes == [8, 27, 64]
    assert not out[5].any() and not out[0].any()
    out = clean(m, spacing=SPACING, min_slices=4)
    assert sorted(int((out == i).sum()) for i in range(1, out.max() + 1)) == [64]
    out = clean(m, spacing=SPACING, min_slices=1)
    assert out.max() == 5 and (out == 1).sum() == 78


def test_clean_min_slices_counts_consecutive_slices():
    lab = np.zeros((6, 8, 8), np.int32)
    lab[0, 0:3, 0:3] = 1
    lab[2, 0:3, 0:3] = 1  # label 1: slices 0 and 2 (not consecutive)
    lab[0:2, 5:7, 5:7] = 2  # label 2: slices 0-1
    lab[[0, 1, 3, 4], 0:2, 5:7] = 3  # label 3: runs of 2 and 2
    out = clean(lab, spacing=SPACING, min_slices=2)
    assert _components(out) == _components(np.where(lab == 1, 0, lab))
    out = clean(lab, spacing=SPACING, min_slices=3)
    assert out.max() == 0


def test_clean_order_by_volume_then_flat_index():
    m = np.zeros((4, 20, 20), bool)
    m[0:2, 15:17, 15:17] = True  # 8 voxels, later in the array
    m[0:2, 0:2, 10:12] = True  # 8 voxels, earlier (smaller flat index)
    m[2:4, 5:10, 0:3] = True  # 30 voxels
    out = clean(m, spacing=SPACING)
    assert (out == 1).sum() == 30
    assert out[0, 0, 10] == 2 and out[0, 15, 15] == 3


def test_clean_order_is_invariant_to_label_permutation():
    rng = np.random.default_rng(3)
    m = rng.random((12, 40, 40)) > 0.9  # many small lesions, many ties in volume
    base = clean(m, spacing=SPACING)
    n = int(base.max())
    assert n > 50
    for _ in range(3):
        perm = np.concatenate([[0], rng.permutation(n) + 1]).astype(np.int64)
        relabelled = perm[base] * 7  # permuted and sparse ids
        np.testing.assert_array_equal(clean(relabelled, spacing=SPACING), base)
    # a label image from label() gives the same as the mask
    np.testing.assert_array_equal(clean(label(m), spacing=SPACING), base)
    # sizes are non-increasing with the id
    sizes = np.bincount(base.ravel())[1:]
    assert np.all(np.diff(sizes) <= 0)


def test_clean_keeps_each_input_label_whole():
    lab = np.zeros((3, 10, 10), np.uint16)
    lab[0, 0:2, 0:2] = 5
    lab[2, 8:10, 8:10] = 5  # same lesion id, two disconnected parts
    lab[1, 4:6, 4:6] = 9
    out = clean(lab, spacing=SPACING)
    assert out.max() == 2
    assert (out == 1).sum() == 8 and out[0, 0, 0] == out[2, 9, 9] == 1
    # a bool mask of the same is split
    assert clean(lab > 0, spacing=SPACING).max() == 3


def _shell(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    m[lo[0] + 1 : hi[0] - 1, lo[1] + 1 : hi[1] - 1, lo[2] + 1 : hi[2] - 1] = False
    return m


def test_clean_fill_holes():
    shape = (12, 30, 30)
    shell = _shell(shape, (1, 1, 1), (8, 8, 8))  # 7³ box, 5³ cavity
    cup = _shell(shape, (1, 15, 15), (6, 20, 20))
    cup[1:5, 16:19, 16:19] = False  # open the top: not a hole
    m = shell | cup
    m[4, 4, 4] = True  # a lesion floating inside the cavity
    before = m.copy()
    out = clean(m, spacing=SPACING, fill_holes=True)
    np.testing.assert_array_equal(m, before)
    assert out.max() == 2  # the floating lesion became part of the shell
    assert (out == 1).sum() == 7**3
    np.testing.assert_array_equal(out == 2, cup)
    # without filling the floating voxel is its own lesion and the cavity stays
    assert clean(m, spacing=SPACING).max() == 3


def test_clean_fill_holes_before_volume_rule_and_on_labels():
    shape = (10, 10, 10)
    shell = _shell(shape, (1, 1, 1), (6, 6, 6))  # 125 - 27 = 98 voxels
    lab = shell.astype(np.int32) * 4
    assert clean(lab, spacing=(1, 1, 1), min_volume_mm3=100).max() == 0
    out = clean(lab, spacing=(1, 1, 1), min_volume_mm3=100, fill_holes=True)
    assert out.max() == 1 and (out == 1).sum() == 125


def test_clean_fill_holes_respects_connectivity_pair():
    # the shell's corner voxel is removed: the cavity touches the outside by a corner
    # only. For 26-connected lesions the background is 6-connected, so the cavity is
    # closed and filled; for 6-connected lesions the background is 26-connected and the
    # cavity leaks out.
    m = _shell((7, 7, 7), (1, 1, 1), (6, 6, 6))  # 5³ box, 3³ cavity: 98 voxels
    m[1, 1, 1] = False
    for conn, expected in ((26, 125 - 1), (18, 125 - 1), (6, 98 - 1)):
        out = clean(m, spacing=(1, 1, 1), fill_holes=True, connectivity=conn)
        assert out.max() == 1
        assert (out > 0).sum() == expected, conn
        assert not out[1, 1, 1]


def test_clean_empty_and_nothing_kept():
    z = np.zeros((3, 5, 5), bool)
    out = clean(z, spacing=SPACING, min_slices=2, fill_holes=True)
    assert out.dtype == np.int32 and out.max() == 0
    assert clean(np.zeros((3, 5, 5), np.int64), spacing=SPACING).max() == 0


@pytest.mark.parametrize(
    "inp, kwargs, match",
    [
        (np.zeros((3, 4, 4), float), {}, "bool mask or an integer"),
        (np.full((3, 4, 4), -1, np.int16), {}, "negative"),
        (np.zeros((4, 4), bool), {}, "3D"),
        (np.zeros((3, 4, 4), bool), dict(spacing=(1, 1)), "spacing"),
        (np.zeros((3, 4, 4), bool), dict(spacing=(1, -1, 1)), "spacing"),
        (np.zeros((3, 4, 4), bool), dict(min_volume_mm3=-1), "min_volume_mm3"),
        (np.zeros((3, 4, 4), bool), dict(min_volume_mm3=float("nan")), "min_volume_mm3"),
        (np.zeros((3, 4, 4), bool), dict(min_slices=0), "min_slices"),
        (np.zeros((3, 4, 4), bool), dict(min_slices=1.5), "min_slices"),
        (np.zeros((3, 4, 4), bool), dict(fill_holes="yes"), "fill_holes"),
        (np.zeros((3, 4, 4), bool), dict(connectivity=8), "connectivity"),
    ],
)
def test_clean_errors(inp, kwargs, match):
    kw = dict(spacing=SPACING)
    kw.update(kwargs)
    with pytest.raises(ParameterError, match=match):
        clean(inp, **kw)


def test_clean_many_lesions_is_not_quadratic():
    # 2000+ lesions in 4M voxels: an O(lesions x volume) loop would take minutes
    rng = np.random.default_rng(0)
    shape = (60, 256, 256)
    m = np.zeros(shape, bool)
    pts = rng.integers(0, [59, 255, 255], size=(3000, 3))
    for dz in (0, 1):
        m[pts[:, 0] + dz, pts[:, 1], pts[:, 2]] = True
        m[pts[:, 0] + dz, pts[:, 1] + 1, pts[:, 2]] = True
    image = rng.normal(100, 10, shape)
    t0 = time.perf_counter()
    out = clean(m, spacing=(3, 0.5, 0.5), min_slices=2, fill_holes=True)
    df = lesion_table(out, image, affine=np.diag([3, 0.5, 0.5, 1.0]))
    elapsed = time.perf_counter() - t0
    assert out.max() > 2000 and len(df) == out.max()
    assert elapsed < 20.0


# ---------------------------------------------------------------------------------------
# lesion_table
# ---------------------------------------------------------------------------------------
def _oblique_affine():
    """Rotation + anisotropic voxels + axis flips + translation, like an oblique STIR."""
    theta = np.deg2rad(25)
    rot = np.array(
        [[1, 0, 0], [0, np.cos(theta), -np.sin(theta)], [0, np.sin(theta), np.cos(theta)]]
    )
    # columns: slice axis 3.3 mm along +y, rows 0.6 mm towards -z, columns 0.6 mm towards -x
    axes = np.array([[0, 0, -0.6], [3.3, 0, 0], [0, -0.6, 0]])
    a = np.eye(4)
    a[:3, :3] = rot @ axes
    a[:3, 3] = [117.0, -117.0, -160.0]
    return a


@pytest.fixture()
def table_case():
    rng = np.random.default_rng(5)
    shape = (10, 40, 40)
    image = rng.normal(100, 10, shape)
    labels = np.zeros(shape, np.int32)
    labels[2:5, 5:10, 5:12] = 3  # non-consecutive ids
    labels[6, 20:22, 20:21] = 7
    labels[1:9, 25:35, 28:31] = 1
    image[labels > 0] += 150
    reference = np.zeros(shape, bool)
    reference[:, 0:4, 30:40] = True
    region = np.zeros(shape, bool)
    region[:, 0:30, :] = True  # holds lesions 3 and 7 fully, lesion 1 in part
    return image, labels, reference, region


def test_lesion_table_measures(table_case):
    image, labels, reference, region = table_case
    affine = _oblique_affine()
    stats = reference_stats(image, reference)
    df = lesion_table(labels, image, affine=affine, reference=stats, region=region)
    assert list(df.columns) == list(TABLE_COLUMNS)
    assert df["lesion_id"].tolist() == [1, 3, 7]
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert voxel_mm3 == pytest.approx(3.3 * 0.6 * 0.6)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    for _, row in df.iterrows():
        i = int(row.lesion_id)
        sel = labels == i
        idx = np.argwhere(sel)
        assert row.voxels == sel.sum()
        assert row.volume_mm3 == pytest.approx(sel.sum() * voxel_mm3)
        assert row.volume_ml == pytest.approx(sel.sum() * voxel_mm3 / 1000)
        assert row.mean_intensity == pytest.approx(image[sel].mean())
        assert row.max_intensity == pytest.approx(image[sel].max())
        assert row.ratio_to_reference == pytest.approx(image[sel].mean() / stats.mean)
        assert row.z_score == pytest.approx((image[sel].mean() - stats.mean) / stats.sd)
        c = idx.mean(axis=0)
        assert [row.centroid_slice, row.centroid_row, row.centroid_col] == pytest.approx(c)
        ras = affine @ np.append(c, 1.0)
        assert [row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm] == pytest.approx(ras[:3])
        ext = (idx.max(axis=0) - idx.min(axis=0) + 1) * spacing
        assert [row.extent_slice_mm, row.extent_row_mm, row.extent_col_mm] == pytest.approx(ext)
        assert row.first_slice == idx[:, 0].min() and row.last_slice == idx[:, 0].max()
        assert row.n_slices == len(np.unique(idx[:, 0]))
    lesion3 = df.set_index("lesion_id").loc[3]
    assert lesion3.extent_slice_mm == pytest.approx(3 * 3.3)
    assert lesion3.extent_col_mm == pytest.approx(7 * 0.6)
    assert df["z_score"].min() > 10  # BME ~250 vs marrow ~100 +- 10
    for c in ("voxels", "first_slice", "last_slice", "n_slices", "lesion_id"):
        assert pd.api.types.is_integer_dtype(df[c])


def test_lesion_table_totals_and_region_fraction(table_case):
    image, labels, reference, region = table_case
    affine = np.diag([3.0, 0.5, 0.5, 1.0])
    df = lesion_table(labels, image, affine=affine, region=region)
    totals = df.attrs["totals"]
    n_vox = int((labels > 0).sum())
    assert totals["n_lesions"] == 3
    assert totals["total_voxels"] == n_vox
    assert totals["total_volume_mm3"] == pytest.approx(n_vox * 0.75)
    assert totals["total_volume_ml"] == pytest.approx(n_vox * 0.75 / 1000)
    assert totals["total_volume_ml"] == pytest.approx(df["volume_ml"].sum())
    assert totals["region_volume_ml"] == pytest.approx(region.sum() * 0.75 / 1000)
    inside = ((labels > 0) & region).sum()
    assert 0 < inside < n_vox
    assert totals["bme_fraction_of_region"] == pytest.approx(inside / region.sum())
    json.dumps(totals)
    assert summarize(df) == totals
    # without a region, the region figures are None; without a reference, ratio/z are NaN
    df2 = lesion_table(labels, image, affine=affine)
    assert df2.attrs["totals"]["region_volume_ml"] is None
    assert df2.attrs["totals"]["bme_fraction_of_region"] is None
    assert df2["ratio_to_reference"].isna().all() and df2["z_score"].isna().all()


def test_lesion_table_reference_with_zero_sd(table_case):
    image, labels, _, _ = table_case
    flat = np.full(image.shape, 50.0)
    ref = np.zeros(image.shape, bool)
    ref[0, 0:10, 0:10] = True
    stats = reference_stats(flat, ref)
    assert stats.sd == 0
    df = lesion_table(labels, image, affine=np.eye(4), reference=stats)
    assert df["z_score"].isna().all()
    assert df["ratio_to_reference"].notna().all()


def test_lesion_table_ignores_nan_intensities(table_case):
    image, labels, _, _ = table_case
    img = image.copy()
    img[1, 25, 28] = np.nan  # inside lesion 1
    df = lesion_table(labels, img, affine=np.eye(4)).set_index("lesion_id")
    sel = labels == 1
    assert df.loc[1, "voxels"] == sel.sum()
    assert df.loc[1, "mean_intensity"] == pytest.approx(np.nanmean(img[sel]))


def test_lesion_table_empty():
    labels = np.zeros((3, 8, 8), np.int16)
    df = lesion_table(labels, np.ones(labels.shape), affine=np.eye(4), region=np.ones(labels.shape, bool))
    assert len(df) == 0 and list(df.columns) == list(TABLE_COLUMNS)
    t = df.attrs["totals"]
    assert t["n_lesions"] == 0 and t["total_voxels"] == 0 and t["total_volume_ml"] == 0.0
    assert t["bme_fraction_of_region"] == 0.0 and t["region_volume_ml"] == pytest.approx(0.192)
    assert summarize(df) == t


def test_lesion_table_after_clean_pipeline():
    """Threshold -> clean -> table on a synthetic scan with two planted lesions."""
    rng = np.random.default_rng(11)
    shape, spacing = (20, 96, 96), (3.0, 0.6, 0.6)
    image = rng.normal(100, 10, shape)
    big = sphere_mask(shape, (10, 30, 30), 12.0, spacing=spacing)
    small = sphere_mask(shape, (10, 70, 70), 5.0, spacing=spacing)
    image[big | small] = rng.normal(260, 15, int((big | small).sum()))
    ref = sphere_mask(shape, (10, 70, 25), 8.0, spacing=spacing)
    t = compute_threshold(image, reference=ref)
    out = clean(image >= t.value, spacing=spacing, min_volume_mm3=50.0, min_slices=2)
    df = lesion_table(out, image, affine=np.diag([*spacing, 1.0]), reference=t.stats)
    assert len(df) == 2
    vox = np.prod(spacing)
    assert df.loc[0, "volume_mm3"] == pytest.approx(big.sum() * vox, rel=0.01)
    assert df.loc[1, "volume_mm3"] == pytest.approx(small.sum() * vox, rel=0.02)
    assert df.loc[0, "volume_mm3"] == pytest.approx(4 / 3 * np.pi * 12.0**3, rel=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=np.zeros((2, 4, 4), bool)), "integer label image"),
        (dict(labels=np.zeros((2, 4, 4), float)), "integer label image"),
        (dict(labels=np.full((2, 4, 4), -2, np.int8)), "negative"),
        (dict(image=np.zeros((2, 4, 5))), "same grid"),
        (dict(affine=np.eye(3)), "4x4"),
        (dict(affine=np.diag([1.0, 0.0, 1.0, 1.0])), "singular"),
        (dict(region=np.zeros((2, 4, 4), bool)), "region mask is empty"),
        (dict(region=np.ones((2, 4, 3), bool)), "region has shape"),
        (dict(reference={"mean": 1.0}), "ReferenceStats"),
    ],
)
def test_lesion_table_errors(kwargs, match):
    labels = np.zeros((2, 4, 4), np.int32)
    labels[0, 0, 0] = 1
    args = dict(labels=labels, image=np.ones((2, 4, 4)), affine=np.eye(4))
    args.update(kwargs)
    lab, img = args.pop("labels"), args.pop("image")
    with pytest.raises(ParameterError, match=match):
        lesion_table(lab, img, **args)


# ---------------------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------------------
def test_summarize_recomputes_for_subsets_and_missing_attrs(table_case):
    image, labels, _, region = table_case
    df = lesion_table(labels, image, affine=np.diag([3.0, 0.5, 0.5, 1.0]), region=region)
    sub = df[df.lesion_id != 1]  # pandas carries attrs over: they must not be trusted
    s = summarize(sub)
    n_vox = int(((labels == 3) | (labels == 7)).sum())
    assert s["n_lesions"] == 2 and s["total_voxels"] == n_vox
    assert s["total_volume_mm3"] == pytest.approx(n_vox * 0.75)
    assert s["bme_fraction_of_region"] == pytest.approx(n_vox / region.sum())
    assert s["region_volume_ml"] == df.attrs["totals"]["region_volume_ml"]
    bare = pd.DataFrame(df.to_dict("list"))  # attrs lost (e.g. a CSV round trip)
    s = summarize(bare)
    assert s["n_lesions"] == 3
    assert s["total_volume_ml"] == pytest.approx(df.attrs["totals"]["total_volume_ml"])
    assert s["region_volume_ml"] is None and s["bme_fraction_of_region"] is None
    with pytest.raises(ParameterError, match="DataFrame"):
        summarize({"n_lesions": 3})


# ---------------------------------------------------------------------------------------
# real data: reader R11's BME mask of SIJ case 1013 (published volume 127.5 mL)
# ---------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_lesion_table_reader_mask_volume_real_sij():
    paths = {
        "image": SIJ / "images" / "1013_STIR.nii.gz",
        "reference": SIJ / "normal_marrow" / "1013_normal_marrow.nii.gz",
        "r11": SIJ / "inflammation" / "1013_inflammation_R11.nii.gz",
        "region": SIJ / "disease_region" / "1013_disease_region.nii.gz",
    }
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        pytest.skip(f"real SIJ STIR data not found (shared data folder absent): {missing}")
    nib = pytest.importorskip("nibabel")
    from bmeviz.volume import REVERSE_AXES

    img = nib.load(paths["image"])
    # NIfTI (i, j, k) -> bmeviz (slice, row, column), the affine permuted to match
    image = img.get_fdata().transpose(2, 1, 0)
    affine = img.affine @ REVERSE_AXES
    reference = nib.load(paths["reference"]).get_fdata().transpose(2, 1, 0) > 0
    r11 = nib.load(paths["r11"]).get_fdata().transpose(2, 1, 0) > 0
    region = nib.load(paths["region"]).get_fdata().transpose(2, 1, 0) > 0

    stats = reference_stats(image, reference)
    labels = clean(r11, spacing=np.linalg.norm(affine[:3, :3], axis=0))
    df = lesion_table(labels, image, affine=affine, reference=stats, region=region)
    totals = summarize(df)
    assert totals["total_volume_ml"] == pytest.approx(127.5, rel=0.02)
    assert totals["total_voxels"] == int(r11.sum())
    assert 0 < totals["bme_fraction_of_region"] < 1
    # BME is bright relative to normal marrow
    assert (df["ratio_to_reference"] > 1.2).all()
    assert df["ratio_to_reference"].iloc[0] > 2  # the largest lesion
    # centroids in RAS agree with nibabel's own mapping of the NIfTI indices
    row = df.iloc[0]
    ijk = [row.centroid_col, row.centroid_row, row.centroid_slice]
    xyz = nib.affines.apply_affine(img.affine, ijk)
    assert [row.centroid_x_mm, row.centroid_y_mm, row.centroid_z_mm] == pytest.approx(xyz)


def test_table_of_a_crop_with_origin_equals_the_full_table():
    """segment() measures only the lesions' bounding box; the numbers must not change."""
    rng = np.random.default_rng(7)
    labels = np.zeros((20, 60, 50), np.int32)
    labels[3:6, 10:20, 12:18] = 1
    labels[8:12, 30:41, 20:33] = 2
    image = rng.normal(100, 10, labels.shape)
    region = np.zeros(labels.shape, bool)
    region[2:15, 5:50, 5:45] = True
    affine = np.array([[0, 0, -0.6, 30], [0, -0.6, 0, 20], [3.0, 0, 0, -40], [0, 0, 0, 1]])
    full = lesion_table(labels, image, affine=affine, region=region)
    box = (slice(2, 13), slice(9, 42), slice(11, 34))
    crop = lesion_table(labels[box], image[box], affine=affine, region=region[box],
                        origin=(2, 9, 11), region_voxels=int(region.sum()))
    pd.testing.assert_frame_equal(full, crop)
    assert full.attrs["totals"] == crop.attrs["totals"]


def test_label_of_one_dimensional_masks():
    """cc3d cannot label masks with two axes of size 1 (a 1 x 1 x 7 box of a thin lesion):
    bmeviz falls back to scipy, with the same components and no output on the console."""
    import scipy.ndimage as ndi

    from bmeviz.lesions import label

    rng = np.random.default_rng(0)
    for shape in [(1, 1, 7), (1, 1, 40), (1, 16, 1), (5, 1, 1), (1, 2, 9)]:
        m = rng.random(shape) < 0.5
        ref, n = ndi.label(m, structure=np.ones((3, 3, 3), bool))
        lab = label(m)
        assert lab.max() == n and np.array_equal(lab > 0, m)
