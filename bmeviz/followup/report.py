"""The follow-up section of a report (an HTML fragment) and a self-contained ``report.html``.

Same rules as :mod:`bmeviz.report`: inline PNG figures and style, no script, no link out,
no identifiers unless ``include_phi=True``.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from pathlib import Path

__all__ = ["followup_section_html", "followup_report_html", "save_followup_report"]

_CHANGE_COLUMNS = ("track", "status", "baseline_id", "followup_id", "baseline_ml", "followup_ml", "change_ml",
                   "change_pct", "baseline_ratio", "followup_ratio", "overlap_dice", "matched_by", "note")


def _table(df) -> str:
    from ..report import _fmt
    from .figures import STATUS_COLORS

    if df is None or len(df) == 0:
        return "<p>No lesion at either visit.</p>"
    cols = [c for c in _CHANGE_COLUMNS if c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, row in df[cols].iterrows():
        cells = []
        for c in cols:
            v = row[c]
            try:
                missing = v is None or bool(v != v)
            except (TypeError, ValueError):
                missing = False
            text = "–" if missing else _fmt(v)
            if c == "status":
                cells.append(f"<td class='t' style='border-left:6px solid {STATUS_COLORS.get(v, '#999')}'>{text}</td>")
            else:
                cells.append(f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def followup_section_html(result, *, include_phi: bool = False) -> str:
    """An HTML fragment (``<section>``) with the follow-up totals, registration quality, the
    change figure, the checkerboard and the change table; fits into any bmeviz report."""
    from ..report import _fmt, _kv_table, _png
    from .figures import change_figure, checkerboard_figure

    t = result.totals
    q = result.registration.quality
    reg = result.registration
    cards = [("baseline", f"{t['baseline_ml']:.3f} mL"), ("follow-up", f"{t['followup_ml']:.3f} mL"),
             ("change", f"{t['change_ml']:+.3f} mL"),
             ("tracks", f"{t['persisting']} persisting · {t['shrunk']} shrunk · {t['grown']} grown · "
                        f"{t['resolved']} resolved · {t['new']} new")]
    card_html = "".join(f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='l'>{html.escape(k)}"
                        "</div></div>" for k, v in cards)
    notes = ""
    if q.get("ncc_after") is not None and q["ncc_after"] < reg.params.get("warn_ncc", 0.5):
        notes = (f"<p class='note'>Registration may be poor (NCC after {q['ncc_after']:.3f}); check the checkerboard "
                 "before trusting the change.</p>")
    quality = _kv_table([
        ("NCC before / after", f"{_fmt(q['ncc_before'], 3)} / {_fmt(q['ncc_after'], 3)}"),
        ("MI before / after (nats)", f"{_fmt(q['mi_before'], 3)} / {_fmt(q['mi_after'], 3)}"),
        ("measured in", q.get("measured_in")), ("start", q.get("start")),
        ("rotation (deg)", reg.rotation_deg), ("translation at centre (mm)", reg.translation_mm),
        ("seconds", reg.seconds)])
    m = result.params.get("matching", {})
    rules = (f"Linked by overlap (at least {100 * m.get('min_overlap', 0.1):.0f}% of the smaller lesion) after "
             f"registration, then by centroid distance up to {m.get('max_distance_mm', 10):g} mm. Shrunk/grown: "
             f"relative change beyond ±{m.get('change_pct_threshold', 25):g}%"
             + (f" or the smallest detectable change {m['sdc_ml']:g} mL" if m.get("sdc_ml") is not None else "")
             + ". Volumes on each visit's own grid; ratios to each visit's own normal marrow.")
    return ("<section class='followup'><h2>Follow-up: change between visits</h2>"
            f"<div class='cards'>{card_html}</div>{notes}"
            f"<figure><img alt='change' src='{_png(change_figure(result))}'><figcaption>Baseline and the registered "
            "follow-up on one baseline slice, outlines coloured by status; each track's volume at both visits."
            "</figcaption></figure>"
            f"<h2>Registration</h2>{quality}"
            f"<figure><img alt='checkerboard' src='{_png(checkerboard_figure(result.baseline.volume, result.followup.volume, reg), dpi=80)}'>"
            "<figcaption>Checkerboard of baseline and follow-up: scanner frame (top) and registered (bottom); "
            "edges that continue across tiles mean aligned.</figcaption></figure>"
            f"<h2>Lesion tracks</h2><p class='sub'>{html.escape(rules)}</p>{_table(result.table)}</section>")


def followup_report_html(result, *, include_phi: bool = False, title: str | None = None) -> str:
    """A whole self-contained HTML page: :func:`followup_section_html` and the provenance."""
    from ..report import _CSS

    prov = result.provenance(include_phi=include_phi)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = html.escape(title or "bmeviz follow-up report")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{head}</title><style>{_CSS}</style></head><body>"
            f"<h1>{head}</h1><p class='sub'>bmeviz {html.escape(str(prov['software']['version']))} · {when}</p>"
            + followup_section_html(result, include_phi=include_phi)
            + f"<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=2))}</pre></body></html>\n")


def save_followup_report(result, path: str | os.PathLike, *, include_phi: bool = False,
                         title: str | None = None) -> Path:
    """Write :func:`followup_report_html` to ``path`` atomically."""
    from ..io._atomic import atomic_write_text

    return atomic_write_text(path, followup_report_html(result, include_phi=include_phi, title=title))
