"""Per-case and overall numbers of a validation study, and the issue-11 acceptance checks.

Everything here works on the JSON-able dicts of :func:`bmeviz.validate.study.run_case`;
no image is needed. Per case and mode, "Dice vs readers" is the mean over users of each
user's Dice against each reader, then the mean over readers; "between-user Dice" is the
mean over all pairs of users; "volume CV" is the SD (n−1) over the users' total volumes
divided by their mean. Overall values are means over cases (each case weighs the same),
and the volume agreement over cases (ICC, Bland–Altman, SDC; formulas in
:mod:`bmeviz.validate.stats`) uses one value per case: the users' mean volume for a mode,
the reader mean for "readers".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import ParameterError
from .stats import bland_altman, cv, icc
from .study import reader_groups

__all__ = ["summarize", "acceptance", "nanmean"]

#: Issue 11 targets.
TARGET_BETWEEN_USER_DICE = 0.85
TARGET_VOLUME_CV = 0.10
TARGET_REGION_DICE = 0.50
READER_MARGIN = 0.05


def nanmean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when there is none).

    >>> nanmean([1.0, float("nan"), 3.0])
    2.0
    """
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _nanmin(values: Sequence[float]) -> float:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.min()) if v.size else float("nan")


def _pairs(groups: Mapping[str, list[str]], names: Sequence[str]) -> tuple[list[tuple[str, str]], dict]:
    group_of = {n: g for g, members in groups.items() for n in members}
    inter = [(a, b) for a, b in itertools.combinations(names, 2) if group_of[a] != group_of[b]]
    intra = {g: list(itertools.combinations(members, 2)) for g, members in groups.items() if len(members) > 1}
    return inter, intra


def _dice_of(case: dict, a: str, b: str) -> float:
    d = case["readers"]["dice"]
    return d.get(f"{a}/{b}", d.get(f"{b}/{a}", float("nan")))


