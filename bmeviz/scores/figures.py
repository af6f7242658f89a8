"""A figure per scored slice: quadrants / subregions tinted and outlined, lesions outlined in red,
each unit's points or grade written on it, 'intense' (I) and 'deep' (D) points marked at the lesion
voxel that earned them. Radiological orientation from the affine (as :mod:`bmeviz.plot`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io._atomic import atomic_path
from ..plot._draw import _new_figure, _set_limits, _show_image
from ..plot.view import view_of
from ._common import ScoreResult

__all__ = ["slice_figure", "write_figures"]

_QCOLORS = {1: "#4e79a7", 2: "#59a14f", 3: "#f28e2b", 4: "#b07aa1"}  # by quadrant position (1-4)


def _color(value: int, kind: str) -> str:
    if kind == "sij":
        return _QCOLORS[(value - 1) % 4 + 1]
    import matplotlib

    return matplotlib.colormaps["tab20"]((value - 1) % 20)


def slice_figure(result: ScoreResult, image, s: int, *, width_in: float = 6.5):
    """The figure of slice ``s`` of a score (a :class:`matplotlib.figure.Figure`)."""
    from matplotlib.colors import to_rgba

    anatomy = result._figure_data["anatomy"]
    lab3 = result._figure_data["lesions"]
    markers = result._figure_data.get("markers", {})
    an = anatomy.labels[s]
    view = view_of(image, (1, 2), "radiological")
    img = np.asarray(image.array[s], float)
    rows_idx, cols_idx = np.nonzero(an) if an.any() else np.nonzero(np.ones_like(an))
    m = 12
    r0, r1 = max(rows_idx.min() - m, 0), min(rows_idx.max() + m + 1, an.shape[0])
    c0, c1 = max(cols_idx.min() - m, 0), min(cols_idx.max() + m + 1, an.shape[1])
    vals = img[r0:r1, c0:c1]
    finite = vals[np.isfinite(vals)]
    lo, hi = (np.percentile(finite, [1, 99.5]) if finite.size else (0, 1))
    h_mm, w_mm = (r1 - r0) * image.spacing[1], (c1 - c0) * image.spacing[2]
    if view.transpose:
        h_mm, w_mm = w_mm, h_mm
    fig = _new_figure((width_in, width_in * h_mm / max(w_mm, 1e-6)))
    ax = fig.add_axes((0, 0, 1, 1))
    _show_image(ax, img, image, view, (lo, hi))
    tint = np.zeros(an.shape + (4,))
    for v in np.unique(an[an > 0]):
        tint[an == v] = to_rgba(_color(int(v), anatomy.kind), 0.22)
    ax.imshow(view.image(tint) if not view.transpose else np.transpose(tint, (1, 0, 2)),
              interpolation="nearest", aspect=image.spacing[view.v] / image.spacing[view.h])

    def xy(r, c):
        return (r, c) if view.transpose else (c, r)

    def contour(mask, **kw):
        arr = view.image(mask.astype(float))
        ax.contour(arr, levels=[0.5], **kw)

    for v in np.unique(an[an > 0]):
        contour(an == v, colors=[_color(int(v), anatomy.kind)], linewidths=0.8)
    contour(lab3[s] > 0, colors=["red"], linewidths=1.0)
    for lines in (anatomy.lines or {}).values():  # the articular line the quadrants were built from
        if s in lines:
            p = np.asarray(lines[s])
            x, y = xy(p[:, 0], p[:, 1])
            ax.plot(x, y, color="yellow", lw=0.8, ls="--")
    df = result.rows
    col = result.value_column
    here = df[df["slice"] == s] if "slice" in df else df
    per_joint = {}
    for _, row in here.iterrows():
        v = int(row["label"])
        if v and np.any(an == v):
            rr, cc = np.nonzero(an == v)
            x, y = xy(float(np.median(rr)), float(np.median(cc)))
            txt = str(int(row[col])) + ("*" if row["overridden"] else "")
            ax.text(x, y, txt, color="white", fontsize=11, ha="center", va="center", weight="bold",
                    bbox=dict(boxstyle="round,pad=0.2", fc=_color(v, anatomy.kind), ec="none", alpha=0.85))
        if "joint" in row and isinstance(row.get("joint"), str):
            per_joint[row["joint"]] = per_joint.get(row["joint"], 0) + int(row[col])
    for (ms, side, unit), (r, c) in markers.items():
        if ms != s:
            continue
        x, y = xy(r, c)
        if unit == "intense":
            ax.plot(x, y, marker="*", ms=14, mfc="yellow", mec="black", ls="none")
            ax.annotate("I", (x, y), xytext=(6, 6), textcoords="offset points", color="yellow", weight="bold")
        elif unit == "deep":
            ax.plot(x, y, marker="v", ms=10, mfc="cyan", mec="black", ls="none")
            ax.annotate("D", (x, y), xytext=(6, -12), textcoords="offset points", color="cyan", weight="bold")
    _set_limits(ax, view.image(img).shape, view, (r0, r1, c0, c1) if not view.transpose else (c0, c1, r0, r1))
    ax.set_axis_off()
    if result.scheme == "sparcc":
        parts = ", ".join(f"{k} {v}" for k, v in per_joint.items())
        title = f"SPARCC slice {s}: {parts} (red: lesions; * = overridden; I intense, D deep)"
    else:
        title = f"{result.scheme.upper()} slice {s} (numbers: grade of each unit over all scored slices)"
    if anatomy.kind == "sij":
        title += "\nblue upper iliac, green lower iliac, orange upper sacral, purple lower sacral; yellow: joint line"
    ax.set_title(title, fontsize=8)
    return fig


def write_figures(result: ScoreResult, image, out_dir: str | os.PathLike, *, dpi: int = 90) -> list[Path]:
    """One PNG per scored slice (``slice_XXX.png``) in ``out_dir``, written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in result.slices:
        if not result._figure_data["anatomy"].labels[s].any():
            continue
        fig = slice_figure(result, image, s)
        target = out / f"slice_{s:03d}.png"
        with atomic_path(target) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.05)
        paths.append(target)
    return paths
