"""Properties of segment() that must hold for any scan, checked on small random volumes
drawn by hypothesis (fixed seed; BMEVIZ_FUZZ_SCALE multiplies the examples):

- deterministic: the same call twice gives the same labels and table;
- invariant to the order (and repetition) of the seeds;
- the mask lies inside the search region, and labels are exactly 1..n;
- volumes are voxel count x voxel volume, per lesion and in total;
- a higher threshold gives a subset of the mask (connected threshold, no leak guard);
- the leak guard bounds what each seed may add;
- the same anatomy indexed from the other end (axis flipped, affine adjusted) gives the
  same lesions, voxel for voxel.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bmeviz
from fuzz import harness as H


@st.composite
def scenes(draw):
    """A small volume: marrow ~N(100, 8), 1-4 bright ellipsoid lesions (some touching),
    a box of bone as the region, a reference box of marrow, seeds in (and beside) lesions."""
    rng_seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(rng_seed)
    shape = (draw(st.integers(6, 14)), draw(st.integers(16, 36)), draw(st.integers(16, 36)))
    spacing = (draw(st.sampled_from([1.0, 2.0, 3.0, 4.5])), draw(st.sampled_from([0.5, 0.7, 1.0])),
               draw(st.sampled_from([0.5, 0.7, 1.0])))
    img = rng.normal(100.0, 8.0, size=shape).astype(np.float32)
    idx = np.indices(shape).astype(np.float32)
    n_lesions = draw(st.integers(1, 4))
    centres = []
    for _ in range(n_lesions):
        c = np.array([rng.uniform(1, n - 2) for n in shape])
        r = np.array([draw(st.floats(1.0, 3.5)), draw(st.floats(1.5, 7.0)), draw(st.floats(1.5, 7.0))])
        inside = sum(((idx[a] - c[a]) / r[a]) ** 2 for a in range(3)) <= 1.0
        img[inside] = rng.normal(draw(st.sampled_from([180.0, 260.0, 400.0])), 10.0, size=int(inside.sum()))
        centres.append(np.rint(c).astype(int))
    if draw(st.booleans()):
        img[rng.random(shape) < 0.01] = np.nan  # missing voxels
    region = np.zeros(shape, bool)
    lo = [draw(st.integers(0, n // 3)) for n in shape]
    hi = [draw(st.integers(2 * n // 3, n)) for n in shape]
    region[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    reference = np.zeros(shape, bool)
    reference[:, :4, :4] = True  # a corner of marrow (lesions rarely reach it; the rule copes if one does)
    img[reference] = rng.normal(100.0, 8.0, size=int(reference.sum()))
    seeds = [c for c in centres if draw(st.booleans())] or centres[:1]
    if draw(st.booleans()):
        seeds.append(np.array([rng.integers(0, n) for n in shape]))  # a click that may miss
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 5.0)
    vol = bmeviz.Volume(img, affine, {"sequence": "STIR"})
    options = draw(st.fixed_dictionaries({
        "edge": st.sampled_from(["threshold", "half-max"]),
        "connectivity": st.sampled_from([6, 18, 26]),
        "min_slices": st.integers(1, 2),
        "min_volume_mm3": st.sampled_from([0.0, 5.0, 20.0]),
        "fill_holes": st.booleans(),
        "rule": st.sampled_from(["q3-iqr", "mean-sd"]),
        "use_region": st.booleans(),
    }))
    return vol, region, reference, np.array(seeds), options


def _segment(vol, region, reference, seeds, options, **override):
    kw = dict(options)
    use_region = kw.pop("use_region")
    kw.update(override)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bmeviz.segment(vol, reference=reference, region=region if use_region else None, seeds=seeds, **kw)


def _settings(n):
    return H.fuzz_settings(n)


def _same(a, b):
    assert np.array_equal(a.labels, b.labels)
    pd.testing.assert_frame_equal(a.table, b.table)


@_settings(40)
@H.fuzz_seed
@given(scene=scenes(), order_seed=st.integers(0, 1000))
def test_deterministic_and_seed_order_invariant(scene, order_seed):
    vol, region, reference, seeds, options = scene
    a = _segment(vol, region, reference, seeds, options)
    b = _segment(vol, region, reference, seeds, options)
    _same(a, b)
    perm = np.random.default_rng(order_seed).permutation(len(seeds))
    shuffled = seeds[perm]
    twice = np.concatenate([shuffled, shuffled[:1]])  # a seed clicked twice
    _same(a, _segment(vol, region, reference, shuffled, options))
    _same(a, _segment(vol, region, reference, twice, options))


@_settings(40)
@H.fuzz_seed
@given(scene=scenes(), seeded=st.booleans())
def test_mask_inside_region_labels_and_volumes(scene, seeded):
    vol, region, reference, seeds, options = scene
    options = {**options, "use_region": True}
    res = _segment(vol, region, reference, seeds if seeded else None, options)
    assert not (res.mask & ~region).any()
    assert np.array_equal(res.mask, res.labels > 0)
    n = res.n_lesions
    assert sorted(np.unique(res.labels[res.labels > 0]).tolist()) == list(range(1, n + 1))
    assert len(res.table) == n
    counts = np.bincount(res.labels.ravel(), minlength=n + 1)[1:]
    vv = vol.voxel_volume_mm3
    assert np.array_equal(res.table["voxels"].to_numpy(), counts)
    assert np.allclose(res.table["volume_mm3"].to_numpy(), counts * vv)
    assert np.allclose(res.table["volume_ml"].to_numpy(), counts * vv / 1000)
    assert res.total_volume_ml == pytest.approx(counts.sum() * vv / 1000)
    assert not np.isnan(vol.array[res.mask]).any()  # missing voxels are never lesion
    if n:
        assert (res.table["volume_mm3"] >= options["min_volume_mm3"] - 1e-9).all()
        assert (res.table["n_slices"] >= 1).all()


@_settings(30)
@H.fuzz_seed
@given(scene=scenes(), k_low=st.floats(0.5, 3.0), dk=st.floats(0.1, 3.0))
def test_higher_threshold_gives_a_subset(scene, k_low, dk):
    vol, region, reference, seeds, options = scene
    # the plain connected threshold: moving clicks onto the lesion (seed_snap_mm) and the leak check
    # (leak_jump) pick seeds/levels per threshold, so they are not monotone by design
    options = {**options, "edge": "threshold", "rule": "mean-sd", "fill_holes": False, "seed_snap_mm": None,
               "leak_jump": None}
    low = _segment(vol, region, reference, seeds, options, k=k_low, max_volume_ml=None)
    high = _segment(vol, region, reference, seeds, options, k=k_low + dk, max_volume_ml=None)
    assert high.threshold.value >= low.threshold.value
    assert not (high.mask & ~low.mask).any()


@_settings(30)
@H.fuzz_seed
@given(scene=scenes(), guard_voxels=st.integers(1, 400))
def test_leak_guard_bounds_each_seed(scene, guard_voxels):
    vol, region, reference, seeds, options = scene
    guard_ml = guard_voxels * vol.voxel_volume_mm3 / 1000
    options = {**options, "edge": "threshold", "fill_holes": False}
    res = _segment(vol, region, reference, seeds, options, max_volume_ml=guard_ml)
    assert res.total_volume_ml <= len(seeds) * guard_ml * (1 + 1e-9)
    assert len(res.grow.leaked) == len(seeds)
    for i, leaked in enumerate(res.grow.leaked):
        if leaked:
            assert any(f"seed {i + 1} " in m and "leak guard" in m for m in res.messages)


def _flipped(vol, axis):
    """The same voxels at the same places, indexed from the other end along ``axis``."""
    n = vol.shape[axis]
    aff = vol.affine.copy()
    aff[:3, 3] = vol.affine[:3, 3] + vol.affine[:3, axis] * (n - 1)
    aff[:3, axis] = -vol.affine[:3, axis]
    return bmeviz.Volume(np.flip(vol.array, axis), aff, vol.metadata)


@_settings(25)
@H.fuzz_seed
@given(scene=scenes(), axis=st.integers(0, 2))
def test_the_same_anatomy_indexed_from_the_other_end(scene, axis):
    vol, region, reference, seeds, options = scene
    a = _segment(vol, region, reference, seeds, options)
    fv = _flipped(vol, axis)
    fseeds = seeds.copy()
    fseeds[:, axis] = vol.shape[axis] - 1 - fseeds[:, axis]
    b = _segment(fv, np.flip(region, axis), np.flip(reference, axis), fseeds, options)
    assert np.array_equal(np.flip(a.mask, axis), b.mask)
    assert a.total_volume_ml == pytest.approx(b.total_volume_ml)
    assert sorted(a.table["voxels"]) == sorted(b.table["voxels"])


def test_fill_holes_does_not_take_missing_voxels():
    """Regression (found by this suite): fill_holes=True filled a NaN (missing) voxel
    enclosed by a lesion into it; missing voxels are never lesion."""
    rng = np.random.default_rng(0)
    img = rng.normal(100, 8, (8, 20, 20)).astype(np.float32)
    img[2:6, 5:15, 5:15] = 300
    img[4, 10, 10] = np.nan
    ref = np.zeros(img.shape, bool)
    ref[:, :4, :4] = True
    vol = bmeviz.Volume(img, np.diag([3.0, 1.0, 1.0, 1.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bmeviz.segment(vol, reference=ref, seeds=[(3, 8, 8)], fill_holes=True, min_volume_mm3=0)
    assert not res.mask[4, 10, 10]


def test_no_lesion_found_inside_a_region_is_a_result():
    """Regression (found by this suite): an empty mask with a region that misses voxel
    (0, 0, 0) raised 'region mask is empty' instead of giving 0 lesions."""
    from bmeviz.data import make_phantom

    ph = make_phantom(seed=0, shape=(16, 96, 96))
    assert not ph.bone[0, 0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=[ph.reference_point])
    assert res.n_lesions == 0


def test_a_leak_stops_at_the_guard_instead_of_eating_the_machine():
    """A click in a huge bright region (joint fluid, a bad threshold): growth stops at the
    guard at once, the region is dropped, and the user is told."""
    import time

    img = np.full((48, 384, 384), 500.0, np.float32)  # 7 M voxels, all above the threshold
    img[:, :8, :8] = np.random.default_rng(0).normal(100, 8, (48, 8, 8))
    ref = np.zeros(img.shape, bool)
    ref[:, :8, :8] = True
    vol = bmeviz.Volume(img, np.diag([3.0, 0.5, 0.5, 1.0]))
    t = time.perf_counter()
    with pytest.warns(bmeviz.BmevizWarning, match="leak|max_volume_ml"):
        res = bmeviz.segment(vol, reference=ref, seeds=[(24, 192, 192)], max_volume_ml=2.0)
    assert time.perf_counter() - t < 10  # ~0.1 s; growing the whole block takes seconds and GBs
    assert res.grow.leaked == (True,) and res.n_lesions == 0
    assert any("leak guard" in m for m in res.messages)
