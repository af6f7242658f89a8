"""Figures of a follow-up: change.png (both visits, outlines by status, per-lesion chart) and a
checkerboard of the registration (before/after), each at the pixels' physical aspect."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STATUS_COLORS", "change_figure", "checkerboard_figure", "save_change_figure", "save_checkerboard",
           "checkerboard"]

#: One colour per status (also napari's).
STATUS_COLORS = {"persisting": "#f0c419", "shrunk": "#2f9fe8", "grown": "#e8482f", "resolved": "#35d05a",
                 "new": "#e040fb"}


def _norm(img: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.clip((np.nan_to_num(np.asarray(img, float)) - lo) / max(hi - lo, 1e-12), 0, 1)


def checkerboard(a: np.ndarray, b: np.ndarray, *, tile: int = 32) -> np.ndarray:
    """Tiles of ``a`` and ``b`` (2D, same shape) alternating like a chessboard.

    >>> checkerboard(np.zeros((4, 4)), np.ones((4, 4)), tile=2).astype(int).tolist()[0]
    [0, 0, 1, 1]
    """
    r, c = np.indices(a.shape)
    take_b = ((r // tile) + (c // tile)) % 2 == 1
    return np.where(take_b, b, a)


def _status_of(result) -> tuple[dict, dict]:
    """Status of each baseline id and each follow-up id, from the change table."""
    b, f = {}, {}
    for _, row in result.table.iterrows():
        for i in str(row["baseline_ids"] or "").split(";"):
            if i:
                b[int(i)] = row["status"]
        for i in str(row["followup_ids"] or "").split(";"):
            if i:
                f[int(i)] = row["status"]
    return b, f


def _best_slice(result) -> int:
    both = (result.baseline.labels > 0).sum(axis=(1, 2)) + (result.followup_labels_on_baseline > 0).sum(axis=(1, 2))
    if both.max() > 0:
        return int(np.argmax(both))
    return result.baseline.volume.shape[0] // 2


def _show(ax, img2d: np.ndarray, view, aspect: float, **kw) -> None:
    """Draw a (row, column) slice in the radiological orientation of bmeviz's figures."""
    from ..plot._draw import _set_limits

    img = view.image(img2d)
    ax.imshow(img, interpolation="nearest", aspect=aspect, **kw)
    _set_limits(ax, img.shape[:2], view)


def _outline(ax, lab2d: np.ndarray, status: dict, view, aspect: float) -> None:
    from ..plot.view import outline_mask

    edge = outline_mask(lab2d)
    rgba = np.zeros(lab2d.shape + (4,))
    for i in np.unique(lab2d[edge]):
        col = STATUS_COLORS.get(status.get(int(i), "persisting"))
        from matplotlib.colors import to_rgba

        rgba[edge & (lab2d == i)] = to_rgba(col)
    _show(ax, rgba, view, aspect)


