"""Region assist (bmeviz.region): outline on a synthetic T1 bone with known truth, hole
filling, leaks through a cortex gap, resampling onto another grid (checked with nibabel),
errors, the CLI end to end into ``bmeviz segment --region``, and real SIJ T1 scans."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import bmeviz
from bmeviz.cli import main
from bmeviz.region import PARAMS, region_from_seeds
from helpers import shared

SPACING = (3.3, 0.6, 0.6)


def _grid_affine(spacing=SPACING, origin=(-42.0, -33.0, -26.0)) -> np.ndarray:
    a = np.eye(4)
    a[:3, 0] = (0, 0, spacing[0])  # slices step superior
    a[:3, 1] = (0, spacing[1], 0)  # rows anterior
    a[:3, 2] = (spacing[2], 0, 0)  # columns right
    a[:3, 3] = origin
    return a


def _ras(affine, shape) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    return (idx @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)


CENTRE = np.array([0.0, 0.0, 0.0])
SEMI = np.array([22.0, 16.0, 20.0])  # marrow semi-axes in mm (x, y, z)


def _inside(ras, semi, centre=CENTRE) -> np.ndarray:
    return (((ras - centre) / semi) ** 2).sum(axis=-1) <= 1.0


def make_t1(shape=(16, 110, 140), affine=None, *, gap=False, seed=0):
    """A T1-like bone: bright textured marrow (1000) with a dark lesion (400) inside, a dark
    cortex (150, 1.8 mm), muscle (650) around it and subcutaneous fat (1500) outside. With
    ``gap``: a one-voxel gap in the cortex opens onto a marrow-bright blob outside (fat next
    to the bone), which must not be taken. Returns (volume, truth marrow mask)."""
    rng = np.random.default_rng(seed)
    affine = _grid_affine() if affine is None else affine
    ras = _ras(affine, shape)
    marrow = _inside(ras, SEMI)
    bone = _inside(ras, SEMI + 1.8)
    lesion = _inside(ras, np.array([5.0, 4.0, 6.0]), centre=np.array([8.0, 3.0, 0.0]))
    img = np.full(shape, 650.0)
    img[_inside(ras, SEMI + 14)] = 650.0
    img[~_inside(ras, SEMI + 14)] = 1500.0
    img[bone] = 150.0
    img[marrow] = 1000.0
    img[lesion] = 400.0
    if gap:
        blob = _inside(ras, np.array([8.0, 8.0, 12.0]), centre=np.array([-SEMI[0] - 11.0, 0.0, 0.0]))
        img[blob] = 1000.0
        y = ras[..., 1]
        channel = (np.abs(y) <= 0.31) & (ras[..., 0] < -SEMI[0] + 3) & (ras[..., 0] > -SEMI[0] - 5) \
            & (np.abs(ras[..., 2]) < 12)
        img[channel] = 1000.0
    img += rng.normal(0, 40, shape)
    return bmeviz.Volume(img.astype(np.float32), affine, {"sequence": "T1"}), marrow


def moved_phantom_atlases(folder, t1, marrow) -> None:
    """An atlas folder of 3 copies of the phantom ``t1`` and its ``marrow``, shifted by 1-2.5 mm
    (``p0``-``p2``; for the atlas path and the refiner without shared data)."""
    for i, shift in enumerate(((2.0, -1.5, 0.0), (-2.0, 1.0, 0.0), (1.0, 2.0, 0.0))):
        moved = t1.affine.copy()
        moved[:3, 3] += shift
        other = bmeviz.Volume(t1.array, moved, t1.metadata)
        bmeviz.io.save_volume(other, folder / f"p{i}_T1W.nii.gz")
        bmeviz.io.save_mask(marrow, other, folder / f"p{i}_disease_region.nii.gz")


def _dice(a, b) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _seed_mm():
    return [[-8.0, -2.0, 0.0]]


def test_outline_matches_truth_and_fills_the_lesion():
    vol, marrow = make_t1()
    before = vol.array.copy()
    res = region_from_seeds(vol, seeds_mm=_seed_mm())
    m = res.mask.array
    assert np.array_equal(vol.array, before)  # input untouched
    assert res.mask.shape == vol.shape and np.allclose(res.mask.affine, vol.affine)
    assert _dice(m, marrow) >= 0.9
    lesion = (vol.array < 600) & marrow
    assert m[lesion].mean() > 0.95  # the dark lesion is inside the marrow region
    outside = ~_inside(_ras(vol.affine, vol.shape), SEMI + 2.5)
    assert np.count_nonzero(m & outside) == 0  # nothing beyond the cortex
    assert res.info["contrast"] == "t1" and res.info["voxels"] == np.count_nonzero(m)


def test_second_user_clicks_barely_move_the_region():
    vol, marrow = make_t1()
    a = region_from_seeds(vol, seeds_mm=_seed_mm()).mask.array
    b = region_from_seeds(vol, seeds_mm=[[-12.0, 6.0, 6.0]]).mask.array
    assert _dice(a, b) >= 0.97


def test_cortex_gap_does_not_leak_into_fat():
    vol, marrow = make_t1(gap=True)
    m = region_from_seeds(vol, seeds_mm=_seed_mm()).mask.array
    ras = _ras(vol.affine, vol.shape)
    blob = _inside(ras, np.array([8.0, 8.0, 12.0]), centre=np.array([-SEMI[0] - 11.0, 0.0, 0.0]))
    assert m[blob].mean() < 0.05
    assert _dice(m, marrow) >= 0.9


def test_on_another_grid_overlays_in_ras(tmp_path):
    """T1 on one grid, fluid scan on another (other spacing and origin, same frame): the region
    written on the fluid grid matches the truth evaluated at the fluid grid's voxel centres."""
    t1, _ = make_t1()
    fluid_aff = _grid_affine(spacing=(3.0, 0.8, 0.7), origin=(-40.0, -30.0, -24.0))
    fluid = bmeviz.Volume(np.zeros((17, 80, 110), np.float32), fluid_aff, {"sequence": "STIR"})
    res = region_from_seeds(t1, seeds_mm=_seed_mm(), on=fluid)
    assert res.mask.shape == fluid.shape and np.allclose(res.mask.affine, fluid.affine)
    assert res.info["resampled"] is True
    out = bmeviz.save_mask(res.mask.array, fluid, tmp_path / "region.nii.gz")
    img = nib.load(out)  # an independent reader
    truth = _inside(_ras(fluid_aff, fluid.shape), SEMI)
    data = np.asarray(img.dataobj).transpose(2, 1, 0) > 0
    assert np.allclose(img.affine, fluid.to_nifti().affine)
    assert _dice(data, truth) >= 0.88


