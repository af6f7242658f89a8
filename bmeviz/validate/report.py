"""The validation report: Markdown (and a self-contained HTML), figures, CSV and JSON.

Everything is written atomically; outputs name cases by their case id only (no paths,
no patient identifiers).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._jsonable import jsonable
from ..io._atomic import atomic_path, atomic_write_text

__all__ = ["markdown", "write_outputs", "update_doc", "figure_bland_altman", "figure_per_case", "csv_rows",
           "BEGIN", "END", "to_html"]

BEGIN = "<!-- BEGIN VALIDATE RESULTS (written by `bmeviz validate`; do not edit by hand) -->"
END = "<!-- END VALIDATE RESULTS -->"
FIGURES = ("bland_altman", "per_case")

DEFINITIONS = """\
**Definitions.** Dice = 2|A∩B|/(|A|+|B|). *Dice vs readers*: each user's mask against each
reader's, mean over users, then over readers. *Between-user Dice*: mean over all pairs of
simulated users of one scan. *Volume CV*: SD (n−1) / mean of the users' total volumes.
*Readers' own agreement*: inter-reader = mean Dice over pairs of different readers;
intra-reader = the sessions of one reader (R11/R12, R21/R22). Over scans (one value per scan;
a mode's value is the users' mean volume, "readers" the reader mean): ICC(2,1) (two-way
random, absolute agreement) and ICC(3,1) (two-way mixed, consistency) from the two-way ANOVA
mean squares MSR (scans), MSC (raters), MSE (residual): ICC(2,1) = (MSR−MSE)/(MSR+(k−1)MSE+k(MSC−MSE)/n),
ICC(3,1) = (MSR−MSE)/(MSR+(k−1)MSE), 95% CIs F-based (Shrout & Fleiss 1979; McGraw & Wong 1996).
SEM = √(σ²_rater + σ²_error) with σ²_rater = max(0, (MSC−MSE)/n), σ²_error = MSE (agreement SEM);
SDC = 1.96·√2·SEM, the smallest change of one scan's volume that exceeds measurement error
(de Vet et al. 2006). Bland–Altman: bias = mean(a−b), limits of agreement bias ± 1.96·SD(a−b),
95% CI of the bias with t(n−1) (Bland & Altman 1986); *ratio*: the same on log volumes, back-transformed
(geometric mean ratio and its limits), less dominated by the largest scan. *Between users* treats the simulated users
as raters of the same scans. With few scans the CIs are wide and one large scan dominates
ICC and limits of agreement; read them with the per-scan tables."""


# ----------------------------------------------------------------------------- formatting
def _f(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def _pct(x: Any) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.0f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _ci(c: Sequence[float] | None) -> str:
    return "" if not c or c[0] is None or not np.isfinite(c[0]) else f" [{c[0]:.2f}, {c[1]:.2f}]"


def _label(key: str, many_regions: bool) -> str:
    src, mode = key.split("|")
    return f"{mode} ({src} region)" if many_regions else mode


# ----------------------------------------------------------------------------- markdown
def markdown(summary: Mapping, *, figure_dir: str = "") -> str:
    """The generated block (between :data:`BEGIN` and :data:`END`)."""
    s = summary
    run = s["run"]
    keys = list(s["overall"])
    many = len({k.split("|")[0] for k in keys}) > 1
    parts = [BEGIN, ""]
    opts = ", ".join(f"{k}={v!r}" for k, v in run["options"].items()) or "none (the defaults of `segment`)"
    notes = "; ".join(f"{x['case_id']}: {x['reason']}" for x in run.get("skipped", [])) or "none"
    parts.append(
        f"Run: `{run['command']}` on {run['date']}, bmeviz {run['bmeviz_version']}; {len(s['cases'])} scans "
        f"({', '.join(s['cases'])}); notes: {notes}. {run['n_users']} simulated users per scan, seed "
        f"{run['seed']}, reference radius {run['radius_mm'][0]:g}–{run['radius_mm'][1]:g} mm, clicks in the lesions "
        f"of {run['click_reader']}; segment options set: {opts}. {run['n_runs']} `segment()` calls, "
        f"{run['seconds']:.0f} s wall on {run['cpus']} CPU(s) ({run['jobs']} process(es)). "
        f"Sources (sha256, first 12): " + ", ".join(f"`{k}` {v}" for k, v in run["sources"].items()) + ".")
    if s["acceptance"]:
        parts += ["", "**Acceptance criteria of issue 11 (manual region)**", ""]
        rows = [[a["criterion"], _f(a["value"]) if "CV" not in a["criterion"] else _pct(a["value"]), a["target"],
                 {True: "yes", False: "**no**", None: "–"}[a["pass"]], a["detail"]] for a in s["acceptance"]]
        parts.append(_table(["criterion", "value (mean)", "target", "met", "detail"], rows))

    groups = [g for g in s["readers"]["intra_dice"]]
    header = ["scan", *(_label(k, many) for k in keys), "readers inter", *(f"intra {g}" for g in groups)]
    rows = []
    for c in s["cases"]:
        pc = s["per_case"][c]
        rows.append([c, *(_f(pc["modes"].get(k, {}).get("dice_mean")) for k in keys), _f(pc["readers"]["inter_mean"]),
                     *(_f(pc["readers"]["intra"].get(g)) for g in groups)])
    rows.append(["mean", *(_f(s["overall"][k]["dice_mean"]) for k in keys), _f(s["readers"]["inter_dice"]),
                 *(_f(s["readers"]["intra_dice"][g]) for g in groups)])
    parts += ["", "**Dice against the readers** (mean over users, then over the readers "
              f"{', '.join(s['readers_all'])}), next to the readers' own agreement", "", _table(header, rows)]

    ck = [k for k in keys if k.split("|")[1].startswith("clicks/")]
    oth = sorted({n for c in s["cases"] for k in ck for n in s["per_case"][c]["modes"].get(k, {}).get("other_readers") or []})
    if ck and oth:
        header = ["scan", *(_label(k, many) for k in ck)]
        rows = [[c, *(_f(s["per_case"][c]["modes"].get(k, {}).get("dice_other_readers")) for k in ck)] for c in s["cases"]]
        rows.append(["mean", *(_f(s["overall"][k]["dice_other_readers"]) for k in ck)])
        parts += ["", f"**Dice against the readers the clicks did not come from** ({', '.join(oth)}; the clicks "
                  f"are in {run['click_reader']}'s lesions, which favours that reader)", "", _table(header, rows)]

    header = ["scan", "mode", "between-user Dice mean (min)", "volume mL mean ± SD (min–max)", "volume CV",
              "threshold range", "k range", "clicks not grown"]
    rows = []
    for c in s["cases"]:
        first = True
        for k in keys:
            m = s["per_case"][c]["modes"].get(k)
            if m is None or m["n_runs"] < 2:
                continue
            v, b = m["volume_ml"], m["between_user_dice"]
            thr = m["threshold"] or {}
            kr = m["k_used"] or {}
            rows.append([c if first else "", _label(k, many),
                         "–" if not b else f"{_f(b['mean'])} ({_f(b['min'])})",
                         f"{_f(v['mean'])} ± {_f(v['sd'])} ({_f(v['min'])}–{_f(v['max'])})", _pct(v["cv"]),
                         f"{_f(thr.get('min'), 0)}–{_f(thr.get('max'), 0)}" if thr else "–",
                         f"{_f(kr.get('min'))}–{_f(kr.get('max'))}" if kr else "–",
                         f"{m['clicks_not_grown_mean']:.1f} of {m['clicks']}" if m["clicks"] else "–"])
            first = False
    if rows:
        parts += ["", f"**Reproducibility between {run['n_users']} simulated users**", "", _table(header, rows)]

    header = ["scan", *(_label(k, many) for k in keys), *s["readers_all"]]
    rows = [[c, *(_f(s["per_case"][c]["modes"].get(k, {}).get("volume_ml", {}).get("mean")) for k in keys),
             *(_f(s["per_case"][c]["readers"]["volume_ml"].get(r)) for r in s["readers_all"])] for c in s["cases"]]
    parts += ["", "**Total volume (mL; modes: mean over users)**", "", _table(header, rows)]

    header = ["comparison (over scans)", "n", "ICC(2,1) [95% CI]", "ICC(3,1) [95% CI]", "bias mL [95% CI]",
              "limits of agreement mL", "ratio (LoA), log scale", "SEM mL", "SDC mL"]
    rows = []

    def agree_row(name, ic, ba, ratio=None):
        rows.append([name, str(ic["n"] if ic else ba["n"]),
                     "–" if not ic else _f(ic["icc2"]) + _ci(ic["icc2_ci"]),
                     "–" if not ic else _f(ic["icc3"]) + _ci(ic["icc3_ci"]),
                     "–" if not ba else _f(ba["bias"]) + _ci(ba["bias_ci"]),
                     "–" if not ba else f"{_f(ba['loa'][0])} to {_f(ba['loa'][1])}",
                     "–" if not ratio else _f(ratio["ratio"]) + ("" if not ratio["loa"] else
                                                                 f" ({_f(ratio['loa'][0])}–{_f(ratio['loa'][1])})"),
                     "–" if not ic else _f(ic["sem_agreement"]), "–" if not ic else _f(ic["sdc_agreement"])])

    for k in keys:
        a = s["overall"][k]["vs_reader_mean"]
        if a:
            agree_row(f"{_label(k, many)} vs reader mean", a["icc"], a["bland_altman"], a.get("ratio"))
    for k in keys:
        bu = s["overall"][k]["between_users"]
        if bu:
            agree_row(f"between users ({bu['k']}), {_label(k, many)}", bu, None)
    iv = s["readers"].get("inter_volume")
    if iv:
        agree_row(f"inter-reader {iv['pair']}", iv["icc"] if len(iv["raters"]) == 2 else None, iv["bland_altman"],
                  iv.get("ratio"))
        if len(iv["raters"]) > 2:
            agree_row(f"inter-reader, all of {', '.join(iv['raters'])}", iv["icc"], None)
    for g, v in s["readers"].get("intra_volume", {}).items():
        agree_row(f"intra-reader {v['pair']}", v["icc"], v["bland_altman"], v.get("ratio"))
    if rows:
        parts += ["", "**Volume agreement over scans** (ICC, Bland–Altman, smallest detectable change)", "",
                  _table(header, rows)]
    pref = f"{figure_dir.rstrip('/')}/" if figure_dir else ""
    parts += ["", f"![Bland–Altman plots]({pref}{_fig_name('bland_altman', figure_dir)})", "",
              f"![Per-scan Dice and reproducibility]({pref}{_fig_name('per_case', figure_dir)})", "", DEFINITIONS, "", END]
    return "\n".join(parts)


def _fig_name(name: str, figure_dir: str) -> str:
    return f"validation_{name}.png" if figure_dir else f"{name}.png"


# ----------------------------------------------------------------------------- figures
def _modes_for_plots(summary: Mapping) -> list[str]:
    keys = list(summary["overall"])
    return [k for k in keys if k.startswith("manual|")] or keys


def figure_bland_altman(summary: Mapping):
    """Bland–Altman panels: each mode vs the reader mean, inter- and intra-reader (volume, mL)."""
    from ..plot import figure

    panels = []
    for k in _modes_for_plots(summary):
        a = summary["overall"][k]["vs_reader_mean"]
        if a:
            panels.append((f"{k.split('|')[1]} − reader mean", a["bland_altman"], summary["overall"][k]["cases"]))
    iv = summary["readers"].get("inter_volume")
    cases = summary["cases"]
    if iv:
        panels.append((f"{iv['pair'].replace('/', ' − ')} (inter-reader)", iv["bland_altman"], cases))
    for v in summary["readers"].get("intra_volume", {}).values():
        panels.append((f"{v['pair'].replace('/', ' − ')} (intra-reader)", v["bland_altman"], cases))
    n = max(1, len(panels))
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig = figure((4.0 * cols, 3.2 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (title, ba, cs) in zip(axes, panels):
        x, d = np.asarray(ba["mean"]), np.asarray(ba["diff"])
        ax.scatter(x, d, s=18, color="C0", zorder=3)
        for xi, di, c in zip(x, d, cs):
            ax.annotate(str(c), (xi, di), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.axhline(ba["bias"], color="C3", lw=1, label=f"bias {ba['bias']:.2f}")
        if np.isfinite(ba["sd"]):
            for y in ba["loa"]:
                ax.axhline(y, color="C3", lw=0.8, ls="--")
        ax.axhline(0, color="0.6", lw=0.6)
        if x.size and np.all(x > 0) and x.max() / x.min() > 20:  # volumes from < 1 to > 100 mL
            from matplotlib.ticker import ScalarFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("mean volume (mL)", fontsize=8)
        ax.set_ylabel("difference (mL)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig


def figure_per_case(summary: Mapping):
    """Per scan: Dice vs readers by mode (with the readers' agreement), between-user Dice, volume CV."""
    from ..plot import figure

    keys = _modes_for_plots(summary)
    cases = summary["cases"]
    fig = figure((12.0, 3.4))
    axes = fig.subplots(1, 3)
    x = np.arange(len(cases))
    w = 0.8 / max(1, len(keys))
    multi = [k for k in keys if any(summary["per_case"][c]["modes"].get(k, {}).get("n_runs", 0) > 1 for c in cases)]
    for i, k in enumerate(keys):
        vals = [summary["per_case"][c]["modes"].get(k, {}).get("dice_mean", np.nan) for c in cases]
        axes[0].bar(x + (i - (len(keys) - 1) / 2) * w, vals, w, label=k.split("|")[1], color=f"C{i}")
    inter = [summary["per_case"][c]["readers"]["inter_mean"] for c in cases]
    axes[0].scatter(x, inter, marker="_", s=500, color="k", zorder=4, label="readers inter")
    axes[0].set_title("Dice vs readers", fontsize=9)
    for j, (ax, field, title) in enumerate(((axes[1], "dice", "between-user Dice"), (axes[2], "cv", "volume CV (%)"))):
        wm = 0.8 / max(1, len(multi))
        for i, k in enumerate(multi):
            ms = [summary["per_case"][c]["modes"].get(k) for c in cases]
            if field == "dice":
                vals = [m["between_user_dice"]["mean"] if m and m["between_user_dice"] else np.nan for m in ms]
            else:
                vals = [100 * m["volume_ml"]["cv"] if m else np.nan for m in ms]
            ax.bar(x + (i - (len(multi) - 1) / 2) * wm, vals, wm, label=k.split("|")[1], color=f"C{keys.index(k)}")
        ax.set_title(title, fontsize=9)
    axes[1].axhline(0.85, color="k", lw=0.8, ls=":")
    axes[2].axhline(10, color="k", lw=0.8, ls=":")
    for ax in axes:
        ax.set_xticks(x, cases, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylim(0, 1)
    axes[1].set_ylim(0, 1.05)
    axes[0].legend(fontsize=6, loc="upper right")
    return fig


def _save_fig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")


# ----------------------------------------------------------------------------- CSV / HTML / writing
CSV_FIELDS = ("case_id", "region", "mode", "user", "reader", "dice", "volume_ml", "reader_volume_ml", "volume_diff_ml",
              "threshold", "k_used", "n_lesions", "n_clicks", "clicks_not_grown")


def csv_rows(results: Sequence[Mapping]) -> list[dict]:
    """One row per case x region x mode x user x reader, plus reader-vs-reader rows (mode ``readers``)."""
    out = []
    for res in sorted(results, key=lambda r: r["case_id"]):
        rv = res["readers"]["volume_ml"]
        for run in res["runs"]:
            for r, d in run["dice"].items():
                out.append({"case_id": res["case_id"], "region": run["region"], "mode": run["mode"],
                            "user": "" if run["user"] is None else run["user"], "reader": r, "dice": d,
                            "volume_ml": run["volume_ml"], "reader_volume_ml": rv[r],
                            "volume_diff_ml": run["volume_ml"] - rv[r], "threshold": run["threshold"],
                            "k_used": run["k_used"], "n_lesions": run["n_lesions"], "n_clicks": run["n_clicks"],
                            "clicks_not_grown": run["clicks_not_grown"]})
        for pair, d in res["readers"]["dice"].items():
            a, b = pair.split("/")
            out.append({"case_id": res["case_id"], "region": "", "mode": "readers", "user": a, "reader": b, "dice": d,
                        "volume_ml": rv[a], "reader_volume_ml": rv[b], "volume_diff_ml": rv[a] - rv[b]})
    return out


def _csv_text(rows: Sequence[Mapping]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r[k]))
                    for k in CSV_FIELDS})
    return buf.getvalue()