def _agreement(a: Sequence[float], b: Sequence[float]) -> dict | None:
    """Bland–Altman of a − b over cases and the two-column ICC; None with fewer than 2 cases."""
    if len(a) < 2:
        return None
    out = {"bland_altman": bland_altman(a, b), "icc": icc(np.column_stack([a, b])), "ratio": None}
    x, y = np.asarray(a, float), np.asarray(b, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() >= 2:  # volumes spanning orders of magnitude: Bland-Altman of the logs, as ratios
        ba = bland_altman(np.log(x[ok]), np.log(y[ok]))
        out["ratio"] = {"n": ba["n"], "ratio": math.exp(ba["bias"]),
                        "loa": tuple(math.exp(v) for v in ba["loa"]) if math.isfinite(ba["sd"]) else None}
    return out


def summarize(results: Sequence[dict], *, sessions: Mapping[str, list[str]] | None = None) -> dict:
    """Per-case and overall numbers from :func:`~bmeviz.validate.study.run_case` results."""
    results = sorted(results, key=lambda r: r["case_id"])
    names = list(dict.fromkeys(r for res in results for r in res["readers"]["volume_ml"]))
    if sessions:
        groups = {g: list(m) for g, m in sessions.items()}
        unknown = sorted({n for m in groups.values() for n in m} - set(names))
        if unknown:
            raise ParameterError(f"sessions name reader masks that no case has: {', '.join(unknown)} "
                                 f"(readers: {', '.join(names)})")
        for n in names:  # a reader not listed is a reader of its own
            if not any(n in m for m in groups.values()):
                groups[n] = [n]
    else:
        groups = reader_groups(names)
    inter, intra = _pairs(groups, names)
    per_case: dict = {}
    combos: list[tuple[str, str]] = []
    for res in results:
        cid = res["case_id"]
        rv = res["readers"]["volume_ml"]
        rd = {
            "volume_ml": rv,
            "volume_ml_mean": nanmean(list(rv.values())),
            "dice": res["readers"]["dice"],
            "inter_mean": nanmean([_dice_of(res, a, b) for a, b in inter if a in rv and b in rv]),
            "intra": {g: nanmean([_dice_of(res, a, b) for a, b in ps if a in rv and b in rv]) for g, ps in intra.items()},
        }
        rd["intra_mean"] = nanmean(list(rd["intra"].values()))
        entry: dict = {"readers": rd, "n_lesions_clicked": res["n_lesions_clicked"], "modes": {}}
        # readers independent of the clicks: not the click reader nor its other sessions
        own = next((m for m in groups.values() if res["click_reader"] in m), [res["click_reader"]])
        others = [n for n in rv if n not in own] if res["click_reader"] in rv else []
        for run in res["runs"]:
            key = (run["region"], run["mode"])
            if key not in combos:
                combos.append(key)
        for src, mode in combos:
            runs = [r for r in res["runs"] if r["region"] == src and r["mode"] == mode]
            if not runs:
                continue
            vols = [r["volume_ml"] for r in runs]
            dice_vs = {n: nanmean([r["dice"].get(n, float("nan")) for r in runs]) for n in rv}
            bud = res["between_user_dice"].get(f"{src}|{mode}")
            thr = [r["threshold"] for r in runs if r["threshold"] is not None]
            kk = [r["k_used"] for r in runs if r["k_used"] is not None]
            vmean = float(np.mean(vols))
            entry["modes"][f"{src}|{mode}"] = {
                "region": src, "mode": mode, "n_runs": len(runs),
                "dice_vs": dice_vs, "dice_mean": nanmean(list(dice_vs.values())),
                "dice_other_readers": nanmean([dice_vs[n] for n in others]) if others else None,
                "other_readers": others,
                "volume_ml": {"mean": vmean, "sd": float(np.std(vols, ddof=1)) if len(vols) > 1 else float("nan"),
                              "min": float(min(vols)), "max": float(max(vols)), "cv": cv(vols),
                              "per_user": vols},
                "volume_diff_ml": {n: vmean - v for n, v in rv.items()},
                "volume_diff_vs_reader_mean_ml": vmean - rd["volume_ml_mean"],
                "between_user_dice": None if bud is None else {"mean": nanmean(bud), "min": _nanmin(bud),
                                                                 "n_pairs": len(bud)},
                "threshold": {"min": min(thr), "max": max(thr)} if thr else None,
                "k_used": {"min": min(kk), "max": max(kk)} if kk else None,
                "clicks": runs[0]["n_clicks"],
                "clicks_not_grown_mean": float(np.mean([r["clicks_not_grown"] for r in runs])),
                "n_lesions_mean": float(np.mean([r["n_lesions"] for r in runs])),
            }
        per_case[cid] = entry
    cases = list(per_case)

    overall: dict = {}
    for src, mode in combos:
        key = f"{src}|{mode}"
        have = [c for c in cases if key in per_case[c]["modes"]]
        m = [per_case[c]["modes"][key] for c in have]
        o: dict = {
            "region": src, "mode": mode, "cases": have,
            "dice_mean": nanmean([x["dice_mean"] for x in m]),
            "dice_other_readers": nanmean([x["dice_other_readers"] for x in m if x["dice_other_readers"] is not None]),
            "dice_vs": {n: nanmean([x["dice_vs"].get(n, float("nan")) for x in m]) for n in names},
            "between_user_dice": nanmean([x["between_user_dice"]["mean"] for x in m if x["between_user_dice"]]),
            "between_user_dice_worst_case": _nanmin([x["between_user_dice"]["mean"] for x in m if x["between_user_dice"]]),
            "volume_cv_mean": nanmean([x["volume_ml"]["cv"] for x in m]),
            "volume_cv_worst_case": float(np.nanmax([x["volume_ml"]["cv"] for x in m]))
            if any(math.isfinite(x["volume_ml"]["cv"]) for x in m) else float("nan"),
        }
        vol = [x["volume_ml"]["mean"] for x in m]
        o["vs_reader_mean"] = _agreement(vol, [per_case[c]["readers"]["volume_ml_mean"] for c in have])
        o["vs_reader"] = {}
        for n in names:
            ok = [i for i, c in enumerate(have) if n in per_case[c]["readers"]["volume_ml"]]
            if len(ok) >= 2:
                o["vs_reader"][n] = bland_altman([vol[i] for i in ok],
                                                 [per_case[have[i]]["readers"]["volume_ml"][n] for i in ok])
        per_user = [x["volume_ml"]["per_user"] for x in m]
        k = min((len(p) for p in per_user), default=0)
        o["between_users"] = icc([p[:k] for p in per_user]) if len(have) >= 2 and k >= 2 else None
        overall[key] = o

    readers: dict = {"groups": groups, "inter_pairs": [f"{a}/{b}" for a, b in inter],
                     "inter_dice": nanmean([per_case[c]["readers"]["inter_mean"] for c in cases]),
                     "intra_dice": {g: nanmean([per_case[c]["readers"]["intra"][g] for c in cases]) for g in intra}}
    firsts = [members[0] for members in groups.values()]
    full = [c for c in cases if all(f in per_case[c]["readers"]["volume_ml"] for f in firsts)]
    if len(firsts) >= 2 and len(full) >= 2:
        table = [[per_case[c]["readers"]["volume_ml"][f] for f in firsts] for c in full]
        readers["inter_volume"] = {"raters": firsts, "icc": icc(table),
                                   "bland_altman": bland_altman([t[0] for t in table], [t[1] for t in table]),
                                   "pair": f"{firsts[0]}/{firsts[1]}",
                                   "ratio": _agreement([t[0] for t in table], [t[1] for t in table])["ratio"]}
    readers["intra_volume"] = {}
    for g, members in groups.items():
        ok = [c for c in cases if all(s in per_case[c]["readers"]["volume_ml"] for s in members[:2])]
        if len(members) > 1 and len(ok) >= 2:
            table = [[per_case[c]["readers"]["volume_ml"][s] for s in members] for c in ok
                     if all(s in per_case[c]["readers"]["volume_ml"] for s in members)]
            a = [per_case[c]["readers"]["volume_ml"][members[0]] for c in ok]
            b = [per_case[c]["readers"]["volume_ml"][members[1]] for c in ok]
            readers["intra_volume"][g] = {"raters": members, "pair": f"{members[0]}/{members[1]}",
                                          "icc": icc(table) if len(table) >= 2 else None,
                                          "bland_altman": bland_altman(a, b), "ratio": _agreement(a, b)["ratio"]}
    return {"cases": cases, "readers_all": names, "per_case": per_case, "overall": overall, "readers": readers,
            "acceptance": acceptance(per_case, overall)}


def acceptance(per_case: Mapping[str, dict], overall: Mapping[str, dict], *, region: str = "manual") -> list[dict]:
    """The issue-11 acceptance criteria that the modes run allow to check (manual region)."""
    out: list[dict] = []

    def add(criterion, value, target, ok, detail=""):
        out.append({"criterion": criterion, "value": value, "target": target,
                    "pass": None if ok is None else bool(ok), "detail": detail})

    pt, mk = overall.get(f"{region}|clicks/point"), overall.get(f"{region}|clicks/mask")
    cases = list(per_case)
    if pt is not None:
        per = {c: per_case[c]["modes"][f"{region}|clicks/point"] for c in pt["cases"]}
        bud = {c: (x["between_user_dice"] or {}).get("mean", float("nan")) for c, x in per.items()}
        add("between-user Dice, point reference + 1 click per lesion (every scan)", nanmean(list(bud.values())),
            f">= {TARGET_BETWEEN_USER_DICE}", all(v >= TARGET_BETWEEN_USER_DICE for v in bud.values()),
            "per scan: " + ", ".join(f"{c} {v:.2f}" for c, v in bud.items()))
        cvs = {c: x["volume_ml"]["cv"] for c, x in per.items()}
        add("volume CV between users, point reference (every scan)", nanmean(list(cvs.values())),
            f"<= {TARGET_VOLUME_CV:.0%}", all(v <= TARGET_VOLUME_CV for v in cvs.values()),
            "per scan: " + ", ".join(f"{c} {v:.0%}" for c, v in cvs.items()))
        if mk is not None:
            add("Dice vs readers: point reference >= manual ROI (mean over scans)", pt["dice_mean"],
                f">= {mk['dice_mean']:.2f} (manual ROI)", pt["dice_mean"] >= mk["dice_mean"],
                "point / manual ROI per scan: " + ", ".join(
                    f"{c} {per[c]['dice_mean']:.2f}/{per_case[c]['modes'][f'{region}|clicks/mask']['dice_mean']:.2f}"
                    for c in per if f"{region}|clicks/mask" in per_case[c]["modes"]))
    for ref in ("point", "mask", "auto"):
        r = overall.get(f"{region}|clicks/{ref}")
        if r is None:
            continue
        per = {c: per_case[c]["modes"][f"{region}|clicks/{ref}"] for c in r["cases"]}
        gap = {c: x["dice_mean"] - per_case[c]["readers"]["inter_mean"] for c, x in per.items()}
        add(f"seeded Dice vs readers, {ref} reference, >= readers' inter-reader Dice − {READER_MARGIN} (every scan)",
            r["dice_mean"], f"gap >= −{READER_MARGIN}", all(v >= -READER_MARGIN for v in gap.values()),
            "gap per scan: " + ", ".join(f"{c} {v:+.2f}" for c, v in gap.items()))
    for ref in ("point", "mask", "auto"):
        r = overall.get(f"{region}|region/{ref}")
        if r is not None:
            add(f"region-only Dice vs readers, {ref} reference (mean over scans)", r["dice_mean"],
                f">= {TARGET_REGION_DICE}", r["dice_mean"] >= TARGET_REGION_DICE,
                "per scan: " + ", ".join(f"{c} {per_case[c]['modes'][f'{region}|region/{ref}']['dice_mean']:.2f}"
                                         for c in r["cases"]))
    if not cases:
        return []
    return out
