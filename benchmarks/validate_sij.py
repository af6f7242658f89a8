"""Validate bmeviz on the real SIJ STIR scans: a thin wrapper over ``bmeviz validate``.

    python benchmarks/validate_sij.py                  # bmeviz validate on the dev scans; writes docs/validation.md
    python benchmarks/validate_sij.py --users 5        # fewer simulated users (faster)
    python benchmarks/validate_sij.py --set k=2        # any segment() option, passed on
    python benchmarks/validate_sij.py --sweep          # the parameter sweep that chose the defaults
    python benchmarks/validate_sij.py --sweep --quick  # the sweep's current-defaults run only

The default run is exactly ``bmeviz validate --sij-dir ../shared/data/sij-stir-dev --out
benchmarks/results/validate --doc docs/validation.md`` (reader agreement, ICC, Bland-Altman,
SDC, simulated users; see docs/validation.md). Data: ``../shared/data/sij-stir-dev`` beside
the project (never copied into the repository); without it the script prints a skip
message and exits 0.

The sweep (``--sweep``) compares, each inside the disease region with the normal-marrow mask
as reference:

(a) no seeds ("all in region");
(b) one seed per reader lesion: for each 26-connected component of R11, the brightest
    STIR voxel inside it (where a user would click);
(c) the plain published rule (Hepburn et al., VHI): voxels >= Q3 + k*IQR (adaptive k)
    inside the disease region, 2D components (8-connected, per slice) under 4 pixels
    dropped.

Scores: Dice against each reader mask (R11, R12, R21, R22) and their mean, volumes in
mL, reader-vs-reader agreement. The full sweep varies clean-up, threshold rule and edge
for (a) and (b), ranks by the mean Dice over scans and readers, and estimates the
optimism of that choice by leave-one-scan-out. Results go to
``benchmarks/results/validate_sij.json`` (git-ignored) and, for the full sweep, the tables
to ``docs/validation.md`` (between the SWEEP RESULTS markers; the prose around them is kept).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import itertools
import json
import os
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from bmeviz.metrics import dice, volume_ml as _volume_ml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sij-stir-dev"
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "validation.md"

SCANS = ("1007", "1013", "1234", "4386")  # with reader masks
EXTRA = ("2014",)  # no reader masks: volume only
READERS = ("R11", "R12", "R21", "R22")
INTER = (("R11", "R21"), ("R11", "R22"), ("R12", "R21"), ("R12", "R22"))
INTRA = (("R11", "R12"), ("R21", "R22"))
#: Published R11 vs R21 Dice (Hepburn et al., README of the data).
PUBLISHED_R11_R21 = {"1007": 0.62, "1013": 0.81, "1234": 0.59, "4386": 0.29}

#: Threshold rules swept: (label, rule, k).
RULES = (
    ("q3-iqr adaptive", "q3-iqr", "adaptive"),
    ("q3-iqr k=1.5", "q3-iqr", 1.5),
    ("q3-iqr k=2", "q3-iqr", 2.0),
    ("q3-iqr k=3", "q3-iqr", 3.0),
    ("mean-sd k=2", "mean-sd", 2.0),
    ("mean-sd k=3", "mean-sd", 3.0),
)
MIN_VOLUMES = (0.0, 10.0, 50.0)
MIN_SLICES = (1, 2)
EDGES = ("threshold", "half-max")
#: Seeded mode only: the leak guard as it is by default, and off (it discards a seed's whole
#: region when it grows past the limit, which real SIJ lesions can do).
LEAK_GUARDS = ("default", None)

BEGIN = "<!-- BEGIN SWEEP RESULTS (written by benchmarks/validate_sij.py --sweep; do not edit by hand) -->"
END = "<!-- END SWEEP RESULTS -->"


# ---------------------------------------------------------------------------------------
# data and measures
# ---------------------------------------------------------------------------------------
def load_case(sid: str) -> dict:
    import bmeviz

    vol = bmeviz.load(DATA / "images" / f"{sid}_STIR.nii.gz")

    def mask(sub: str, name: str) -> np.ndarray:
        m = bmeviz.load(DATA / sub / name).array > 0
        assert m.shape == vol.shape, f"{name}: shape {m.shape} != image {vol.shape}"
        return m

    case = {
        "id": sid,
        "volume": vol,
        "normal": mask("normal_marrow", f"{sid}_normal_marrow.nii.gz"),
        "region": mask("disease_region", f"{sid}_disease_region.nii.gz"),
        "readers": {},
    }
    for r in READERS:
        p = DATA / "inflammation" / f"{sid}_inflammation_{r}.nii.gz"
        if p.exists():
            case["readers"][r] = mask("inflammation", p.name)
    return case


def volume_ml(mask: np.ndarray, spacing) -> float:
    return _volume_ml(mask, float(np.prod(spacing)))


def r11_seeds(case: dict) -> np.ndarray:
    """One click per R11 lesion: the brightest STIR voxel of each 26-connected component."""
    lab, n = ndi.label(case["readers"]["R11"], structure=np.ones((3, 3, 3), bool))
    pos = ndi.maximum_position(case["volume"].array, lab, np.arange(1, n + 1))
    return np.asarray(pos, dtype=int).reshape(-1, 3)


def plain_rule(case: dict) -> tuple[np.ndarray, dict]:
    """The published rule: adaptive Q3 + k*IQR in the region, 2D specks < 4 px dropped."""
    from bmeviz.threshold import compute_threshold

    img = case["volume"].array
    thr = compute_threshold(img, reference=case["normal"], rule="q3-iqr")
    m = (img >= thr.value) & case["region"]
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True  # 8-connectivity within a slice (axis 0), none across slices
    lab, _ = ndi.label(m, structure=in_plane)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= 4
    keep[0] = False
    return keep[lab], {"threshold": thr.value, "k": thr.k}


def score(mask: np.ndarray, case: dict) -> dict:
    d = {r: dice(mask, m) for r, m in case["readers"].items()}
    out = {"volume_ml": volume_ml(mask, case["volume"].spacing), "dice": d}
    if d:
        out["dice_mean"] = float(np.mean(list(d.values())))
    return out


def reader_agreement(case: dict) -> dict:
    R, sp = case["readers"], case["volume"].spacing
    return {
        "volume_ml": {r: volume_ml(m, sp) for r, m in R.items()},
        "R11_R21": dice(R["R11"], R["R21"]),
        "inter": {f"{a}/{b}": dice(R[a], R[b]) for a, b in INTER},
        "intra": {f"{a}/{b}": dice(R[a], R[b]) for a, b in INTRA},
        "inter_mean": float(np.mean([dice(R[a], R[b]) for a, b in INTER])),
    }


# ---------------------------------------------------------------------------------------
# configurations
# ---------------------------------------------------------------------------------------
def has_edge() -> bool:
    from bmeviz import segment

    return "edge" in inspect.signature(segment).parameters


def current_defaults(mode: str) -> dict:
    """The defaults segment() has now, for the swept parameters."""
    from bmeviz import segment

    p = inspect.signature(segment).parameters
    cfg = {name: p[name].default for name in ("rule", "k", "min_volume_mm3", "min_slices")}
    # None = resolved by mode inside segment(): seeded keeps every click, no-seed cleans
    if cfg["min_volume_mm3"] is None:
        cfg["min_volume_mm3"] = 0.0 if mode == "seeded" else 10.0
    if cfg["min_slices"] is None:
        cfg["min_slices"] = 1 if mode == "seeded" else 2
    if "edge" in p:
        cfg["edge"] = p["edge"].default
    if mode == "seeded":
        cfg["max_volume_ml"] = p["max_volume_ml"].default
    return cfg


def rule_label(rule: str, k) -> str:
    # k=None is segment()'s default: for q3-iqr that is now the fixed Q3_IQR_K (2) on the robust
    # reference, no longer the published adaptive k (k='adaptive'); the sweep of 2026-11-21 in
    # docs/validation.md ran before that change, when None meant adaptive
    if k == "adaptive":
        return f"{rule} adaptive"
    if k is None:
        if rule == "q3-iqr":
            from bmeviz.options import Q3_IQR_K

            return f"q3-iqr k={Q3_IQR_K:g} (default)"
        return f"{rule} default k"
    return f"{rule} k={k:g}"


def config_label(cfg: dict) -> str:
    s = f"{rule_label(cfg['rule'], cfg['k'])}, min {cfg['min_volume_mm3']:g} mm³, {cfg['min_slices']} sl"
    s += f", edge {cfg['edge']}" if "edge" in cfg else ""
    if "max_volume_ml" in cfg:
        s += ", no leak guard" if cfg["max_volume_ml"] is None else f", guard {cfg['max_volume_ml']:g} mL"
    return s


def config_key(cfg: dict) -> str:
    return json.dumps(cfg, sort_keys=True)


def grid(mode: str, edge: bool, default_guard) -> list[dict]:
    out = []
    edges = EDGES if edge else (None,)
    guards = [default_guard if g == "default" else g for g in LEAK_GUARDS] if mode == "seeded" else ["-"]
    for (_, rule, k), mv, ms, e, g in itertools.product(RULES, MIN_VOLUMES, MIN_SLICES, edges, guards):
        cfg = {"rule": rule, "k": k, "min_volume_mm3": mv, "min_slices": ms}
        if e is not None:
            cfg["edge"] = e
        if g != "-":
            cfg["max_volume_ml"] = g
        out.append(cfg)
    return out


#: Factors shown in the per-factor table: name, how to read the level from a config.
FACTORS = (
    ("rule", lambda c: rule_label(c["rule"], c["k"])),
    ("min_volume_mm3", lambda c: f"{c['min_volume_mm3']:g}"),
    ("min_slices", lambda c: str(c["min_slices"])),
    ("edge", lambda c: c.get("edge")),
    ("leak guard", lambda c: None if "max_volume_ml" not in c else
     ("off" if c["max_volume_ml"] is None else f"{c['max_volume_ml']:g} mL")),
)


# ---------------------------------------------------------------------------------------
# one worker task: one scan, one mode, many configurations
# ---------------------------------------------------------------------------------------
def run_task(sid: str, mode: str, configs: list[dict]) -> dict:
    from bmeviz import segment

    t0 = time.perf_counter()
    case = load_case(sid)
    seeds = r11_seeds(case) if mode == "seeded" else None
    out = {"id": sid, "mode": mode, "runs": {}}
    if seeds is not None:
        out["seeds"] = seeds.tolist()
        out["seeds_outside_region"] = int(sum(not case["region"][tuple(s)] for s in seeds))
    for cfg in configs:
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = segment(case["volume"], reference=case["normal"], region=case["region"], seeds=seeds, **cfg)
        row = score(res.mask, case)
        # the lesion table and the mask must agree on the volume
        assert abs(res.total_volume_ml - row["volume_ml"]) < 1e-6 * max(1.0, row["volume_ml"]), (
            sid, mode, cfg, res.total_volume_ml, row["volume_ml"])
        row.update({
            "n_lesions": res.n_lesions,
            "threshold": float(res.threshold.value),
            "k_used": None if res.threshold.k is None else float(res.threshold.k),
            "seconds": time.perf_counter() - t,
            "warnings": len(caught),
        })
        if res.grow is not None:
            grown = np.asarray(res.grow.voxels) > 0
            row["seeds_not_grown"] = int(sum(res.grow.below))
            row["seeds_leaked"] = int(sum(res.grow.leaked))
            row["seeds_grown"] = int(grown.sum())
            # a lesion grown from a click, then deleted by the clean-up (or the edge refinement)
            row["seeds_grown_then_removed"] = int(sum(g and not res.labels[tuple(p)] for g, p in zip(grown, seeds)))
        out["runs"][config_key(cfg)] = row
    if mode == "no-seed":
        mask, info = plain_rule(case)
        out["plain_rule"] = {**score(mask, case), **info}
        if case["readers"]:
            out["agreement"] = reader_agreement(case)
            # how much of each reader's mask is bright enough for a threshold method at all:
            # with the adaptive threshold, a thresholded mask can reach at best
            # Dice = 2f / (1 + f) against a reader, f = that reader's fraction above it
            above = case["volume"].array >= info["threshold"]
            frac = {r: float(np.count_nonzero(m & above) / np.count_nonzero(m)) for r, m in case["readers"].items()}
            out["agreement"]["fraction_above_threshold"] = frac
            out["agreement"]["dice_ceiling"] = float(np.mean([2 * f / (1 + f) for f in frac.values()]))
    out["seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------
def mean_dice(runs_by_scan: dict, key: str, scans=SCANS) -> float:
    return float(np.mean([runs_by_scan[s][key]["dice_mean"] for s in scans]))


def rank(runs_by_scan: dict, keys: list[str], scans=SCANS) -> list[tuple[str, float]]:
    # ties broken by the key order (the grid order), so the ranking is deterministic
    scored = [(k, mean_dice(runs_by_scan, k, scans), i) for i, k in enumerate(keys)]
    scored.sort(key=lambda t: (-round(t[1], 6), t[2]))
    return [(k, v) for k, v, _ in scored]


def leave_one_out(runs_by_scan: dict, keys: list[str]) -> dict:
    """Choose on 3 scans, score on the 4th: an estimate of how optimistic the choice is."""
    out = {}
    for held in SCANS:
        rest = tuple(s for s in SCANS if s != held)
        best = rank(runs_by_scan, keys, rest)[0][0]
        out[held] = {"chosen": json.loads(best), "dice_mean": runs_by_scan[held][best]["dice_mean"]}
    out["mean"] = float(np.mean([out[s]["dice_mean"] for s in SCANS]))
    return out


def f2(x) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.2f}"


def f1(x) -> str:
    return "–" if x is None else f"{x:.1f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    cells = [header, *rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def build_tables(summary: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Tables as (header, rows), rendered as text (stdout) or Markdown (docs)."""
    tables = {}
    methods = summary["methods"]  # label -> {scan: row}
    agree = summary["agreement"]

    # Dice per scan: each method vs each reader, next to reader-vs-reader agreement
    header = ["scan", "method", "R11", "R12", "R21", "R22", "mean", "readers inter (R11/R21)"]
    rows = []
    for s in [*SCANS, "mean"]:
        for j, (label, per_scan) in enumerate(methods.items()):
            if s == "mean":
                d = {r: float(np.mean([per_scan[x]["dice"][r] for x in SCANS])) for r in READERS}
                m = float(np.mean([per_scan[x]["dice_mean"] for x in SCANS]))
                a = (f"{np.mean([agree[x]['inter_mean'] for x in SCANS]):.2f} "
                     f"({np.mean([agree[x]['R11_R21'] for x in SCANS]):.2f})")
            else:
                d, m = per_scan[s]["dice"], per_scan[s]["dice_mean"]
                a = f"{agree[s]['inter_mean']:.2f} ({agree[s]['R11_R21']:.2f})"
            rows.append([s if j == 0 else "", label, *(f2(d[r]) for r in READERS), f2(m), a if j == 0 else ""])
    tables["dice"] = (header, rows)

    # volumes
    header = ["scan", *methods.keys(), "R11", "R12", "R21", "R22"]
    rows = []
    for s in [*SCANS, *summary["extra"]]:
        vols = [f1(methods[lab].get(s, {}).get("volume_ml")) for lab in methods]
        rv = agree.get(s, {}).get("volume_ml", {})
        rows.append([s, *vols, *(f1(rv.get(r)) for r in READERS)])
    tables["volume"] = (header, rows)

    # readers
    header = ["scan", "R11/R21", "published", "inter mean (4 pairs)", "R11/R12", "R21/R22",
              "reader voxels >= adaptive thr", "threshold Dice ceiling"]
    rows = []
    for s in SCANS:
        a = agree[s]
        rows.append([s, f2(a["R11_R21"]), f2(PUBLISHED_R11_R21[s]), f2(a["inter_mean"]),
                     f2(a["intra"]["R11/R12"]), f2(a["intra"]["R21/R22"]),
                     f2(np.mean(list(a["fraction_above_threshold"].values()))), f2(a["dice_ceiling"])])
    rows.append(["mean", f2(np.mean([agree[s]["R11_R21"] for s in SCANS])),
                 f2(np.mean(list(PUBLISHED_R11_R21.values()))),
                 f2(np.mean([agree[s]["inter_mean"] for s in SCANS])),
                 f2(np.mean([agree[s]["intra"]["R11/R12"] for s in SCANS])),
                 f2(np.mean([agree[s]["intra"]["R21/R22"] for s in SCANS])),
                 f2(np.mean([np.mean(list(agree[s]["fraction_above_threshold"].values())) for s in SCANS])),
                 f2(np.mean([agree[s]["dice_ceiling"] for s in SCANS]))])
    tables["readers"] = (header, rows)

    # sweep: top of each mode
    for mode, ranked in summary.get("ranking", {}).items():
        header = ["#", "configuration", *SCANS, "mean Dice", "mean vol ratio"]
        rows = []
        for i, item in enumerate(ranked):
            rows.append([str(i + 1) if item["rank"] else "default", item["label"],
                         *(f2(item["per_scan"][s]) for s in SCANS), f2(item["mean"]),
                         f2(item["volume_ratio"])])
        tables[f"sweep {mode}"] = (header, rows)
    if summary.get("factors"):
        header = ["mode", "factor", "level", "best mean Dice", "mean over the other factors"]
        rows = []
        for mode, facs in summary["factors"].items():
            first_mode = True
            for name, levels in facs.items():
                for j, (lev, v) in enumerate(levels.items()):
                    rows.append([mode if first_mode else "", name if j == 0 else "", lev, f2(v["best"]), f2(v["mean"])])
                    first_mode = False
        tables["factors"] = (header, rows)
    if summary.get("loso"):
        header = ["mode", "held-out scan", "chosen on the other 3", "Dice on the held-out scan"]
        rows = []
        for mode, lo in summary["loso"].items():
            for j, s in enumerate(SCANS):
                rows.append([mode if j == 0 else "", s, config_label(lo[s]["chosen"]), f2(lo[s]["dice_mean"])])
            rows.append(["", "mean", "(chosen on all 4 and scored on them: "
                         f"{f2(summary['best'][mode]['mean'])})", f2(lo["mean"])])
        tables["loso"] = (header, rows)

    # the simulated clicks
    header = ["scan", "seeds (R11 lesions)", "outside disease region", "not grown (below threshold / outside)",
              "grown, then removed by clean-up", "leak guard hit"]
    rows = []
    for s in SCANS:
        row = methods["seeded, defaults"][s]
        sd = summary["seeds"][s]
        rows.append([s, str(sd["n"]), str(sd["outside_region"]), str(row["seeds_not_grown"]),
                     f"{row['seeds_grown_then_removed']} of {row['seeds_grown']}", str(row["seeds_leaked"])])
    tables["seeds"] = (header, rows)
    return tables


