"""Between a :class:`bmeviz.Volume` and napari layer data, without importing napari.

napari draws a layer in a "world" frame given by ``scale`` and ``translate``. bmeviz
hands napari the scan's own frame: world axes run along the array axes (slice, row,
column), in mm, with the origin the projection of the RAS origin on those axes. Scans
and masks on the same grid (or on grids with the same direction cosines) then line up
in napari, and napari's cursor read-out is in mm. The full 4x4 RAS affine travels in the
layer's ``metadata["bmeviz"]`` so the writer and the widget recover the exact geometry:
a mask written from napari lands on the source grid voxel for voxel.

>>> import numpy as np
>>> from bmeviz import Volume
>>> vol = Volume(np.zeros((4, 8, 8), np.float32), np.diag([3.0, 0.5, 0.5, 1.0]),
...              {"description": "STIR cor", "source": "nifti"})
>>> kw = image_kwargs(vol, name="scan")
>>> kw["scale"], kw["units"]
((3.0, 0.5, 0.5), ('mm', 'mm', 'mm'))
>>> back = layer_volume(vol.array, kw["metadata"], kw["scale"], kw["translate"])
>>> bool(np.allclose(back.affine, vol.affine))
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._jsonable import jsonable

from ..errors import ParameterError
from ..volume import Volume

__all__ = [
    "KEY",
    "AXIS_LABELS",
    "world_frame",
    "image_kwargs",
    "labels_kwargs",
    "layer_volume",
    "layer_affine",
    "display_orientation",
    "series_records",
    "layer_name",
    "mask_role",
    "mask_style",
    "COLORS",
]

#: The widget's colours, one per kind of layer (readable on a grey scan and on each other):
#: the search region a thin blue outline, the reference a green fill, the threshold preview
#: an orange fill; lesions are thick outlines in the colour of their id (bmeviz.plot).
COLORS = {"region": "#8fc1ff", "reference": "#2ee86a", "preview": "#ff8c00", "seeds": "#ffe600"}

#: Key of the bmeviz geometry record in a napari layer's ``metadata``.
KEY = "bmeviz"

#: napari axis labels of a bmeviz volume.
AXIS_LABELS = ("slice", "row", "column")

#: Volume metadata kept in the layer record (small, JSON-friendly items only).
_KEEP = ("source", "description", "sequence", "series_number", "series_key", "series_uid", "echo", "echo_time",
         "manufacturer", "modality", "plane", "rescale", "geometry", "fluid_sensitive")


def world_frame(affine: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(scale, translate)`` of the scan-aligned world frame of a (slice, row, column) affine.

    ``scale`` is the voxel size along each array axis; ``translate`` the RAS origin
    projected on each axis' unit direction, so that for an orthogonal affine
    ``world = translate + index * scale`` is the RAS position expressed along the scan's
    own axes.
    """
    aff = np.asarray(affine, float)
    cols = aff[:3, :3]
    spacing = np.sqrt((cols**2).sum(axis=0))
    units = cols / spacing
    translate = units.T @ aff[:3, 3]
    return tuple(float(s) for s in spacing), tuple(float(t) for t in translate)


def _echo_text(echo: Any, echo_time: Any, n_echoes: int | None = None) -> str:
    if echo is None:
        return ""
    of = f"/{n_echoes}" if n_echoes else ""
    te = f" (TE {float(echo_time):.1f} ms)" if echo_time not in (None, "") else ""
    return f"echo {float(echo):g}{of}{te}"


