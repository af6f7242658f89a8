"""Benchmark bmeviz.grow against whole-volume references, side by side, in one run.

Run ``python benchmarks/bench_grow.py [--repeats N]``. It builds one 200x512x512 float32
STIR-like volume (seeded RNG): dark marrow ~N(100, 10), a bright joint-fluid slab
~N(450, 30), a small lesion (~1000 voxels) and a big one (~2 million voxels), both
~N(300, 20). For each lesion it times (median of repeats):

- ``bmeviz.grow(image, seed, low=...)``;
- ``skimage.segmentation.flood(image >= low, seed)`` (threshold included);
- SimpleITK ``ConnectedThreshold`` (numpy in with GetImageFromArray, numpy out with
  GetArrayFromImage, conversions included);

plus one full threshold pass ``image >= low``, checks the three masks are identical, and
times a leak: a seed in the fluid slab with ``max_volume_ml=20`` (bmeviz stops and
discards the region; the references, which have no guard, flood the whole slab). It
also measures bmeviz.grow's peak traced memory (tracemalloc) against the input's bytes. The
contenders run round-robin after a warm-up round; medians of wall-clock and of process
CPU time are both reported (CPU time is steadier on a shared machine). A table is
printed and the numbers written to ``benchmarks/results/grow.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

import bmeviz
from bmeviz.grow import grow

SHAPE = (200, 512, 512)
SPACING = (1.0, 0.5, 0.5)
LOW = 200.0
SMALL = {"center": (100, 80, 80), "semi_axes": (4, 8, 8)}  # ~1070 voxels
BIG = {"center": (100, 290, 290), "semi_axes": (40, 110, 110)}  # ~2.03 million voxels
FLUID_ROWS = (470, 500)  # a joint-fluid slab across the volume: 200 x 30 x 512 voxels
LEAK = {"center": (100, 485, 256), "max_volume_ml": 20.0}  # a seed in it, with the guard


def ellipsoid(shape, center, semi_axes):
    """Bool mask and bounding box of an axis-aligned ellipsoid (computed in its box only)."""
    lo = [max(0, c - a) for c, a in zip(center, semi_axes)]
    hi = [min(n, c + a + 1) for n, c, a in zip(shape, center, semi_axes)]
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inside = sum(((g - c) / a) ** 2 for g, c, a in zip(grids, center, semi_axes)) <= 1
    return tuple(slice(a, b) for a, b in zip(lo, hi)), inside


def make_volume(seed=20240601):
    rng = np.random.default_rng(seed)
    img = rng.standard_normal(SHAPE, dtype=np.float32)
    img *= 10
    img += 100
    img[:, slice(*FLUID_ROWS), :] += 350  # joint fluid (bright, apart from the lesions)
    truth = {}
    for name, spec in (("small", SMALL), ("big", BIG)):
        box, inside = ellipsoid(SHAPE, **spec)
        view = img[box]
        view[inside] += 200 + 20 * rng.standard_normal(int(inside.sum()), dtype=np.float32)
        view[inside] = np.maximum(view[inside], LOW + 1)  # lesion voxels are all above LOW
        truth[name] = int(inside.sum())
    return img, truth


def race(fns, repeats):
    """Time each function ``repeats`` times, round-robin after one warm-up round.

    Returns ``{name: (median wall s, median CPU s)}`` and the last output of each. Running
    the contenders in turn spreads the noise of a shared machine over all of them.
    """
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    out = {}
    for r in range(repeats + 1):
        for name, fn in fns.items():
            out[name] = None
            w0, c0 = time.perf_counter(), time.process_time()
            out[name] = fn()
            w1, c1 = time.perf_counter(), time.process_time()
            if r:  # round 0 warms up caches, allocator and lazy imports
                wall[name].append(w1 - w0)
                cpu[name].append(c1 - c0)
    return {k: (float(np.median(wall[k])), float(np.median(cpu[k]))) for k in fns}, out


def run_flood(image, seed):
    from skimage.segmentation import flood

    return flood(image >= LOW, tuple(seed), connectivity=3)


def run_sitk(image, seed):
    import SimpleITK as sitk

    itk = sitk.GetImageFromArray(image)
    f = sitk.ConnectedThresholdImageFilter()
    f.SetSeedList([tuple(int(v) for v in seed[::-1])])  # ITK index is (x, y, z)
    f.SetLower(LOW)
    f.SetUpper(float(np.finfo(np.float32).max))
    f.SetReplaceValue(1)
    f.SetConnectivity(f.FullConnectivity)
    return sitk.GetArrayFromImage(f.Execute(itk)).astype(bool)


def peak_memory(fn):
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, out


def main(argv=None):
    warnings.simplefilter("ignore")  # the leak case warns on every repeat, by design
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "grow.json"))
    args = ap.parse_args(argv)
    rep = max(1, args.repeats)

    t0 = time.perf_counter()
    image, truth = make_volume()
    print(f"volume {SHAPE} float32 ({image.nbytes / 1e6:.0f} MB), spacing {SPACING}, "
          f"built in {time.perf_counter() - t0:.1f} s; lesions: {truth}")

    results = {"shape": list(SHAPE), "dtype": "float32", "spacing": list(SPACING),
               "low": LOW, "repeats": rep, "input_bytes": int(image.nbytes),
               "lesion_voxels": truth, "python": platform.python_version(),
               "numpy": np.__version__, "bmeviz": bmeviz.__version__,
               "cpus": os.cpu_count(), "cases": {}}

    import SimpleITK as sitk

    results["sitk_threads"] = int(sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
    for name, spec in (("small", SMALL), ("big", BIG), ("leak", LEAK)):
        seed = spec["center"]
        r = rep
        kw = {"spacing": SPACING, "max_volume_ml": spec.get("max_volume_ml")}
        times, out = race({
            "bmeviz": lambda: grow(image, seed, low=LOW, **kw),
            "flood": lambda: run_flood(image, seed),
            "sitk": lambda: run_sitk(image, seed),
            "threshold": lambda: image >= LOW,
        }, r)
        res = out.pop("bmeviz")
        if name == "leak":  # the guard discards the region: compare with nothing grown
            same_flood = bool(res.leaked[0] and not res.mask.any())
            same_itk = same_flood
        else:
            same_flood = bool(np.array_equal(res.mask, out["flood"]))
            same_itk = bool(np.array_equal(res.mask, out["sitk"]))
        del out, res
        peak, res = peak_memory(lambda: grow(image, seed, low=LOW, **kw))
        out_bytes = res.mask.nbytes + res.seed_labels.nbytes
        (tg, cg), (tf, cf), (ts, cs), (tt, ct) = (
            times[k] for k in ("bmeviz", "flood", "sitk", "threshold"))
        results["cases"][name] = {
            "voxels": int(sum(res.voxels)),
            "leaked": bool(res.leaked[0]),
            "max_volume_ml": spec.get("max_volume_ml"),
            "repeats": r,
            "wall_s": {"bmeviz_grow": tg, "skimage_flood": tf, "sitk_connected_threshold": ts,
                       "full_threshold": tt},
            "cpu_s": {"bmeviz_grow": cg, "skimage_flood": cf, "sitk_connected_threshold": cs,
                      "full_threshold": ct},
            "grow_vs_full_threshold": tg / tt,
            "grow_vs_flood": tg / tf,
            "grow_vs_sitk": tg / ts,
            "cpu_grow_vs_full_threshold": cg / ct,
            "cpu_grow_vs_flood": cg / cf,
            "cpu_grow_vs_sitk": cg / cs,
            "mask_equals_flood": same_flood,
            "mask_equals_sitk": same_itk,
            "peak_traced_bytes": int(peak),
            "peak_vs_input": peak / image.nbytes,
            "output_bytes": int(out_bytes),
            "scratch_vs_input": (peak - out_bytes) / image.nbytes,
        }
        del res

    # -- table ----------------------------------------------------------------------------
    head = (f"{'case':6} {'clock':5} {'voxels':>8} {'bmeviz':>9} {'flood':>9} {'SimpleITK':>9} "
            f"{'thresh':>8} {'/thresh':>8} {'/flood':>7} {'/sitk':>7} {'same':>5} {'peak/in':>8} "
            f"{'scratch/in':>10}")
    print("\n" + head)
    print("-" * len(head))
    for name, c in results["cases"].items():
        for clock, key, pre in (("wall", "wall_s", ""), ("cpu", "cpu_s", "cpu_")):
            ms = {k: v * 1e3 for k, v in c[key].items()}
            row = (f"{name:6} {clock:5} {c['voxels']:>8} {ms['bmeviz_grow']:>7.1f}ms "
                   f"{ms['skimage_flood']:>7.1f}ms {ms['sitk_connected_threshold']:>7.1f}ms "
                   f"{ms['full_threshold']:>6.1f}ms {c[pre + 'grow_vs_full_threshold']:>8.3f} "
                   f"{c[pre + 'grow_vs_flood']:>7.3f} {c[pre + 'grow_vs_sitk']:>7.3f}")
            if clock == "wall":
                same = c["mask_equals_flood"] and c["mask_equals_sitk"]
                row += f" {str(same):>5} {c['peak_vs_input']:>8.3f} {c['scratch_vs_input']:>10.3f}"
            print(row)
    print("\nwall and cpu: medians over round-robin repeats; ratios are bmeviz / reference."
          "\nleak: a seed in the joint-fluid slab (200 x 30 x 512 voxels) with "
          f"max_volume_ml={LEAK['max_volume_ml']:g};\nbmeviz stops and discards the region "
          "(same = leaked and empty), the references flood the whole slab.")
    print("\npeak/in: tracemalloc peak of bmeviz.grow / input bytes; it includes the full-size"
          "\noutputs (bool mask + int32 seed_labels = 1.25x a float32 input), which are"
          "\nallocated zeroed and only touched around the lesion; scratch/in excludes them.")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)
    print(f"\nwrote {out}")
    return results


if __name__ == "__main__":
    main()
