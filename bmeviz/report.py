"""A self-contained HTML report of one result, for a case review.

:func:`save_report` writes one HTML file that needs nothing else: the figures are inline
PNG (base64), the style is inline, there is no script and no link to anything outside
the file. It holds the totals, the overlay montage (every slice with BME, outlined), where
the reference (normal marrow) was taken, the intensity histogram of the reference and
of the lesions with the threshold, the lesion table, the threshold and reference
statistics, the parameters and the full provenance.

No patient identifiers unless ``include_phi=True``: the report shows what
:meth:`bmeviz.Result.provenance` shows (the input's file or folder name only, no paths,
no UIDs), and nothing from the DICOM patient or study modules in either case.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .io._atomic import atomic_write_text
from .plot import histogram, montage, outline_mask, overlay

__all__ = ["save_report", "report_html"]

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
     color:#222;padding:0 1em;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.sub{color:#666;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:9em}
.card .v{font-size:1.35em;font-weight:600}.card .l{color:#666;font-size:.8em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:right}th{background:#f4f4f4}
td.t,th.t{text-align:left}
img{max-width:100%;height:auto;border:1px solid #eee}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.figs figure{margin:0;flex:1 1 320px}
figcaption{color:#555;font-size:.85em}
pre{background:#f8f8f8;border:1px solid #eee;padding:.8em;overflow:auto;font-size:.8em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.3em .8em;margin:.3em 0}
"""


