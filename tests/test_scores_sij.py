"""SPARCC / Berlin on a real SIJ STIR scan (../shared/data/sij-stir-dev) with quadrants built from the
joint lines of benchmarks/data/sij_joint_lines.json through the napari tool's code path; a second
user's lines (jittered by up to 3 pixels) barely move the scores; CLI and API agree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import bmeviz
from bmeviz.cli import main
from bmeviz.scores import lines_from_paths, score_graded, score_sparcc, sij_quadrants
from helpers import ROOT, shared

LINES = json.loads((ROOT / "benchmarks" / "data" / "sij_joint_lines.json").read_text())["scans"]


def _load(sid):
    d = shared("sij-stir-dev")
    vol = bmeviz.load(d / "images" / f"{sid}_STIR.nii.gz")
    t1 = bmeviz.load(d / "images" / f"{sid}_T1W.nii.gz")
    region = bmeviz.load(d / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    r11 = bmeviz.load(d / "inflammation" / f"{sid}_inflammation_R11.nii.gz").array > 0
    return vol, t1, region, r11


def _anatomy(vol, t1, region, paths):
    return sij_quadrants(region, lines_from_paths(paths, volume=vol, region=region), volume=vol, snap_to=t1)


def _csf_point(vol, anatomy):
    """A point in the thecal sac: the brightest voxel between the two joint lines (smoothed)."""
    from scipy.ndimage import uniform_filter

    cols = sorted(float(np.mean([np.asarray(p)[:, 1].mean() for p in d.values()])) for d in anatomy.lines.values())
    a = uniform_filter(np.asarray(vol.array, float), 3)
    a[:, :, : int(cols[0])] = -np.inf
    a[:, :, int(cols[1]):] = -np.inf
    return vol.index_to_ras(np.unravel_index(np.argmax(a), a.shape))


@pytest.mark.parametrize("sid", ["1007", "4386"])
def test_real_sij_quadrants_and_a_second_users_lines(sid):
    vol, t1, region, r11 = _load(sid)
    an = _anatomy(vol, t1, region, LINES[sid]["paths"])
    fluid = _csf_point(vol, an)
    res = score_sparcc(vol, r11, an, fluid_point_mm=fluid)
    assert len(res.slices) == 6 and res.rows["points"].sum() == res.total
    for s in res.slices:  # every chosen slice shows all 8 quadrants
        assert set(np.unique(an.labels[s])) - {0} == set(range(1, 9))
    on = r11[res.slices] & region[res.slices]
    unlabelled = on & (an.labels[res.slices] == 0)
    if sid == "4386":
        assert unlabelled.sum() / on.sum() < 0.05
    else:  # 1007: the only reader lesion outside the quadrants is in L5, above both joints
        top = min(float(np.min(np.asarray(p)[:, 0] * vol.affine[2, 1] + np.asarray(p)[:, 1] * vol.affine[2, 2]))
                  for d in an.lines.values() for p in d.values())
        rr, cc = np.nonzero(unlabelled.any(axis=0))
        assert np.all(rr * vol.affine[2, 1] + cc * vol.affine[2, 2] > top)
    assert 10 <= res.total <= 60  # active but not maximal disease on these scans
    berlin = score_graded(vol, r11, an, scheme="berlin").total
    rng = np.random.default_rng(7)
    for _ in range(2):
        paths = [np.c_[np.asarray(p, float)[:, :1], np.asarray(p, float)[:, 1:] + rng.uniform(-3, 3, (len(p), 2))]
                 for p in LINES[sid]["paths"]]
        an2 = _anatomy(vol, t1, region, paths)
        res2 = score_sparcc(vol, r11, an2, fluid_point_mm=fluid)
        assert res2.slices == res.slices
        assert abs(res2.total - res.total) <= 3
        assert abs(score_graded(vol, r11, an2, scheme="berlin").total - berlin) <= 1


def test_real_sij_cli_matches_api(tmp_path):
    sid = "1007"
    vol, t1, region, r11 = _load(sid)
    d = shared("sij-stir-dev")
    an = _anatomy(vol, t1, region, LINES[sid]["paths"])
    fluid = _csf_point(vol, an)
    api = score_sparcc(vol, r11, an, fluid_point_mm=fluid)
    (tmp_path / "lines.json").write_text(json.dumps({"paths": LINES[sid]["paths"]}))
    out = tmp_path / "out"
    argv = ["score", str(d / "images" / f"{sid}_STIR.nii.gz"), "--lesions",
            str(d / "inflammation" / f"{sid}_inflammation_R11.nii.gz"), "--joint-lines", str(tmp_path / "lines.json"),
            "--region", str(d / "disease_region" / f"{sid}_disease_region.nii.gz"), "--snap-to",
            str(d / "images" / f"{sid}_T1W.nii.gz"), "--scheme", "sparcc", "--out", str(out),
            "--fluid-point-mm=" + ",".join(f"{v:.4f}" for v in fluid), "--save-anatomy", str(tmp_path / "q.nii.gz")]
    assert main(argv) == 0
    df = pd.read_csv(out / "scores.csv")
    assert int(df["points"].sum()) == api.total
    assert len(list((out / "figures").glob("slice_*.png"))) == 6
    # the quadrant map written overlays the scan voxel for voxel (nibabel, independently)
    import nibabel as nib

    img = nib.load(str(tmp_path / "q.nii.gz"))
    src = nib.load(str(d / "images" / f"{sid}_STIR.nii.gz"))
    assert img.shape == src.shape and np.allclose(img.affine, src.affine, atol=1e-4)
    assert np.array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), an.labels)


def test_real_sij_fluid_point_moved_by_2mm_barely_changes_the_ratios():
    sid = "4386"
    vol, t1, region, r11 = _load(sid)
    an = _anatomy(vol, t1, region, LINES[sid]["paths"])
    p = _csf_point(vol, an)
    base = score_sparcc(vol, r11, an, fluid_point_mm=p)
    ratios = base.rows["intensity_ratio"].to_numpy(float)
    assert np.isfinite(ratios).sum() >= 6
    for d in np.eye(3) * 2.0:
        moved = score_sparcc(vol, r11, an, fluid_point_mm=p + d).rows["intensity_ratio"].to_numpy(float)
        ok = np.isfinite(ratios)
        assert np.all(np.abs(moved[ok] / ratios[ok] - 1) < 0.15)
