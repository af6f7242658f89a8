"""Score outputs: the folder (scores.csv, scores.json, a PNG per slice), an HTML fragment for
report.html, and the columns a cohort.csv row gets. No identifiers are written: the JSON holds
parameters, slices and counts, never file or patient names."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from .._jsonable import jsonable
from ..io._atomic import atomic_path, atomic_write_text
from ._common import ScoreResult

__all__ = ["score", "write_scores", "html_fragment", "report_page", "cohort_columns", "score_study"]


def score(image, lesions, anatomy, *, scheme: str, **options) -> ScoreResult:
    """Score ``lesions`` in ``anatomy`` with ``scheme`` ('sparcc', 'berlin', 'moaks', 'worms').

    Options go to :func:`~bmeviz.scores.score_sparcc` or :func:`~bmeviz.scores.score_graded`.
    """
    from ..errors import ParameterError
    from .graded import score_graded
    from .sparcc import score_sparcc

    if scheme == "sparcc":
        return score_sparcc(image, lesions, anatomy, **options)
    if scheme in ("berlin", "moaks", "worms"):
        bad = set(options) - {"slices", "overrides"}
        if bad:
            raise ParameterError(f"{scheme} takes slices and overrides only; got {sorted(bad)} "
                                 "(--fluid-* are for SPARCC's 'intense')")
        return score_graded(image, lesions, anatomy, scheme=scheme, **options)
    raise ParameterError(f"scheme must be sparcc, berlin, moaks or worms; got {scheme!r}")


def write_scores(result: ScoreResult, image, out_dir: str | os.PathLike, *, figures: bool = True) -> dict:
    """Write ``scores.csv``, ``scores.json`` and (``figures``) ``figures/slice_XXX.png`` atomically."""
    from .figures import write_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "scores.csv") as tmp:
        result.rows.to_csv(tmp, index=False, float_format="%.6g")
    pngs = write_figures(result, image, out / "figures") if figures else []
    summary = result.to_dict()
    summary["figures"] = [p.name for p in pngs]
    summary["columns"] = {"value": result.value_column,
                          "note": f"the sum of '{result.value_column}' over all rows is the total"}
    atomic_write_text(out / "scores.json", json.dumps(jsonable(summary), indent=2))
    return {"csv": out / "scores.csv", "json": out / "scores.json", "figures": pngs}


def _png_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight", pad_inches=0.05)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def html_fragment(result: ScoreResult, image=None, *, figures: bool = True, max_figures: int = 6) -> str:
    """An HTML ``<section>`` for report.html: the total, the per-unit table, the slice figures
    (embedded PNGs, so the report stays one self-contained file)."""
    from .figures import slice_figure

    col = result.value_column
    df = result.rows
    keep = [c for c in ("slice", "joint", "unit", "bme_volume_mm3", "bme_share", col, "reason") if c in df]
    shown = df[df[col] > 0] if result.scheme == "sparcc" else df
    head = (f"<h2>{html.escape(result.scheme.upper())} score: {result.total}"
            f" (max {result.params.get('maximum', '?')})</h2>")
    by = ", ".join(f"{html.escape(str(k))} {v}" for k, v in result.by_joint().items())
    parts = [f'<section class="bmeviz-scores">{head}<p>Per joint / bone: {by}. Slices scored: '
             f"{', '.join(map(str, result.slices))} ({html.escape(str(result.params.get('slices', {}).get('how', '')))}).</p>"]
    ov = result.params.get("overrides") or []
    if ov:
        parts.append(f"<p>{len(ov)} unit(s) overridden by the reader (automatic total {result.params.get('auto_total')}).</p>")
    if result.scheme == "sparcc":
        parts.append("<p>Units that scored (all units are in scores.csv):</p>")
    parts.append(shown[keep].to_html(index=False, border=0, classes="bmeviz-table", float_format=lambda v: f"{v:.3g}"))
    if figures and image is not None:
        for s in result.slices[:max_figures]:
            if result._figure_data["anatomy"].labels[s].any():
                fig = slice_figure(result, image, s, width_in=5.0)
                parts.append(f'<img alt="slice {s}" src="data:image/png;base64,{_png_b64(fig)}"/>')
    parts.append("</section>")
    return "\n".join(parts)


def report_page(result: ScoreResult, image=None, *, figures: bool = True) -> str:
    """A self-contained HTML page holding only :func:`html_fragment` (``bmeviz score --report``; with a
    segmentation, the section goes into its report.html instead: ``save_report(..., sections=[...])``)."""
    from .._version import __version__

    style = ("body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ddd;padding:.2em .5em}"
             "img{max-width:100%;height:auto}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>BME scores: '
            f"{html.escape(result.scheme.upper())}</title><style>{style}</style></head><body>\n"
            f"<h1>Bone marrow edema scores</h1><p>bmeviz {html.escape(__version__)} · no patient identifiers</p>\n"
            f"{html_fragment(result, image, figures=figures)}\n</body></html>\n")


def cohort_columns(result: ScoreResult) -> dict[str, Any]:
    """The columns one cohort.csv row gets: ``<scheme>_total``, per joint/bone, the slices."""
    out: dict[str, Any] = {f"{result.scheme}_total": result.total}
    for k, v in result.by_joint().items():
        out[f"{result.scheme}_{k}"] = v
    out[f"{result.scheme}_slices"] = f"{min(result.slices)}-{max(result.slices)}" if result.slices else ""
    out[f"{result.scheme}_overridden"] = int(result.rows["overridden"].sum())
    return out


def score_study(image, lesions, *, anatomy: Any, scheme: str, out_dir: str | os.PathLike | None = None,
                anatomy_names: Any = None, **options) -> dict[str, Any]:
    """What the batch calls per study when the manifest gives anatomy: score, write the folder
    (``out_dir/scores``) if asked, and return the cohort.csv columns.

    ``anatomy`` is an :class:`~bmeviz.scores.Anatomy` or a label-map path (with ``anatomy_names``).
    """
    from .anatomy import Anatomy, load_anatomy

    anat = anatomy if isinstance(anatomy, Anatomy) else load_anatomy(anatomy, like=image, names=anatomy_names)
    res = score(image, lesions, anat, scheme=scheme, **options)
    if out_dir is not None:
        write_scores(res, image, Path(out_dir) / "scores")
    return cohort_columns(res)
