"""SPARCC and Berlin on the real SIJ STIR dev scans: each reader's masks vs bmeviz's, side by side.

    python benchmarks/scores_sij.py              # all 4 scans, tables to docs/scores.md, figures of 1007
    python benchmarks/scores_sij.py --no-docs    # print only

Quadrants: the joint lines in ``benchmarks/data/sij_joint_lines.json`` (placed by eye on T1W, 3
slices per scan, as napari Shapes paths) go through the same code path as the napari tool
(:func:`bmeviz.scores.lines_from_paths` -> :func:`bmeviz.scores.sij_quadrants` with ``snap_to=T1``).
The 6 SPARCC slices are chosen automatically from the quadrant map (the same for every mask).
Fluid reference ('intense'): the largest 3D component of STIR voxels >= the image's 99.5th
percentile between the two joint lines (CSF of the thecal sac on these scans).
bmeviz's masks: ``bmeviz.segment`` with the defaults, reference = normal_marrow, region =
disease_region, seeds = the brightest STIR voxel of each R11 component (a user's clicks).

Agreement: per scan totals; mean absolute difference of totals between reader pairs and between
bmeviz and each reader; Cohen's kappa over the scored units (SPARCC: 72 per scan, binary points;
Berlin: 8 quadrants, grades 0-3 weighted linearly); ICC(2,1) of the totals over the 4 scans (few
scans: wide uncertainty). Data: ../shared/data/sij-stir-dev (never copied into the repo).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from validate_sij import DATA, READERS, SCANS, load_case, r11_seeds  # noqa: E402

ROOT = HERE.parent
LINES = HERE / "data" / "sij_joint_lines.json"
DOC = ROOT / "docs" / "scores.md"
IMAGES = ROOT / "docs" / "images"
BEGIN = "<!-- BEGIN SIJ RESULTS (written by benchmarks/scores_sij.py; do not edit by hand) -->"
END = "<!-- END SIJ RESULTS -->"
FIGURE_SCAN = "1007"


def fluid_mask(stir: np.ndarray, anatomy) -> np.ndarray:
    """Largest component of voxels >= the 99.5th percentile between the joint lines."""
    cols = sorted(float(np.mean([np.mean(np.asarray(p)[:, 1]) for p in d.values()])) for d in anatomy.lines.values())
    a = np.asarray(stir, float)
    m = a >= np.percentile(a, 99.5)
    m[:, :, : int(cols[0])] = False
    m[:, :, int(np.ceil(cols[-1])):] = False
    lab, n = ndi.label(m)
    sizes = ndi.sum(m, lab, range(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def kappa(a, b, *, weighted: bool = False) -> float:
    a, b = np.asarray(a, int), np.asarray(b, int)
    k = int(max(a.max(), b.max(), 1)) + 1
    obs = np.zeros((k, k))
    np.add.at(obs, (a, b), 1)
    obs /= obs.sum()
    exp = np.outer(obs.sum(1), obs.sum(0))
    w = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) if weighted else (1 - np.eye(k))
    if weighted:
        w = w / max(k - 1, 1)
    den = (w * exp).sum()
    return float("nan") if den == 0 else float(1 - (w * obs).sum() / den)


def icc21(x: np.ndarray) -> float:
    """ICC(2,1), two-way random, absolute agreement; x is (subjects, raters)."""
    n, k = x.shape
    gm = x.mean()
    msr = k * ((x.mean(1) - gm) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(0) - gm) ** 2).sum() / (k - 1)
    sse = ((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + gm) ** 2).sum()
    mse = sse / ((n - 1) * (k - 1))
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    return float("nan") if den == 0 else float((msr - mse) / den)


def run_scan(sid: str, lines_json: dict, *, figures_dir: Path | None = None) -> dict:
    import bmeviz
    from bmeviz.scores import choose_slices, lines_from_paths, score_graded, score_sparcc, sij_quadrants

    case = load_case(sid)
    vol = case["volume"]
    t1 = bmeviz.load(DATA / "images" / f"{sid}_T1W.nii.gz")
    t0 = time.perf_counter()
    lines = lines_from_paths(lines_json["paths"], volume=vol, region=case["region"])
    anatomy = sij_quadrants(case["region"], lines, volume=vol, snap_to=t1)
    t_quad = time.perf_counter() - t0
    slices, how = choose_slices(anatomy, vol)
    fluid = fluid_mask(vol.array, anatomy)
    seeds = r11_seeds(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = bmeviz.segment(vol, reference=case["normal"], region=case["region"], seeds=seeds)
    masks = dict(case["readers"])
    masks["bmeviz"] = seg.mask
    out = {"slices": slices, "fluid_median": float(np.median(vol.array[fluid])), "fluid_voxels": int(fluid.sum()),
           "quadrants_s": round(t_quad, 2), "sparcc": {}, "berlin": {}, "units": {}, "grades": {}}
    for name, m in masks.items():
        t0 = time.perf_counter()
        sp = score_sparcc(vol, m, anatomy, fluid=fluid)  # slices chosen automatically (== slices)
        assert sp.slices == slices
        t_score = time.perf_counter() - t0
        be = score_graded(vol, m, anatomy, scheme="berlin")
        out["sparcc"][name] = {"total": sp.total, **{f"{k}": v for k, v in sp.by_joint().items()},
                               "intense": int(sp.rows.loc[sp.rows.unit == "intense", "points"].sum()),
                               "deep": int(sp.rows.loc[sp.rows.unit == "deep", "points"].sum()),
                               "intense_ratio_max": float(np.nan_to_num(sp.rows["intensity_ratio"].max())),
                               "score_s": round(t_score, 2)}
        out["berlin"][name] = {"total": be.total}
        out["units"][name] = sp.rows["points"].tolist()
        out["grades"][name] = be.rows["grade"].tolist()
        if figures_dir is not None and name == "R11":
            from bmeviz.scores import write_scores

            written = write_scores(sp, vol, figures_dir / f"{sid}_{name}")
            out["figures"] = [str(p) for p in written["figures"]]
    return out


def summarise(results: dict) -> dict:
    raters = [*READERS, "bmeviz"]
    pairs_r = list(itertools.combinations(READERS, 2))
    pairs_b = [("bmeviz", r) for r in READERS]
    summ: dict = {}
    for scheme, ukey in (("sparcc", "units"), ("berlin", "grades")):
        tot = np.array([[results[s][scheme][r]["total"] for r in raters] for s in results], float)
        mad = {f"{a}-{b}": float(np.mean(np.abs(tot[:, raters.index(a)] - tot[:, raters.index(b)])))
               for a, b in pairs_r + pairs_b}
        kap = {}
        for a, b in pairs_r + pairs_b:
            ua = np.concatenate([results[s][ukey][a] for s in results])
            ub = np.concatenate([results[s][ukey][b] for s in results])
            kap[f"{a}-{b}"] = kappa(ua, ub, weighted=scheme == "berlin")
        summ[scheme] = {
            "mad": mad, "kappa": kap,
            "mad_readers": float(np.mean([mad[f"{a}-{b}"] for a, b in pairs_r])),
            "mad_bmeviz_readers": float(np.mean([mad[f"{a}-{b}"] for a, b in pairs_b])),
            "kappa_readers": float(np.mean([kap[f"{a}-{b}"] for a, b in pairs_r])),
            "kappa_bmeviz_readers": float(np.mean([kap[f"{a}-{b}"] for a, b in pairs_b])),
            "icc_readers": icc21(tot[:, :4]), "icc_all": icc21(tot),
        }
    return summ


def markdown(results: dict, summ: dict) -> str:
    raters = [*READERS, "bmeviz"]
    lines = ["SPARCC (max 72) per scan, 6 slices chosen automatically from the quadrant map; "
             "in brackets: intense / deep points.", "",
             "| scan | slices | " + " | ".join(raters) + " |", "|---" * (len(raters) + 2) + "|"]
    for s, r in results.items():
        cells = [f"{r['sparcc'][k]['total']} ({r['sparcc'][k]['intense']}/{r['sparcc'][k]['deep']})" for k in raters]
        lines.append(f"| {s} | {r['slices'][0]}-{r['slices'][-1]} | " + " | ".join(cells) + " |")
    lines += ["", "Brightest lesion ('intense' statistic: 75th percentile of its voxels on a slice) as a fraction of "
              "the fluid (CSF) median, the highest per scan and mask (the default rule needs >= 0.8):", "",
              "| scan | " + " | ".join(raters) + " |", "|---" * (len(raters) + 1) + "|"]
    for s, r in results.items():
        lines.append(f"| {s} | " + " | ".join(f"{r['sparcc'][k]['intense_ratio_max']:.2f}" for k in raters) + " |")
    lines += ["", "Berlin (max 24), over every slice with quadrants:", "",
              "| scan | " + " | ".join(raters) + " |", "|---" * (len(raters) + 1) + "|"]
    for s, r in results.items():
        lines.append(f"| {s} | " + " | ".join(str(r["berlin"][k]["total"]) for k in raters) + " |")
    lines += ["", "Agreement (4 scans; kappa over units: SPARCC 4 x 72 binary points, Berlin 4 x 8 grades, "
              "linear weights):", "",
              "| | SPARCC mean abs diff of totals | SPARCC unit kappa | Berlin mean abs diff | Berlin weighted kappa |",
              "|---|---|---|---|---|"]
    for a, b in [*itertools.combinations(READERS, 2), *[("bmeviz", r) for r in READERS]]:
        k = f"{a}-{b}"
        lines.append(f"| {a} vs {b} | {summ['sparcc']['mad'][k]:.1f} | {summ['sparcc']['kappa'][k]:.2f} | "
                     f"{summ['berlin']['mad'][k]:.1f} | {summ['berlin']['kappa'][k]:.2f} |")
    for who, key in (("mean, reader pairs", "readers"), ("mean, bmeviz vs readers", "bmeviz_readers")):
        lines.append(f"| **{who}** | **{summ['sparcc']['mad_' + key]:.1f}** | **{summ['sparcc']['kappa_' + key]:.2f}** | "
                     f"**{summ['berlin']['mad_' + key]:.1f}** | **{summ['berlin']['kappa_' + key]:.2f}** |")
    lines += ["", f"ICC(2,1) of SPARCC totals: readers {summ['sparcc']['icc_readers']:.2f}, readers + bmeviz "
              f"{summ['sparcc']['icc_all']:.2f}; Berlin: {summ['berlin']['icc_readers']:.2f} and "
              f"{summ['berlin']['icc_all']:.2f} (4 scans only: read as indicative).", "",
              "Time (this machine, shared): building the quadrants "
              + ", ".join(f"{s} {r['quadrants_s']} s" for s, r in results.items())
              + "; one SPARCC score " + ", ".join(f"{s} {r['sparcc']['R11']['score_s']} s" for s, r in results.items())
              + "."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-docs", action="store_true", help="print only; do not touch docs/")
    ap.add_argument("--scans", default=",".join(SCANS))
    args = ap.parse_args(argv)
    if not DATA.exists():
        print(f"skip: {DATA} not found (real data live beside the project)")
        return 0
    spec = json.loads(LINES.read_text())["scans"]
    results = {}
    tmp = ROOT / "benchmarks" / "results" / "scores_sij"
    for sid in args.scans.split(","):
        results[sid] = run_scan(sid, spec[sid], figures_dir=tmp if sid == FIGURE_SCAN else None)
        print(sid, {k: v["total"] for k, v in results[sid]["sparcc"].items()}, "slices", results[sid]["slices"])
    summ = summarise(results)
    md = markdown(results, summ)
    print(md)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "results" / "scores_sij.json").write_text(
        json.dumps({"results": {s: {k: v for k, v in r.items() if k not in ("units", "grades")} for s, r in results.items()},
                    "summary": summ}, indent=2, default=str))
    if not args.no_docs and FIGURE_SCAN in results:
        import shutil

        IMAGES.mkdir(parents=True, exist_ok=True)
        for old in IMAGES.glob(f"scores_sij_{FIGURE_SCAN}_slice_*.png"):
            old.unlink()
        for p in results[FIGURE_SCAN].get("figures", []):
            shutil.copy(p, IMAGES / f"scores_sij_{FIGURE_SCAN}_{Path(p).name}")
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(head + BEGIN + "\n" + md + "\n" + END + tail)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