TITLES = {
    "dice": "Dice against each reader (last column: mean Dice of the 4 inter-reader pairs; R11 vs R21 in brackets)",
    "volume": "Volume (mL)",
    "readers": "Reader agreement (Dice)",
    "sweep seeded": "Sweep, seeded mode: best configurations by mean Dice (vol ratio: bmeviz / mean reader volume, mean over scans)",
    "sweep no-seed": "Sweep, no-seed mode: best configurations by mean Dice (vol ratio: bmeviz / mean reader volume, mean over scans)",
    "loso": "Leave-one-scan-out: configuration chosen on 3 scans, Dice on the held-out scan",
    "seeds": "Simulated clicks (one per R11 lesion, at its brightest voxel), with the current defaults",
    "factors": "Effect of each swept factor: mean Dice (over scans and readers) of the best configuration with that level, and the mean over all configurations with it",
}


def markdown(summary: dict, tables: dict) -> str:
    parts = [BEGIN, "",
             f"Run: `{summary['command']}` on {summary['date']}, bmeviz {summary['bmeviz_version']}, "
             f"{summary['cpus']} CPUs, {summary['seconds']:.0f} s wall; "
             f"{summary['n_runs']} `segment()` calls. Sources of bmeviz at the time (sha256, first 12): "
             + ", ".join(f"`{k}` {v}" for k, v in summary["sources"].items()) + "."]
    for name, (header, rows) in tables.items():
        parts += ["", f"**{TITLES[name]}**", "", md_table(header, rows)]
    parts += ["", END]
    return "\n".join(parts)