def series_records(infos: Sequence[Any]) -> list[dict]:
    """Short records of :func:`bmeviz.list_series` results for the widget's series list:
    series number, description, sequence, echo and TE, slices (* = fluid-sensitive)."""
    out = []
    echoes: dict[str, int] = {}
    for s in infos:
        if s.echo is not None:
            echoes[s.uid] = echoes.get(s.uid, 0) + 1
    for s in infos:
        parts = [f"series {s.number}" if s.number is not None else "series ?", s.description or "(no description)",
                 s.sequence]
        echo = _echo_text(s.echo, s.echo_time, echoes.get(s.uid))
        if echo:
            parts.append(echo)
        label = " · ".join(parts) + f", {s.n_slices} sl" + (" *" if s.fluid_sensitive else "")
        out.append({"key": s.key, "label": label, "sequence": s.sequence, "fluid_sensitive": bool(s.fluid_sensitive),
                    "shape": list(s.shape), "plane": s.plane, "echo": s.echo, "echo_time": s.echo_time,
                    "n_echoes": echoes.get(s.uid)})
    return out


def mask_role(name: str) -> str | None:
    """``'reference'`` or ``'region'`` when a mask's name says so (e.g. ``1013_normal_marrow``,
    ``disease_region``, ``bone``), else None."""
    n = name.lower().replace("_", " ").replace("-", " ")
    if any(w in n for w in ("normal", "reference", "healthy")):
        return "reference"
    if any(w in n for w in ("region", "bone", "marrow", "roi", "sacrum", "ilium", "femur", "tibia")):
        return "region"
    return None


def mask_style(name: str, n_labels: int = 1) -> dict:
    """``add_labels`` keywords that show a mask in its role's colour (region: thin outline,
    reference: translucent fill); a multi-label mask keeps napari's colours."""
    role = mask_role(name)
    if role is None or n_labels > 1:
        return {"opacity": 0.5}
    color = COLORS[role]
    style = {"colormap": {None: "transparent", 0: "transparent", 1: color}}
    if role == "region":
        style.update(opacity=0.8)
    else:
        style.update(opacity=0.45)
    return style


def layer_name(volume: Volume, path: str | os.PathLike | None = None) -> str:
    """A layer name: the DICOM series description (and number), or the NIfTI file name."""
    md = volume.metadata
    if md.get("source") == "nifti" or (path is not None and str(path).lower().endswith((".nii", ".nii.gz"))):
        name = Path(str(path or (md.get("source_files") or ["image.nii"])[0])).name
        for ext in (".nii.gz", ".nii"):
            if name.lower().endswith(ext):
                return name[: -len(ext)]
        return name
    desc = str(md.get("description") or md.get("sequence") or "image").strip() or "image"
    parts = [desc]
    seq = md.get("sequence")
    if seq and str(seq).lower() not in desc.lower():
        parts.append(str(seq))
    echo = _echo_text(md.get("echo"), md.get("echo_time"))
    if echo:
        parts.append(echo)
    number = md.get("series_number")
    if number not in (None, ""):
        parts.append(f"series {number}")
    return " · ".join(parts)


def image_kwargs(
    volume: Volume,
    *,
    name: str | None = None,
    path: str | os.PathLike | None = None,
    series: Sequence[dict] | None = None,
) -> dict:
    """``add_image`` keyword arguments for ``volume``: frame, units, contrast, metadata."""
    from ..plot import display_range

    scale, translate = world_frame(volume.affine)
    lo, hi = display_range(volume.array, low=1.0, high=99.5)
    md = volume.metadata
    record = {
        "affine": np.asarray(volume.affine).tolist(),
        "shape": list(volume.shape),
        "path": None if path is None else os.fspath(path),
        "series_key": md.get("series_key"),
        "series": list(series or []),
        "volume_metadata": jsonable({k: md[k] for k in _KEEP if k in md}),
    }
    return {
        "name": name or layer_name(volume, path),
        "scale": scale,
        "translate": translate,
        "units": ("mm", "mm", "mm"),
        "axis_labels": AXIS_LABELS,
        "contrast_limits": (lo, hi),
        "colormap": "gray",
        "metadata": {KEY: record},
    }


