"""Follow-up registration: bmeviz.followup.register vs a plain SimpleITK set-up, on real T1W
pairs, and the whole compare() on synthetic STIR follow-ups with exact truth.

    python benchmarks/bench_followup.py [--pairs N] [--cases 1007,1013,1234,4386] [--figures DIR]

Real pairs (``sij-t1-followup``, six pre/post T1W pairs of the same patients): NCC and MI
before (scanner frame) and after, wall and CPU seconds, for
- bmeviz: ``register(pre, post)`` (in-plane pyramid, 20k/40k/40k samples, best of 3 starts);
- plain:  SimpleITK as its examples set it up: geometry-centred start, Mattes MI (50 bins),
  1 % random samples, gradient descent, shrink 4/2/1 (all axes) with 2/1/0 mm smoothing.
``--figures DIR`` writes each pair's checkerboard (before/after) there, to look at.

Synthetic follow-ups (``sij-stir-dev``): reader R11 masks as lesion truth, a known motion
(4°, -3°, 5°; 5, -4, 3 mm), gain 0.7 + 40, the largest lesion shrunk, the second grown, the third
resolved, one new; compare() with the truth masks: motion error (rotation, largest displacement
in the bone region), statuses found, true vs measured total change, Dice of the follow-up
mask on the baseline grid for persisting lesions (pooled; per lesion >= 0.25 mL).
The machine's load is recorded: on a shared machine wall times are noisy; CPU times less so.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import SHARED, save, table  # noqa: E402

import bmeviz  # noqa: E402

PAIRS = [("1005", "1006"), ("1009", "1010"), ("2001", "3001"), ("2003", "3003"), ("2004", "3004"), ("6785", "9976")]


def plain_sitk(pre, post):
    import SimpleITK as sitk

    from bmeviz.followup._sitk import to_sitk

    f, m = to_sitk(pre), to_sitk(post)
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.01, 0)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100, convergenceMinimumValue=1e-6,
                                      convergenceWindowSize=10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(f, m)
    return sitk.CompositeTransform(out).GetNthTransform(0) if out.GetName() == "CompositeTransform" else out


def quality_of(pre, post, tx):
    from bmeviz.followup.register import _body, resample, similarity

    fixed = np.nan_to_num(pre.array.astype(np.float32))
    inside = resample(post, pre, tx, array=np.ones(post.shape, np.float32)) > 0.5
    return similarity(fixed, resample(post, pre, tx), _body(fixed) & inside)


def real_pairs(n, figures):
    from bmeviz.followup.figures import checkerboard_figure
    from bmeviz.followup.register import register

    root = SHARED / "sij-t1-followup"
    rows, out = [], []
    for pre_id, post_id in PAIRS[:n]:
        pre = bmeviz.load(root / f"{pre_id}_pre_T1W.nii.gz")
        post = bmeviz.load(root / f"{post_id}_post_T1W.nii.gz")
        t, c = time.perf_counter(), time.process_time()
        reg = register(pre, post)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        ptx = plain_sitk(pre, post)
        p_wall, p_cpu = time.perf_counter() - t, time.process_time() - c
        pq = quality_of(pre, post, ptx)
        q = reg.quality
        rec = {"pair": f"{pre_id}->{post_id}", "ncc_before": q["ncc_before"], "ncc_after": q["ncc_after"],
               "mi_before": q["mi_before"], "mi_after": q["mi_after"], "start": q["start"], "seconds": wall,
               "cpu_seconds": cpu, "rotation_deg": reg.rotation_deg, "plain_ncc_after": pq["ncc"],
               "plain_mi_after": pq["mi"], "plain_seconds": p_wall, "plain_cpu_seconds": p_cpu}
        out.append(rec)
        f2 = lambda v: "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"  # noqa: E731
        rows.append((rec["pair"], f2(q["ncc_before"]), f2(q["ncc_after"]), f2(q["mi_before"]), f2(q["mi_after"]),
                     f"{wall:.1f}/{cpu:.1f}", f2(pq["ncc"]), f"{p_wall:.1f}/{p_cpu:.1f}", q["start"]))
        if figures:
            fig = checkerboard_figure(pre, post, reg)
            Path(figures).mkdir(parents=True, exist_ok=True)
            fig.savefig(Path(figures) / f"checkerboard_{pre_id}_{post_id}.png", dpi=70)
        print(rows[-1], flush=True)
    print(table(rows, ("pair", "NCC before", "NCC after", "MI before", "MI after", "s wall/cpu", "plain NCC",
                       "plain s wall/cpu", "start")))
    return out


def synthetic_cases(cases):
    from bmeviz.followup._sitk import ras_matrix_to_transform
    from bmeviz.followup.change import compare
    from bmeviz.followup.register import resample
    from bmeviz.followup.synthetic import make_followup, motion_error
    from bmeviz.metrics import dice

    root = SHARED / "sij-stir-dev"
    rows, out = [], []
    for cid in cases:
        vol = bmeviz.load(root / "images" / f"{cid}_STIR.nii.gz")
        lesions = bmeviz.load(root / "inflammation" / f"{cid}_inflammation_R11.nii.gz").array > 0
        region = bmeviz.load(root / "disease_region" / f"{cid}_disease_region.nii.gz").array > 0
        ref = bmeviz.load(root / "normal_marrow" / f"{cid}_normal_marrow.nii.gz").array > 0
        syn = make_followup(vol, lesions, region=region, reference=ref)
        t = time.perf_counter()
        res = compare(vol, syn.followup, baseline_mask=syn.baseline_labels, followup_mask=syn.followup_labels,
                      baseline_options={"reference": ref}, followup_options={"reference": syn.followup_reference},
                      region=region)
        wall = time.perf_counter() - t
        err = motion_error(res.registration.matrix_ras, syn.matrix_ras, vol.index_to_ras(np.argwhere(region)[::20]))
        found = {}
        for _, row in res.table.iterrows():
            if row.status == "new":
                found[("new", int(row.followup_id))] = "new"
            else:
                for i in str(row.baseline_ids).split(";"):
                    found[int(i)] = row.status
        wrong = {i: (s, found.get(("new", i) if s == "new" else i)) for i, s in syn.status.items()
                 if found.get(("new", i) if s == "new" else i) != s}
        pers = [i for i, s in syn.status.items() if s == "persisting"]
        on_b, truth = res.followup_labels_on_baseline, syn.truth_on_baseline
        ceiling = resample(syn.followup, vol, ras_matrix_to_transform(syn.matrix_ras), labels=True,
                           array=syn.followup_labels)
        pooled = dice(np.isin(on_b, pers), np.isin(truth, pers))
        vox_ml = vol.voxel_volume_mm3 / 1000
        big = [dice(on_b == i, truth == i) for i in pers if np.count_nonzero(truth == i) * vox_ml >= 0.25]
        small = [dice(on_b == i, truth == i) for i in pers if np.count_nonzero(truth == i) * vox_ml < 0.25]
        small_ceiling = [dice(ceiling == i, truth == i) for i in pers if np.count_nonzero(truth == i) * vox_ml < 0.25]
        rec = {"case": cid, **err, "statuses": {str(k): v for k, v in syn.status.items()}, "wrong": str(wrong),
               "true_change_ml": syn.true_change_ml(), "change_ml": res.totals["change_ml"],
               "pooled_dice_persisting": pooled, "min_dice_large": min(big) if big else None,
               "median_dice_small": float(np.median(small)) if small else None,
               "median_dice_small_true_motion": float(np.median(small_ceiling)) if small_ceiling else None,
               "seconds": wall, "ncc_before": res.registration.quality["ncc_before"],
               "ncc_after": res.registration.quality["ncc_after"]}
        out.append(rec)
        counts = {s: sum(v == s for v in syn.status.values()) for s in ("shrunk", "grown", "resolved", "new")}
        rows.append((cid, f"{err['rotation_error_deg']:.3f}", f"{err['max_error_mm']:.3f}",
                     f"{sum(counts.values())} ({len(pers)} pers.)", "all" if not wrong else str(wrong),
                     f"{syn.true_change_ml():+.3f}", f"{res.totals['change_ml']:+.3f}", f"{pooled:.3f}",
                     "-" if not big else f"{min(big):.3f}",
                     "-" if not small else f"{np.median(small):.2f} ({np.median(small_ceiling):.2f})", f"{wall:.1f}"))
        print(rows[-1], flush=True)
    print(table(rows, ("case", "rot err deg", "max err mm", "changed lesions", "statuses right", "true change mL",
                       "measured mL", "Dice persisting", "min Dice >=0.25 mL", "median Dice small (true motion)",
                       "s")))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--cases", default="1007,1013,1234,4386")
    ap.add_argument("--figures", help="folder for the checkerboard of each real pair")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    load = os.getloadavg()
    real = real_pairs(args.pairs, args.figures) if args.pairs else []
    syn = synthetic_cases([c for c in args.cases.split(",") if c]) if args.cases else []
    path = save("followup", {"load_average": load, "cpus": os.cpu_count(), "real_pairs": real, "synthetic": syn})
    print(f"load average at start {load[0]:.1f} on {os.cpu_count()} cores; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
