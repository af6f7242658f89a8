"""Region assist from atlases (bmeviz.region_atlas): leave-one-out on a real SIJ scan with 3
atlases against the classical outline, a second user's clicks, the scan itself never used as
its own atlas, bad atlas folders, and the CLI writing on the --on grid.

The real-data tests skip without ../shared/data. Registrations run two at a time, each on
one SimpleITK thread (repeatable); the whole file takes about 1.5 minutes.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import bmeviz
from bmeviz.cli import main
from bmeviz.region import region_from_seeds
from bmeviz.region_atlas import load_atlases

from helpers import shared

pytest.importorskip("SimpleITK")

TARGET = "1013"
ATLASES = ("1007", "4386", "2014", "1234", "1001")  # 5 others; the 4 best after the affine ranking are fused


def _dice(a, b) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b))


def _paths(sid: str) -> tuple[Path, Path]:
    if sid in ("1001", "2016"):  # the T1 scans without a STIR, with their drawn regions
        return shared("sij-t1-extra", f"{sid}_T1W.nii.gz"), shared("sij-t1-extra", f"{sid}_disease_region.nii.gz")
    return (shared("sij-stir-dev", "images", f"{sid}_T1W.nii.gz"),
            shared("sij-stir-dev", "disease_region", f"{sid}_disease_region.nii.gz"))


def _clicks(t1, manual, perturb=None):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from region_sij import clicks_from_region

    return clicks_from_region(t1, manual, perturb=perturb)


def _atlas_dir(tmp_path: Path, ids, *, alias: str | None = None) -> Path:
    """Symlinks ``<id>_T1W.nii.gz`` + ``<id>_disease_region.nii.gz`` (no copy of the data);
    ``alias``: the target's pair once more under the made-up id 9999."""
    d = tmp_path / "atlases"
    d.mkdir()
    for sid in ids:
        img, reg = _paths(sid)
        (d / f"{sid}_T1W.nii.gz").symlink_to(img.resolve())
        (d / f"{sid}_disease_region.nii.gz").symlink_to(reg.resolve())
    if alias:
        img, reg = _paths(alias)
        (d / "9999_T1W.nii.gz").symlink_to(img.resolve())
        (d / "9999_disease_region.nii.gz").symlink_to(reg.resolve())
    return d


@pytest.fixture(scope="module")
def target():
    img, reg = _paths(TARGET)
    t1 = bmeviz.load(img)
    manual = bmeviz.load(reg).array > 0
    stir = bmeviz.load(shared("sij-stir-dev", "images", f"{TARGET}_STIR.nii.gz"))
    return t1, manual, stir


@pytest.fixture(scope="module")
def first_user(target, tmp_path_factory):
    """Leave-one-out: 1013 from a folder holding 3 other scans, 1013 itself and 1013 again
    under another id (both must be excluded)."""
    t1, manual, stir = target
    d = _atlas_dir(tmp_path_factory.mktemp("loo"), (*ATLASES, TARGET), alias=TARGET)
    seeds = _clicks(t1, manual)
    res = region_from_seeds(t1, seeds=seeds, on=stir, atlas=d)
    classical = region_from_seeds(t1, seeds=seeds, on=stir)
    return seeds, res, classical


def test_leave_one_out_beats_the_classical_outline(target, first_user):
    """Measured: atlas Dice 0.765 on 1013 (4 of 1007, 4386, 2014, 1234, 1001), the same every run;
    the classical outline 0.49. The floor leaves room for another SimpleITK build: 0.62, and
    0.05 above the classical outline (0.90, the issue's target, is not reached)."""
    _, manual, stir = target
    seeds, res, classical = first_user
    m = res.mask.array
    assert res.mask.shape == stir.shape and np.allclose(res.mask.affine, stir.affine)
    assert res.info["method"] == "atlas"
    assert sorted(res.info["excluded"]) == [TARGET, "9999"]  # same id; same voxel data under another id
    assert len(res.info["atlases"]) == 4 and set(res.info["atlases"]) <= set(ATLASES)
    assert sum(bool(m[tuple(s)]) for s in seeds) >= 2
    d_atlas, d_classical = _dice(m, manual), _dice(classical.mask.array, manual)
    assert d_atlas >= 0.62
    assert d_atlas > d_classical + 0.05
    assert 0.5 < m.sum() / manual.sum() < 1.5


