"""Tests of bmeviz.threshold: reference statistics, rules, adaptive k, sphere_mask."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from bmeviz.errors import BmevizWarning, ParameterError
from bmeviz.threshold import (
    RULES,
    ReferenceStats,
    Threshold,
    compute_threshold,
    reference_stats,
    sphere_mask,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIJ = DATA / "sij-stir-dev"


# ---------------------------------------------------------------------------------------
# synthetic STIR-like scan: normal marrow ~N(100, 10), one bright BME blob ~N(250, 20)
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scan():
    rng = np.random.default_rng(42)
    shape = (12, 64, 64)
    image = rng.normal(100.0, 10.0, shape)
    zz, yy, xx = np.indices(shape)
    blob = ((zz - 6) * 3.0) ** 2 + ((yy - 40) * 0.6) ** 2 + ((xx - 40) * 0.6) ** 2 <= 8.0**2
    image[blob] = rng.normal(250.0, 20.0, int(blob.sum()))
    reference = np.zeros(shape, bool)
    reference[2:10, 8:24, 8:24] = True  # normal marrow, away from the blob
    region = np.zeros(shape, bool)
    region[1:11, 4:60, 4:60] = True  # "bone" searched for BME, holds the blob
    return image, reference, region, blob


def _ref_values(scan):
    image, reference, _, _ = scan
    return image[reference]


# ---------------------------------------------------------------------------------------
# reference_stats
# ---------------------------------------------------------------------------------------
def test_reference_stats_match_numpy(scan):
    image, reference, _, _ = scan
    v = image[reference]
    s = reference_stats(image, reference)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    assert s.n == v.size == 8 * 16 * 16
    assert s.mean == pytest.approx(v.mean())
    assert s.sd == pytest.approx(v.std(ddof=1))
    assert (s.q1, s.median, s.q3) == pytest.approx((q1, med, q3))
    assert s.iqr == pytest.approx(q3 - q1)
    assert (s.min, s.max) == (v.min(), v.max())
    assert s.mean == pytest.approx(100, abs=2) and s.sd == pytest.approx(10, abs=1.5)


def test_reference_stats_accepts_01_masks_and_to_dict_is_json(scan):
    image, reference, _, _ = scan
    s1 = reference_stats(image, reference)
    s2 = reference_stats(image, reference.astype(np.float32))  # e.g. NIfTI get_fdata()
    assert s1 == s2
    d = json.loads(json.dumps(s1.to_dict()))
    assert d["n"] == s1.n and isinstance(d["n"], int)
    assert d["q3"] == pytest.approx(s1.q3)
    assert set(d) == {"n", "mean", "sd", "median", "q1", "q3", "iqr", "min", "max"}
    with pytest.raises(Exception):
        s1.n = 3  # frozen


def test_reference_stats_ignores_nan(scan):
    image, reference, _, _ = scan
    img = image.copy()
    idx = tuple(np.argwhere(reference)[:5].T)
    img[idx] = np.nan
    with pytest.warns(BmevizWarning, match="NaN"):
        s = reference_stats(img, reference)
    v = img[reference]
    v = v[np.isfinite(v)]
    assert s.n == reference.sum() - 5
    assert s.mean == pytest.approx(v.mean())
    assert s.q3 == pytest.approx(np.percentile(v, 75))


def test_reference_stats_warns_on_small_reference(scan):
    image, _, _, _ = scan
    small = np.zeros(image.shape, bool)
    small[5, 10:15, 10:15] = True  # 25 voxels
    with pytest.warns(BmevizWarning, match="25 usable voxels"):
        s = reference_stats(image, small)
    assert s.n == 25


@pytest.mark.parametrize(
    "make_ref, match",
    [
        (lambda img: np.ones(img.shape[1:], bool), "shape"),
        (lambda img: np.zeros(img.shape, bool), "empty"),
        (lambda img: np.full(img.shape, 2, np.uint8), "0 and 1"),
    ],
)
def test_reference_stats_errors(scan, make_ref, match):
    image = scan[0]
    with pytest.raises(ParameterError, match=match):
        reference_stats(image, make_ref(image))


def test_reference_stats_all_nan_is_an_error(scan):
    image, reference, _, _ = scan
    img = image.copy()
    img[reference] = np.nan
    with pytest.raises(ParameterError, match="NaN"):
        reference_stats(img, reference)
    with pytest.raises(ParameterError, match="NaN"):
        compute_threshold(img, reference=reference)


# ---------------------------------------------------------------------------------------
# the rules against independent numpy computations
# ---------------------------------------------------------------------------------------
def test_q3_iqr_fixed_k(scan):
    image, reference, _, blob = scan
    v = image[reference]
    q1, q3 = np.percentile(v, [25, 75])
    t = compute_threshold(image, reference=reference, rule="q3-iqr", k=1.5)
    assert t.value == pytest.approx(q3 + 1.5 * (q3 - q1))
    assert t.k == 1.5 and t.rule == "q3-iqr" and t.details["adaptive"] is False
    assert isinstance(t.stats, ReferenceStats) and t.high is None
    # a real outcome: the threshold finds the blob and little else
    found = image >= t.value
    assert (found & blob).sum() / blob.sum() > 0.99


def test_mean_sd_default_k(scan):
    image, reference, _, _ = scan
    v = image[reference]
    t = compute_threshold(image, reference=reference, rule="mean-sd")
    assert t.k == 2.0
    assert t.value == pytest.approx(v.mean() + 2.0 * v.std(ddof=1))
    t3 = compute_threshold(image, reference=reference, rule="mean-sd", k=3)
    assert t3.value == pytest.approx(v.mean() + 3.0 * v.std(ddof=1))


@pytest.mark.parametrize("k, expected_k", [(None, 99.0), (90, 90.0), (100, 100.0)])
def test_percentile(scan, k, expected_k):
    image, reference, _, _ = scan
    v = image[reference]
    t = compute_threshold(image, reference=reference, rule="percentile", k=k)
    assert t.k == expected_k
    assert t.value == pytest.approx(np.percentile(v, expected_k))
    if expected_k == 100:
        assert t.value == v.max()


def test_otsu_in_region(scan):
    from skimage.filters import threshold_otsu

    image, reference, region, blob = scan
    t = compute_threshold(image, rule="otsu", region=region)
    assert t.value == pytest.approx(threshold_otsu(image[region]))
    assert 130 < t.value < 220  # between marrow ~100 and BME ~250
    assert t.k is None and t.stats is None and t.high is None
    assert t.details["region_voxels"] == int(region.sum())
    # stats are still computed from a reference when one is given
    t2 = compute_threshold(image, rule="otsu", region=region, reference=reference)
    assert t2.value == t.value
    assert t2.stats == reference_stats(image, reference)
    # the region matters: inside normal marrow only, Otsu just splits the noise
    t3 = compute_threshold(image, rule="otsu", region=reference)
    assert t3.value == pytest.approx(threshold_otsu(image[reference]))
    assert 85 < t3.value < 115


def test_threshold_to_dict_is_json(scan):
    image, reference, _, _ = scan
    t = compute_threshold(image, reference=reference, k="adaptive", high_k="adaptive")
    d = json.loads(json.dumps(t.to_dict()))
    assert d["rule"] == "q3-iqr" and d["value"] == pytest.approx(t.value)
    assert d["stats"]["n"] == t.stats.n and d["details"]["adaptive"] is True
    assert isinstance(t, Threshold)


# ---------------------------------------------------------------------------------------
# the adaptive k of Hepburn et al.
# ---------------------------------------------------------------------------------------
def _reference_with_max(gap_in_iqr: float, *, seed: int = 0):
    """An image and reference whose brightest voxel is Q3 + gap_in_iqr * IQR.

    The brightest voxel is moved, it stays the brightest, so Q1/Q3 are unchanged.
    """
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 10.0, (4, 30, 30))
    reference = np.zeros(image.shape, bool)
    reference[:, 5:25, 5:25] = True
    v = image[reference]
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    top = tuple(np.argwhere(reference)[np.argmax(v)])
    image[top] = q3 + gap_in_iqr * iqr
    assert np.percentile(image[reference], 75) == pytest.approx(q3)
    return image, reference, q3, iqr


def _stops(max_value, q3, iqr, k):
    return max_value - (q3 + k * iqr) < iqr / 2


@pytest.mark.parametrize("gap, expected_k", [(3.52, 3.05), (2.26, 1.8), (5.0, 4.55)])
def test_adaptive_k_stops_at_known_k(gap, expected_k):
    image, reference, q3, iqr = _reference_with_max(gap)
    top = image[reference].max()
    # the k expected by hand: the first of 1.5, 1.55, ... with top - (Q3 + k IQR) < IQR/2
    t = compute_threshold(image, reference=reference, rule="q3-iqr")
    assert t.k == pytest.approx(expected_k)
    assert t.value == pytest.approx(q3 + expected_k * iqr)
    assert t.details["adaptive"] is True
    assert t.details["steps"] == round((expected_k - 1.5) / 0.05)
    assert _stops(top, q3, iqr, t.k)
    assert not _stops(top, q3, iqr, t.k - 0.05)
    # the threshold sits just under the brightest normal voxel
    assert q3 < t.value < top
    # 'adaptive' is the same as None
    assert compute_threshold(image, reference=reference, k="adaptive") == t


def test_adaptive_k_stays_at_1_5_when_already_satisfied():
    for gap in (1.9, 1.0):  # within IQR/2 of the max, or already above the max
        image, reference, q3, iqr = _reference_with_max(gap)
        t = compute_threshold(image, reference=reference)
        assert t.k == 1.5 and t.details["steps"] == 0
        assert t.value == pytest.approx(q3 + 1.5 * iqr)


def test_adaptive_k_is_capped_with_a_warning():
    image, reference, q3, iqr = _reference_with_max(100.0)
    with pytest.warns(BmevizWarning, match="cap"):
        t = compute_threshold(image, reference=reference)
    assert t.k == pytest.approx(20.0) and t.details["capped"] is True
    assert t.value == pytest.approx(q3 + 20.0 * iqr)


def test_adaptive_k_needs_a_nonzero_iqr():
    image = np.full((2, 10, 10), 100.0)
    image[0, 0, 0] = 300.0
    reference = np.ones(image.shape, bool)
    with pytest.raises(ParameterError, match="interquartile range of 0"):
        compute_threshold(image, reference=reference)


# ---------------------------------------------------------------------------------------
# hysteresis
# ---------------------------------------------------------------------------------------
def test_hysteresis_high_is_the_same_rule_at_high_k(scan):
    image, reference, _, _ = scan
    v = image[reference]
    q1, q3 = np.percentile(v, [25, 75])
    t = compute_threshold(image, reference=reference, rule="q3-iqr", k=1.5, high_k=3.0)
    assert t.high == pytest.approx(q3 + 3.0 * (q3 - q1))
    assert t.high >= t.value and t.details["high_k"] == 3.0
    t = compute_threshold(image, reference=reference, rule="mean-sd", k=2, high_k=4)
    assert t.high == pytest.approx(v.mean() + 4 * v.std(ddof=1)) and t.high >= t.value
    t = compute_threshold(image, reference=reference, rule="percentile", k=95, high_k=99.5)
    assert t.high == pytest.approx(np.percentile(v, 99.5)) and t.high >= t.value
    t = compute_threshold(image, reference=reference, k=1.5, high_k="adaptive")
    assert t.high >= t.value
    assert t.high == compute_threshold(image, reference=reference).value
    # equal k gives equal thresholds (allowed)
    t = compute_threshold(image, reference=reference, rule="mean-sd", k=2, high_k=2)
    assert t.high == t.value


def test_hysteresis_with_skimage_keeps_blob(scan):
    from skimage.filters import apply_hysteresis_threshold

    image, reference, region, blob = scan
    t = compute_threshold(image, reference=reference, rule="mean-sd", k=2.5, high_k=8)
    seg = apply_hysteresis_threshold(image, t.value, t.high) & region
    # the blob is kept; isolated noise voxels above the low threshold are not
    assert (seg & blob).sum() / blob.sum() > 0.99
    assert (seg & ~blob).sum() < ((image >= t.value) & region & ~blob).sum()


def test_hysteresis_high_below_low_is_an_error(scan):
    image, reference, _, _ = scan
    with pytest.raises(ParameterError, match="high_k"):
        compute_threshold(image, reference=reference, rule="mean-sd", k=3, high_k=2)
    with pytest.raises(ParameterError, match="high_k"):
        compute_threshold(image, reference=reference, rule="q3-iqr", k=15.0, high_k="adaptive")


def test_hysteresis_not_available_for_otsu(scan):
    image, _, region, _ = scan
    with pytest.raises(ParameterError, match="otsu"):
        compute_threshold(image, rule="otsu", region=region, high_k=2.0)


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------
def test_unknown_rule_lists_valid_ones(scan):
    image, reference, _, _ = scan
    with pytest.raises(ParameterError) as err:
        compute_threshold(image, reference=reference, rule="max-entropy")
    for r in RULES:
        assert r in str(err.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rule="q3-iqr", k=-0.5), "negative"),
        (dict(rule="mean-sd", k=-1), "negative"),
        (dict(rule="percentile", k=-1), "negative"),
        (dict(rule="percentile", k=0), r"\(0, 100\]"),
        (dict(rule="percentile", k=100.5), r"\(0, 100\]"),
        (dict(rule="mean-sd", k="adaptive"), "adaptive"),
        (dict(rule="q3-iqr", k="big"), "adaptive"),
        (dict(rule="q3-iqr", k=float("nan")), "finite"),
        (dict(rule="mean-sd", k=True), "number"),
        (dict(rule="mean-sd", k=2, high_k=-3), "negative"),
    ],
)
def test_bad_k(scan, kwargs, match):
    image, reference, _, _ = scan
    with pytest.raises(ParameterError, match=match):
        compute_threshold(image, reference=reference, **kwargs)


@pytest.mark.parametrize("rule", ["q3-iqr", "mean-sd", "percentile"])
def test_reference_required(scan, rule):
    image = scan[0]
    with pytest.raises(ParameterError, match="needs reference"):
        compute_threshold(image, rule=rule)


def test_mask_shape_and_emptiness_errors(scan):
    image, reference, region, _ = scan
    with pytest.raises(ParameterError, match="reference has shape"):
        compute_threshold(image, reference=reference[:-1])
    with pytest.raises(ParameterError, match="region has shape"):
        compute_threshold(image, reference=reference, region=region[:, :-1])
    with pytest.raises(ParameterError, match="region has shape"):
        compute_threshold(image, rule="otsu", region=region.T)
    with pytest.raises(ParameterError, match="region mask is empty"):
        compute_threshold(image, rule="otsu", region=np.zeros(image.shape, bool))
    with pytest.raises(ParameterError, match="reference mask is empty"):
        compute_threshold(image, reference=np.zeros(image.shape, bool))


def test_otsu_errors(scan):
    image, reference, region, _ = scan
    with pytest.raises(ParameterError, match="needs region"):
        compute_threshold(image, rule="otsu", reference=reference)
    with pytest.raises(ParameterError, match="k is not used"):
        compute_threshold(image, rule="otsu", region=region, k=2)
    with pytest.raises(ParameterError, match="two different"):
        compute_threshold(np.ones(image.shape), rule="otsu", region=region)


def test_region_is_only_checked_for_reference_rules(scan):
    image, reference, region, _ = scan
    assert compute_threshold(image, reference=reference, region=region) == compute_threshold(
        image, reference=reference
    )


def test_inputs_are_not_modified(scan):
    image, reference, region, _ = scan
    before = (image.copy(), reference.copy(), region.copy())
    compute_threshold(image, reference=reference, high_k=20.0)
    compute_threshold(image, rule="otsu", region=region)
    for a, b in zip(before, (image, reference, region)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------
# sphere_mask
# ---------------------------------------------------------------------------------------
def _brute_ball(shape, center, r, spacing):
    """Independent check: distance of every voxel centre (full-volume, small arrays)."""
    idx = np.indices(shape).astype(float)
    d2 = sum(((idx[a] - center[a]) * spacing[a]) ** 2 for a in range(len(shape)))
    return d2 <= r * r


@pytest.mark.parametrize("center", [(10, 40, 40), (10.4, 39.5, 40.25)])
def test_sphere_volume_anisotropic(center):
    spacing, r = (3.0, 0.5, 0.5), 10.0
    m = sphere_mask((21, 81, 81), center, r, spacing=spacing)
    volume = m.sum() * np.prod(spacing)
    assert volume == pytest.approx(4 / 3 * math.pi * r**3, rel=0.03)
    # extent: +-10 mm = +-3 slices of 3 mm, +-20 rows/cols of 0.5 mm
    zs = np.flatnonzero(m.any(axis=(1, 2)))
    assert zs.max() - zs.min() + 1 <= 7
    np.testing.assert_array_equal(m, _brute_ball(m.shape, center, r, spacing))


@pytest.mark.parametrize("center", [(0, 0, 0), (1, 5, 30), (9, 39, 39), (4.6, 0.2, 20)])
def test_sphere_clipped_at_border(center):
    shape, spacing, r = (10, 40, 40), (3.0, 0.5, 0.5), 10.0
    m = sphere_mask(shape, center, r, spacing=spacing)
    assert m.shape == shape and m.dtype == bool
    np.testing.assert_array_equal(m, _brute_ball(shape, center, r, spacing))
    assert m.sum() < 4 / 3 * math.pi * r**3 / np.prod(spacing)
    assert m[tuple(int(round(c)) for c in center)]


def test_sphere_tiny_radius_is_one_voxel():
    m = sphere_mask((5, 5, 5), (2, 2, 2), 0.1, spacing=(1.0, 1.0, 1.0))
    assert m.sum() == 1 and m[2, 2, 2]


def test_sphere_does_no_full_volume_work():
    shape = (200, 512, 512)
    tracemalloc.start()
    try:
        m = sphere_mask(shape, (100, 256, 256), 5.0, spacing=(3.0, 0.5, 0.5))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the output itself (52 MB of bool) and small box arrays; per-voxel float work over
    # the volume would need 8x more
    assert peak < 1.2 * m.nbytes
    assert m.sum() == _brute_ball((7, 41, 41), (3, 20, 20), 5.0, (3.0, 0.5, 0.5)).sum()


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (((10, 10, 10), (5, 5, 5), 0.0), dict(spacing=(1, 1, 1)), "radius_mm"),
        (((10, 10, 10), (5, 5, 5), -2.0), dict(spacing=(1, 1, 1)), "radius_mm"),
        (((10, 10, 10), (5, 5, 5), float("nan")), dict(spacing=(1, 1, 1)), "radius_mm"),
        (((10, 10, 10), (10, 5, 5), 2.0), dict(spacing=(1, 1, 1)), "outside"),
        (((10, 10, 10), (5, -1, 5), 2.0), dict(spacing=(1, 1, 1)), "outside"),
        (((10, 10, 10), (5, 5), 2.0), dict(spacing=(1, 1, 1)), "center"),
        (((10, 10, 10), (5, 5, 5), 2.0), dict(spacing=(1, 0, 1)), "spacing"),
        (((10, 10, 10), (5, 5, 5), 2.0), dict(spacing=(1, 1)), "spacing"),
        (((10, 0, 10), (5, 0, 5), 2.0), dict(spacing=(1, 1, 1)), "shape"),
    ],
)
def test_sphere_errors(args, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        sphere_mask(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# real data: SIJ STIR with a normal-marrow reference (Hepburn et al.)
# ---------------------------------------------------------------------------------------
@pytest.mark.shared_data
def test_adaptive_q3_iqr_on_real_sij_stir():
    image_path = SIJ / "images" / "1013_STIR.nii.gz"
    ref_path = SIJ / "normal_marrow" / "1013_normal_marrow.nii.gz"
    if not (image_path.exists() and ref_path.exists()):
        pytest.skip(f"real SIJ STIR data not found under {SIJ} (shared data folder absent)")
    nib = pytest.importorskip("nibabel")
    image = nib.load(image_path).get_fdata()  # applies scl_slope
    reference = nib.load(ref_path).get_fdata() > 0
    t = compute_threshold(image, reference=reference, rule="q3-iqr")
    v = image[reference]
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    assert t.stats.n == reference.sum() > 1000
    assert t.stats.q3 == pytest.approx(q3)
    assert t.value > q3
    assert t.k >= 1.5 and t.details["adaptive"] and not t.details["capped"]
    assert t.value == pytest.approx(q3 + t.k * iqr)
    assert _stops(v.max(), q3, iqr, t.k)
    if t.k > 1.5:
        assert not _stops(v.max(), q3, iqr, t.k - 0.05)


def test_adaptive_top_max_is_the_published_rule_and_a_percentile_is_robust():
    rng = np.random.default_rng(7)
    img = rng.normal(300, 30, (4, 30, 30))
    ref = np.ones(img.shape, bool)
    published = compute_threshold(img, reference=ref)
    assert compute_threshold(img, reference=ref, adaptive_top="max").value == published.value
    assert compute_threshold(img, reference=ref, adaptive_top=100).value == published.value
    p99 = compute_threshold(img, reference=ref, adaptive_top=99)
    assert p99.details["top"] == "p99" and published.details["top"] == "max"
    assert p99.stats.q3 + p99.k * p99.stats.iqr == pytest.approx(p99.value)
    # one bright voxel (a vessel) per 3600 moves the published threshold, not the p99 one
    img[1, 15, 15] = 3000
    assert compute_threshold(img, reference=ref).value > 2 * published.value
    assert compute_threshold(img, reference=ref, adaptive_top=99).value == pytest.approx(p99.value, rel=0.01)
    for bad in (49, 101, "p99", True):
        with pytest.raises(ParameterError, match="adaptive_top"):
            compute_threshold(img, reference=ref, adaptive_top=bad)
