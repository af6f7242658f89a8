"""The whole segment() call on a big volume, side by side with what users would otherwise run.

    python benchmarks/bench_segment.py [--small] [--repeats N]

One 200x512x512 float32 STIR-like volume (seeded RNG): dark marrow ~N(200, 25) with
bright lesions (+450), a search region (bone) mask and a normal-marrow reference mask,
both given as whole-volume bool arrays (as a user's NIfTI masks are). In one run:

- **big lesion** (~200k voxels): ``bmeviz.segment(vol, reference=mask, region=mask,
  seeds=[click])`` (threshold from the reference, grow, clean, lesion table, provenance)
  against ``skimage.segmentation.flood((image >= t) & region, seed)`` (threshold
  included, no table); target <= 0.5x.
- **small lesion** (~1k voxels): the same seeded call against one threshold pass
  ``image >= t``; target <= 0.2x.
- **all in region**: no seeds, against scipy ``label`` + ``bincount`` + ``mean`` (the
  whole volume is work here, so ~1x is the expectation).
- **peak memory** of the seeded calls (tracemalloc: numpy allocations) against the
  volume's bytes; target <= 3x.

Timings are medians of ``--repeats`` runs after a warm-up; results go to
``benchmarks/results/segment.json``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, peak_bytes, save, table  # noqa: E402

import bmeviz  # noqa: E402
from bmeviz.pipeline import reference_threshold  # noqa: E402


def _ellipsoid_into(img, region, centre, semi):
    lo = [max(0, c - a) for c, a in zip(centre, semi)]
    hi = [min(n, c + a + 1) for n, c, a in zip(img.shape, centre, semi)]
    g = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inside = sum(((x - c) / a) ** 2 for x, c, a in zip(g, centre, semi)) <= 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    img[box][inside] += 450
    region[box] |= inside
    return int(inside.sum())


def make_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal(shape, dtype=np.float32)
    img *= 25
    img += 200
    region = np.zeros(shape, bool)
    region[:, shape[1] // 8: -shape[1] // 8, shape[2] // 8: -shape[2] // 8] = True
    s = shape[0] / 200
    big_c = (shape[0] // 2, shape[1] // 2, shape[2] // 2)
    big_semi = (max(2, int(14 * s)), int(60 * shape[1] / 512), int(60 * shape[2] / 512))
    small_c = (shape[0] // 2, shape[1] // 12, shape[2] // 12)
    small_semi = (3, 9, 9)
    n_big = _ellipsoid_into(img, region, big_c, big_semi)
    n_small = _ellipsoid_into(img, region, small_c, small_semi)
    others = rng.integers([10, 80, 80], [shape[0] - 10, shape[1] - 80, shape[2] - 80], size=(20, 3))
    for i, c in enumerate(others):  # more lesions, for the all-in-region path
        if np.abs(c - np.array(big_c)).max() > 80:
            _ellipsoid_into(img, region, tuple(int(v) for v in c), (2 + i % 3, 4 + i % 6, 4 + i % 6))
    reference = np.zeros(shape, bool)
    ry, rx = int(shape[1] * 0.7), int(shape[2] * 0.2)
    reference[shape[0] // 2 - 3: shape[0] // 2 + 3, ry: ry + 20, rx: rx + 20] = True
    affine = np.diag([3.0, 0.6, 0.6, 1.0])
    vol = bmeviz.Volume(img, affine, {"sequence": "STIR"})
    return vol, reference, region, (big_c, n_big), (small_c, n_small)


def flood_path(img, t, region, seed):
    from skimage.segmentation import flood

    return flood((img >= t) & region, seed, connectivity=3)


def scipy_path(img, t, region):
    mask = (img >= t) & region
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    counts = np.bincount(lab.ravel())[1:]
    means = ndi.mean(img, lab, index=np.arange(1, n + 1))
    return counts, means


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="a 40x256x256 volume (quick check)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    shape = (40, 256, 256) if args.small else (200, 512, 512)
    vol, ref, region, (big, n_big), (small, n_small) = make_volume(shape)
    img = vol.array
    # the threshold segment() itself uses (robust reference, default k): the references get the same level
    t = reference_threshold(vol, reference=ref, region=region)[2].value
    warnings.simplefilter("ignore", bmeviz.BmevizWarning)
    rep = args.repeats

    def seeded(seed):
        return lambda: bmeviz.segment(vol, reference=ref, region=region, seeds=[seed])

    t_big, res_big = best_of(seeded(big), repeat=rep)
    t_flood, flooded = best_of(lambda: flood_path(img, t, region, big), repeat=rep)
    t_small, res_small = best_of(seeded(small), repeat=rep)
    t_thr, _ = best_of(lambda: img >= t, repeat=rep)
    kw = dict(reference=ref, region=region, min_volume_mm3=0, min_slices=1, min_contrast_sd=0)  # no filter: = scipy
    t_all, res_all = best_of(lambda: bmeviz.segment(vol, **kw), repeat=max(1, rep // 2))
    t_sp, (counts, _) = best_of(lambda: scipy_path(img, t, region), repeat=max(1, rep // 2))
    peak_big = peak_bytes(seeded(big))
    peak_small = peak_bytes(seeded(small))
    # the same voxels as the references
    assert np.array_equal(res_big.labels > 0, flooded), "seeded big lesion differs from the flood"
    assert int(res_big.table["voxels"].sum()) == int(flooded.sum())
    assert sorted(res_all.table["voxels"]) == sorted(counts.tolist())
    nbytes = img.nbytes
    rows = [
        (f"big lesion ({n_big} voxels): skimage flood(image >= t & region)", f"{t_flood:.4f}", "1.00", ""),
        ("  bmeviz.segment seeded (whole call)", f"{t_big:.4f}", f"{t_big / t_flood:.2f}", "<= 0.5"),
        (f"small lesion ({n_small} voxels): one threshold pass image >= t", f"{t_thr:.4f}", "1.00", ""),
        ("  bmeviz.segment seeded (whole call)", f"{t_small:.4f}", f"{t_small / t_thr:.3f}", "<= 0.2"),
        ("all in region: scipy threshold+label+bincount+mean", f"{t_sp:.3f}", "1.00", ""),
        ("  bmeviz.segment all-in-region (+clean, table)", f"{t_all:.3f}", f"{t_all / t_sp:.2f}", ""),
    ]
    print(f"volume {shape} float32 = {nbytes / 1e6:.0f} MB; whole-volume reference and region masks")
    print(table(rows, ("path", "seconds (median)", "ratio", "target")))
    print(f"peak memory of seeded segment(): big lesion {peak_big / nbytes:.2f}x the volume, "
          f"small lesion {peak_small / nbytes:.2f}x (target <= 3x)")
    out = save("segment" + ("_small" if args.small else ""), {
        "shape": list(shape), "input_bytes": nbytes, "big_lesion_voxels": n_big, "small_lesion_voxels": n_small,
        "flood_s": t_flood, "seeded_big_s": t_big, "ratio_big_vs_flood": t_big / t_flood,
        "threshold_pass_s": t_thr, "seeded_small_s": t_small, "ratio_small_vs_threshold_pass": t_small / t_thr,
        "scipy_all_s": t_sp, "bmeviz_all_s": t_all, "ratio_all_vs_scipy": t_all / t_sp,
        "peak_big_vs_input": peak_big / nbytes, "peak_small_vs_input": peak_small / nbytes,
    })
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