def test_errors_name_the_problem():
    vol, _ = make_t1()
    with pytest.raises(bmeviz.ParameterError, match="outside the image"):
        region_from_seeds(vol, seeds=[[0, 0, 500]])
    with pytest.raises(bmeviz.ParameterError, match="outside the image"):
        region_from_seeds(vol, seeds_mm=[[500.0, 0.0, 0.0]])
    with pytest.raises(bmeviz.ParameterError, match="at least one seed"):
        region_from_seeds(vol)
    with pytest.raises(bmeviz.ParameterError, match="dark tissue"):
        cortex = vol.ras_to_index([-SEMI[0] - 0.9, 0.0, 0.0], round=True)
        region_from_seeds(vol, seeds=[cortex])
    with pytest.raises(bmeviz.ParameterError, match="contrast"):
        region_from_seeds(vol, seeds_mm=_seed_mm(), contrast="pd")
    with pytest.raises(bmeviz.ParameterError, match="unknown region parameter"):
        region_from_seeds(vol, seeds_mm=_seed_mm(), params={"radius": 3})
    with pytest.raises(bmeviz.ParameterError, match="Volume"):
        region_from_seeds(vol.array, seeds=[[5, 50, 50]])
    with pytest.raises(bmeviz.ParameterError, match=r"\(N, 3\)"):
        region_from_seeds(vol, seeds=[[5, 50]])
    assert set(PARAMS) >= {"levels", "follow_mm", "close_mm"}


