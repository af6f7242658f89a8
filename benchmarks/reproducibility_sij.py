"""Reproducibility of bmeviz between simulated users on the SIJ STIR development scans.

    python benchmarks/reproducibility_sij.py            # default set of configurations
    python benchmarks/reproducibility_sij.py --users 8  # more users per scan

Data: ``../shared/data/sij-stir-dev`` beside the project (never copied into the
repository). Without it the script prints a skip message and exits 0.

Simulated users (fixed random seeds, so every run draws the same users): each user puts
the reference point on a random voxel of the readers' normal-marrow ROI with a radius drawn
uniformly in 6-10 mm, and clicks once in each R11 lesion (26-connected component) on a
random voxel of its bright half (intensity >= the lesion's median). For every
configuration (a set of ``segment()`` options) and scan the script reports:

- between-user Dice (mean over user pairs) and the total-volume CV (SD / mean) with point
  references;
- Dice against the 4 readers (mean over readers and users) with point references, with the
  readers' manual normal-marrow ROI (same clicks) and with the automatic reference;
- "find all in region" (no clicks): Dice against the readers and false-positive volume
  (bmeviz voxels in no reader's mask), with the manual ROI, the automatic reference and
  point references.

Configurations with tuned values are scored leave-one-scan-out: chosen on three scans by
the mean seeded Dice against the readers with point references, scored on the fourth.
Results go to ``benchmarks/results/reproducibility_sij.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from validate_sij import DATA, PUBLISHED_R11_R21, SCANS, load_case  # noqa: E402

from bmeviz.metrics import dice  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

#: Configurations: label -> segment() options (besides reference, seeds, region).
CONFIGS: dict[str, dict] = {
    "before (plain ref, adaptive max)": {"robust_reference": False, "adaptive_top": None, "k": "adaptive",
                                         "seed_snap_mm": None, "min_contrast_sd": 0, "leak_jump": None},
    "robust ref, k=2": {"seed_snap_mm": None, "min_contrast_sd": 0, "leak_jump": None},
    "+ snap, contrast 7": {"leak_jump": None},
    "+ leak check 3 (defaults)": {},
    "defaults, k=2.5": {"k": 2.5},
    "defaults, edge half-max": {"edge": "half-max"},
}


def simulate_users(case: dict, n_users: int, seed: int) -> list[dict]:
    """Reference points/radii and one click per R11 lesion for ``n_users`` users."""
    rng = np.random.default_rng(seed)
    img = case["volume"].array
    normal = np.argwhere(case["normal"])
    lab, n = ndi.label(case["readers"]["R11"], structure=np.ones((3, 3, 3), bool))
    lesions = [np.argwhere(lab == i) for i in range(1, n + 1)]
    bright = []
    for vox in lesions:
        v = img[tuple(vox.T)]
        bright.append(vox[v >= np.median(v)])
    users = []
    for _ in range(n_users):
        p = normal[rng.integers(len(normal))]
        r = float(rng.uniform(6.0, 10.0))
        clicks = np.array([b[rng.integers(len(b))] for b in bright])
        users.append({"point": p.tolist(), "radius_mm": r, "seeds": clicks})
    return users


def _run(case, reference, seeds, opts):
    from bmeviz.pipeline import segment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return segment(case["volume"], reference=reference, region=case["region"], seeds=seeds, **opts)


def readers_dice(mask, case) -> float:
    return float(np.mean([dice(mask, m) for m in case["readers"].values()]))


def fp_ml(mask, case) -> float:
    union = np.zeros(mask.shape, bool)
    for m in case["readers"].values():
        union |= m
    return float(np.count_nonzero(mask & ~union) * np.prod(case["volume"].spacing) / 1000)


def run_scan(sid: str, n_users: int, configs: dict, no_seed: bool) -> dict:
    t0 = time.perf_counter()
    case = load_case(sid)
    users = simulate_users(case, n_users, seed=int(sid))
    out = {"id": sid, "configs": {}}
    for label, opts in configs.items():
        masks, vols, dv, nl, nseeds_lost = [], [], [], [], []
        for u in users:
            res = _run(case, {"point": u["point"], "radius_mm": u["radius_mm"]}, u["seeds"], opts)
            masks.append(res.mask)
            vols.append(res.total_volume_ml)
            dv.append(readers_dice(res.mask, case))
            nl.append(res.n_lesions)
            nseeds_lost.append(sum(res.grow.below))
        pairs = [dice(a, b) for a, b in itertools.combinations(masks, 2)]
        manual = [readers_dice(_run(case, case["normal"], u["seeds"], opts).mask, case) for u in users]
        auto = [readers_dice(_run(case, "auto", u["seeds"], opts).mask, case) for u in users]
        row = {
            "between_user_dice": float(np.mean(pairs)),
            "between_user_dice_min": float(np.min(pairs)),
            "volume_ml": vols,
            "volume_cv": float(np.std(vols, ddof=1) / np.mean(vols)) if np.mean(vols) > 0 else float("nan"),
            "dice_point": float(np.mean(dv)),
            "dice_manual": float(np.mean(manual)),
            "dice_auto": float(np.mean(auto)),
            "n_lesions": nl,
            "seeds": int(len(users[0]["seeds"])),
            "seeds_below_mean": float(np.mean(nseeds_lost)),
        }
        if no_seed:
            for name, ref in (("manual", case["normal"]), ("auto", "auto")):
                res = _run(case, ref, None, opts)
                row[f"region_{name}_dice"] = readers_dice(res.mask, case)
                row[f"region_{name}_ml"] = res.total_volume_ml
                row[f"region_{name}_fp_ml"] = fp_ml(res.mask, case)
            pts = [_run(case, {"point": u["point"], "radius_mm": u["radius_mm"]}, None, opts) for u in users[:3]]
            row["region_point_dice"] = float(np.mean([readers_dice(r.mask, case) for r in pts]))
            row["region_point_fp_ml"] = float(np.mean([fp_ml(r.mask, case) for r in pts]))
        out["configs"][label] = row
        print(f"  {sid} {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    out["readers_mean_ml"] = float(np.mean([m.sum() for m in case["readers"].values()])
                                   * np.prod(case["volume"].spacing) / 1000)
    out["seconds"] = time.perf_counter() - t0
    return out


def loso(results: dict, labels: list[str], key: str = "dice_point") -> dict:
    out = {}
    for held in SCANS:
        rest = [s for s in SCANS if s != held]
        best = max(labels, key=lambda lab: (np.mean([results[s]["configs"][lab][key] for s in rest]), -labels.index(lab)))
        out[held] = {"chosen": best, **{k: results[held]["configs"][best][k] for k in
                                        ("dice_point", "between_user_dice", "volume_cv")}}
    return out


def text_table(header, rows) -> str:
    cells = [header, *rows]
    w = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=6, help="simulated users per scan (default 6)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-region", action="store_true", help="skip the no-click ('find all in region') runs")
    ap.add_argument("--configs", help="comma-separated labels of CONFIGS to run (default all)")
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"skip: SIJ STIR development data not found at {DATA}")
        return 0
    configs = CONFIGS
    if args.configs:
        configs = {k: CONFIGS[k] for k in args.configs.split(",")}
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futs = {s: ex.submit(run_scan, s, args.users, configs, not args.no_region) for s in SCANS}
        results = {s: f.result() for s, f in futs.items()}
    labels = list(configs)
    header = ["scan", "configuration", "between-user Dice (min)", "volume CV", "Dice vs readers: point",
              "manual ROI", "auto", "readers R11/R21 - 0.05", "seeds below thr"]
    if not args.no_region:
        header += ["region-only Dice manual/auto/point", "FP mL manual/auto/point"]
    rows = []
    for s in [*SCANS, "mean"]:
        for j, lab in enumerate(labels):
            rs = [results[x]["configs"][lab] for x in (SCANS if s == "mean" else [s])]

            def m(k):
                return float(np.mean([r[k] for r in rs]))

            row = [s if j == 0 else "", lab, f"{m('between_user_dice'):.2f} ({min(r['between_user_dice_min'] for r in rs):.2f})",
                   f"{100 * m('volume_cv'):.0f}%", f"{m('dice_point'):.2f}", f"{m('dice_manual'):.2f}",
                   f"{m('dice_auto'):.2f}",
                   f"{(np.mean(list(PUBLISHED_R11_R21.values())) if s == 'mean' else PUBLISHED_R11_R21[s]) - 0.05:.2f}",
                   f"{m('seeds_below_mean'):.1f}/{rs[0]['seeds'] if s != 'mean' else ''}"]
            if not args.no_region:
                row += [f"{m('region_manual_dice'):.2f}/{m('region_auto_dice'):.2f}/{m('region_point_dice'):.2f}",
                        f"{m('region_manual_fp_ml'):.1f}/{m('region_auto_fp_ml'):.1f}/{m('region_point_fp_ml'):.1f}"]
            rows.append(row)
    print(f"\n{args.users} simulated users per scan; reader mean volumes (mL): "
          + ", ".join(f"{s} {results[s]['readers_mean_ml']:.1f}" for s in SCANS))
    print(text_table(header, rows))
    lo = loso(results, labels)
    print("\nleave-one-scan-out (chosen on 3 scans by seeded Dice vs readers with point references):")
    print(text_table(["held-out scan", "chosen", "Dice vs readers", "between-user Dice", "volume CV"],
                     [[s, lo[s]["chosen"], f"{lo[s]['dice_point']:.2f}", f"{lo[s]['between_user_dice']:.2f}",
                       f"{100 * lo[s]['volume_cv']:.0f}%"] for s in SCANS]))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "reproducibility_sij.json"
    out.write_text(json.dumps({"users": args.users, "configs": configs, "results": results, "loso": lo},
                              indent=1, default=float))
    print(f"\nwrote {out}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
