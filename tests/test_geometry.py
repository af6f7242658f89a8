"""Grid tolerance in voxels and resampling masks onto the image (bmeviz.geometry)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import bmeviz
from bmeviz.errors import BmevizWarning, InconsistentGeometryError, ParameterError
from bmeviz.geometry import GRID_TOLERANCE_VOXELS, grid_deviation, mask_onto, same_grid, to_grid
from helpers import oblique_affine, shared


def _rotation(axis, deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    t = np.deg2rad(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    r = np.eye(4)
    r[:3, :3] = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k
    return r


def _moved(affine, *, deg=0.0, shift_mm=(0.0, 0.0, 0.0), axis=(0.3, 1.0, 0.2)):
    """The same grid turned by ``deg`` about its centre-ish and shifted (RAS mm)."""
    t = np.eye(4)
    t[:3, 3] = shift_mm
    return t @ _rotation(axis, deg) @ affine


def _label_blobs(shape, rng, n=6):
    lab = np.zeros(shape, np.uint8)
    zz, yy, xx = np.indices(shape)
    for i in range(1, n + 1):
        c = rng.uniform([2, 8, 8], np.array(shape) - [3, 9, 9])
        r = rng.uniform(4, 9)
        lab[((zz - c[0]) * 3.3) ** 2 + ((yy - c[1]) * 0.6) ** 2 + ((xx - c[2]) * 0.6) ** 2 < r**2] = i
    return lab


# ----------------------------------------------------------------------------- tolerance
def test_deviation_is_measured_in_voxels_at_the_corners():
    a = oblique_affine()
    shape = (20, 60, 50)
    b = a.copy()
    b[:3, 3] += a[:3, 0] * 0.05  # a twentieth of a slice (0.165 mm) along the slice normal
    d = grid_deviation((shape, a), (shape, b))
    assert d["voxels"] == pytest.approx(0.05, abs=1e-9)
    assert d["mm"] == pytest.approx(0.05 * 3.3, abs=1e-9)
    assert same_grid((shape, a), (shape, b))
    # the same shift in mm along a 0.6 mm in-plane axis is 0.275 voxel: another grid
    c = a.copy()
    c[:3, 3] += a[:3, 2] / 0.6 * 0.165
    assert grid_deviation((shape, a), (shape, c))["voxels"] == pytest.approx(0.275, abs=1e-6)
    assert not same_grid((shape, a), (shape, c))
    assert same_grid((shape, a), (shape, c), tol_voxels=0.3)


def test_a_small_rotation_counts_at_the_far_corner():
    shape = (24, 336, 336)
    a = oblique_affine(spacing=(3.3, 0.595, 0.595))
    # 0.01 degree about the volume's first corner moves the far corner by ~0.035 mm (0.06 voxel)
    b = _moved(a, deg=0.01)
    d = grid_deviation((shape, a), (shape, b))
    assert 0.0 < d["voxels"] < GRID_TOLERANCE_VOXELS
    assert same_grid((shape, a), (shape, b))
    b = _moved(a, deg=0.05)  # five times more: ~0.3 voxel at the far corner
    assert not same_grid((shape, a), (shape, b))


def test_shapes_must_agree_and_tolerance_is_checked():
    a = oblique_affine()
    assert not same_grid(((20, 60, 50), a), ((20, 60, 49), a))
    with pytest.raises(ParameterError, match="tol_voxels"):
        same_grid(((2, 2, 2), a), ((2, 2, 2), a), tol_voxels=0.7)
    with pytest.raises(ParameterError, match="Volume"):
        same_grid("a.nii.gz", ((2, 2, 2), a))


# ----------------------------------------------------------------------------- resampling
def _sitk_image(vol):
    """A SimpleITK image of ``vol`` built from its affine (RAS, slice/row/col) only."""
    import SimpleITK as sitk

    from bmeviz.volume import REVERSE_AXES

    nif = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.affine @ REVERSE_AXES  # (i, j, k) -> LPS
    spacing = np.linalg.norm(nif[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(vol.array))  # numpy (z, y, x) = (slice, row, col)
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (nif[:3, :3] / spacing).ravel()])
    img.SetOrigin([float(v) for v in nif[:3, 3]])
    return img


@pytest.mark.parametrize("deg,shift,spacing", [
    (0.0, (1.3, -0.7, 2.1), (3.3, 0.6, 0.6)),          # shifted only
    (7.0, (0.4, 1.1, -0.9), (3.3, 0.6, 0.6)),          # turned 7 degrees and shifted
    (12.0, (-2.0, 0.5, 1.0), (1.0, 0.8, 0.8)),         # another series: other voxel size too
])
def test_to_grid_matches_simpleitk_nearest_neighbour(deg, shift, spacing):
    import SimpleITK as sitk

    rng = np.random.default_rng(5)
    image = bmeviz.Volume(np.zeros((20, 64, 60), np.float32), oblique_affine())
    target_shape = tuple(int(round(n * s / t)) for n, s, t in zip((20, 64, 60), (3.3, 0.6, 0.6), spacing))
    mask_affine = _moved(oblique_affine(spacing=spacing), deg=deg, shift_mm=shift)
    mask = bmeviz.Volume(_label_blobs(target_shape, rng), mask_affine)
    ours = to_grid(mask, image).array
    ref = sitk.GetArrayFromImage(
        sitk.Resample(_sitk_image(mask), _sitk_image(image), sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                      sitk.sitkUInt8))
    assert ours.shape == ref.shape == image.shape
    assert ours.dtype == np.uint8
    assert set(np.unique(ours)) <= set(np.unique(mask.array))  # labels stay labels
    assert np.count_nonzero(ref) > 1000
    # voxel for voxel, edges included (a target voxel centre less than half a voxel beyond the
    # source's last voxel centre still lies in that voxel, as ITK has it)
    assert np.count_nonzero(ours != ref) == 0


def test_to_grid_round_trip_and_bool():
    image = bmeviz.Volume(np.zeros((10, 40, 40), np.float32), oblique_affine())
    m = np.zeros(image.shape, bool)
    m[3:7, 10:30, 12:28] = True
    same = to_grid(bmeviz.Volume(m, image.affine), image)
    assert same.array.dtype == bool and np.array_equal(same.array, m)  # identity is exact
    # half the resolution in plane and back: the block survives within one voxel at its faces
    coarse_aff = image.affine.copy()
    coarse_aff[:3, 1:3] *= 2
    coarse = to_grid(bmeviz.Volume(m, image.affine), bmeviz.Volume(np.zeros((10, 20, 20)), coarse_aff))
    back_vol = to_grid(coarse, image)
    back = back_vol.array
    assert np.count_nonzero(back ^ m) < 0.25 * m.sum()
    assert back_vol.metadata["resampled_from"]["shape"] == [10, 20, 20]
    assert np.allclose(back_vol.affine, image.affine)


def test_mask_onto_same_grid_within_tolerance_gives_a_note_and_no_warning():
    image = bmeviz.Volume(np.zeros((10, 40, 40), np.float32), oblique_affine())
    aff = image.affine.copy()
    aff[0, 3] += 0.0036  # 3.6 micrometres, what a float32 qform rounds to
    m = np.zeros(image.shape, np.uint8)
    m[2:5, 5:9, 5:9] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", BmevizWarning)
        arr, note = mask_onto(bmeviz.Volume(m, aff), image, name="region")
    assert arr is not None and np.array_equal(arr, m)
    assert note["action"] == "same grid within tolerance"
    assert note["deviation_mm"] == pytest.approx(0.0036, abs=1e-6)
    assert note["tolerance_voxels"] == GRID_TOLERANCE_VOXELS


def test_other_frame_of_reference_is_refused():
    image = bmeviz.Volume(np.zeros((10, 40, 40), np.float32), oblique_affine(),
                          {"frame_of_reference_uid": "1.2.3.4"})
    m = bmeviz.Volume(np.ones((10, 40, 40), np.uint8), oblique_affine(), {"frame_of_reference_uid": "1.2.3.5"})
    with pytest.raises(InconsistentGeometryError, match="frame of reference"):
        mask_onto(m, image, name="region")
    with pytest.raises(InconsistentGeometryError, match="register"):
        to_grid(m, image)
    same = bmeviz.Volume(np.ones((10, 40, 40), np.uint8), _moved(oblique_affine(), deg=3),
                         {"frame_of_reference_uid": "1.2.3.4"})
    with pytest.warns(BmevizWarning, match="the same frame of reference"):
        mask_onto(same, image, name="region")


def test_segment_resamples_a_region_drawn_on_another_series(small_phantom_on_grids):
    ph, region_other, other_affine = small_phantom_on_grids
    base = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    with pytest.warns(BmevizWarning, match="resampled onto the image by nearest neighbour"):
        res = bmeviz.segment(ph.volume, reference=ph.reference, region=region_other, seeds=ph.seeds)
    note = res.params["grid"][0]
    assert note["mask"] == "region" and note["action"].startswith("resampled")
    assert note["deviation_voxels"] > 0.5
    # the bone comes back within a voxel at its surface, so the lesions barely move
    assert res.n_lesions == base.n_lesions
    assert res.total_volume_ml == pytest.approx(base.total_volume_ml, rel=0.03)
    assert json.dumps(res.provenance())  # the note is JSON


@pytest.fixture(scope="module")
def small_phantom_on_grids():
    from bmeviz.data import make_phantom

    ph = make_phantom(seed=3)
    other_affine = _moved(ph.volume.affine, deg=4.0, shift_mm=(0.9, -1.4, 0.6))
    fine = other_affine.copy()
    fine[:3, 0] /= 2  # the other series has slices half as thick
    bone = bmeviz.Volume(ph.bone.astype(np.uint8), ph.volume.affine)
    other_shape = (ph.volume.shape[0] * 2, *ph.volume.shape[1:])
    on_other = to_grid(bone, bmeviz.Volume(np.zeros(other_shape, np.uint8), fine))
    return ph, on_other, fine


# ----------------------------------------------------------------------------- real scans
SIJ_ID = "1234"


def _nudged_region(tmp_path, sid=SIJ_ID, mm=0.0036):
    """The real manual region mask with its qform moved by ``mm`` along x (what the issue met)."""
    import nibabel as nib

    src = shared("sij-stir-dev", "disease_region", f"{sid}_disease_region.nii.gz")
    img = nib.load(str(src))
    aff = img.affine.copy()
    aff[0, 3] += mm
    out = nib.Nifti1Image(np.asarray(img.dataobj), aff)
    out.set_qform(aff, code=1)
    out.set_sform(None, code=0)  # qform only, like the readers' masks
    path = tmp_path / f"{sid}_region_nudged.nii.gz"
    nib.save(out, str(path))
    return path


@pytest.mark.shared_data
def test_real_masks_are_on_their_images_grid_within_tolerance():
    """Every manual mask of the SIJ set overlays its STIR within the tolerance: the headers (qform only)
    differ from the images' sform by up to 1.1e-4 in the affine (1007), 0.010 mm / 0.011 voxel at the
    far corner of the volume."""
    worst = {}
    for sid in ("1007", "1013", "1234", "2014", "4386"):
        image = bmeviz.load(shared("sij-stir-dev", "images", f"{sid}_STIR.nii.gz"))
        for sub in ("disease_region", "normal_marrow"):
            m = bmeviz.load(shared("sij-stir-dev", sub, f"{sid}_{sub}.nii.gz"))
            d = grid_deviation(m, image)
            assert same_grid(m, image), (sid, sub, d)
            worst[(sid, sub)] = d["voxels"]
        t1 = bmeviz.load(shared("sij-stir-dev", "images", f"{sid}_T1W.nii.gz"))
        assert same_grid(t1, image)  # the T1 of the session is on the STIR's grid
    assert 0 < max(worst.values()) < 0.02
    assert max(worst, key=worst.get)[0] == "1007"


@pytest.mark.shared_data
def test_cli_segment_accepts_a_region_header_off_by_micrometres(tmp_path, capsys):
    from bmeviz.cli import main

    region = _nudged_region(tmp_path)
    image = shared("sij-stir-dev", "images", f"{SIJ_ID}_STIR.nii.gz")
    ref = shared("sij-stir-dev", "normal_marrow", f"{SIJ_ID}_normal_marrow.nii.gz")
    out = tmp_path / "out"
    rc = main(["segment", str(image), "--reference", str(ref), "--region", str(region), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    prov = json.loads((out / "provenance.json").read_text())
    notes = {n["mask"]: n for n in prov["params"]["grid"]}
    assert notes["reference"]["deviation_mm"] < 1e-3  # the real normal-marrow mask: 8e-5 mm
    note = notes["region"]
    assert str(tmp_path) not in (out / "provenance.json").read_text()  # no paths in provenance
    assert note["action"] == "same grid within tolerance"
    assert note["deviation_mm"] == pytest.approx(0.0036, abs=2e-4)
    assert prov["totals"]["n_lesions"] >= 1
    # the same region with its true header gives the same lesions
    direct = bmeviz.segment(bmeviz.load(image), reference=ref,
                            region=shared("sij-stir-dev", "disease_region", f"{SIJ_ID}_disease_region.nii.gz"))
    assert prov["totals"]["total_volume_ml"] == pytest.approx(direct.total_volume_ml, rel=1e-9)


@pytest.mark.shared_data
def test_real_region_drawn_on_a_turned_series_is_resampled(tmp_path):
    """The real region mask as if drawn on a T1 acquired 2 degrees turned and 1 mm off: it is put
    back on the STIR by nearest neighbour and keeps its volume."""
    image = bmeviz.load(shared("sij-stir-dev", "images", f"{SIJ_ID}_STIR.nii.gz"))
    region = bmeviz.load(shared("sij-stir-dev", "disease_region", f"{SIJ_ID}_disease_region.nii.gz"))
    t1_grid = bmeviz.Volume(np.zeros(image.shape, np.uint8), _moved(image.affine, deg=2.0, shift_mm=(1.0, 0.0, 0.5)))
    on_t1 = to_grid(region, t1_grid)
    with pytest.warns(BmevizWarning, match="resampled"):
        back, note = mask_onto(on_t1, image, name="region")
    kept = np.count_nonzero(back) / np.count_nonzero(region.array)
    assert 0.97 < kept < 1.03
    inter = np.count_nonzero((back > 0) & (region.array > 0))
    dice = 2 * inter / (np.count_nonzero(back) + np.count_nonzero(region.array))
    assert dice > 0.9, dice  # two nearest-neighbour steps through a 3.3 mm slice axis
    assert note["volume_ml_after"] == pytest.approx(note["volume_ml_before"], rel=0.03)


@pytest.mark.shared_data
def test_batch_accepts_the_nudged_region(tmp_path):
    """bmeviz batch met the same refusal: the study now runs, with the tolerance in provenance."""
    from bmeviz.batch import run

    region = _nudged_region(tmp_path)
    image = shared("sij-stir-dev", "images", f"{SIJ_ID}_STIR.nii.gz")
    ref = shared("sij-stir-dev", "normal_marrow", f"{SIJ_ID}_normal_marrow.nii.gz")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"study_id,image,reference_mask,region_mask\nS,{image},{ref},{region}\n")
    table = run(manifest, tmp_path / "out", workers=0, progress=False, overlay=False)
    assert list(table["status"]) == ["ok"], table.to_string()
    prov = json.loads((tmp_path / "out" / "S" / "provenance.json").read_text())
    assert {n["mask"]: n["action"] for n in prov["params"]["grid"]}["region"] == "same grid within tolerance"


def test_a_volume_turned_into_another_orientation_is_the_same_image_in_the_world():
    """Every signed axis order of an oblique volume: orientation_like finds the transpose and flips
    back to the original's directions, turned gives the original array and affine, each voxel
    keeps its RAS position, and unturn undoes turn on the original grid."""
    from itertools import permutations, product

    from bmeviz.geometry import directions, orientation_like, turn, turned, turned_index, unturn

    rng = np.random.default_rng(3)
    vol = bmeviz.Volume(rng.random((5, 7, 9)).astype(np.float32), oblique_affine())
    assert orientation_like(vol, directions(vol)) is None
    idx = np.array([[0, 0, 0], [4, 6, 8], [2, 3, 1]])
    for axes in permutations(range(3)):
        for flips in product((False, True), repeat=3):
            how = (axes, flips)
            other = turned(vol, how)
            assert np.allclose(other.index_to_ras(turned_index(idx, how, vol.shape)), vol.index_to_ras(idx))
            back = orientation_like(other, directions(vol))
            if axes == (0, 1, 2) and not any(flips):
                assert back is None
                continue
            again = turned(other, back)
            assert np.array_equal(again.array, vol.array) and np.allclose(again.affine, vol.affine)
            assert np.array_equal(unturn(turn(vol.array, how), how), vol.array)