def _png(fig: Any, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not np.isfinite(f):
            return "–"
        return f"{f:.{digits}g}"
    if isinstance(v, (list, tuple, dict)):
        return html.escape(json.dumps(v))
    return html.escape(str(v))


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th class='t'>{html.escape(k)}</th><td class='t'>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _lesion_table(table: Any) -> str:
    if table is None or len(table) == 0:
        return "<p>No lesion.</p>"
    cols = [c for c in ("lesion_id", "volume_ml", "volume_mm3", "voxels", "mean_intensity", "max_intensity",
                        "ratio_to_reference", "z_score", "first_slice", "last_slice", "n_slices",
                        "centroid_slice", "centroid_row", "centroid_col",
                        "centroid_x_mm", "centroid_y_mm", "centroid_z_mm") if c in table.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, row in table[cols].iterrows():
        body.append("<tr>" + "".join(f"<td>{_fmt(row[c])}</td>" for c in cols) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _reference_figure(result: Any) -> Any:
    """The reference (blue) and the search region (orange) outlined on the slice holding most reference."""
    from matplotlib.figure import Figure

    vol = result.volume
    ref = np.asarray(result.reference, bool)
    s = int(np.argmax(ref.sum(axis=(1, 2)))) if ref.any() else vol.shape[0] // 2
    aspect = vol.spacing[1] / vol.spacing[2]
    fig = Figure(figsize=(4.2, 4.2 * vol.shape[1] * aspect / vol.shape[2]), layout="constrained")
    ax = fig.add_subplot()
    overlay(vol, None, slice=s, ax=ax, title=f"slice {s}: reference (blue)" +
            (", search region (orange)" if result.region is not None else ""))
    rgba = np.zeros(vol.shape[1:] + (4,))
    if result.region is not None:
        edge = outline_mask(np.asarray(result.region[s], np.int32))
        rgba[edge] = (1.0, 0.55, 0.0, 1.0)
    edge = outline_mask(ref[s].astype(np.int32))
    rgba[edge] = (0.1, 0.45, 1.0, 1.0)
    ax.imshow(rgba, aspect=aspect, interpolation="nearest")
    return fig


def _histogram_figure(result: Any) -> Any:
    """The reference and lesion intensities with the threshold: :func:`bmeviz.plot.histogram`."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    histogram(result.volume, result.reference, result, ax=fig.add_subplot())
    return fig


def report_html(result: Any, *, include_phi: bool = False, title: str | None = None) -> str:
    """The report of ``result`` as one HTML string (see :func:`save_report`)."""

    prov = result.provenance(include_phi=include_phi)
    totals = result.totals
    t = result.threshold
    st = t.stats
    src = prov.get("input") or {}
    name = title if title is not None else (src.get("name") or "scan")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    frac = totals.get("bme_fraction_of_region")
    cards = [
        ("lesions", str(totals["n_lesions"])),
        ("total BME volume", f"{totals['total_volume_ml']:.3f} mL"),
        ("of the search region", "–" if frac is None else f"{100 * frac:.2f} %"),
        ("threshold", f"{t.value:.4g}"),
        ("rule", f"{t.rule}" + ("" if t.k is None else f", k = {t.k:g}")),
    ]
    cards_html = "".join(f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='l'>{html.escape(k)}</div></div>"
                         for k, v in cards)

    title_fig = (f"BME: {totals['n_lesions']} lesion(s), {totals['total_volume_ml']:.2f} mL")
    mont = _png(montage(result.volume, result.labels, title=title_fig), dpi=90)
    ref_png = _png(_reference_figure(result), dpi=90)
    hist_png = _png(_histogram_figure(result), dpi=90)

    thr_rows: list[tuple[str, Any]] = [("threshold", t.value), ("rule", t.rule), ("k used", t.k),
                                       ("strong threshold (hysteresis)", t.high)]
    for k, v in (t.details or {}).items():
        thr_rows.append((f"detail: {k}", v))
    ref_info = result.params.get("reference") or {}
    ref_rows: list[tuple[str, Any]] = [("kind", ref_info.get("kind")), ("voxels", ref_info.get("voxels"))]
    if ref_info.get("kind") == "sphere":
        ref_rows += [("centre (slice, row, column)", ref_info.get("point")),
                     ("centre (RAS mm)", ref_info.get("point_mm")), ("radius (mm)", ref_info.get("radius_mm"))]
    if st is not None:
        ref_rows += [(k, getattr(st, k)) for k in ("n", "mean", "sd", "median", "q1", "q3", "iqr", "min", "max")]

    input_rows = [(k, src.get(k)) for k in ("name", "description", "sequence", "series_number", "echo",
                                             "manufacturer", "shape", "spacing_mm")]
    input_rows.append(("plane / orientation", f"{result.volume.plane} / {''.join(result.volume.orientation)}"))
    if include_phi:
        input_rows += [("files", src.get("files")), ("series UID", src.get("series_uid"))]

    params = {k: v for k, v in (result.params or {}).items() if k not in ("reference",)}
    param_rows = [(k, v) for k, v in params.items()]
    notes = "".join(f"<div class='note'>{html.escape(m)}</div>" for m in result.messages)

    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BME report: {html.escape(str(name))}</title>
<style>{_CSS}</style></head>
<body>
<h1>Bone marrow edema: {html.escape(str(name))}</h1>
<div class="sub">bmeviz {html.escape(__version__)} · report written {now}{'' if include_phi else ' · no patient identifiers'}</div>
<div class="cards">{cards_html}</div>
{notes}
<h2>Lesions outlined</h2>
<figure><img alt="slices with BME, lesions outlined" src="{mont}">
<figcaption>Every slice with BME (up to 16), each lesion outlined in its own colour.</figcaption></figure>
<h2>Lesion table</h2>
{_lesion_table(result.table)}
<h2>Threshold and reference (normal marrow)</h2>
<div class="figs">
<figure><img alt="reference region" src="{ref_png}"><figcaption>Where the reference was taken.</figcaption></figure>
<figure><img alt="intensity histogram" src="{hist_png}"><figcaption>Intensities of the reference and of the
lesions, and the threshold.</figcaption></figure>
</div>
<div class="figs"><div>{_kv_table(thr_rows)}</div><div>{_kv_table(ref_rows)}</div></div>
<h2>Input</h2>
{_kv_table(input_rows)}
<h2>Parameters</h2>
{_kv_table(param_rows)}
<h2>Provenance</h2>
<details><summary>provenance.json</summary><pre>{html.escape(json.dumps(prov, indent=2))}</pre></details>
</body></html>
"""
    return doc


def save_report(result: Any, path: str | os.PathLike, *, include_phi: bool = False, title: str | None = None) -> Path:
    """Write a self-contained HTML report of ``result`` to ``path`` (atomically).

    Parameters
    ----------
    result : bmeviz.Result
    path : path-like
        Usually ``report.html`` beside the other outputs.
    include_phi : bool
        Show file paths and the series UID (never shown otherwise).
    title : str, optional
        Heading (e.g. the study id); default: the input's file or folder name.

    Returns
    -------
    Path

    Examples
    --------
    >>> import bmeviz, tempfile, os
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(16, 96, 96), spacing=(3.0, 1.4, 1.4), seed=3)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> path = save_report(res, os.path.join(tempfile.mkdtemp(), "report.html"))
    >>> text = path.read_text()
    >>> "data:image/png;base64," in text and "<script" not in text
    True
    """
    return atomic_write_text(path, report_html(result, include_phi=include_phi, title=title))
