"""One slice with outlines, a montage of slices, a summary figure, overlay.png."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..io._atomic import atomic_path
from ._draw import (_draw_outlines, _figsize, _hide_axes, _ml, _new_figure, _scale_bar, _set_limits,
                    _show_image, _unpack)
from .charts import histogram, volumes
from .projection import mip
from .view import _panel_size, _view, display_range


def overlay(
    volume: Any,
    labels: Any = None,
    *,
    slice: int | None = None,
    ax: Any = None,
    window: tuple[float, float] | None = None,
    scale_bar_mm: float | None = 20.0,
    title: str | None = None,
    linewidth: float = 1.0,
    outline: str = "auto",
    orientation: str = "radiological",
):
    """One slice with the lesion outlines coloured by lesion id and a scale bar in mm.

    Parameters
    ----------
    volume : Volume or Result
        The image; a :class:`~bmeviz.pipeline.Result` gives its volume and labels.
    labels : (S, R, C) array of int or bool, optional
        Lesion ids (0 = background) on the volume's grid.
    slice : int, optional
        Slice index (array axis 0). Default: the slice with the most lesion voxels, or
        the middle slice without lesions.
    ax : matplotlib Axes, optional
        Draw here; otherwise a new Figure sized to the slice's physical shape.
    window : (float, float), optional
        Grey-level window; default :func:`display_range` of the whole volume, so that
        every slice of a volume is shown alike.
    scale_bar_mm : float or None
        Length of the scale bar (shortened to fit a small field of view); None: no bar.
    title : str, optional
        Default ``'slice N'``; ``''`` for none.
    linewidth : float
        Line width in points of ``outline='edges'`` and ``'contour'``.
    outline : {'auto', 'voxel', 'edges', 'contour'}
        ``'voxel'`` paints each lesion's boundary voxels (:func:`outline_mask`): exactly
        what was measured, when the figure has a few screen pixels per voxel.
        ``'edges'`` draws lines along the voxel edges between lesion and background (the
        same boundary, but vector lines that stay visible at any size). ``'contour'``
        draws smooth lines (marching squares at the half level). ``'auto'`` (default):
        ``'voxel'`` when the panel has at least 2.5 pixels per voxel at the figure's
        dpi, ``'edges'`` otherwise (small montage panels, 512-pixel matrices).
    orientation : {'radiological', 'array'}
        See the module notes.

    Returns
    -------
    matplotlib.axes.Axes
        Data coordinates are voxel indices (``x`` column, ``y`` row).

    Examples
    --------
    >>> import numpy as np, bmeviz
    >>> from bmeviz import plot
    >>> # an axial stack: 3 mm slices going up, 0.5 mm rows to posterior, 0.7 mm columns to the left
    >>> axial = np.array([[0, 0, -0.7, 0], [0, -0.5, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    >>> vol = bmeviz.Volume(np.random.default_rng(0).normal(200, 20, (6, 40, 50)), axial)
    >>> labels = np.zeros(vol.shape, int); labels[2:4, 10:20, 15:30] = 1
    >>> ax = plot.overlay(vol, labels)
    >>> ax.get_title(), round(ax.get_aspect(), 3)    # row / column spacing
    ('slice 2', 0.714)
    """
    volume, lab = _unpack(volume, labels)
    if slice is None:
        if lab is not None and lab.any():
            slice = int(np.argmax((lab > 0).sum(axis=(1, 2))))
        else:
            slice = volume.shape[0] // 2
    slice = int(slice)
    if not 0 <= slice < volume.shape[0]:
        raise ParameterError(f"slice {slice} is outside 0..{volume.shape[0] - 1}")
    view = _view(volume, (1, 2), orientation)
    if ax is None:
        w, h = _panel_size(volume, view, volume.shape[1:])
        fig = _new_figure(_figsize(w, h))
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.35 / fig.get_figheight()))
    window = window or display_range(volume.array)
    _show_image(ax, volume.array[slice], volume, view, window)
    if lab is not None and lab[slice].any():
        _draw_outlines(ax, lab[slice], view, volume, style=outline, linewidth=linewidth)
        _set_limits(ax, view.image(lab[slice]).shape, view)
    if scale_bar_mm:
        w, _ = _panel_size(volume, view, volume.shape[1:])
        _scale_bar(ax, scale_bar_mm, w)
    _hide_axes(ax)
    ax.set_title(f"slice {slice}" if title is None else title, fontsize=9)
    return ax


def montage(
    volume: Any,
    labels: Any = None,
    *,
    slices: Any = None,
    columns: int = 4,
    max_slices: int = 16,
    window: tuple[float, float] | None = None,
    fig: Any = None,
    title: str | None = None,
    outline: str = "auto",
    orientation: str = "radiological",
):
    """Every slice that holds BME (or the given ``slices``), outlined, in a grid.

    Each panel is titled with its slice index and the lesion volume on it; the first
    panel has a 20 mm scale bar. All panels share one grey-level window.

    Parameters
    ----------
    volume : Volume or Result
    labels : (S, R, C) array of int or bool
        Lesion ids on the volume's grid (taken from a Result when one is passed).
    slices : sequence of int, optional
        Which slices; default every slice with a lesion voxel, thinned evenly to
        ``max_slices``.
    columns : int
        Panels per row.
    max_slices : int
        Most panels shown when ``slices`` is not given.
    window : (float, float), optional
        Grey-level window; default :func:`display_range` of the volume.
    fig : matplotlib Figure, optional
        Draw into this (empty) figure.
    title : str, optional
        Figure title.
    outline, orientation
        As in :func:`overlay`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, bmeviz
    >>> from bmeviz import plot
    >>> vol = bmeviz.Volume(np.ones((6, 20, 20)), np.diag([3.0, 0.5, 0.5, 1.0]))
    >>> labels = np.zeros(vol.shape, int); labels[1:4, 5:10, 5:10] = 1
    >>> fig = plot.montage(vol, labels)
    >>> [ax.get_title() for ax in fig.axes]
    ['slice 1 · 0.02 mL', 'slice 2 · 0.02 mL', 'slice 3 · 0.02 mL']
    """
    volume, lab = _unpack(volume, labels)
    if lab is None:
        raise ParameterError("montage needs labels (or a Result)")
    if slices is None:
        slices = np.flatnonzero((lab > 0).any(axis=(1, 2)))
        if slices.size == 0:
            slices = np.array([volume.shape[0] // 2])
        if slices.size > max_slices:
            slices = slices[np.linspace(0, slices.size - 1, max_slices).round().astype(int)]
    slices = [int(s) for s in slices]
    if not slices:
        raise ParameterError("montage needs at least one slice")
    ncol = max(1, min(int(columns), len(slices)))
    nrow = int(np.ceil(len(slices) / ncol))
    view = _view(volume, (1, 2), orientation)
    w_mm, h_mm = _panel_size(volume, view, volume.shape[1:])
    cell_w = 3.0
    cell_h = cell_w * h_mm / w_mm + 0.25
    if fig is None:
        fig = _new_figure((cell_w * ncol, cell_h * nrow + (0.4 if title else 0)), layout="constrained")
    window = window or display_range(volume.array)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for ax, s in zip(axes.flat, slices):
        n_vox = int((lab[s] > 0).sum())
        overlay(volume, lab, slice=s, ax=ax, window=window, scale_bar_mm=20 if s == slices[0] else None,
                title=f"slice {s}" + (f" · {_ml(n_vox * volume.voxel_volume_mm3 / 1000)}" if n_vox else ""),
                outline=outline, orientation=orientation)
    for ax in list(axes.flat)[len(slices):]:
        ax.remove()
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def summary(result: Any, *, slice: int | None = None, mip_axis: int | None = None, title: str | None = None):
    """One figure of a result: outlined slice, MIP inside the region, histogram, volumes.

    Parameters
    ----------
    result : Result
        From :func:`bmeviz.segment`.
    slice : int, optional
        Slice of the overlay panel (default: the one with the most BME).
    mip_axis : int, optional
        Axis of the MIP panel; default the finest in-plane axis across the slices
        (the row axis), which shows the lesions' extent through the slices.
    title : str, optional
        Figure title; default the totals and the threshold.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz import plot
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(12, 64, 64), spacing=(3.0, 1.6, 1.6), seed=2)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> len(plot.summary(res).axes)
    4
    """
    volume = result.volume
    fig = _new_figure((10.0, 8.0), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=(1.4, 1.0))
    overlay(result, slice=slice, ax=fig.add_subplot(grid[0, 0]))
    axis = 1 if mip_axis is None else mip_axis
    mip(result, axis=axis, region=result.region, ax=fig.add_subplot(grid[0, 1]))
    histogram(volume, result.reference, result, ax=fig.add_subplot(grid[1, 0]))
    volumes(result.table, ax=fig.add_subplot(grid[1, 1]))
    if title is None:
        t = result.threshold
        desc = volume.metadata.get("description")
        n = result.n_lesions
        title = ((f"{desc} · " if desc else "") + f"BME: {n} lesion{'' if n == 1 else 's'}, {result.total_volume_ml:.2f} mL · threshold "
                 f"{t.value:.4g} ({t.rule}" + (f", k={t.k:.3g}" if t.k is not None else "") + ")")
    fig.suptitle(title, fontsize=10)
    return fig


def save_overlay(result: Any, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Write the ``overlay.png`` of a :class:`~bmeviz.pipeline.Result`: slices with BME, outlined.

    A :func:`montage` of the slices with lesions, titled with the totals and the
    threshold, written atomically (temporary file, then rename).

    Parameters
    ----------
    result : Result
    path : path-like
        Output PNG.
    dpi : int

    Returns
    -------
    pathlib.Path
    """
    totals = result.totals
    title = (f"BME: {totals['n_lesions']} lesion(s), {totals['total_volume_ml']:.2f} mL · threshold "
             f"{result.threshold.value:.4g} ({result.threshold.rule}"
             + (f", k={result.threshold.k:g}" if result.threshold.k is not None else "") + ")")
    fig = montage(result.volume, result.labels, title=title)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return out