def test_cli_region_then_segment_end_to_end(tmp_path, capsys):
    t1, marrow = make_t1()
    # the fluid-sensitive scan: same grid, the lesion bright, marrow dark
    stir_arr = np.where(marrow, 200.0, 400.0).astype(np.float32)
    lesion = (t1.array < 600) & marrow
    stir_arr[lesion] = 900.0
    stir = bmeviz.Volume(stir_arr + np.random.default_rng(1).normal(0, 15, t1.shape).astype(np.float32),
                         t1.affine, {"sequence": "STIR"})
    p_t1, p_stir = tmp_path / "t1.nii.gz", tmp_path / "stir.nii.gz"
    bmeviz.io.save_volume(t1, p_t1)
    bmeviz.io.save_volume(stir, p_stir)
    out = tmp_path / "region.nii.gz"
    x, y, z = _seed_mm()[0]
    assert main(["region", str(p_t1), f"--seed-mm={x},{y},{z}", "--on", str(p_stir), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    img = nib.load(out)
    region = np.asarray(img.dataobj).transpose(2, 1, 0) > 0
    assert np.allclose(img.affine, nib.load(p_stir).affine) and region.shape == stir.shape
    assert _dice(region, marrow) >= 0.9
    ref = tuple(int(v) for v in np.argwhere(marrow & ~lesion)[0])
    seed = tuple(int(v) for v in np.argwhere(lesion).mean(axis=0).round())
    res_dir = tmp_path / "seg"
    assert main(["segment", str(p_stir), "--region", str(out), "--reference-point", ",".join(map(str, ref)),
                 "--seed", ",".join(map(str, seed)), "--out", str(res_dir), "--no-overlay"]) == 0
    bme = np.asarray(nib.load(res_dir / "bme_mask.nii.gz").dataobj).transpose(2, 1, 0) > 0
    assert _dice(bme, lesion) >= 0.8 and not np.any(bme & ~region)
    # bad input: one line, exit 2, no file
    bad = tmp_path / "bad.nii.gz"
    assert main(["region", str(p_t1), "--seed=0,0,999", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bmeviz: error:") and "outside the image" in err and not bad.exists()
    assert main(["region", str(p_t1), "--seed=5,50,60", "--out", str(p_t1)]) == 2
    assert "overwrite the input" in capsys.readouterr().err


def test_cli_region_manifest_is_checked_whole_before_anything_runs(tmp_path, capsys):
    """A manifest with problems on seven lines: one error listing each with its line, no
    output folder made; then the phantom case alone runs (the classical outline) and its table
    carries no input path; misuse of the flags names the problem."""
    t1, marrow = make_t1()
    bmeviz.io.save_volume(t1, tmp_path / "t1.nii.gz")
    x, y, z = _seed_mm()[0]
    out = tmp_path / "regions"
    (tmp_path / "bad.csv").write_text(
        "case_id,image,seeds_mm\n"
        f'p1,t1.nii.gz,"{x},{y},{z}"\n'
        f'p1,t1.nii.gz,"{x},{y},{z}"\n'  # the same case_id again
        f'../p3,t1.nii.gz,"{x},{y},{z}"\n'  # a case_id that is not a file name
        f'p4,missing.nii.gz,"{x},{y},{z}"\n'
        'p5,t1.nii.gz,"1,2"\n'  # two numbers
        "p6,t1.nii.gz,\n"  # no clicks
        "p7,t1.nii.gz,1,2,3\n")  # clicks not quoted: more cells than columns
    assert main(["region", "--manifest", str(tmp_path / "bad.csv"), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    for want in ("7 problem(s)", "line 3: case_id 'p1' is also on line 2", "line 4: case_id '../p3'",
                 "line 5: image missing.nii.gz: no such file", "line 6: seeds_mm must be three numbers",
                 "line 7: no clicks", "line 8: more cells than the header"):
        assert want in err
    assert not out.exists()
    (tmp_path / "good.csv").write_text(f'case_id,image,seeds_mm\np1,t1.nii.gz,"{x},{y},{z}"\n')
    assert main(["region", "--manifest", str(tmp_path / "good.csv"), "--out-dir", str(out)]) == 0
    assert "1 of 1 case(s) written" in capsys.readouterr().out
    img = nib.load(out / "p1_region.nii.gz")
    assert np.allclose(img.affine, nib.load(tmp_path / "t1.nii.gz").affine)
    assert _dice(np.asarray(img.dataobj).transpose(2, 1, 0) > 0, marrow) >= 0.9
    table = (out / "regions.csv").read_text()
    assert table.startswith("case_id,status,file,voxels,volume_ml") and ",ok,p1_region.nii.gz," in table
    assert str(tmp_path) not in table
    # the same case made to fail (its image replaced by one it cannot read): its earlier region goes
    (tmp_path / "broken.nii.gz").write_bytes(b"not a NIfTI")
    (tmp_path / "good.csv").write_text(f'case_id,image,seeds_mm\np1,broken.nii.gz,"{x},{y},{z}"\n')
    assert main(["region", "--manifest", str(tmp_path / "good.csv"), "--out-dir", str(out)]) == 1
    assert "0 of 1 case(s) written" in capsys.readouterr().out and not (out / "p1_region.nii.gz").exists()
    table = (out / "regions.csv").read_text()
    assert ",failed," in table and "broken.nii.gz" in table and str(tmp_path) not in table
    for argv, want in ((["region", str(tmp_path / "t1.nii.gz"), "--manifest", "good.csv", "--out-dir", "o"],
                        "IMAGE belong in the manifest"),
                       (["region", "--manifest", str(tmp_path / "good.csv")], "--manifest needs --out-dir"),
                       (["region", str(tmp_path / "t1.nii.gz"), "--out-dir", "o"], "--out-dir goes with --manifest"),
                       (["region", "--manifest", str(tmp_path / "no.csv"), "--out-dir", str(out)], "no such manifest")):
        assert main(argv) == 2
        assert want in capsys.readouterr().err


# ----------------------------------------------------------------------------- real data
@pytest.mark.parametrize("sid", ["1013"])
def test_real_sij_t1_three_clicks(sid):
    """Three clicks (right ilium, sacrum, left ilium) derived from the manual region as in
    benchmarks/region_sij.py. A regression floor, far below the issue's target (Dice 0.90,
    not reached: see docs/region.md): every click inside the region, the region on the STIR
    grid, no runaway leak (under twice the manual volume), Dice >= 0.35 (measured 0.49)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from region_sij import clicks_from_region

    t1 = bmeviz.load(shared("sij-stir-dev", "images", f"{sid}_T1W.nii.gz"))
    stir = bmeviz.load(shared("sij-stir-dev", "images", f"{sid}_STIR.nii.gz"))
    manual = bmeviz.load(shared("sij-stir-dev", "disease_region", f"{sid}_disease_region.nii.gz")).array > 0
    seeds = clicks_from_region(t1, manual)
    res = region_from_seeds(t1, seeds=seeds, on=stir)
    m = res.mask.array
    assert all(m[tuple(s)] for s in seeds)
    assert res.mask.shape == stir.shape and np.allclose(res.mask.affine, stir.affine)
    assert np.count_nonzero(m) < 2 * np.count_nonzero(manual)
    assert _dice(m, manual) >= 0.35
