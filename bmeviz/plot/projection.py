"""Maximum-intensity projections with the lesions outlined."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ._draw import (_draw_outlines, _figsize, _hide_axes, _new_figure, _scale_bar, _set_limits, _show_image,
                    _unpack)
from .view import _axis_label, _panel_size, _view, display_range


def mip(
    volume: Any,
    labels: Any = None,
    *,
    axis: int = 0,
    region: Any = None,
    ax: Any = None,
    window: tuple[float, float] | None = None,
    scale_bar_mm: float | None = 20.0,
    title: str | None = None,
    linewidth: float = 1.5,
    outline: str = "contour",
    orientation: str = "radiological",
    crop: bool = True,
):
    """Maximum intensity projection with the projected outline of each lesion.

    Each lesion is projected on its own (its "shadow" along ``axis``) and outlined in
    its colour, so lesions behind one another stay visible. The panel has the physical
    aspect of the two remaining axes (e.g. 3 mm slices x 0.7 mm columns for ``axis=1``).

    Parameters
    ----------
    volume : Volume or Result
    labels : (S, R, C) array of int or bool, optional
        Lesion ids (taken from a Result when one is passed).
    axis : {0, 1, 2}
        Array axis projected along: 0 slices, 1 rows, 2 columns.
    region : (S, R, C) bool array, optional
        Project only inside this mask (e.g. the bone searched for BME): bright joint
        fluid or fat elsewhere then does not hide the marrow.
    ax, window, scale_bar_mm, title, linewidth, outline, orientation
        As in :func:`overlay`, except that outlines are smooth contours by default (a
        projection is not what was measured, and thick slices make voxel outlines
        blocky); ``window`` defaults to :func:`display_range` of the projection.
    crop : bool
        With a ``region``, show only the region's extent (and a small margin).

    Returns
    -------
    matplotlib.axes.Axes
        Data coordinates are indices along the two axes shown.

    Examples
    --------
    >>> import numpy as np, bmeviz
    >>> from bmeviz import plot
    >>> axial = np.array([[0, 0, -0.7, 0], [0, -0.5, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]])
    >>> vol = bmeviz.Volume(np.ones((10, 40, 50)), axial)
    >>> labels = np.zeros(vol.shape, int); labels[2:5, 10:20, 15:30] = 1
    >>> ax = plot.mip(vol, labels, axis=1)    # a coronal view: slices x columns
    >>> round(ax.get_aspect(), 3)              # 3.0 mm / 0.7 mm
    4.286
    """
    volume, lab = _unpack(volume, labels)
    if axis not in (0, 1, 2):
        raise ParameterError(f"axis must be 0 (slices), 1 (rows) or 2 (columns); got {axis!r}")
    arr = np.asarray(volume.array, dtype=np.float32)
    if region is not None:
        reg = np.asarray(region)
        if reg.shape != volume.shape:
            raise ParameterError(f"region shape {reg.shape} differs from the volume's {volume.shape}")
        reg = reg.astype(bool)
        if not reg.any():
            raise ParameterError("region is empty")
        floor = float(np.nanmin(arr[reg]))
        arr = np.where(reg, arr, floor)
    proj = np.nanmax(arr, axis=axis)
    shown = tuple(a for a in range(3) if a != axis)
    view = _view(volume, shown, orientation)
    shape2d = proj.shape
    shown_shape = view.image(proj).shape
    crop_box = None
    if region is not None and crop:
        shadow = view.image(reg.any(axis=axis))
        rows, cols = np.flatnonzero(shadow.any(axis=1)), np.flatnonzero(shadow.any(axis=0))
        mv, mh = max(1, int(0.04 * shown_shape[0])), max(1, int(0.04 * shown_shape[1]))
        crop_box = (max(0, int(rows[0]) - mv), min(shown_shape[0], int(rows[-1]) + 1 + mv),
               max(0, int(cols[0]) - mh), min(shown_shape[1], int(cols[-1]) + 1 + mh))
    sp = volume.spacing
    if crop_box is None:
        w_mm, h_mm = _panel_size(volume, view, shape2d)
    else:
        w_mm, h_mm = (crop_box[3] - crop_box[2]) * sp[view.h], (crop_box[1] - crop_box[0]) * sp[view.v]
    if ax is None:
        fig = _new_figure(_figsize(w_mm, h_mm))
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 - 0.35 / fig.get_figheight()))
    _show_image(ax, proj, volume, view, window or display_range(proj, low=1.0, high=99.8))
    _set_limits(ax, shown_shape, view, crop_box)
    if lab is not None and lab.any():
        from scipy import ndimage as ndi

        masks = {}
        for i, box in enumerate(ndi.find_objects(lab), start=1):
            if box is None:
                continue
            shadow = np.zeros(shape2d, bool)
            sub = (lab[box] == i).any(axis=axis)
            box2 = tuple(b for a, b in enumerate(box) if a != axis)
            shadow[box2] = sub
            masks[i] = shadow
        _draw_outlines(ax, np.zeros(shape2d, np.int32), view, volume, style=outline, linewidth=linewidth,
                       per_id_masks=masks)
        _set_limits(ax, shown_shape, view, crop_box)
    if scale_bar_mm:
        _scale_bar(ax, scale_bar_mm, w_mm)
    _hide_axes(ax)
    if title is None:
        title = f"MIP along {_axis_label(volume, axis)}" + (", inside region" if region is not None else "")
    ax.set_title(title, fontsize=9)
    return ax
