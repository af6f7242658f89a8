"""How close can any single reference-relative threshold come to the readers? (SIJ dev scans)

    python benchmarks/threshold_ceiling_sij.py

Issue 11 asks for seeded Dice vs the readers within 0.05 of the readers' own agreement on
every scan, and region-only Dice >= 0.50. This script measures the ceiling of the whole
family of methods bmeviz belongs to, with knowledge no user has: for thresholds
``t = f x median(normal-marrow ROI)``, f = 1.10 ... 3.00, it takes

- *seeded*: every 26-connected component of ``(image >= t) & region`` that touches a lesion
  of reader R11 (a perfect click in every lesion, any size);
- *region only*: every such component of >= 10 mm3 on >= 2 slices (bmeviz's clean-up);

and reports, per scan, the best mean Dice over the four readers (R11, R12, R21, R22) and the
f that reaches it: the best a connected threshold can do on that scan if the threshold were
chosen per scan by looking at the readers' masks. Where the ceiling is below the target, no
choice of reference, k or click handling can meet it; only a different edge model could.

Data: ``../shared/data/sij-stir-dev`` beside the project (never copied into the repository);
without it the script prints a skip message and exits 0. Writes
``benchmarks/results/threshold_ceiling_sij.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV = ROOT.parent / "shared" / "data" / "sij-stir-dev"
IDS = ("1007", "1013", "1234", "4386")
READERS = ("R11", "R12", "R21", "R22")
FACTORS = np.round(np.arange(1.10, 3.001, 0.05), 2)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def main() -> int:
    if not DEV.exists():
        print(f"skip: {DEV} not found (needs ../shared/data beside the repository)")
        return 0
    from bmeviz import load

    cube = np.ones((3, 3, 3), bool)
    rows = []
    for sid in IDS:
        vol = load(DEV / "images" / f"{sid}_STIR.nii.gz")
        img = vol.array.astype(np.float32)
        region = load(DEV / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
        normal = load(DEV / "normal_marrow" / f"{sid}_normal_marrow.nii.gz").array > 0
        readers = {r: load(DEV / "inflammation" / f"{sid}_inflammation_{r}.nii.gz").array > 0 for r in READERS}
        inter = np.mean([dice(readers[a], readers[b]) for a in ("R11", "R12") for b in ("R21", "R22")])
        median = float(np.median(img[normal]))
        voxel_mm3 = float(np.prod(vol.spacing))
        best = {"seeded": (0.0, None), "region": (0.0, None)}
        for f in FACTORS:
            lab, n = ndi.label((img >= f * median) & region, structure=cube)
            if not n:
                continue
            touched = np.unique(lab[readers["R11"]])
            seeded = np.isin(lab, touched[touched > 0])
            sizes = np.bincount(lab.ravel())
            slices = np.array([0] + [s[0].stop - s[0].start for s in ndi.find_objects(lab)])
            keep = (sizes * voxel_mm3 >= 10) & (slices >= 2)
            keep[0] = False
            found = keep[lab]
            for name, m in (("seeded", seeded), ("region", found)):
                d = float(np.mean([dice(m, r) for r in readers.values()]))
                if d > best[name][0]:
                    best[name] = (d, float(f))
        rows.append({"scan": sid, "readers_inter": round(float(inter), 3), "seeded_target": round(float(inter) - 0.05, 3),
                     "seeded_ceiling": round(best["seeded"][0], 3), "seeded_f": best["seeded"][1],
                     "region_ceiling": round(best["region"][0], 3), "region_f": best["region"][1]})
    print(f"{'scan':6} {'inter':>6} {'target':>7} {'seeded ceiling (f)':>20} {'region-only ceiling (f)':>24}")
    for r in rows:
        print(f"{r['scan']:6} {r['readers_inter']:6.2f} {r['seeded_target']:7.2f} "
              f"{r['seeded_ceiling']:14.2f} ({r['seeded_f']:.2f}) {r['region_ceiling']:17.2f} ({r['region_f']:.2f})")
    mean_region = float(np.mean([r["region_ceiling"] for r in rows]))
    print(f"region-only ceiling, mean over scans: {mean_region:.2f} (target 0.50)")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "threshold_ceiling_sij.json").write_text(json.dumps({"rows": rows, "region_mean": mean_region}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