def test_second_user_clicks_barely_move_the_atlas_region(target, first_user):
    """A second user's clicks (random points at least half as deep in each bone): measured
    agreement 0.85 with the first user's region (Dice vs manual 0.68); floors 0.75 and 0.62
    (room for another SimpleITK build)."""
    t1, manual, stir = target
    _, res, _ = first_user
    pairs = [(bmeviz.load(_paths(s)[0]), bmeviz.load(_paths(s)[1])) for s in ATLASES]
    res2 = region_from_seeds(t1, seeds=_clicks(t1, manual, perturb=int(TARGET)), on=stir, atlas=pairs)
    assert len(res2.info["atlases"]) == 4 and not res2.info["excluded"]
    assert _dice(res2.mask.array, res.mask.array) >= 0.75
    assert _dice(res2.mask.array, manual) >= 0.62


def test_bad_atlas_folders_name_the_file(tmp_path):
    t1 = bmeviz.Volume(np.random.default_rng(0).random((6, 20, 20)).astype(np.float32), np.diag([3.0, 0.6, 0.6, 1]))
    region = np.zeros(t1.shape, np.uint8)
    region[2:4, 5:15, 5:15] = 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(bmeviz.ParameterError, match="holds no"):
        load_atlases(empty)
    lone = tmp_path / "lone"
    lone.mkdir()
    bmeviz.io.save_volume(t1, lone / "7_T1W.nii.gz")
    with pytest.raises(bmeviz.ParameterError, match=r"7_disease_region\.nii\.gz is missing"):
        load_atlases(lone)
    broken = tmp_path / "broken"
    broken.mkdir()
    bmeviz.io.save_volume(t1, broken / "7_T1W.nii.gz")
    (broken / "7_disease_region.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(bmeviz.ParameterError, match=r"7_disease_region\.nii\.gz cannot be read"):
        load_atlases(broken)
    grid = tmp_path / "grid"
    grid.mkdir()
    bmeviz.io.save_volume(t1, grid / "7_T1W.nii.gz")
    bmeviz.io.save_mask(region[:, :10], bmeviz.Volume(t1.array[:, :10], t1.affine), grid / "7_disease_region.nii.gz")
    with pytest.raises(bmeviz.ParameterError, match=r"7_disease_region\.nii\.gz is not on the grid"):
        load_atlases(grid)
    good = tmp_path / "good"
    good.mkdir()
    bmeviz.io.save_volume(t1, good / "7_T1W.nii.gz")
    bmeviz.io.save_mask(region, t1, good / "7_disease_region.nii.gz")
    (good / "atlases.csv").write_text("image,region\n7_T1W.nii.gz,7_disease_region.nii.gz\n")
    assert [a.name for a in load_atlases(good)] == ["7"]
    assert [a.name for a in load_atlases(good / "atlases.csv")] == ["7"]
    with pytest.raises(bmeviz.ParameterError, match="image,region"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        load_atlases(tmp_path / "bad.csv")
    # the only atlas is the scan itself
    with pytest.raises(bmeviz.ParameterError, match="this scan itself"):
        region_from_seeds(t1, seeds=[[3, 10, 10]], contrast="stir", atlas=[(t1, region)])


def test_cli_atlas_writes_on_the_fluid_grid(tmp_path, capsys, target):
    t1, manual, _ = target
    d = _atlas_dir(tmp_path, ATLASES[2:3])
    mm = t1.index_to_ras(_clicks(t1, manual).astype(float))
    stir_path = shared("sij-stir-dev", "images", f"{TARGET}_STIR.nii.gz")
    out = tmp_path / "region.nii.gz"
    argv = ["region", str(_paths(TARGET)[0]), *[f"--seed-mm={x},{y},{z}" for x, y, z in mm], "--on", str(stir_path),
            "--atlas", str(d), "--atlas-best", "1", "--out", str(out)]
    assert main(argv) == 0
    assert "atlases 2014" in capsys.readouterr().out
    img, ref = nib.load(out), nib.load(stir_path)
    assert np.allclose(img.affine, ref.affine) and img.shape == ref.shape
    assert _dice(np.asarray(img.dataobj).transpose(2, 1, 0) > 0, manual) >= 0.55
    bad = tmp_path / "none"
    bad.mkdir()
    assert main([*argv[:-6], "--atlas", str(bad), "--out", str(tmp_path / "x.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmeviz: error:") and str(bad) in err and not (tmp_path / "x.nii.gz").exists()


def test_target_excluded_by_its_own_id_not_by_a_shared_prefix(tmp_path):
    """Synthetic: the scan p_01 in the folder beside p_02 (the same anatomy, moved): only
    p_01 is left out (its id; p_02 shares the prefix "p"), p_02 is used and gives back the bone."""
    from test_region import make_t1

    from bmeviz.region_atlas import atlas_clicks

    t1, marrow = make_t1()
    moved = t1.affine.copy()
    moved[:3, 3] += (2.0, -1.5, 1.0)  # the same anatomy lying 2.7 mm elsewhere
    other = bmeviz.Volume(t1.array, moved, t1.metadata)
    for sid, vol, m in (("p_01", t1, marrow), ("p_02", other, marrow)):
        bmeviz.io.save_volume(vol, tmp_path / f"{sid}_T1W.nii.gz")
        bmeviz.io.save_mask(m, vol, tmp_path / f"{sid}_disease_region.nii.gz")
    target = bmeviz.load(tmp_path / "p_01_T1W.nii.gz")
    click = atlas_clicks(t1, marrow)  # where a user clicks: deep in the bright marrow
    res = region_from_seeds(target, seeds=click, atlas=tmp_path)
    assert res.info["excluded"] == ["p_01"] and res.info["atlases"] == ["p_02"]
    assert _dice(res.mask.array, marrow) >= 0.85


def test_the_atlas_region_is_repeatable_on_any_number_of_threads(target, tmp_path):
    """The same clicks give the same region, voxel for voxel, run after run and whether the
    atlases run one after the other or side by side (fixed metric samples, one SimpleITK
    thread per registration); the old parameter names get a clear error."""
    t1, manual, _ = target
    d = _atlas_dir(tmp_path, ("2014", "4386"))
    seeds = _clicks(t1, manual)
    runs = [region_from_seeds(t1, seeds=seeds, atlas=d, atlas_best=1, params={"threads": n}) for n in (2, 1, 2)]
    for other in runs[1:]:
        assert np.array_equal(runs[0].mask.array, other.mask.array)
    assert runs[0].info["atlas_params"]["seeds"] == [1]
    assert _dice(runs[0].mask.array, manual) >= 0.55  # one atlas, fused with nothing
    with pytest.raises(bmeviz.ParameterError, match="seeds"):
        region_from_seeds(t1, seeds=seeds, atlas=d, params={"restarts": (1, 2)})


def test_atlases_that_disagree_raise_a_warning(tmp_path):
    """Synthetic: two atlases of the same anatomy (moved) whose drawn regions differ (one the
    whole bone, one only a small part around the click) are fused with a warning naming them
    and their agreement; two that agree are fused without one."""
    from test_region import make_t1

    from bmeviz.errors import BmevizWarning
    from bmeviz.region_atlas import atlas_clicks

    t1, marrow = make_t1()
    click = atlas_clicks(t1, marrow)
    near = np.zeros(marrow.shape, bool)
    near[tuple(click.T)] = True
    from scipy import ndimage as ndi

    part = marrow & (ndi.distance_transform_edt(~near, sampling=t1.spacing) <= 12.0)
    assert 0.03 < part.sum() / marrow.sum() < 0.25  # Dice(part, bone) < 0.4
    folders = {"agree": (("p_02", marrow, (2.0, -1.5, 1.0)), ("p_03", marrow, (-1.5, 2.0, -1.0))),
               "disagree": (("p_02", marrow, (2.0, -1.5, 1.0)), ("p_03", part, (-1.5, 2.0, -1.0)))}
    out = {}
    for name, pairs in folders.items():
        d = tmp_path / name
        d.mkdir()
        for sid, m, shift in pairs:
            aff = t1.affine.copy()
            aff[:3, 3] += shift
            vol = bmeviz.Volume(t1.array, aff, t1.metadata)
            bmeviz.io.save_volume(vol, d / f"{sid}_T1W.nii.gz")
            bmeviz.io.save_mask(m, vol, d / f"{sid}_disease_region.nii.gz")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BmevizWarning)
            res = region_from_seeds(t1, seeds=click, atlas=d, atlas_best=2)
        out[name] = (res.info, [str(w.message) for w in caught if issubclass(w.category, BmevizWarning)])
    info, caught = out["agree"]
    assert info["agreement"] >= 0.8 and info["warning"] is None and not caught
    info, caught = out["disagree"]
    assert info["agreement"] < 0.4
    assert len(caught) == 1 and {"p_02", "p_03"} <= set(info["atlases"]) and "p_02" in caught[0] and "disagree" in caught[0] and caught[0] == info["warning"]


def test_atlas_region_from_the_stir_alone(target, tmp_path):
    """No T1: the T1 atlases registered to the STIR scan itself (mutual information, no
    demons). Leave-one-out on 1013 from the 5 scans of ATLASES; measured 0.73 (from its T1:
    0.77), with the disagreement warning; on the other dev scans it reaches less
    (docs/region.md)."""
    t1, manual, stir = target
    d = _atlas_dir(tmp_path, ATLASES)
    res = region_from_seeds(stir, seeds=_clicks(t1, manual), contrast="stir", atlas=d)
    assert res.info["method"] == "atlas" and len(res.info["atlases"]) == 4
    assert _dice(res.mask.array, manual) >= 0.60


def test_the_registration_pyramid_and_its_masks_on_a_real_grid(target):
    """The atlas path builds its pyramid once per image: thick slices (3.3 mm) are not shrunk
    where the 0.6-mm pixels are (8x: 4.8 mm, 4x: 2.4 mm); the metric mask on the shrunk grid
    is the voxels within metric_mm of the clicks (checked against SimpleITK's own index to
    point mapping), and the click zone the same as a whole-scan distance map. An atlas's
    automatic clicks, found in its region's box, are those found on the whole scan."""
    import SimpleITK as sitk
    from scipy import ndimage as ndi

    from bmeviz.region_atlas import _lps, _near, _near_mask, _norm, _shrunk, atlas_clicks

    t1, manual, _ = target
    seeds = _clicks(t1, manual)
    # an atlas's own clicks, found on the region's box: the benchmark's clicks, found on the whole scan
    assert np.array_equal(atlas_clicks(t1, manual), seeds)
    F = _norm(sitk, t1)
    for factor, level_mm in ((8, 4.8), (4, 2.4)):  # the default levels in mm: 8x and 4x on these 0.595-mm pixels
        Fs = _shrunk(sitk, F, level_mm)
        assert Fs.GetSize() == (t1.shape[2] // factor, t1.shape[1] // factor, t1.shape[0])
        assert np.allclose(Fs.GetSpacing(), (t1.spacing[2] * factor, t1.spacing[1] * factor, t1.spacing[0]))
        mask = sitk.GetArrayFromImage(_near_mask(sitk, Fs, _lps(t1, seeds), 40.0)) > 0
        rng = np.random.default_rng(factor)
        for k, j, i in zip(*(rng.integers(0, n, 400) for n in mask.shape)):
            pt = np.asarray(Fs.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
            d = np.min(np.linalg.norm(_lps(t1, seeds) - pt, axis=1))
            if abs(d - 40.0) > 1e-3:
                assert mask[k, j, i] == (d <= 40.0)
        assert 0.05 < mask.mean() < 0.6
    for radius in (5.0, 12.0):
        free = np.ones(t1.shape, bool)
        free[tuple(seeds.T)] = False
        assert np.array_equal(_near(t1.shape, t1.spacing, seeds, radius),
                              ndi.distance_transform_edt(free, sampling=t1.spacing) <= radius)


def _stored_otherwise(vol, how: str):
    """``vol`` as another converter might store it: rows reversed, slices reversed, or rows and
    columns swapped (the same image in the world; written here independently of bmeviz's code)."""
    a, A = np.asarray(vol.array), vol.affine.copy()
    if how == "rows<->columns":
        return bmeviz.Volume(np.swapaxes(a, 1, 2).copy(), A[:, [0, 2, 1, 3]], dict(vol.metadata))
    ax = {"rows reversed": 1, "slices reversed": 0}[how]
    A[:3, 3] += A[:3, ax] * (vol.shape[ax] - 1)
    A[:3, ax] *= -1
    return bmeviz.Volume(np.flip(a, ax).copy(), A, dict(vol.metadata))


def _back(arr, how: str):
    if how == "rows<->columns":
        return np.swapaxes(arr, 1, 2)
    return np.flip(arr, {"rows reversed": 1, "slices reversed": 0}[how])


def test_a_scan_or_an_atlas_stored_in_another_orientation_gets_the_same_region(target, tmp_path):
    """The atlas path lays the atlases' image axes on the scan's and the U-Net learned slices in
    the atlases' orientation, so a scan is first turned into that orientation (transposes and
    flips only). Measured before: 1013 with its rows or slices reversed, or rows and columns
    swapped, reached Dice 0.25-0.31 instead of 0.77; now each gives the region of the scan as
    stored, read back from NIfTI: measured Dice 0.998 / 0.988 / 1.000 with it, one atlas (NIfTI
    keeps the affine in float32, 3e-6 mm off, and a registration feels it); floor 0.97. An atlas
    folder where one atlas is stored reversed gives the same region too."""
    t1, manual, _ = target
    d = _atlas_dir(tmp_path, ("2014", "4386"))
    seeds = _clicks(t1, manual)
    base = region_from_seeds(t1, seeds=seeds, atlas=d, atlas_best=1)
    assert "reoriented" not in base.info and _dice(base.mask.array, manual) >= 0.55
    mm = t1.index_to_ras(seeds)
    for how in ("rows reversed", "slices reversed", "rows<->columns"):
        path = tmp_path / f"{how.replace(' ', '_').replace('<->', '_')}.nii.gz"
        bmeviz.io.save_volume(_stored_otherwise(t1, how), path)
        other = bmeviz.load(path)
        assert not np.array_equal(other.array, t1.array)  # stored otherwise indeed
        res = region_from_seeds(other, seeds_mm=mm, atlas=d, atlas_best=1)
        assert res.info["reoriented"]["axes"] in ([0, 1, 2], [0, 2, 1])
        assert _dice(_back(res.mask.array, how), base.mask.array) >= 0.97, how
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "2014_T1W.nii.gz").symlink_to(_paths("2014")[0].resolve())
    (mixed / "2014_disease_region.nii.gz").symlink_to(_paths("2014")[1].resolve())
    img, reg = (bmeviz.load(p) for p in _paths("4386"))
    bmeviz.io.save_volume(_stored_otherwise(img, "rows reversed"), mixed / "4386_T1W.nii.gz")
    bmeviz.io.save_volume(_stored_otherwise(reg, "rows reversed"), mixed / "4386_disease_region.nii.gz")
    res = region_from_seeds(t1, seeds=seeds, atlas=mixed, atlas_best=1)
    assert res.info["atlases"] == base.info["atlases"]
    assert _dice(res.mask.array, base.mask.array) >= 0.97


def test_a_scan_with_other_pixels_is_registered_on_the_same_pyramid_in_mm(target, tmp_path):
    """1013 resampled to 1-mm pixels in-plane (as a 1.5 T protocol might give it), outlined from
    the 5 atlases at 0.6 mm (atlas path, no demons) and written on the original grid. The
    pyramid's levels are in mm (4.8 and 2.4 mm: 5x and 2x here, 8x and 4x on the atlases).
    Measured: Dice 0.707 (0.674 with the levels in pixels of before; 0.765 with demons as
    stored, 0.699 without); floor 0.65. The old 'shrink' parameter gets a clear error."""
    import SimpleITK as sitk
    from scipy import ndimage as ndi

    from bmeviz.region_atlas import _norm, _shrunk

    t1, manual, _ = target
    d = _atlas_dir(tmp_path, ATLASES)
    z = t1.spacing[1] / 1.0
    A = t1.affine.copy()
    A[:3, 1:3] /= z
    A[:3, 3] += (A[:3, 1] + A[:3, 2] - t1.affine[:3, 1] - t1.affine[:3, 2]) * 0.5  # the same field of view
    coarse = bmeviz.Volume(ndi.zoom(np.asarray(t1.array, np.float32), (1, z, z), order=1, grid_mode=True,
                                    mode="nearest"), A, {})
    assert coarse.shape == (25, 200, 200) and np.allclose(coarse.spacing[1:], 1.0)
    res = region_from_seeds(coarse, seeds_mm=t1.index_to_ras(_clicks(t1, manual)), atlas=d, on=t1,
                            params={"demons": False})
    assert res.info["atlas_params"]["pyramid_mm"] == [4.8, 2.4]
    assert res.mask.shape == t1.shape and _dice(res.mask.array, manual) >= 0.65
    assert [_shrunk(sitk, _norm(sitk, coarse), mm).GetSpacing()[0] for mm in (4.8, 2.4)] == pytest.approx([5.0, 2.0])
    with pytest.raises(bmeviz.ParameterError, match="pyramid_mm"):
        region_from_seeds(coarse, seeds_mm=t1.index_to_ras(_clicks(t1, manual)), atlas=d, params={"shrink": (8, 4)})


def test_fusion_counts_an_atlas_only_where_its_scan_reaches():
    """Two atlases, one reaching every slice and one only slices 2-5: where only the first reaches,
    its probability is the fused one (not halved by the other's 'no bone'); a slice no atlas reaches
    takes the nearest reached slice's value; without ``reaches``, the plain weighted mean."""
    from bmeviz.region_atlas import _fuse

    a = np.full((6, 4, 4), 0.8, np.float32)
    b = np.full((6, 4, 4), 0.4, np.float32)
    reach_a = np.ones_like(a)
    reach_b = np.zeros_like(b)
    reach_b[2:] = 1
    b[:2] = 0  # what the resampling gives outside its field of view
    fused = _fuse([a, b], [reach_a, reach_b], np.array([1.0, 1.0]))
    assert fused[:2] == pytest.approx(0.8) and fused[2:] == pytest.approx(0.6)
    assert _fuse([a, b], None, np.array([3.0, 1.0]))[0] == pytest.approx(0.6)
    reach_a[:, :, :2] = 0
    reach_a[4:] = 0  # slices 4-5: only b; columns 0-1 of slices 0-1: nobody, filled from slice 2
    fused = _fuse([a * reach_a, b], [reach_a, reach_b], np.array([1.0, 1.0]))
    assert fused[4:] == pytest.approx(0.4) and fused[:2, :, :2] == pytest.approx(0.4)  # slice 2 there: b only
    assert fused[:2, :, 2:] == pytest.approx(0.8) and fused[2:4, :, 2:] == pytest.approx(0.6)
    assert fused.dtype == np.float32


def test_atlases_shorter_than_the_scan_still_outline_its_end_slices(target):
    """The 5 atlases cut to their last 20 of 25 slices (scans that cover less of the joint than 1013):
    beyond their reach they vote neither way, and the slices no atlas reaches take the nearest reached
    slice's region. Measured on 1013's first 4 slices (affine atlas path): Dice 0.765 against 0.458 when
    an atlas said "no bone" beyond its field of view (fov=False); the whole region 0.740 against 0.722.
    Floors: 0.65 on the first 4 slices and +0.2 over fov=False."""
    from bmeviz.region_atlas import atlas_outline

    t1, manual, _ = target
    atlases = []
    for sid in ATLASES:
        img, reg = (bmeviz.load(p) for p in _paths(sid))
        A = img.affine.copy()
        A[:3, 3] += 5 * A[:3, 0]
        atlases.append((bmeviz.Volume(img.array[5:], A, {}), reg.array[5:] > 0))
    seeds = _clicks(t1, manual)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bmeviz.BmevizWarning)
        kept, _ = atlas_outline(t1, seeds, atlases, params={"demons": False})
        dropped, _ = atlas_outline(t1, seeds, atlases, params={"demons": False, "fov": False})
    assert _dice(kept[:4], manual[:4]) >= 0.65
    assert _dice(kept[:4], manual[:4]) >= _dice(dropped[:4], manual[:4]) + 0.2
