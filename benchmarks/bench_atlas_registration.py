"""The atlas path's registrations beside SimpleITK's own multi-resolution registration.

    python benchmarks/bench_atlas_registration.py [--scans 1013,1234] [--threads 2]

For each scan, the other SIJ T1 scans of ../shared are its atlases (as in
``benchmarks/region_sij.py --atlas auto``), from the same clicks (``clicks_from_region``).
Two ways to register them, each followed by the same ranking and fusion (the 3 best atlases by
the correlation in the widened warped region, weighted mean >= 0.35, no demons):

* **SimpleITK's pyramid**: what a user writes with ``sitk.ImageRegistrationMethod``: the start
  search, rigid and affine stages (Mattes mutual information, 20 % of the voxels within 70 mm
  of the clicks), each ``Execute`` given the full-size images, ``SetShrinkFactorsPerLevel([4])``
  and ``SetSmoothingSigmasPerLevel([2 mm])``: SimpleITK smooths and shrinks inside every stage.
  This was bmeviz's own path until 2026-12-03.
* **bmeviz** (``bmeviz.region_atlas.atlas_probability``, its defaults with ``demons=False`` and
  ``n_best=3``, as the other):
  the pyramid built once per image (8x then 4x in-plane, thick slices kept), 5 % of the voxels.

Both are timed as whole outlines after one warm-up (the atlases already read and prepared),
with the same number of Python threads, and scored by Dice against the manual region. Ratios
are bmeviz time / SimpleITK time. Needs ../shared/data and SimpleITK; skips otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from region_sij import DEV, auto_atlas_dir, clicks_from_region, dice, paths  # noqa: E402


def sitk_pyramid_probability(volume, idx, atlases, threads: int) -> np.ndarray:
    """The fused probability with SimpleITK's in-stage pyramid (the same start, ranking, fusion)."""
    import SimpleITK as sitk

    from bmeviz.followup._sitk import to_sitk
    from bmeviz.region_atlas import _lps, _ncc, _near, _norm, _warp, atlas_clicks

    F = _norm(sitk, volume)
    fmask = to_sitk(volume, _near(volume.shape, volume.spacing, idx, 70.0).astype(np.uint8), dtype=None)
    target = sitk.GetArrayFromImage(F)
    pf = _lps(volume, idx).mean(0)
    df = np.array(F.GetDirection()).reshape(3, 3)
    grow = max(1, int(round(5.0 / min(volume.spacing[1:]))))
    cross = np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool)

    def stage(M, init, kind, salt):
        R = sitk.ImageRegistrationMethod()
        R.SetMetricAsMattesMutualInformation(32)
        R.SetMetricSamplingStrategy(R.RANDOM)
        R.SetMetricSamplingPercentage(0.2, seed=salt + 7919)
        R.SetMetricFixedMask(fmask)
        R.SetInterpolator(sitk.sitkLinear)
        R.SetShrinkFactorsPerLevel([4])
        R.SetSmoothingSigmasPerLevel([2.0])
        R.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
        if kind == "search":
            R.SetOptimizerAsExhaustive([0, 0, 1, 3, 3, 1], stepLength=1.0)
            R.SetOptimizerScales([1.0, 1.0, np.deg2rad(6.0), 5.0, 5.0, 6.6])
            t = sitk.Euler3DTransform()
        elif kind == "rigid":
            R.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 60, relaxationFactor=0.6)
            R.SetOptimizerScalesFromPhysicalShift()
            t = sitk.Euler3DTransform()
        else:
            R.SetOptimizerAsRegularStepGradientDescent(2.0, 1e-3, 60, relaxationFactor=0.6)
            R.SetOptimizerScalesFromPhysicalShift()
            t = sitk.AffineTransform(3)
        t.SetCenter(init.GetCenter())
        m = np.array(init.GetMatrix()).reshape(3, 3)
        if kind != "affine":
            u, _, vt = np.linalg.svd(m)
            m = u @ vt
        t.SetMatrix(m.ravel().tolist())
        t.SetTranslation(init.GetTranslation())
        R.SetInitialTransform(t, inPlace=True)
        R.Execute(F, M)
        return t

    def register(a):
        M, Rg = _norm(sitk, a.image), to_sitk(a.image, a.region.astype(np.float32))
        pm = _lps(a.image, atlas_clicks(a.image, a.region)).mean(0)
        init = sitk.AffineTransform(3)
        init.SetCenter(pf.tolist())
        init.SetMatrix((np.array(M.GetDirection()).reshape(3, 3) @ df.T).ravel().tolist())
        init.SetTranslation((pm - pf).tolist())
        return M, Rg, init

    prepared = [register(a) for a in atlases]  # not timed: as bmeviz's, prepared once per atlas

    def run(prep):
        M, Rg, init = prep
        aff = stage(M, stage(M, stage(M, init, "search", 1), "rigid", 2), "affine", 3)
        zone = ndi.binary_dilation(_warp(sitk, Rg, F, aff) >= 0.5, iterations=grow, structure=cross)
        score = _ncc(_warp(sitk, M, F, aff)[zone], target[zone]) if zone.sum() > 100 else -1.0
        return score, Rg, aff

    def fused() -> np.ndarray:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            ranked = sorted(pool.map(run, prepared), key=lambda r: -r[0])[:3]
        w = np.array([r[0] for r in ranked])
        probs = [_warp(sitk, Rg, F, aff) for _, Rg, aff in ranked]
        return np.tensordot(w / w.sum(), np.asarray(probs), axes=1)

    old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        fused()  # warm-up, as for bmeviz
        t = time.perf_counter()
        prob = fused()
        return prob, time.perf_counter() - t
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", default="1013,1234")
    ap.add_argument("--threads", type=int, default=2, help="atlases registered side by side (both ways)")
    args = ap.parse_args(argv)
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        print("skip: SimpleITK is not installed (pip install 'bmeviz[region]')")
        return 0
    if not DEV.is_dir():
        print(f"skip: SIJ data not found at {DEV} (it lives beside the project, never in the repository)")
        return 0
    import bmeviz
    from bmeviz.region_atlas import _components_meeting, _near, atlas_probability, load_atlases

    tmp = tempfile.TemporaryDirectory(prefix="bmeviz-atlas-bench-")
    folder = auto_atlas_dir(Path(tmp.name))
    print(f"{'scan':6} {'SimpleITK pyramid Dice':>22} {'s':>6} {'bmeviz Dice':>11} {'s':>6} {'time ratio':>10}")
    for sid in args.scans.split(","):
        p = paths(sid)
        t1 = bmeviz.load(p["t1"])
        manual = bmeviz.load(p["region"]).array > 0
        idx = clicks_from_region(t1, manual)
        atlases = [a for a in load_atlases(folder) if a.name != sid]
        near = _near(t1.shape, t1.spacing, idx, 5.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = {"demons": False, "threads": args.threads}
            atlas_probability(t1, idx, atlases, n_best=3, params=params)  # warm-up: reads and prepares the atlases
            t = time.perf_counter()
            ours, _ = atlas_probability(t1, idx, atlases, n_best=3, params=params)
            t_ours = time.perf_counter() - t
            theirs, t_theirs = sitk_pyramid_probability(t1, idx, atlases, args.threads)
        d_ours = dice(_components_meeting(ours >= 0.35, near), manual)
        d_theirs = dice(_components_meeting(theirs >= 0.35, near), manual)
        print(f"{sid:6} {d_theirs:22.3f} {t_theirs:6.2f} {d_ours:11.3f} {t_ours:6.2f} {t_ours / t_theirs:10.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
