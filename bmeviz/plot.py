"""Matplotlib figures: slices with lesion outlines, montages, and the overlay.png of a result.

No pyplot and no Qt: figures are built on :class:`matplotlib.figure.Figure`, so they work
headless, in threads (napari workers, Dask) and in notebooks (a Figure displays itself).
Pixels keep their physical shape: the aspect ratio comes from the voxel spacing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ParameterError
from .volume import Volume

__all__ = ["overlay", "montage", "save_overlay", "lesion_colors", "outline_mask", "display_range"]


def lesion_colors(n: int) -> np.ndarray:
    """``n`` distinct RGB colours (tab10, then tab20), lesion id i -> colour i-1."""
    from matplotlib import colormaps

    base = np.array(colormaps["tab10"].colors)
    if n > len(base):
        base = np.vstack([base, np.array(colormaps["tab20"].colors)])
    reps = int(np.ceil(max(n, 1) / len(base)))
    return np.tile(base, (reps, 1))[: max(n, 1)]


def display_range(array: np.ndarray, *, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """Robust grey-level window: percentiles of the finite, non-background voxels."""
    vals = np.asarray(array, dtype=float)
    vals = vals[np.isfinite(vals)]
    if vals.size > 2_000_000:
        vals = vals[:: vals.size // 1_000_000]
    nz = vals[vals > vals.min()] if vals.size else vals
    src = nz if nz.size > 100 else vals
    if src.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(src, [low, high])
    return float(lo), float(hi if hi > lo else lo + 1)


def outline_mask(labels2d: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of each label in a 2D label image (the drawn outline)."""
    from skimage.segmentation import find_boundaries

    return find_boundaries(labels2d, mode="inner") & (labels2d > 0)


def _aspect(volume: Volume) -> float:
    _, row, col = volume.spacing
    return row / col


def overlay(
    volume: Volume,
    labels: Any = None,
    *,
    slice: int | None = None,
    ax: Any = None,
    window: tuple[float, float] | None = None,
    scale_bar_mm: float | None = 20.0,
    title: str | None = None,
    linewidth: float = 1.0,
):
    """One slice with lesion outlines coloured by lesion id, at the true pixel aspect.

    Parameters
    ----------
    volume : Volume
    labels : (S, R, C) int array, optional
        Lesion ids (0 = background) on the volume's grid.
    slice : int, optional
        Slice index; default: the slice with the most lesion voxels (or the middle).
    ax : matplotlib Axes, optional
        Draw here; a new Figure is made otherwise.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.figure import Figure

    lab = None if labels is None else np.asarray(labels)
    if lab is not None and lab.shape != volume.shape:
        raise ParameterError(f"labels shape {lab.shape} differs from the volume's {volume.shape}")
    if slice is None:
        if lab is not None and lab.any():
            slice = int(np.argmax((lab > 0).sum(axis=(1, 2))))
        else:
            slice = volume.shape[0] // 2
    if not 0 <= slice < volume.shape[0]:
        raise ParameterError(f"slice {slice} is outside 0..{volume.shape[0] - 1}")
    if ax is None:
        fig = Figure(figsize=(6, 6 * volume.shape[1] * _aspect(volume) / volume.shape[2]))
        ax = fig.add_subplot()
    lo, hi = window or display_range(volume.array)
    ax.imshow(volume.array[slice], cmap="gray", vmin=lo, vmax=hi, aspect=_aspect(volume), interpolation="nearest")
    if lab is not None and lab[slice].any():
        ids = lab[slice]
        edge = outline_mask(ids)
        colors = lesion_colors(int(lab.max()))
        rgba = np.zeros(ids.shape + (4,))
        rgba[edge, :3] = colors[ids[edge] - 1]
        rgba[edge, 3] = 1.0
        ax.imshow(rgba, aspect=_aspect(volume), interpolation="nearest")
    if scale_bar_mm:
        _scale_bar(ax, volume, scale_bar_mm)
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"slice {slice}", fontsize=9)
    return ax


def _scale_bar(ax: Any, volume: Volume, mm: float) -> None:
    _, rows, cols = volume.shape
    px = mm / volume.spacing[2]
    if px > cols * 0.6:
        mm = max(1.0, round(cols * 0.3 * volume.spacing[2]))
        px = mm / volume.spacing[2]
    x0, y0 = cols * 0.05, rows * 0.93
    ax.plot([x0, x0 + px], [y0, y0], color="white", lw=3, solid_capstyle="butt")
    ax.text(x0 + px / 2, y0 - rows * 0.02, f"{mm:g} mm", color="white", ha="center", va="bottom", fontsize=8)


def montage(
    volume: Volume,
    labels: Any,
    *,
    slices: Any = None,
    columns: int = 4,
    max_slices: int = 16,
    window: tuple[float, float] | None = None,
    fig: Any = None,
    title: str | None = None,
):
    """Every slice that holds BME (or ``slices``), outlined, in a grid; returns the Figure."""
    from matplotlib.figure import Figure

    lab = np.asarray(labels)
    if lab.shape != volume.shape:
        raise ParameterError(f"labels shape {lab.shape} differs from the volume's {volume.shape}")
    if slices is None:
        slices = np.flatnonzero((lab > 0).any(axis=(1, 2)))
        if slices.size == 0:
            slices = np.array([volume.shape[0] // 2])
        if slices.size > max_slices:
            slices = slices[np.linspace(0, slices.size - 1, max_slices).round().astype(int)]
    slices = [int(s) for s in slices]
    ncol = min(columns, len(slices))
    nrow = int(np.ceil(len(slices) / ncol))
    cell_h = 3.0 * volume.shape[1] * _aspect(volume) / volume.shape[2]
    if fig is None:
        fig = Figure(figsize=(3.0 * ncol, cell_h * nrow + (0.4 if title else 0)), layout="constrained")
    window = window or display_range(volume.array)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, s in zip(axes.flat, slices):
        n_vox = int((lab[s] > 0).sum())
        overlay(volume, lab, slice=s, ax=ax, window=window, scale_bar_mm=20 if s == slices[0] else None,
                title=f"slice {s}" + (f" · {n_vox * volume.voxel_volume_mm3 / 1000:.2f} mL" if n_vox else ""))
    for ax in list(axes.flat)[len(slices):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_overlay(result: Any, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """The ``overlay.png`` of a :class:`~bmeviz.pipeline.Result`: slices with lesions, outlined."""
    from .io._atomic import atomic_path

    totals = result.totals
    title = (f"BME: {totals['n_lesions']} lesion(s), {totals['total_volume_ml']:.2f} mL · threshold "
             f"{result.threshold.value:.4g} ({result.threshold.rule}"
             + (f", k={result.threshold.k:g}" if result.threshold.k is not None else "") + ")")
    fig = montage(result.volume, result.labels, title=title)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return out