def write_doc(block: str) -> None:
    from bmeviz.io._atomic import atomic_write_text

    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            _, tail = rest.split(END, 1)
            atomic_write_text(DOC, head + block + tail)
            return
        atomic_write_text(DOC, text.rstrip() + "\n\n## Appendix: parameter sweep\n\n" + block + "\n")
        return
    atomic_write_text(DOC, "# Validation on SIJ STIR scans\n\n## Parameter sweep\n\n" + block + "\n")


def sources() -> dict:
    import bmeviz

    pkg = Path(bmeviz.__file__).parent
    return {f"bmeviz/{n}": hashlib.sha256((pkg / n).read_bytes()).hexdigest()[:12]
            for n in ("pipeline.py", "grow.py", "threshold.py", "lesions.py")}


# ---------------------------------------------------------------------------------------
def validate_main(args) -> int:
    """``bmeviz validate`` on the dev scans, this page's VALIDATE block."""
    from bmeviz.cli import main as cli_main

    argv = ["validate", "--sij-dir", str(DATA), "--out", str(RESULTS / "validate"), "--doc", str(DOC),
            "--users", str(args.users), "--seed", str(args.seed), "--jobs", str(args.jobs)]
    if args.reference_mode:
        argv += ["--reference-mode", args.reference_mode]
    if args.region_dir:
        argv += ["--region-dir", args.region_dir]
        if args.region_label:
            argv += ["--region-label", args.region_label]
    for item in args.set or []:
        argv += ["--set", item]
    return cli_main(argv)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="the parameter sweep (instead of bmeviz validate)")
    ap.add_argument("--quick", action="store_true", help="with --sweep: run only the current defaults of segment()")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: 1 for validate, 2 for --sweep)")
    ap.add_argument("--users", type=int, default=10, help="simulated users per scan (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the simulated users (default 0)")
    ap.add_argument("--reference-mode", choices=["point", "mask", "auto"], help="as bmeviz validate")
    ap.add_argument("--region-dir", help="alternative regions, as bmeviz validate")
    ap.add_argument("--region-label", help="their name in the tables, as bmeviz validate (default assisted)")
    ap.add_argument("--set", action="append", metavar="NAME=VALUE", help="a segment() option, as bmeviz validate")
    args = ap.parse_args(argv)

    if not DATA.is_dir():
        print(f"skip: SIJ STIR development data not found at {DATA} (it lives beside the project, "
              "never in the repository)")
        return 0
    if not args.sweep:
        args.jobs = 1 if args.jobs is None else args.jobs
        return validate_main(args)
    args.jobs = min(2, os.cpu_count() or 1) if args.jobs is None else args.jobs

    import bmeviz

    t0 = time.perf_counter()
    edge = has_edge()
    modes = ("seeded", "no-seed")
    defaults = {m: current_defaults(m) for m in modes}
    configs, keys = {}, {}
    for m in modes:
        configs[m] = [defaults[m]] if args.quick else grid(m, edge, defaults["seeded"]["max_volume_ml"])
        if config_key(defaults[m]) not in {config_key(c) for c in configs[m]}:
            configs[m].append(defaults[m])
        keys[m] = [config_key(c) for c in configs[m]]
    print(f"bmeviz {bmeviz.__version__}; segment(edge=) {'available' if edge else 'not available'}; "
          f"current defaults: {config_label(defaults['seeded'])}; configurations: "
          f"{len(configs['seeded'])} seeded, {len(configs['no-seed'])} no-seed, on {len(SCANS)} scans "
          f"(+{len(EXTRA)} without readers, no-seed only); {args.jobs} worker(s)")

    # seeded tasks (the larger grid) first, so the workers finish together
    tasks = [(s, "seeded") for s in SCANS] + [(s, "no-seed") for s in (*SCANS, *EXTRA)]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        futs = {(s, m): ex.submit(run_task, s, m, configs[m]) for s, m in tasks}
        done = {k: f.result() for k, f in futs.items()}

    runs = {m: {s: done[(s, m)]["runs"] for s, mm in tasks if mm == m} for m in ("seeded", "no-seed")}
    agreement = {s: done[(s, "no-seed")]["agreement"] for s in SCANS}
    plain = {s: done[(s, "no-seed")]["plain_rule"] for s in (*SCANS, *EXTRA)}
    dkey = {m: config_key(defaults[m]) for m in modes}

    summary: dict = {
        "command": "python benchmarks/validate_sij.py --sweep" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "bmeviz_version": bmeviz.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sources": sources(),
        "edge_available": edge,
        "defaults": defaults,
        "configurations": {m: len(configs[m]) for m in modes},
        "n_runs": sum(len(d["runs"]) for d in done.values()),
        "agreement": agreement,
        "extra": list(EXTRA),
        "seeds": {s: {"n": len(done[(s, "seeded")]["seeds"]),
                      "outside_region": done[(s, "seeded")]["seeds_outside_region"]} for s in SCANS},
    }

    methods = {"plain rule (published)": plain,
               "no seeds, defaults": {s: runs["no-seed"][s][dkey["no-seed"]] for s in (*SCANS, *EXTRA)},
               "seeded, defaults": {s: runs["seeded"][s][dkey["seeded"]] for s in SCANS}}
    if not args.quick:
        summary["ranking"], summary["best"], summary["loso"], summary["factors"] = {}, {}, {}, {}
        for mode in modes:
            r = runs[mode]
            ranked = rank(r, keys[mode])
            best = ranked[0][0]
            summary["best"][mode] = {"config": json.loads(best), "mean": ranked[0][1]}

            def item(k, i):
                reader_mean = {s: float(np.mean(list(agreement[s]["volume_ml"].values()))) for s in SCANS}
                return {"rank": i + 1 if i is not None else 0, "label": config_label(json.loads(k)),
                        "config": json.loads(k), "per_scan": {s: r[s][k]["dice_mean"] for s in SCANS},
                        "mean": mean_dice(r, k),
                        "volume_ratio": float(np.mean([r[s][k]["volume_ml"] / reader_mean[s] for s in SCANS]))}

            top = [item(k, i) for i, (k, _) in enumerate(ranked[:8])]
            if dkey[mode] not in [k for k, _ in ranked[:8]]:
                top.append(item(dkey[mode], None))
            summary["ranking"][mode] = top
            summary["loso"][mode] = leave_one_out(r, keys[mode])
            facs = {}
            for name, level_of in FACTORS:
                levels: dict = {}
                for k in keys[mode]:
                    lev = level_of(json.loads(k))
                    if lev is not None:
                        levels.setdefault(lev, []).append(mean_dice(r, k))
                if len(levels) > 1:
                    facs[name] = {lev: {"best": max(v), "mean": float(np.mean(v))} for lev, v in levels.items()}
            summary["factors"][mode] = facs
            label = "seeded, best of sweep" if mode == "seeded" else "no seeds, best of sweep"
            scans = SCANS if mode == "seeded" else (*SCANS, *EXTRA)
            if best != dkey[mode]:
                methods[label] = {s: r[s][best] for s in scans}
        summary["sweep"] = {"configs": configs, "runs": runs}
    else:
        summary["runs"] = runs
    summary["methods"] = methods
    summary["seconds"] = time.perf_counter() - t0
    summary["task_seconds"] = {f"{s}/{m}": round(done[(s, m)]["seconds"], 2) for s, m in tasks}

    tables = build_tables(summary)
    for name, (header, rows) in tables.items():
        print(f"\n{TITLES[name]}\n{text_table(header, rows)}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("validate_sij_quick.json" if args.quick else "validate_sij.json")
    out.write_text(json.dumps(summary, indent=1, default=float))
    print(f"\nwrote {out}")
    if not args.quick:
        write_doc(markdown(summary, tables))
        print(f"wrote {DOC}")
    print(f"total {summary['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