def labels_kwargs(like: Volume | Mapping, *, name: str) -> dict:
    """``add_labels`` keyword arguments for a mask on the grid of an image (Volume or layer metadata)."""
    if isinstance(like, Volume):
        affine = like.affine
        record = {"affine": np.asarray(affine).tolist(), "shape": list(like.shape)}
    else:
        record = dict(like.get(KEY, {}))
        affine = record.get("affine")
        if affine is None:
            raise ParameterError("the image layer carries no bmeviz geometry")
        record = {"affine": record["affine"], "shape": record.get("shape"), "path": record.get("path"),
                  "volume_metadata": record.get("volume_metadata", {})}
    scale, translate = world_frame(affine)
    return {"name": name, "scale": scale, "translate": translate, "units": ("mm", "mm", "mm"),
            "axis_labels": AXIS_LABELS, "metadata": {KEY: record}}


def layer_affine(metadata: Mapping | None, scale: Sequence[float], translate: Sequence[float],
                 shape: Sequence[int]) -> np.ndarray:
    """The RAS affine of a layer: the bmeviz record when it matches ``shape``, else from scale/translate."""
    record = (metadata or {}).get(KEY) or {}
    aff = record.get("affine")
    if aff is not None and (record.get("shape") is None or list(record["shape"]) == list(shape)):
        return np.asarray(aff, float)
    out = np.eye(4)
    sc = [float(s) for s in scale][-3:]
    tr = [float(t) for t in translate][-3:]
    out[:3, :3] = np.diag(sc)
    out[:3, 3] = tr
    return out


def layer_volume(data: Any, metadata: Mapping | None, scale: Sequence[float], translate: Sequence[float]) -> Volume:
    """The :class:`Volume` behind a napari layer's data (no copy for a numpy array)."""
    if isinstance(data, (list, tuple)):  # multiscale: the full-resolution level
        data = data[0]
    arr = np.asarray(data)
    if arr.ndim != 3:
        raise ParameterError(
            f"bmeviz works on 3D grey-level images (slice, row, column); this layer has shape {arr.shape}"
        )
    affine = layer_affine(metadata, scale, translate, arr.shape)
    record = (metadata or {}).get(KEY) or {}
    md = dict(record.get("volume_metadata") or {})
    if record.get("path") and "source_files" not in md:
        md["source_files"] = [record["path"]]
    return Volume(arr, affine, md)


def display_orientation(volume: Volume) -> tuple[bool, str, str]:
    """How napari should show (row, column) slices of ``volume`` in the radiological convention.

    The same rule as bmeviz's figures (:mod:`bmeviz.plot`, ``orientation='radiological'``):
    superior up (coronal, sagittal) or anterior up (axial), the patient's left on the right
    of the screen (coronal, axial) and posterior on the right (sagittal); the image is only
    flipped, or rarely transposed, never resampled. Returns ``(transpose, vertical,
    horizontal)``: whether the column axis goes vertical, and napari's 2D camera
    orientation (``'down'``/``'right'`` is napari's default: index 0 at the top left).

    >>> import numpy as np
    >>> a = np.eye(4); a[:3, 0] = (1, 0, 0); a[:3, 1] = (0, 0, -1); a[:3, 2] = (0, -1, 0)
    >>> display_orientation(Volume(np.zeros((2, 3, 3)), a.copy()))  # sagittal: rows inferior, columns posterior
    (False, 'down', 'right')
    >>> a[:3, 1] = (0, 0.6, 0.7)  # rows run superior (and anterior): an upside-down oblique slice
    >>> display_orientation(Volume(np.zeros((2, 3, 3)), a))
    (False, 'up', 'right')
    """
    view = _radiological_view(volume)
    return bool(view.transpose), ("up" if view.flip_v else "down"), ("left" if view.flip_h else "right")


def _radiological_view(volume: Volume):
    """bmeviz.plot's radiological view of the (row, column) plane (shared with the figures)."""
    from ..plot.view import view_of

    return view_of(volume, (1, 2), "radiological")
