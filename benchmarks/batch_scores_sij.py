"""SPARCC and Berlin through ``bmeviz batch`` on the real SIJ dev scans, against the direct API.

Per scan: the quadrant map built from ``benchmarks/data/sij_joint_lines.json`` (snapped to T1, as
``scores_sij.py`` does) and the CSF fluid mask are written to a temporary folder (never into the
repo), with a manifest row (reference = normal_marrow, region = disease_region, one seed per R11
lesion, ``score_scheme=sparcc+berlin``). The batch's cohort.csv columns must equal
:func:`bmeviz.scores.score_sparcc` / ``score_graded`` on :func:`bmeviz.segment`'s mask with the
same inputs. Prints the table and the time per study with and without scores.

    python benchmarks/batch_scores_sij.py [--workers 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scores_sij import LINES, fluid_mask  # noqa: E402
from validate_sij import DATA, SCANS, load_case, r11_seeds  # noqa: E402


def main(argv=None) -> int:
    import pandas as pd

    import bmeviz
    from bmeviz.batch import run
    from bmeviz.io import save_mask
    from bmeviz.scores import lines_from_paths, score_graded, score_sparcc, sij_quadrants

    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args(argv)
    if not DATA.is_dir():
        print(f"no data at {DATA}; set BMEVIZ_SHARED_DATA")
        return 1
    lines_all = json.loads(LINES.read_text())["scans"]
    tmp = Path(tempfile.mkdtemp(prefix="bmeviz-batch-scores-"))
    rows = ["study_id,image,reference_mask,region_mask,seeds,anatomy,score_scheme,fluid_mask"]
    direct = {}
    for sid in SCANS:
        case = load_case(sid)
        vol = case["volume"]
        t1 = bmeviz.load(DATA / "images" / f"{sid}_T1W.nii.gz")
        lines = lines_from_paths(lines_all[sid]["paths"], volume=vol, region=case["region"])
        anatomy = sij_quadrants(case["region"], lines, volume=vol, snap_to=t1)
        fluid = fluid_mask(vol.array, anatomy)
        save_mask(anatomy.labels, vol, tmp / f"{sid}_quadrants.nii.gz")
        save_mask(fluid, vol, tmp / f"{sid}_fluid.nii.gz")
        seeds = r11_seeds(case)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seg = bmeviz.segment(vol, reference=case["normal"], region=case["region"], seeds=seeds)
        sp = score_sparcc(vol, seg.mask, anatomy, fluid=fluid)
        be = score_graded(vol, seg.mask, anatomy, scheme="berlin")
        direct[sid] = {"sparcc_total": sp.total, "berlin_total": be.total, **{f"sparcc_{k}": v for k, v in
                                                                             sp.by_joint().items()}}
        pts = ";".join(",".join(str(int(v)) for v in p) for p in seeds)
        rows.append(f"S{sid},{DATA / 'images' / f'{sid}_STIR.nii.gz'},"
                    f"{DATA / 'normal_marrow' / f'{sid}_normal_marrow.nii.gz'},"
                    f"{DATA / 'disease_region' / f'{sid}_disease_region.nii.gz'},\"{pts}\","
                    f"{sid}_quadrants.nii.gz,sparcc+berlin,{sid}_fluid.nii.gz")
    (tmp / "m.csv").write_text("\n".join(rows) + "\n")
    plain = tmp / "m_plain.csv"
    plain.write_text("\n".join(",".join(r.split(",")[:5]) if i == 0 else r.rsplit(",", 3)[0]
                               for i, r in enumerate(rows)) + "\n")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = run(tmp / "m.csv", tmp / "out", workers=args.workers, progress=False)
        t_scores = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain_t = run(plain, tmp / "out_plain", workers=args.workers, progress=False)
        t_plain = time.perf_counter() - t0
    table = table.set_index("study_id")
    ok = True
    print("| scan | batch SPARCC (L/R) | direct SPARCC | batch Berlin | direct Berlin | s/study with scores | without |")
    print("|---|---|---|---|---|---|---|")
    for sid in SCANS:
        r = table.loc[f"S{sid}"]
        d = direct[sid]
        same = int(r["sparcc_total"]) == d["sparcc_total"] and int(r["berlin_total"]) == d["berlin_total"]
        ok &= same
        print(f"| {sid} | {r['sparcc_total']} ({r['sparcc_left']}/{r['sparcc_right']}) | {d['sparcc_total']} | "
              f"{r['berlin_total']} | {d['berlin_total']} | {r['seconds']:.1f} | "
              f"{pd.Series(plain_t['seconds'].values, index=plain_t['study_id'])[f'S{sid}']:.1f} |")
    print(f"whole run: {t_scores:.1f} s with scores, {t_plain:.1f} s without (workers={args.workers}); "
          f"batch == direct: {ok}; files in {tmp}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
