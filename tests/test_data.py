"""Tests of bmeviz.data: the synthetic STIR phantom and the shipped sample."""

from __future__ import annotations

import csv
import math

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bmeviz.data import (
    SAMPLE_FILES,
    SAMPLE_PARAMS,
    SCALE,
    SIGNAL,
    TISSUE,
    Phantom,
    load_sample,
    make_phantom,
    sample_path,
    write_sample,
)
from bmeviz.errors import ParameterError
from bmeviz.volume import Volume

CUBE = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity

# a small, fast phantom: the full anatomy on a coarse in-plane grid
SMALL = {"shape": (20, 96, 96), "spacing": (3.0, 1.4, 1.4)}


@pytest.fixture(scope="module")
def ph() -> Phantom:
    return make_phantom()


@pytest.fixture(scope="module")
def clean() -> Phantom:
    return make_phantom(noise=0.0)


def _mm_distance_to(mask: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest voxel of ``mask``."""
    return ndimage.distance_transform_edt(~mask, sampling=spacing)


# -- determinism and bookkeeping ------------------------------------------------------------
def test_same_seed_same_phantom():
    a = make_phantom(seed=7, **SMALL)
    b = make_phantom(seed=7, **SMALL)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(a.volume.affine, b.volume.affine)
    for name in ("truth", "bone", "reference", "fluid", "seeds", "fluid_seed", "reference_point", "tissue"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.lesion_volumes_ml == b.lesion_volumes_ml
    c = make_phantom(seed=8, **SMALL)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_types_and_metadata(ph):
    vol = ph.volume
    assert isinstance(vol, Volume)
    assert vol.shape == (32, 192, 192)
    assert vol.dtype == np.float32
    assert np.allclose(vol.spacing, (3.0, 0.7, 0.7), atol=1e-6)
    assert ph.truth.dtype == np.int32 and ph.truth.shape == vol.shape
    for name in ("bone", "reference", "fluid"):
        mask = getattr(ph, name)
        assert mask.dtype == bool and mask.shape == vol.shape, name
    assert ph.seeds.shape == (4, 3) and np.issubdtype(ph.seeds.dtype, np.integer)
    assert ph.fluid_seed.shape == (3,) and ph.reference_point.shape == (3,)
    md = vol.metadata
    assert md["description"] == "Synthetic STIR phantom"
    assert md["sequence"] == "STIR"
    assert md["manufacturer"] == "bmeviz phantom"
    assert md["phantom"]["seed"] == 0 and len(md["phantom"]["lesions"]) == 4
    import json

    json.dumps(md)  # serialisable, like a loader's metadata


def test_geometry_is_oblique_sagittal_and_not_diagonal(ph):
    aff = ph.volume.affine
    off_diagonal = aff[:3, :3] - np.diag(np.diag(aff[:3, :3]))
    assert np.abs(off_diagonal).max() > 0.1
    assert np.abs(aff[:3, 3]).max() > 1.0  # an origin offset
    assert ph.volume.plane == "sagittal"
    normal = aff[:3, 0] / np.linalg.norm(aff[:3, 0])
    assert 2.0 < math.degrees(math.acos(abs(normal[0]))) < 10.0  # tilted, still sagittal
    # exactly representable in float32, so NIfTI sforms round-trip it bit for bit
    assert np.array_equal(aff, aff.astype(np.float32).astype(np.float64))


def test_lesion_volumes_are_voxel_counts(ph):
    voxel_ml = abs(np.linalg.det(ph.volume.affine[:3, :3])) / 1000.0
    counts = np.bincount(ph.truth.ravel(), minlength=5)[1:]
    assert ph.lesion_volumes_ml == pytest.approx(tuple(counts * voxel_ml), rel=1e-12)
    assert len(ph.lesion_volumes_ml) == int(ph.truth.max()) == 4
    # the default set spans the sizes asked for: ~0.5, ~1.5, ~4, ~10 mL
    vols = sorted(ph.lesion_volumes_ml)
    for got, want in zip(vols, (0.5, 1.5, 4.0, 10.0)):
        assert want * 0.75 < got < want * 1.25, (got, want)
    for meta, vol in zip(ph.volume.metadata["phantom"]["lesions"], ph.lesion_volumes_ml):
        assert meta["truth_volume_ml"] == vol


def test_sphere_volume_matches_geometry():
    """A plain spherical lesion deep in marrow has the volume of its 50 % surface."""
    r = 9.0
    ph = make_phantom(lesions=[{"center_index": (16, 130, 100), "radii_mm": (r, r, r), "edge_mm": 2.0}],
                      noise=0.0)
    want = 4.0 / 3.0 * math.pi * r**3 / 1000.0
    assert ph.lesion_volumes_ml[0] == pytest.approx(want, rel=0.04)


# -- anatomy and masks ---------------------------------------------------------------------
def test_lesions_lie_inside_bone_marrow(ph):
    lesion = ph.truth > 0
    assert lesion.any()
    assert ph.bone[lesion].all()
    assert ph.marrow[lesion].all()
    assert not ph.cortex[lesion].any()
    assert not (lesion & ph.fluid).any()


def test_seeds_are_inside_their_lesions(ph, clean):
    for i, seed in enumerate(ph.seeds, start=1):
        assert ph.truth[tuple(seed)] == i
    # the central (brightest) voxel: at least the lesion's median in the noiseless image
    assert np.array_equal(clean.seeds, ph.seeds)
    for i, seed in enumerate(clean.seeds, start=1):
        assert clean.volume.array[tuple(seed)] >= np.median(clean.volume.array[clean.truth == i])


def test_reference_is_normal_marrow_away_from_lesions(ph):
    ref = ph.reference
    assert ref.sum() > 200
    assert not (ref & (ph.truth > 0)).any()
    assert not (ref & ph.fluid).any()
    assert ph.marrow[ref].all()
    assert ref[tuple(ph.reference_point)]
    spacing = ph.volume.spacing
    # a ball of radius >= 6 mm around the reference point lies fully in marrow
    dist_out = _mm_distance_to(~ph.marrow, spacing)
    assert dist_out[tuple(ph.reference_point)] > 6.0
    # no lesion voxel within 10 mm of the point, nor of any reference voxel
    dist_lesion = _mm_distance_to(ph.truth > 0, spacing)
    assert dist_lesion[tuple(ph.reference_point)] >= 10.0
    assert dist_lesion[ref].min() >= 10.0


def test_fluid_touches_bone_and_a_lesion_touches_the_cortex(ph):
    assert ph.fluid.any()
    assert ph.fluid[tuple(ph.fluid_seed)]
    assert (ndimage.binary_dilation(ph.bone, CUBE) & ph.fluid).any()
    cortex_ring = ndimage.binary_dilation(ph.cortex, CUBE)
    touching = np.unique(ph.truth[cortex_ring & (ph.truth > 0)])
    assert touching.size >= 1
    # the subchondral one is the hard case: joint fluid within a few mm of the lesion itself
    dist_fluid = _mm_distance_to(ph.fluid, ph.volume.spacing)
    assert min(dist_fluid[ph.truth == int(i)].min() for i in touching) <= 3.5
    # fluid is outside bone
    assert not (ph.fluid & ph.bone).any()


def test_intensity_ordering(ph):
    a = ph.volume.array
    fluid = a[ph.fluid].mean()
    lesion = a[ph.truth > 0].mean()
    muscle = a[ph.tissue == TISSUE["muscle"]].mean()
    marrow = a[ph.marrow & (ph.truth == 0)].mean()
    assert fluid > lesion > muscle > marrow
    assert 150 < marrow < 250
    assert 1000 < np.median(a[ph.fluid]) < 1500
    cortex = a[ph.cortex].mean()
    assert cortex < marrow


def test_marrow_has_mild_smooth_inhomogeneity(clean):
    a = clean.volume.array
    deep = ndimage.binary_erosion(clean.marrow & (clean.truth == 0), iterations=3)
    values = a[deep] / (SIGNAL["marrow"] * SCALE)
    assert 0.75 < values.min() and values.max() < 1.3
    assert values.std() > 0.02  # not flat


def test_lesion_edge_is_soft(clean):
    """Across a lesion boundary the noiseless signal ramps over a few voxels."""
    a = clean.volume.array
    lesion = clean.truth == 1
    inner = lesion & ~ndimage.binary_erosion(lesion, CUBE)
    outer = ndimage.binary_dilation(lesion, CUBE) & ~lesion & clean.marrow
    core = ndimage.binary_erosion(lesion, CUBE, iterations=3)
    marrow = SIGNAL["marrow"] * SCALE
    assert marrow * 1.2 < a[outer].mean() < a[inner].mean() < a[core].mean()


@pytest.mark.parametrize("noise", [0.02, 0.04, 0.08])
def test_noise_level_matches_parameter(noise):
    ph = make_phantom(noise=noise, **SMALL)
    a = ph.volume.array
    air = ndimage.binary_erosion(ph.tissue == TISSUE["air"], CUBE, iterations=2)
    assert air.sum() > 5000
    sd = noise * (SIGNAL["fluid"] - SIGNAL["marrow"]) * SCALE
    # Rayleigh in air: E[x^2] = 2 sd^2
    est = math.sqrt(float(np.mean(a[air].astype(np.float64) ** 2)) / 2.0)
    assert est == pytest.approx(sd, rel=0.05)
    assert ph.volume.metadata["phantom"]["noise_sd"] == pytest.approx(sd)


def test_no_noise_gives_a_clean_image():
    ph = make_phantom(noise=0.0, **SMALL)
    a = ph.volume.array
    air = ndimage.binary_erosion(ph.tissue == TISSUE["air"], CUBE)  # away from partial volume
    assert np.all(a[air] == 0.0)
    assert a.min() >= 0.0


def test_without_fluid():
    ph = make_phantom(fluid=False, **SMALL)
    assert not ph.fluid.any()
    assert ph.fluid_seed.tolist() == [-1, -1, -1]
    assert not (ph.tissue == TISSUE["fluid"]).any()


# -- custom lesions and parameters ------------------------------------------------------------
def test_custom_lesion_by_index_and_by_ras_agree():
    by_index = make_phantom(lesions=[{"center_index": (10, 65, 52), "radii_mm": (7, 6, 6)}], **SMALL)
    ras = by_index.volume.index_to_ras([10, 65, 52])
    by_ras = make_phantom(lesions=[{"center_mm": ras.tolist(), "radii_mm": (7, 6, 6)}], **SMALL)
    assert np.array_equal(by_index.truth, by_ras.truth)
    assert by_index.truth.max() == 1
    assert by_index.seeds.tolist() == [[10, 65, 52]]


def test_custom_intensity_sets_lesion_signal():
    lo = make_phantom(lesions=[{"center_index": (10, 65, 52), "radii_mm": (8, 8, 8), "intensity": 0.4}],
                      noise=0.0, **SMALL)
    hi = make_phantom(lesions=[{"center_index": (10, 65, 52), "radii_mm": (8, 8, 8), "intensity": 0.8}],
                      noise=0.0, **SMALL)
    seed = tuple(lo.seeds[0])
    assert lo.volume.array[seed] == pytest.approx(0.4 * SCALE, rel=0.2)
    assert hi.volume.array[seed] == pytest.approx(0.8 * SCALE, rel=0.2)


def test_no_lesions():
    ph = make_phantom(lesions=[], **SMALL)
    assert ph.truth.max() == 0
    assert ph.seeds.shape == (0, 3)
    assert ph.lesion_volumes_ml == ()
    assert ph.reference.any()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (32, 192)},
        {"shape": (0, 192, 192)},
        {"shape": (32.5, 192, 192)},
        {"spacing": (3.0, -0.7, 0.7)},
        {"spacing": (3.0, float("nan"), 0.7)},
        {"noise": -0.1},
        {"noise": "loud"},
        {"seed": -1},
        {"seed": 1.5},
        {"joint": "elbow"},
        {"lesions": {"center_index": (10, 65, 52), "radii_mm": (5, 5, 5)}},
        {"lesions": [{"radii_mm": (5, 5, 5)}]},
        {"lesions": [{"center_index": (10, 65, 52), "center_mm": (0, 0, 0), "radii_mm": (5, 5, 5)}]},
        {"lesions": [{"center_index": (10, 65, 52)}]},
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (5, 0, 5)}]},
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (5, 5, 5), "colour": "red"}]},
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (5, 5, 5), "intensity": -1}]},
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (5, 5, 5), "edge_mm": 0}]},
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (5, 5, 5), "irregularity": 0.9}]},
        # outside the bones: in the air in front of the knee
        {"lesions": [{"center_index": (8, 40, 3), "radii_mm": (5, 5, 5)}]},
        # two lesions that overlap
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (6, 6, 6)},
                     {"center_index": (10, 67, 53), "radii_mm": (6, 6, 6)}]},
        # two lesions that touch (their truths would merge into one)
        {"lesions": [{"center_index": (10, 65, 52), "radii_mm": (3, 3, 3)},
                     {"center_index": (10, 65, 57), "radii_mm": (3, 3, 3)}]},
    ],
)
def test_bad_parameters_raise_parameter_error(kwargs):
    with pytest.raises(ParameterError):
        make_phantom(**{**SMALL, **kwargs})


def test_no_room_for_reference_raises():
    with pytest.raises(ParameterError, match="reference"):
        make_phantom(shape=(4, 24, 24), spacing=(3.0, 0.7, 0.7), lesions=[])


# -- the shipped sample ------------------------------------------------------------------------
def _assert_same(a, b, name, *, image=False):
    """Equal, up to what an ulp of float32 maths can change on another CPU.

    The files are identical on the machine that wrote them; SIMD ``cos``/``tanh`` may
    differ by an ulp elsewhere and flip an int16 rounding (or, very rarely, a voxel of a
    mask) here and there.
    """
    diff = np.asarray(a).astype(np.int64) - np.asarray(b).astype(np.int64)
    changed = int(np.count_nonzero(diff))
    hint = f"{name} differs from the code in {changed} voxels: rerun sample_data/make_sample.py"
    if image:
        assert np.abs(diff).max(initial=0) <= 1 and changed <= 1e-3 * diff.size, hint
    else:
        assert changed <= 1e-5 * diff.size, hint


def _read(path):
    img = nib.load(str(path))
    return img, np.asarray(img.dataobj)


def test_shipped_sample_equals_generated(tmp_path):
    shipped = {name: sample_path(name) for name in SAMPLE_FILES}
    assert shipped["phantom_stir.nii.gz"].parent.name == "sample_data"
    assert sum(p.stat().st_size for p in shipped.values()) < 1.5e6
    fresh = write_sample(tmp_path)
    for name in SAMPLE_FILES:
        if name.endswith(".csv"):
            assert fresh[name].read_text() == shipped[name].read_text()
            continue
        img_a, arr_a = _read(shipped[name])
        img_b, arr_b = _read(fresh[name])
        assert arr_a.dtype == arr_b.dtype, name
        assert arr_a.shape == arr_b.shape, name
        assert np.array_equal(img_a.affine, img_b.affine), name
        _assert_same(arr_a, arr_b, name, image=name == "phantom_stir.nii.gz")
        assert img_a.header.get_sform(coded=True)[1] == 1
    _, stir = _read(shipped["phantom_stir.nii.gz"])
    assert stir.dtype == np.int16
    for name in ("phantom_truth.nii.gz", "phantom_bone.nii.gz", "phantom_reference.nii.gz"):
        assert _read(shipped[name])[1].dtype == np.uint8


def test_load_sample_round_trips_geometry():
    vol, gt = load_sample()
    ph = make_phantom(**SAMPLE_PARAMS)
    assert vol.shape == ph.volume.shape
    assert np.array_equal(vol.affine, ph.volume.affine)
    assert vol.spacing == pytest.approx(ph.volume.spacing)
    assert vol.orientation == ph.volume.orientation and vol.plane == "sagittal"
    assert vol.metadata["sequence"] == "STIR"
    assert vol.dtype == np.int16
    _assert_same(vol.array, np.rint(ph.volume.array), "image", image=True)
    assert gt["truth"].dtype == np.int32 and gt["truth"].shape == ph.truth.shape
    assert gt["bone"].dtype == bool and gt["reference"].dtype == bool
    for key in ("truth", "bone", "reference"):
        _assert_same(gt[key], getattr(ph, key), key)
    assert np.array_equal(gt["seeds"], ph.seeds)
    # the seeds' RAS columns agree with the affine
    with open(sample_path("phantom_seeds.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    xyz = np.array([[float(r["x_mm"]), float(r["y_mm"]), float(r["z_mm"])] for r in rows])
    assert np.allclose(xyz, vol.index_to_ras(gt["seeds"]), atol=1e-3)
    assert [int(r["lesion_id"]) for r in rows] == [1, 2, 3, 4]


def test_sample_path_falls_back_to_a_cache(tmp_path, monkeypatch):
    import bmeviz.data as data

    shipped = data._repo_sample_dir()
    monkeypatch.setattr(data, "_repo_sample_dir", lambda: tmp_path / "nowhere")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = sample_path("phantom_truth.nii.gz")
    assert path.is_file() and (tmp_path / "cache") in path.parents
    assert all((path.parent / name).is_file() for name in SAMPLE_FILES)
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".tmp")]  # no leftovers
    mtime = path.stat().st_mtime_ns
    assert sample_path("phantom_truth.nii.gz") == path
    assert path.stat().st_mtime_ns == mtime  # reused, not regenerated
    assert np.array_equal(_read(path)[1], _read(shipped / "phantom_truth.nii.gz")[1])
    vol, gt = load_sample()
    assert vol.metadata["source"].startswith(str(tmp_path / "cache"))
    assert np.array_equal(Volume.from_nifti(nib.load(str(path))).array, gt["truth"])


def test_sample_path_rejects_unknown_names():
    with pytest.raises(ParameterError):
        sample_path("knee.dcm")
