"""Tests of bmeviz.grow: seeded region growing on synthetic STIR-like volumes.

Dark marrow ~N(100, 10), bright lesions ~N(300, 20), brighter joint fluid ~N(450, 30),
anisotropic spacing (3, 0.6, 0.6) mm. Masks are compared with independent references
(skimage.segmentation.flood on the thresholded array, SimpleITK ConnectedThreshold).
"""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import flood

import bmeviz.grow as grow_module
from bmeviz.errors import BmevizWarning, ParameterError
from bmeviz.grow import GrowResult, confidence_grow, grow, grow_all

SPACING = (3.0, 0.6, 0.6)
LOW = 200.0
_FLOOD_CONN = {6: 1, 18: 2, 26: 3}


# -- synthetic data ------------------------------------------------------------------------


def marrow(shape, rng):
    return (100 + 10 * rng.standard_normal(shape)).astype(np.float32)


def ellipsoid(shape, center, semi_axes_mm, spacing=SPACING):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) * s / a) ** 2
               for g, c, s, a in zip(grids, center, spacing, semi_axes_mm)) <= 1


def add_lesion(img, mask, rng, mean=300.0, sd=20.0):
    img[mask] = mean + sd * rng.standard_normal(int(mask.sum()))
    return img


def ball_mm(shape, center, radius_mm, spacing=SPACING):
    return ellipsoid(shape, center, (radius_mm,) * 3, spacing)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def lesion_case(rng):
    """One ellipsoid lesion (~8000 voxels) in dark marrow."""
    shape = (24, 128, 128)
    truth = ellipsoid(shape, (12, 64, 64), (15.0, 12.0, 12.0))
    img = add_lesion(marrow(shape, rng), truth, rng)
    return img, truth, (12, 64, 64)