def to_html(md: str, images: Mapping[str, bytes]) -> str:
    """A self-contained HTML page from the report's Markdown (tables, bold, code, images inlined)."""
    def inline(t: str) -> str:
        t = html.escape(t, quote=False)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
        return re.sub(r"\*(.+?)\*", r"<i>\1</i>", t)

    body, lines = [], [ln for ln in md.splitlines() if not ln.startswith("<!--")]
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith("|"):
            tbl = []
            while i < len(lines) and lines[i].startswith("|"):
                tbl.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            head, rows = tbl[0], tbl[2:]
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                        + "</table>")
            continue
        m = re.fullmatch(r"!\[(.*?)\]\((.*?)\)", ln.strip())
        if m:
            data = images.get(Path(m.group(2)).name)
            if data is not None:
                src = "data:image/png;base64," + base64.b64encode(data).decode()
                body.append(f'<p><img alt="{html.escape(m.group(1))}" src="{src}"></p>')
        elif ln.startswith("#"):
            level = len(ln) - len(ln.lstrip("#"))
            body.append(f"<h{level}>{inline(ln.lstrip('#').strip())}</h{level}>")
        elif ln.strip():
            body.append(f"<p>{inline(ln)}</p>")
        i += 1
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>bmeviz validation</title>"
            f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n")


