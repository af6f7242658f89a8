"""Region assist for a cohort: one ``bmeviz region`` call per scan (a shell loop) against one
``bmeviz region --manifest`` call for all of them, on the 7 real SIJ T1 scans, with the atlas
folder of the 7 (each scan is left out as its own atlas) and a U-Net refiner.

    python benchmarks/bench_region_cohort.py --refine R.joblib   # a refiner file you have
    python benchmarks/bench_region_cohort.py                     # trains one on the 7 first (~2 min)

Both run as a user runs them, in fresh processes (the import of PyTorch, the reading of the
atlases and their preparation included), from the same clicks (region_sij.clicks_from_region,
in RAS mm). Reported: wall time per scan of each, their ratio, the manifest's own time per scan
after the first (regions.csv), and whether the regions are identical voxel for voxel. The
refiner trained here saw every scan: the Dice is not a measure of accuracy (region_sij.py is).
Needs ../shared/data; skips otherwise.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from region_sij import DEV, DEV_IDS, EXTRA, EXTRA_IDS, auto_atlas_dir, clicks_from_region, paths  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refine", help="a U-Net refiner file (default: train one on the 7 scans first)")
    args = ap.parse_args(argv)
    if not DEV.is_dir():
        print(f"skip: SIJ data not found at {DEV}")
        return 0
    import bmeviz

    tmp = Path(tempfile.mkdtemp(prefix="bmeviz-cohort-"))
    for sub in ("atlases", "single"):
        (tmp / sub).mkdir()
    atlas = auto_atlas_dir(tmp / "atlases")
    refine = args.refine
    if refine is None:
        from bmeviz.region_refine import train_refiner

        t = time.perf_counter()
        refine = str(train_refiner(atlas, validate=False).save(tmp / "refiner.joblib"))
        print(f"refiner trained on the 7 scans in {time.perf_counter() - t:.0f} s")
    ids = list(DEV_IDS) + [s for s in EXTRA_IDS if EXTRA.is_dir()]
    rows, cases = ["case_id,image,seeds_mm,on"], {}
    for sid in ids:
        p = paths(sid)
        t1 = bmeviz.load(p["t1"])
        mm = t1.index_to_ras(clicks_from_region(t1, bmeviz.load(p["region"]).array > 0))
        seeds = [",".join(f"{v:.3f}" for v in r) for r in mm]
        cases[sid] = (p, seeds)
        rows.append(f'{sid},{p["t1"]},"{"; ".join(seeds)}",{p["stir"] or ""}')
    (tmp / "cases.csv").write_text("\n".join(rows) + "\n")
    exe = [sys.executable, "-c", "import sys; from bmeviz.cli import main; sys.exit(main())"]

    loop = {}
    for sid, (p, seeds) in cases.items():
        cmd = exe + ["region", str(p["t1"]), *[f"--seed-mm={s}" for s in seeds], "--atlas", str(atlas),
                     "--refine", refine, "--out", str(tmp / "single" / f"{sid}_region.nii.gz")]
        if p["stir"]:
            cmd += ["--on", str(p["stir"])]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        loop[sid] = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run(exe + ["region", "--manifest", str(tmp / "cases.csv"), "--out-dir", str(tmp / "cohort"),
                          "--atlas", str(atlas), "--refine", refine], check=True, capture_output=True)
    whole = time.perf_counter() - t
    table = list(csv.DictReader((tmp / "cohort" / "regions.csv").open()))
    same = all(np.array_equal(bmeviz.load(tmp / "single" / f"{sid}_region.nii.gz").array,
                              bmeviz.load(tmp / "cohort" / f"{sid}_region.nii.gz").array) for sid in cases)
    print(f"{'scan':6} {'one call (s)':>12} {'in the manifest (s)':>20} {'outline (s)':>11}")
    for r in table:
        sid = r["case_id"]
        print(f"{sid:6} {loop[sid]:12.2f} {float(r['seconds']):20.2f} {float(r['outline_seconds']):11.2f}")
    n = len(cases)
    later = [float(r["seconds"]) for r in table[1:]]
    per_loop, per_manifest = sum(loop.values()) / n, whole / n
    print(f"one call per scan: {per_loop:.2f} s per scan (wall); the manifest: {per_manifest:.2f} s per scan "
          f"(wall, {whole:.1f} s for {n}), {np.mean(later):.2f} s per scan after the first; "
          f"ratio (manifest / loop) {per_manifest / per_loop:.2f}; regions identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