def random_field(shape, rng, sigma=(0.7, 3.0, 3.0)):
    """Irregular bright blobs of all sizes: many components, some winding past any crop."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (100 + 200 * (field > 0.02 * field.std())
            + 10 * rng.standard_normal(shape)).astype(np.float32)


def reference_flood(img, seed, connectivity, low=LOW, high=None, region=None):
    thr = img >= low
    if high is not None:
        thr &= img <= high
    if region is not None:
        thr &= region
    if not thr[tuple(seed)]:
        return np.zeros(img.shape, bool)
    return flood(thr, tuple(seed), connectivity=_FLOOD_CONN[connectivity])


# -- agreement with independent references -------------------------------------------------


def test_single_lesion_exact(lesion_case):
    img, truth, seed = lesion_case
    res = grow(img, seed, low=LOW, spacing=SPACING)
    assert isinstance(res, GrowResult)
    assert res.mask.dtype == bool and res.mask.shape == img.shape
    assert res.seed_labels.dtype == np.int32
    np.testing.assert_array_equal(res.mask, truth)
    np.testing.assert_array_equal(res.seed_labels, truth.astype(np.int32))
    assert res.voxels == (int(truth.sum()),)
    assert res.leaked == (False,) and res.below == (False,)
    assert res.seeds.tolist() == [list(seed)]
    assert res.low == LOW and res.high is None
    assert res.volume_ml == pytest.approx(truth.sum() * np.prod(SPACING) / 1000)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_matches_skimage_flood_on_irregular_components(rng, connectivity):
    # Components wind in and out of the first crop: the crop-growing must find exactly
    # what a whole-volume flood finds, for every seed we try.
    img = random_field((24, 160, 160), rng)
    thr = img >= LOW
    labels, n = ndi.label(thr, ndi.generate_binary_structure(3, 3))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    biggest = np.argsort(sizes)[::-1][:4]  # the largest components, beyond any first crop
    seeds = [np.argwhere(labels == lab)[len(np.argwhere(labels == lab)) // 2] for lab in biggest]
    seeds += list(rng.integers(0, img.shape, size=(6, 3)))  # and random voxels
    assert sizes[biggest[0]] > 32**3  # the test exercises crop growth
    for seed in seeds:
        res = grow(img, seed, low=LOW, connectivity=connectivity, spacing=SPACING)
        np.testing.assert_array_equal(
            res.mask, reference_flood(img, seed, connectivity), err_msg=f"seed {seed}"
        )


@pytest.mark.parametrize("connectivity", [6, 26])
def test_matches_simpleitk_connected_threshold(rng, connectivity):
    sitk = pytest.importorskip("SimpleITK")
    img = random_field((20, 128, 128), rng)
    high = 315.0  # exercise the upper bound too (some blob voxels exceed it)
    candidates = np.argwhere((img >= 290) & (img <= 300))
    seed = tuple(int(v) for v in candidates[len(candidates) // 2])
    res = grow(img, seed, low=LOW, high=high, connectivity=connectivity, spacing=SPACING)
    f = sitk.ConnectedThresholdImageFilter()
    f.SetSeedList([seed[::-1]])
    f.SetLower(LOW)
    f.SetUpper(high)
    f.SetReplaceValue(1)
    f.SetConnectivity(f.FullConnectivity if connectivity == 26 else f.FaceConnectivity)
    ref = sitk.GetArrayFromImage(f.Execute(sitk.GetImageFromArray(img))).astype(bool)
    assert ref.sum() > 1
    np.testing.assert_array_equal(res.mask, ref)


def test_connectivity_changes_result():
    img = np.full((3, 5, 5), 100.0, np.float32)
    img[1, 1, 1] = img[1, 2, 2] = 300  # diagonal neighbours (edge-connected in-plane)
    assert grow(img, (1, 1, 1), low=LOW, connectivity=6).voxels == (1,)
    assert grow(img, (1, 1, 1), low=LOW, connectivity=18).voxels == (2,)
    img[1, 2, 2] = 100
    img[2, 2, 2] = 300  # corner neighbour
    assert grow(img, (1, 1, 1), low=LOW, connectivity=18).voxels == (1,)
    assert grow(img, (1, 1, 1), low=LOW, connectivity=26).voxels == (2,)


# -- crop growth ---------------------------------------------------------------------------


def test_lesion_larger_than_first_crop(rng):
    shape = (30, 160, 160)
    img = marrow(shape, rng)
    truth = np.zeros(shape, bool)
    truth[5:25, 30:130, 30:130] = True  # 20 x 100 x 100 voxels = 200 000
    add_lesion(img, truth, rng)
    res = grow(img, (15, 80, 80), low=LOW, spacing=SPACING)
    np.testing.assert_array_equal(res.mask, truth)
    # even from a corner of the lesion
    res = grow(img, (5, 30, 129), low=LOW, spacing=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(res.mask, truth)


def test_component_leaving_and_reentering_the_crop(rng):
    # A thin C-shaped tube: from the seed it leaves any small crop, turns, and comes back
    # right next to the seed. The part near the seed must be found through the long way.
    shape = (9, 200, 200)
    img = marrow(shape, rng)
    tube = np.zeros(shape, bool)
    tube[4, 100, 100:190] = True   # out to the right
    tube[4, 100:106, 189] = True   # down
    tube[4, 105, 102:190] = True   # back to near the seed
    tube[4, 105, 102] = True
    add_lesion(img, tube, rng)
    res = grow(img, (4, 100, 100), low=LOW, connectivity=6, spacing=(1.0, 0.1, 0.1))
    np.testing.assert_array_equal(res.mask, tube)


def test_cost_follows_the_lesion(monkeypatch, rng):
    # A ~1000-voxel lesion in a big volume: the voxels labelled stay near the lesion.
    shape = (40, 256, 256)
    img = marrow(shape, rng)
    truth = ellipsoid(shape, (20, 128, 128), (6.0, 6.0, 6.0))
    add_lesion(img, truth, rng)
    seen = []
    real_label = ndi.label

    def spy(arr, *args, **kwargs):
        seen.append(arr.size)
        return real_label(arr, *args, **kwargs)

    monkeypatch.setattr(grow_module.ndi, "label", spy)
    res = grow(img, (20, 128, 128), low=LOW, spacing=SPACING)
    np.testing.assert_array_equal(res.mask, truth)
    assert 500 < truth.sum() < 2000
    assert sum(seen) < 0.02 * img.size


def test_integer_and_noncontiguous_images(lesion_case):
    img, truth, seed = lesion_case
    as_int = np.round(img).astype(np.uint16)
    np.testing.assert_array_equal(grow(as_int, seed, low=LOW).mask, truth)
    fortran = np.asfortranarray(img)
    np.testing.assert_array_equal(grow(fortran, seed, low=LOW).mask, truth)
    flipped = img[:, ::-1, :]
    res = grow(flipped, (seed[0], img.shape[1] - 1 - seed[1], seed[2]), low=LOW)
    np.testing.assert_array_equal(res.mask, truth[:, ::-1, :])


def test_nan_voxels_never_grow(lesion_case):
    img, truth, seed = lesion_case
    img = img.copy()
    img[12, 64, 60] = np.nan
    res = grow(img, seed, low=LOW)
    assert not res.mask[12, 64, 60]
    assert res.voxels == (int(truth.sum()) - 1,)
    assert grow(img, (12, 64, 60), low=LOW).below == (True,)


def test_accepts_volume(lesion_case):
    from bmeviz.volume import Volume

    img, truth, seed = lesion_case
    vol = Volume(img, np.diag([*SPACING, 1.0]))
    np.testing.assert_array_equal(grow(vol, seed, low=LOW, spacing=vol.spacing).mask, truth)


@pytest.mark.parametrize("max_volume_ml", [None, 0.5])
def test_many_seeds_hysteresis_style(monkeypatch, rng, max_volume_ml):
    # The pipeline passes every strong-core voxel as a seed: thousands of seeds in many
    # components. The result is the union of the components that hold a seed, whether the
    # seeds are served by crops or (after much work) by one whole-volume labelling.
    img = random_field((20, 128, 128), rng)
    seeds = np.argwhere(img >= 320)
    assert len(seeds) > 1000
    labels, _ = ndi.label(img >= LOW, ndi.generate_binary_structure(3, 3))
    sizes = np.bincount(labels.ravel())
    hit = np.unique(labels[tuple(seeds.T)])
    if max_volume_ml is not None:
        too_big = sizes * np.prod(SPACING) / 1000 > max_volume_ml
        assert too_big[hit].any() and not too_big[hit].all()
        hit = hit[~too_big[hit]]
    expected = np.isin(labels, hit)
    results = []
    for after in (1e9, 1.0, 0.0):  # crops only, default switch, whole volume at once
        monkeypatch.setattr(grow_module, "_WHOLE_VOLUME_AFTER", after)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BmevizWarning)
            res = grow(img, seeds, low=LOW, spacing=SPACING, max_volume_ml=max_volume_ml)
        np.testing.assert_array_equal(res.mask, expected)
        assert sum(res.voxels) == int(expected.sum())
        results.append(res)
    for res in results[1:]:
        np.testing.assert_array_equal(res.seed_labels, results[0].seed_labels)
        assert res.leaked == results[0].leaked and res.voxels == results[0].voxels


# -- region, upper bound -------------------------------------------------------------------


@pytest.fixture
def lesion_by_fluid(rng):
    """A lesion in the bone (rows < 64) touching bright joint fluid outside it (rows >= 64)."""
    shape = (20, 96, 96)
    img = marrow(shape, rng)
    bone = np.zeros(shape, bool)
    bone[:, :64, :] = True
    lesion = ellipsoid(shape, (10, 56, 48), (12.0, 6.0, 9.0)) & bone
    fluid = np.zeros(shape, bool)
    fluid[4:16, 64:72, 20:76] = True
    add_lesion(img, lesion, rng)
    add_lesion(img, fluid, rng, mean=450, sd=30)
    assert lesion[:, 63].any()  # it does touch the fluid
    return img, lesion, fluid, bone


def test_region_excludes_fluid(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    seed = (10, 56, 48)
    inside = grow(img, seed, low=LOW, region=bone, spacing=SPACING)
    np.testing.assert_array_equal(inside.mask, lesion)
    np.testing.assert_array_equal(
        inside.mask, reference_flood(img, seed, 26, region=bone)
    )
    # a uint8 region works the same
    np.testing.assert_array_equal(
        grow(img, seed, low=LOW, region=bone.astype(np.uint8)).mask, lesion
    )
    # without the region the lesion runs into the fluid
    outside = grow(img, seed, low=LOW, spacing=SPACING)
    np.testing.assert_array_equal(outside.mask, lesion | fluid)


def test_high_keeps_bright_fluid_out(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    res = grow(img, (10, 56, 48), low=LOW, high=380, spacing=SPACING)
    assert res.high == 380.0
    np.testing.assert_array_equal(res.mask, reference_flood(img, (10, 56, 48), 26, high=380))
    assert res.mask[lesion].mean() > 0.99 and res.mask[fluid].mean() < 0.01


def test_seed_outside_region_is_below(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    res = grow(img, [(10, 66, 48), (10, 56, 48)], low=LOW, region=bone)
    assert res.below == (True, False)
    assert res.voxels == (0, int(lesion.sum()))


# -- leak guards ---------------------------------------------------------------------------


@pytest.fixture
def fluid_and_lesion(rng):
    """A huge bright fluid slab and, apart from it, a real lesion."""
    shape = (30, 256, 256)
    img = marrow(shape, rng)
    fluid = np.zeros(shape, bool)
    fluid[:, 100:, :] = True  # 1.2 M voxels, 1.3 L at this spacing
    lesion = ellipsoid(shape, (15, 60, 128), (9.0, 6.0, 6.0))
    add_lesion(img, fluid, rng, mean=450, sd=30)
    add_lesion(img, lesion, rng)
    return img, fluid, lesion


def test_max_volume_stops_leak(monkeypatch, fluid_and_lesion):
    img, fluid, lesion = fluid_and_lesion
    seen = []
    real_label = ndi.label

    def spy(arr, *args, **kwargs):
        seen.append(arr.size)
        return real_label(arr, *args, **kwargs)

    monkeypatch.setattr(grow_module.ndi, "label", spy)
    with pytest.warns(BmevizWarning, match=r"seed 1 at \(15, 200, 128\).*max_volume_ml=5 mL"
                      r".*region="):
        res = grow(img, [(15, 200, 128), (15, 60, 128)], low=LOW, spacing=SPACING,
                   max_volume_ml=5.0)
    assert res.leaked == (True, False)
    assert res.below == (False, False)
    assert res.voxels == (0, int(lesion.sum()))
    assert not (res.seed_labels == 1).any()
    np.testing.assert_array_equal(res.mask, lesion)
    np.testing.assert_array_equal(res.seed_labels == 2, lesion)
    # it stopped early: each crop, and all of them, far smaller than the fluid
    assert max(seen) < 0.05 * fluid.sum() and sum(seen) < 0.1 * fluid.sum()


def test_max_volume_more_seeds_in_same_leak(fluid_and_lesion):
    img, fluid, lesion = fluid_and_lesion
    seeds = [(15, 200, 128), (15, 201, 128), (15, 60, 128), (3, 250, 10)]
    with pytest.warns(BmevizWarning, match=r"seeds 1 at .*, 2 at .*, 4 at .*\(of 4\)"):
        res = grow(img, seeds, low=LOW, spacing=SPACING, max_volume_ml=5.0)
    assert res.leaked == (True, True, False, True)
    np.testing.assert_array_equal(res.mask, lesion)


def test_max_volume_not_reached_is_silent(lesion_case):
    img, truth, seed = lesion_case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = grow(img, seed, low=LOW, spacing=SPACING, max_volume_ml=1000.0)
    np.testing.assert_array_equal(res.mask, truth)


def test_max_radius_confines(fluid_and_lesion):
    img, fluid, lesion = fluid_and_lesion
    seed = (15, 200, 128)
    with pytest.warns(BmevizWarning, match=r"seed 1 at \(15, 200, 128\).*max_radius_mm=10 mm"):
        res = grow(img, seed, low=LOW, spacing=SPACING, max_radius_mm=10.0)
    ball = ball_mm(img.shape, seed, 10.0)
    assert res.leaked == (True,)
    np.testing.assert_array_equal(res.mask, ball & fluid)  # confined region kept
    # a lesion smaller than the ball is not a leak
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = grow(img, (15, 60, 128), low=LOW, spacing=SPACING, max_radius_mm=15.0)
    assert res.leaked == (False,)
    np.testing.assert_array_equal(res.mask, lesion)


def test_both_guards_name_their_seeds(fluid_and_lesion):
    img, fluid, lesion = fluid_and_lesion
    # In a big ball the fluid exceeds the volume limit; in a small one it does not, but it
    # goes on past the ball; the lesion (1.4 mL, semi-axes <= 9 mm) fits both.
    seeds = [(15, 200, 128), (15, 200, 128), (15, 60, 128)]
    with pytest.warns(BmevizWarning) as caught:
        res = grow(img, seeds[:1] + seeds[2:], low=LOW, spacing=SPACING, max_volume_ml=2.0,
                   max_radius_mm=40.0)
    assert res.leaked == (True, False)
    assert "seed 1 at (15, 200, 128) (of 2) grew past max_volume_ml=2 mL" in str(caught[0].message)
    with pytest.warns(BmevizWarning) as caught:
        res = grow(img, seeds[1:], low=LOW, spacing=SPACING, max_volume_ml=5.0,
                   max_radius_mm=10.0)  # the 10 mm ball holds 4.2 mL
    assert res.leaked == (True, False)
    message = str(caught[0].message)
    assert "seed 1 at (15, 200, 128) (of 2) reached the edge of max_radius_mm=10 mm" in message
    assert "max_volume_ml" not in message
    np.testing.assert_array_equal(res.seed_labels == 1, ball_mm(img.shape, seeds[1], 10.0) & fluid)
    np.testing.assert_array_equal(res.seed_labels == 2, lesion)


def test_max_radius_is_spacing_aware(rng):
    shape = (20, 100, 100)
    img = np.full(shape, 300.0, np.float32)
    seed = (10, 50, 50)
    with pytest.warns(BmevizWarning):
        res = grow(img, seed, low=LOW, spacing=SPACING, max_radius_mm=6.0)
    # 6 mm: two slices each way at 3 mm, ten rows/columns each way at 0.6 mm
    idx = np.argwhere(res.mask)
    assert idx[:, 0].min() == 8 and idx[:, 0].max() == 12
    assert idx[:, 1].min() == 40 and idx[:, 1].max() == 60
    np.testing.assert_array_equal(res.mask, ball_mm(shape, seed, 6.0))


def test_radius_overlap_first_seed_wins(rng):
    img = np.full((5, 40, 40), 300.0, np.float32)
    with pytest.warns(BmevizWarning):
        res = grow(img, [(2, 20, 15), (2, 20, 25)], low=LOW, max_radius_mm=7.0)
    a, b = ball_mm(img.shape, (2, 20, 15), 7.0, (1, 1, 1)), ball_mm(img.shape, (2, 20, 25), 7.0,
                                                                      (1, 1, 1))
    np.testing.assert_array_equal(res.mask, a | b)
    np.testing.assert_array_equal(res.seed_labels == 1, a)
    np.testing.assert_array_equal(res.seed_labels == 2, b & ~a)
    assert res.voxels == (int(a.sum()), int((b & ~a).sum()))


# -- seeds ---------------------------------------------------------------------------------


def test_below_threshold_seed(lesion_case):
    img, truth, seed = lesion_case
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = grow(img, [(0, 0, 0), seed], low=LOW)
    assert res.below == (True, False)
    assert res.leaked == (False, False)
    assert res.voxels == (0, int(truth.sum()))
    res = grow(img, seed, low=LOW, high=250)  # the seed itself above high
    assert res.below == (True,) and not res.mask.any()


def test_seed_order_invariance(rng):
    shape = (24, 128, 128)
    img = marrow(shape, rng)
    centers = [(6, 30, 30), (12, 64, 90), (18, 100, 40)]
    lesions = [ellipsoid(shape, c, (9.0, 5.0, 5.0)) for c in centers]
    for les in lesions:
        add_lesion(img, les, rng)
    seeds = [(6, 30, 30), (12, 64, 90), (18, 100, 40), (6, 31, 30), (0, 0, 0), (12, 64, 91)]
    union = lesions[0] | lesions[1] | lesions[2]
    for perm in itertools.islice(itertools.permutations(seeds), 0, None, 97):
        res = grow(img, perm, low=LOW, spacing=SPACING)
        np.testing.assert_array_equal(res.mask, union)
        assert sum(res.voxels) == int(union.sum())
        np.testing.assert_array_equal(res.seed_labels > 0, union)


def test_merged_seed_gets_no_voxels(lesion_case):
    img, truth, seed = lesion_case
    res = grow(img, [seed, (12, 64, 65)], low=LOW)
    assert res.voxels == (int(truth.sum()), 0)
    assert res.merged_into() == (1, 1)
    assert set(np.unique(res.seed_labels)) == {0, 1}


def test_float_seeds_are_rounded(lesion_case):
    img, truth, seed = lesion_case
    res = grow(img, np.array([[11.6, 64.4, 63.5]]), low=LOW)
    assert res.seeds.tolist() == [[12, 64, 64]]
    assert np.issubdtype(res.seeds.dtype, np.integer)
    np.testing.assert_array_equal(res.mask, truth)


def test_no_seeds(lesion_case):
    img, _, _ = lesion_case
    res = grow(img, np.empty((0, 3)), low=LOW)
    assert res.voxels == () and not res.mask.any() and res.seeds.shape == (0, 3)


def test_to_dict_is_json(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    res = grow(img, [(10, 56, 48), (0, 0, 0)], low=LOW, region=bone, spacing=SPACING)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["n_seeds"] == 2
    assert d["seeds"] == [[10, 56, 48], [0, 0, 0]]
    assert d["voxels"] == [int(lesion.sum()), 0]
    assert d["below"] == [False, True] and d["leaked"] == [False, False]
    assert d["total_volume_ml"] == pytest.approx(lesion.sum() * 3 * 0.36 / 1000)
    assert d["low"] == LOW and d["high"] is None
    assert d["merged_into"] == [1, 0]


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(seeds=[(5, 10, 10), (30, 10, 10)]),
         r"seed 2 at \(30, 10, 10\).*shape \(24, 32, 32\)"),
        (dict(seeds=[(5, -1, 10)]), r"seed 1 .*outside"),
        (dict(seeds=[(5, 10)]), r"seeds .*shape \(1, 2\)"),
        (dict(seeds=np.zeros((2, 3, 1))), r"seeds .*shape"),
        (dict(seeds="abc"), r"seeds"),
        (dict(seeds=[(5, np.nan, 3)]), r"seed 1 .*NaN"),
        (dict(region=np.ones((24, 32, 31), bool)), r"region shape"),
        (dict(region=np.zeros((24, 32, 32), bool)), r"region is empty"),
        (dict(connectivity=4), r"connectivity"),
        (dict(connectivity=8), r"connectivity"),
        (dict(connectivity=True), r"connectivity"),
        (dict(low=np.nan), r"low"),
        (dict(low="bright"), r"low"),
        (dict(high=np.nan), r"high"),
        (dict(low=300, high=200), r"high .*low"),
        (dict(spacing=(1, 1)), r"spacing"),
        (dict(spacing=(1, 0, 1)), r"spacing"),
        (dict(max_volume_ml=0), r"max_volume_ml"),
        (dict(max_volume_ml=-3), r"max_volume_ml"),
        (dict(max_radius_mm=np.inf), r"max_radius_mm"),
    ],
)
def test_bad_input(kwargs, match):
    img = np.full((24, 32, 32), 300.0, np.float32)
    args = dict(seeds=(5, 10, 10), low=LOW)
    args.update(kwargs)
    seeds = args.pop("seeds")
    with pytest.raises(ParameterError, match=match):
        grow(img, seeds, **args)


@pytest.mark.parametrize(
    "image", [np.zeros((32, 32)), np.zeros((2, 8, 8, 8)), np.zeros((0, 8, 8)),
              np.zeros((4, 8, 8), complex), np.array([["a"] * 8] * 8)]
)
def test_bad_image(image):
    with pytest.raises(ParameterError, match="image"):
        grow(image, (0, 0, 0), low=LOW)
    with pytest.raises(ParameterError, match="image"):
        grow_all(image, low=LOW)
    with pytest.raises(ParameterError, match="image"):
        confidence_grow(image, (0, 0, 0))


def test_bad_input_raises_before_growing_other_functions():
    img = np.full((4, 8, 8), 300.0, np.float32)
    with pytest.raises(ParameterError, match="connectivity"):
        grow_all(img, low=LOW, connectivity=5)
    with pytest.raises(ParameterError, match="region is empty"):
        grow_all(img, low=LOW, region=np.zeros(img.shape, bool))
    with pytest.raises(ParameterError, match="low"):
        grow_all(img, low=np.nan)
    with pytest.raises(ParameterError, match="k"):
        confidence_grow(img, (1, 1, 1), k=-1)
    with pytest.raises(ParameterError, match="iterations"):
        confidence_grow(img, (1, 1, 1), iterations=-1)
    with pytest.raises(ParameterError, match="iterations"):
        confidence_grow(img, (1, 1, 1), iterations=1.5)
    with pytest.raises(ParameterError, match="initial_radius_mm"):
        confidence_grow(img, (1, 1, 1), initial_radius_mm=0)
    with pytest.raises(ParameterError, match=r"seed 1 .*outside"):
        confidence_grow(img, (9, 1, 1))
    with pytest.raises(ParameterError, match="region is empty"):
        confidence_grow(img, (1, 1, 1), region=np.zeros(img.shape, bool))


def test_input_not_modified(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    before, bone_before = img.copy(), bone.copy()
    with pytest.warns(BmevizWarning, match="max_radius_mm"):
        grow(img, (10, 56, 48), low=LOW, region=bone, max_radius_mm=5)
    confidence_grow(img, (10, 56, 48), region=bone)
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(bone, bone_before)


# -- grow_all ------------------------------------------------------------------------------


def test_grow_all(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    np.testing.assert_array_equal(grow_all(img, low=LOW), lesion | fluid)
    np.testing.assert_array_equal(grow_all(img, low=LOW, region=bone), lesion)
    np.testing.assert_array_equal(grow_all(img, low=LOW, high=380), (img >= LOW) & (img <= 380))
    for connectivity in (6, 18, 26):
        assert grow_all(img, low=LOW, connectivity=connectivity).dtype == bool


# -- confidence_grow ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confidence_grow_soft_edged_lesion(seed):
    rng = np.random.default_rng(seed)
    shape = (24, 128, 128)
    center = (12, 64, 64)
    truth = ellipsoid(shape, center, (15.0, 12.0, 12.0))
    # soft edge: the lesion's indicator blurred by 1.5 mm in every direction
    soft = ndi.gaussian_filter(truth.astype(np.float32), (0.5, 2.5, 2.5))
    img = (100 + 200 * soft + 10 * rng.standard_normal(shape)
           + 20 * soft * rng.standard_normal(shape)).astype(np.float32)
    res = confidence_grow(img, center, spacing=SPACING)
    assert abs(res.mask.sum() / truth.sum() - 1) < 0.10
    assert res.low < 300 < res.high
    assert res.leaked == (False,) and res.below == (False,)
    # the final pass is an ordinary grow with the final range
    np.testing.assert_array_equal(
        res.mask, grow(img, center, low=res.low, high=res.high, spacing=SPACING).mask
    )


def test_confidence_grow_several_seeds_and_region(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    res = confidence_grow(img, [(10, 56, 48), (10, 60, 44)], k=4, region=bone, spacing=SPACING)
    assert res.voxels[1] == 0 and res.merged_into() == (1, 1)
    assert abs(res.mask.sum() / lesion.sum() - 1) < 0.02
    assert not (res.mask & fluid).any()


def test_confidence_grow_no_iterations_uses_seed_ball(lesion_case):
    img, truth, seed = lesion_case
    res = confidence_grow(img, seed, k=3, iterations=0, initial_radius_mm=3.0,
                          spacing=SPACING)
    r = ball_mm(img.shape, seed, 3.0)
    values = img[r].astype(float)
    assert res.low == pytest.approx(values.mean() - 3 * values.std())
    assert res.high == pytest.approx(values.mean() + 3 * values.std())


def test_confidence_grow_seed_outside_region(lesion_by_fluid):
    img, lesion, fluid, bone = lesion_by_fluid
    res = confidence_grow(img, (10, 70, 48), region=bone)
    assert res.below == (True,) and not res.mask.any()
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["low"] is None and d["high"] is None


def test_confidence_grow_leak_guard(fluid_and_lesion):
    img, fluid, lesion = fluid_and_lesion
    with pytest.warns(BmevizWarning, match="max_volume_ml"):
        res = confidence_grow(img, (15, 200, 128), spacing=SPACING, max_volume_ml=2.0)
    assert res.leaked == (True,) and not res.mask.any()


def test_bbox_bounds_the_grown_mask_exactly():
    """segment() trusts GrowResult.bbox to crop its clean-up and table: it must hold the whole mask."""
    rng = np.random.default_rng(3)
    img = rng.normal(100, 10, size=(30, 80, 90)).astype(np.float32)
    img[5:9, 10:30, 20:25] = 400
    img[20:26, 50:70, 60:85] = 400
    res = grow(img, [(6, 15, 22), (22, 60, 70)], low=250)
    inside = np.zeros_like(res.mask)
    inside[res.bbox] = True
    assert res.mask.any() and not (res.mask & ~inside).any()  # the box holds the whole mask
    z, y, x = np.nonzero(res.mask)
    exact = [(z.min(), z.max() + 1), (y.min(), y.max() + 1), (x.min(), x.max() + 1)]
    for sl, (lo, hi) in zip(res.bbox, exact):  # and no more than the lesions' neighbourhood
        assert lo - 2 <= sl.start <= lo and hi <= sl.stop <= hi + 2
    assert grow(img, [(0, 0, 0)], low=250).bbox is None