def write_outputs(out: str | Path, summary: Mapping, results: Sequence[Mapping]) -> dict[str, Path]:
    """Write validation.csv, summary.json, validation.md, validation.html and the figures into ``out``."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    images = {}
    for name, make in (("bland_altman", figure_bland_altman), ("per_case", figure_per_case)):
        p = d / f"{name}.png"
        _save_fig(make(summary), p)
        paths[name] = p
        images[p.name] = p.read_bytes()
    paths["csv"] = atomic_write_text(d / "validation.csv", _csv_text(csv_rows(results)))
    paths["json"] = atomic_write_text(d / "summary.json", json.dumps(jsonable(summary), indent=1) + "\n")
    md = "# bmeviz validation\n\n" + markdown(summary) + "\n"
    paths["md"] = atomic_write_text(d / "validation.md", md)
    paths["html"] = atomic_write_text(d / "validation.html", to_html(md, images))
    return paths


def update_doc(doc: str | Path, summary: Mapping, *, images_dir: str = "images") -> Path:
    """Put the generated block into ``doc`` between the markers (prose outside them kept);
    the figures go to ``<doc folder>/<images_dir>/validation_*.png``."""
    p = Path(doc)
    img = p.parent / images_dir
    for name, make in (("bland_altman", figure_bland_altman), ("per_case", figure_per_case)):
        _save_fig(make(summary), img / f"validation_{name}.png")
    block = markdown(summary, figure_dir=images_dir)
    text = p.read_text(encoding="utf-8") if p.exists() else "# Validation\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    return atomic_write_text(p, text)
