"""Region assist beside what a user would otherwise do with the libraries: time and Dice
against the manual region on real SIJ T1 scans, three clicks per scan.

    python benchmarks/bench_region.py [--scans 1013,4386]

Compared, from the same clicks (benchmarks/region_sij.py: clicks_from_region):

* ``bmeviz.region.region_from_seeds`` (contrast t1);
* skimage.segmentation.flood with a tolerance of 1 IQR of the 5 mm ball around each click,
  then slice-wise hole filling (scipy) - the "magic wand";
* SimpleITK ConfidenceConnected (multiplier 2.0, 3 iterations, 3D), then hole filling;
* scipy: intensity band (median +- 1 IQR) + binary opening (1 px in-plane) + ndimage.label,
  the component of each click, hole filling.

Ratios are bmeviz time / other time. Needs ../shared/data; skips otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from region_sij import DEV, clicks_from_region, dice, paths  # noqa: E402


def _stats(img, seeds, spacing):
    from bmeviz.region import _local

    vals = np.concatenate([_local(img, s, 5.0, spacing) for s in seeds])
    q1, med, q3 = np.percentile(vals, [25, 50, 75])
    return float(med), float(q3 - q1)


def _fill(m):
    for z in range(m.shape[0]):
        m[z] = ndi.binary_fill_holes(m[z])
    return m


def skimage_flood(vol, seeds):
    from skimage.segmentation import flood

    img = np.asarray(vol.array, np.float32)
    out = np.zeros(img.shape, bool)
    for s in seeds:
        _, iqr = _stats(img, [s], vol.spacing)
        out |= flood(img, tuple(int(v) for v in s), tolerance=iqr)
    return _fill(out)


def sitk_confidence(vol, seeds):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.asarray(vol.array, np.float32))
    img.SetSpacing(tuple(float(s) for s in vol.spacing[::-1]))
    seg = sitk.ConfidenceConnected(img, seedList=[tuple(int(v) for v in s[::-1]) for s in seeds],
                                   numberOfIterations=3, multiplier=2.0, initialNeighborhoodRadius=2, replaceValue=1)
    return _fill(sitk.GetArrayFromImage(seg) > 0)


def scipy_band(vol, seeds):
    img = ndi.gaussian_filter(np.asarray(vol.array, np.float32), (0, 1, 1))
    med, iqr = _stats(img, seeds, vol.spacing)
    band = ndi.binary_opening((img >= med - iqr) & (img <= med + iqr), np.ones((1, 3, 3), bool))
    lab, _ = ndi.label(band)
    ids = np.unique(lab[tuple(np.asarray(seeds).T)])
    return _fill(np.isin(lab, ids[ids > 0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", default="1013,4386")
    args = ap.parse_args(argv)
    if not DEV.is_dir():
        print(f"skip: {DEV} not found (real data beside the project)")
        return 0
    import bmeviz
    from bmeviz.region import region_from_seeds

    methods = {
        "bmeviz region_from_seeds": lambda v, s: region_from_seeds(v, seeds=s, contrast="t1").mask.array,
        "skimage flood (magic wand)": skimage_flood,
        "SimpleITK ConfidenceConnected": sitk_confidence,
        "scipy band + opening + label": scipy_band,
    }
    rows = {k: [] for k in methods}
    for sid in args.scans.split(","):
        p = paths(sid)
        vol = bmeviz.load(p["t1"])
        manual = bmeviz.load(p["region"]).array > 0
        seeds = clicks_from_region(vol, manual)
        for name, fn in methods.items():
            t = time.perf_counter()
            m = fn(vol, seeds)
            rows[name].append((sid, dice(m, manual), time.perf_counter() - t))
    ref = np.mean([t for _, _, t in rows["bmeviz region_from_seeds"]])
    print(f"{'method':32} " + " ".join(f"{s:>13}" for s in args.scans.split(",")) + "   mean s  bmeviz/other")
    for name, r in rows.items():
        mean_t = np.mean([t for _, _, t in r])
        print(f"{name:32} " + " ".join(f"Dice {d:.2f} {t:4.1f}s" for _, d, t in r)
              + f"  {mean_t:6.2f}  {ref / mean_t:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