def change_figure(result, *, slice_index: int | None = None):
    """Baseline and registered follow-up on one baseline slice, outlines coloured by status,
    and a chart of each track's volume at both visits."""
    from matplotlib.patches import Patch

    from ..plot._draw import _new_figure
    from ..plot.view import display_range, view_of

    b = result.baseline.volume
    s = _best_slice(result) if slice_index is None else int(slice_index)
    sp = b.spacing
    view = view_of(b, (1, 2), "radiological")
    aspect = sp[view.v] / sp[view.h]
    fig = _new_figure((13.0, 4.8))
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 1, 1.15], left=0.02, right=0.98, top=0.9, bottom=0.14, wspace=0.22)
    b_status, f_status = _status_of(result)
    fu = result.followup_on_baseline
    for k, (img, lab, status, title) in enumerate((
            (b.array, result.baseline.labels, b_status, f"baseline (slice {s})"),
            (fu, result.followup_labels_on_baseline, f_status, "follow-up, registered onto the baseline"))):
        ax = fig.add_subplot(gs[0, k])
        # each visit in its own window: intensities are not compared raw across visits
        _show(ax, _norm(img[s], display_range(img)), view, aspect, cmap="gray", vmin=0, vmax=1)
        _outline(ax, np.asarray(lab[s]), status, view, aspect)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = fig.add_subplot(gs[0, 2])
    t = result.table
    n = len(t)
    if n:
        x = np.arange(n)
        cols = [STATUS_COLORS[st] for st in t["status"]]
        ax.bar(x - 0.2, t["baseline_ml"], 0.4, color="#999999", label="baseline")
        ax.bar(x + 0.2, t["followup_ml"], 0.4, color=cols, label="follow-up")
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in t["track"]], fontsize=7)
        if t[["baseline_ml", "followup_ml"]].to_numpy().max() / max(1e-9, np.median(
                np.maximum(t["baseline_ml"], t["followup_ml"]))) > 30:
            ax.set_yscale("log")
    ax.set_xlabel("lesion track (change.csv)")
    ax.set_ylabel("volume (mL)")
    tot = result.totals
    ax.set_title(f"total {tot['baseline_ml']:.2f} → {tot['followup_ml']:.2f} mL ({tot['change_ml']:+.2f} mL)",
                 fontsize=10)
    handles = [Patch(color="#999999", label="baseline")] + [Patch(color=c, label=st) for st, c in STATUS_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    q = result.registration.quality
    before = "no overlap" if not np.isfinite(q["ncc_before"]) else f"{q['ncc_before']:.2f}"
    fig.suptitle(f"BME change · registration NCC {before} → {q['ncc_after']:.2f}", fontsize=11)
    return fig


def checkerboard_figure(baseline, followup, registration, *, slices: Any = None, tile_mm: float = 20.0,
                        region: Any = None):
    """Checkerboards of the baseline with the follow-up on the baseline grid, in the scanner
    frame (top) and after registration (bottom), on three slices. Edges that run on across
    tiles mean aligned; each visit is shown in its own grey window."""
    import SimpleITK as sitk

    from ..plot._draw import _new_figure
    from ..plot.view import display_range, view_of
    from .register import resample

    b_arr = np.asarray(baseline.array, float)
    before = resample(followup, baseline, sitk.Euler3DTransform())
    after = resample(followup, baseline, registration.transform)
    n = baseline.shape[0]
    if slices is None:
        slices = [int(round(v)) for v in np.linspace(0.25, 0.75, 3) * (n - 1)]
    sp = baseline.spacing
    view = view_of(baseline, (1, 2), "radiological")
    aspect = sp[view.v] / sp[view.h]
    tile = max(4, int(round(tile_mm / sp[2])))
    wb = display_range(b_arr)
    wf = display_range(np.asarray(followup.array, float))
    fig = _new_figure((3.4 * len(slices), 7.0))
    axes = fig.subplots(2, len(slices), squeeze=False)
    q = registration.quality
    def ncc(v):
        return "no overlap" if v is None or not np.isfinite(v) else f"NCC {v:.2f}"

    for row, (moved, label) in enumerate(((before, f"scanner frame ({ncc(q['ncc_before'])})"),
                                          (after, f"registered ({ncc(q['ncc_after'])})"))):
        for col, s in enumerate(slices):
            ax = axes[row, col]
            _show(ax, checkerboard(_norm(b_arr[s], wb), _norm(moved[s], wf), tile=tile), view, aspect, cmap="gray",
                  vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label}, slice {s}", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.03, hspace=0.08)
    return fig


def _save(fig, path: str | os.PathLike, dpi: int) -> Path:
    from ..io._atomic import atomic_path

    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out


def save_change_figure(result, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write :func:`change_figure` to ``path`` atomically."""
    return _save(change_figure(result), path, dpi)


def save_checkerboard(result, path: str | os.PathLike, *, dpi: int = 90) -> Path:
    """Write :func:`checkerboard_figure` of a :class:`FollowupResult` to ``path`` atomically."""
    return _save(checkerboard_figure(result.baseline.volume, result.followup.volume, result.registration), path, dpi)
