"""segment() on a big volume: whole path vs a plain scipy path, and peak memory.

    python benchmarks/bench_segment.py [--small]

On a 200x512x512 float32 STIR-like volume (seeded RNG), in one run:
- bmeviz "all in region": threshold from the reference -> grow_all -> clean -> lesion table
- scipy: image >= t inside the region -> ndimage.label -> bincount volumes + ndimage.mean
  (what a user would otherwise write: no size/slice rules, no centroids in mm)
- bmeviz seeded: one click on a ~1000-voxel lesion (cost should follow the lesion)
Peak memory (tracemalloc: numpy allocations) of segment() vs the input's bytes; target <= 3x.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, peak_bytes, save, table  # noqa: E402

import bmeviz  # noqa: E402
from bmeviz.threshold import compute_threshold  # noqa: E402


def make_volume(shape, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(200, 25, size=shape).astype(np.float32)
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    region = np.zeros(shape, bool)
    region[:, shape[1] // 8 : -shape[1] // 8, shape[2] // 8 : -shape[2] // 8] = True
    centres = rng.integers([10, 80, 80], [shape[0] - 10, shape[1] - 80, shape[2] - 80], size=(30, 3))
    for i, (z, y, x) in enumerate(centres):
        r = 4 + (i % 6) * 2
        ball = ((zz - z) / max(1, r // 3)) ** 2 + ((yy - y) / r) ** 2 + ((xx - x) / r) ** 2 <= 1
        img[ball] += 450
    small = np.array([shape[0] // 2, shape[1] // 12, shape[2] // 12])  # a ~1000-voxel lesion away from the others
    ball = ((zz - small[0]) / 3.0) ** 2 + ((yy - small[1]) / 9.0) ** 2 + ((xx - small[2]) / 9.0) ** 2 <= 1
    img[ball] += 450
    region |= ball
    reference = np.zeros(shape, bool)
    ry, rx = int(shape[1] * 0.6), int(shape[2] * 0.15)
    reference[shape[0] // 2 - 3 : shape[0] // 2 + 3, ry : ry + 20, rx : rx + 20] = True
    affine = np.diag([3.0, 0.6, 0.6, 1.0])
    return bmeviz.Volume(img, affine, {"sequence": "STIR"}), reference, region, small


def scipy_path(img, t, region):
    mask = (img >= t) & region
    lab, n = ndi.label(mask, structure=np.ones((3, 3, 3), bool))
    counts = np.bincount(lab.ravel())[1:]
    means = ndi.mean(img, lab, index=np.arange(1, n + 1))
    return counts, means


def main() -> int:
    shape = (40, 256, 256) if "--small" in sys.argv else (200, 512, 512)
    vol, ref, region, small = make_volume(shape)
    img = vol.array
    t = compute_threshold(img, reference=ref).value
    kw = dict(reference=ref, region=region, min_volume_mm3=0, min_slices=1)
    t_bme, res = best_of(lambda: bmeviz.segment(vol, **kw), repeat=3)
    t_sp, (counts, _) = best_of(lambda: scipy_path(img, t, region), repeat=3)
    t_seed, res_seed = best_of(lambda: bmeviz.segment(vol, reference=ref, seeds=[small], min_volume_mm3=0,
                                                     min_slices=1), repeat=5)
    t_thr, _ = best_of(lambda: img >= t, repeat=5)
    peak_all = peak_bytes(lambda: bmeviz.segment(vol, **kw))
    peak_seed = peak_bytes(lambda: bmeviz.segment(vol, reference=ref, seeds=[small], min_volume_mm3=0, min_slices=1))
    assert res.n_lesions == counts.size, (res.n_lesions, counts.size)
    assert sorted(res.table["voxels"]) == sorted(counts.tolist())
    rows = [
        ("scipy: threshold+label+bincount+mean", f"{t_sp:.3f}", "1.00"),
        ("bmeviz.segment all-in-region (+clean, table)", f"{t_bme:.3f}", f"{t_bme / t_sp:.2f}"),
        ("one full threshold pass (image >= t)", f"{t_thr:.4f}", f"{t_thr / t_sp:.3f}"),
        (f"bmeviz.segment seeded, {int(res_seed.table['voxels'].sum())}-voxel lesion", f"{t_seed:.3f}",
         f"{t_seed / t_sp:.2f}"),
    ]
    nbytes = img.nbytes
    print(f"volume {shape} float32 = {nbytes / 1e6:.0f} MB; {res.n_lesions} lesions (same as scipy)")
    print(table(rows, ("path", "seconds (median)", "ratio vs scipy")))
    print(f"peak memory of segment: all-in-region {peak_all / nbytes:.2f}x input, seeded {peak_seed / nbytes:.2f}x input")
    out = save("segment" + ("_small" if "--small" in sys.argv else ""), {
        "shape": list(shape), "input_bytes": nbytes, "n_lesions": res.n_lesions,
        "scipy_s": t_sp, "bmeviz_all_s": t_bme, "threshold_pass_s": t_thr, "bmeviz_seeded_s": t_seed,
        "ratio_all_vs_scipy": t_bme / t_sp, "ratio_seeded_vs_threshold_pass": t_seed / t_thr,
        "peak_all_vs_input": peak_all / nbytes, "peak_seeded_vs_input": peak_seed / nbytes,
    })
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
