"""A segmentation session without Qt: image, reference, region, seeds, result, hand edits, undo.

(About 720 lines because the history, the lesion edits and the file
format act on the same steps and change together.)

The napari widget is a view over a :class:`Session`; scripts and tests drive the same
object without a screen. Every measurement is the core's (:func:`bmeviz.segment`,
:func:`bmeviz.lesions.lesion_table`); the session only keeps the inputs, the history and
the file that lets a session outlive the viewer.

* **Seeds** are voxel indices ``(slice, row, column)``. A seed outside the image, on a
  missing (NaN) voxel or outside the search region is refused at once with the reason
  (:class:`SeedRefused`): nothing is added, the next grow is not spoiled.
* **History**: every change of seeds or labels (a grow, a removed seed, a brush stroke, a
  deleted, merged or split lesion) is one step of :meth:`Session.undo` / :meth:`redo`.
  Reference, region and options are settings, not steps.
* **Edited by hand** means the labels differ from what the last segmentation gave, voxel
  for voxel: undoing a brush stroke clears the mark.
* **Files**: :meth:`Session.save` writes one small JSON file (settings, seeds, and the
  labels, reference and region compressed inside their bounding boxes);
  :meth:`Session.load` restores it (labels identical). With ``autosave=path`` every step
  is written atomically at once, so a killed viewer loses nothing.

>>> import numpy as np
>>> from bmeviz.volume import Volume
>>> img = np.random.default_rng(0).normal(100, 5, (6, 20, 20)); img[2:4, 5:9, 5:9] = 300.0
>>> s = Session(Volume(img, np.diag([3.0, 1.0, 1.0, 1.0])))
>>> s.set_reference(point=(1, 14, 14), radius_mm=3)
>>> s.add_seed((2, 6, 6)).n_lesions
1
>>> s.seed_problem((2, 25, 6))
'the click is outside the image (voxel [2, 25, 6]; the image has 6 slices of 20 × 20): no seed added'
>>> s.undo(), len(s.seeds)
(True, 0)
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BmevizError, ParameterError
from .volume import Volume

__all__ = ["Session", "SeedRefused", "SESSION_SUFFIX", "default_options"]

#: File name ending of a saved session (next to the exported outputs).
SESSION_SUFFIX = ".bmeviz-session.json"
_FORMAT = "bmeviz-session"
_VERSION = 1
#: Steps kept for undo (each holds references to label arrays, not copies of unchanged ones).
MAX_HISTORY = 40


class SeedRefused(ParameterError):
    """A click that cannot be a seed (outside the image or the search region); nothing was added."""


def _segment_keys() -> set[str]:
    from .pipeline import segment

    return {p.name for p in inspect.signature(segment).parameters.values() if p.kind == p.KEYWORD_ONLY}


def default_options() -> dict:
    """The segmentation options a session starts with: :data:`bmeviz.pipeline.DEFAULTS`, read
    now (so the widget, the CLI and the API agree), limited to what :func:`segment` takes."""
    from .pipeline import DEFAULTS

    keys = _segment_keys() - {"reference", "seeds", "seeds_mm", "region"}  # inputs, not options
    return {k: v for k, v in DEFAULTS.items() if k in keys}


@dataclass(frozen=True)
class _Step:
    """One point of the history: seeds and labels, with the result they came from."""

    seeds: tuple[tuple[float, float, float], ...]
    labels: np.ndarray  # never written in place
    result: Any  # the Result of the last segmentation (labels may differ after edits)
    table: Any  # lesion table of ``labels``
    edited: bool
    what: str


def _box_of(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of the True voxels of ``mask`` (None when empty)."""
    if mask.ndim != 3 or not mask.any():
        return None
    box = []
    for ax in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def changed_box(old: np.ndarray, new: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box where ``new`` differs from ``old`` (None when equal); slices that
    do not differ are skipped first, so small changes cost little."""
    if old.shape != new.shape:
        return tuple(slice(0, n) for n in new.shape)
    rows = np.flatnonzero([not np.array_equal(a, b) for a, b in zip(old, new)])
    if rows.size == 0:
        return None
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    sub = _box_of(old[lo:hi] != new[lo:hi])
    return (slice(lo, hi), sub[1], sub[2])


def _pack(arr: np.ndarray | None) -> dict | None:
    """A small JSON record of an integer or bool array: its bounding box, zlib-compressed."""
    if arr is None:
        return None
    a = np.asarray(arr)
    box = _box_of(a != 0)
    record = {"shape": list(a.shape), "dtype": "bool" if a.dtype == bool else str(a.dtype), "box": None, "data": ""}
    if box is None:
        return record
    sub = a[box]
    if sub.dtype != bool and sub.dtype.itemsize > 1 and sub.min() >= 0 and sub.max() < 256:
        sub = sub.astype(np.uint8)  # lesion ids are few: a quarter of the bytes to compress
        record["stored"] = "uint8"
    sub = np.ascontiguousarray(sub)
    record["box"] = [[b.start, b.stop] for b in box]
    record["data"] = base64.b64encode(zlib.compress(sub.tobytes(), 1)).decode("ascii")
    return record


def _unpack(record: Mapping | None, where: str) -> np.ndarray | None:
    if record is None:
        return None
    try:
        shape = tuple(int(n) for n in record["shape"])
        dtype = np.dtype(record["dtype"])
        out = np.zeros(shape, dtype)
        if record.get("box"):
            box = tuple(slice(int(a), int(b)) for a, b in record["box"])
            sub_shape = tuple(b.stop - b.start for b in box)
            raw = zlib.decompress(base64.b64decode(record["data"]))
            stored = np.dtype(record.get("stored") or dtype)
            out[box] = np.frombuffer(raw, stored).reshape(sub_shape)
        return out
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise ParameterError(f"{where}: a stored array is damaged ({exc})") from None


class Session:
    """One scan being segmented: inputs, the result, hand edits and their history.

    Parameters
    ----------
    volume : Volume
        The fluid-sensitive scan.
    source : str, optional
        Where it came from (file or DICOM folder), kept in the session file so
        :meth:`load` can open the scan again.
    series : str, optional
        The series key in a DICOM folder (``bmeviz.load(source, series=...)``).
    options : dict, optional
        Options of :func:`bmeviz.segment` overriding :func:`default_options`.
    autosave : path, optional
        Write the session to this file (atomically) after every step.
    """

    def __init__(self, volume: Volume, *, source: str | os.PathLike | None = None, series: str | None = None,
                 options: Mapping | None = None, autosave: str | os.PathLike | None = None) -> None:
        if not isinstance(volume, Volume):
            raise ParameterError(f"volume must be a bmeviz.Volume; got {type(volume).__name__}")
        self.volume = volume
        self.source = None if source is None else os.fspath(source)
        self.series = series
        self.options = default_options()
        self.reference_point: tuple[int, int, int] | None = None
        self.reference_mask: np.ndarray | None = None
        self.reference_name: str | None = None
        #: The reference is found in the region with no click (``set_reference(auto=True)``).
        self.reference_auto = False
        #: The mask the current threshold was computed on (the marrow a point stands for, the
        #: automatic reference, or the cleaned mask), once :attr:`threshold` has been computed.
        self.reference_used: np.ndarray | None = None
        self.region: np.ndarray | None = None
        self.region_name: str | None = None
        self._reference_given: Any = None
        self._region_given: Any = None
        self.autosave_path = None if autosave is None else Path(autosave)
        self.autosave_now = True  # False: the caller calls autosave() when it suits it
        self.last_box: tuple[slice, ...] | None = None  # where the labels changed in the last step
        self.messages: tuple[str, ...] = ()  # what the core noted in the last segmentation
        self.warnings: tuple[str, ...] = ()  # what it warned about (seeds numbered from 1)
        self._threshold = None
        self._threshold_error: str | None = None
        #: How the current threshold's reference was made (segment()'s provenance "reference").
        self.reference_info: dict | None = None
        empty = np.zeros(volume.shape, np.int32)
        self._history = [_Step((), empty, None, None, False, "start")]
        self._at = 0
        if options:
            self.set_options(**options)

    # ------------------------------------------------------------------ state
    @property
    def _step(self) -> _Step:
        return self._history[self._at]

    @property
    def seeds(self) -> tuple[tuple[float, float, float], ...]:
        """The seeds, in the order clicked (the user's seed 1 is ``seeds[0]``)."""
        return self._step.seeds

    @property
    def labels(self) -> np.ndarray:
        """Lesion ids on the image grid, hand edits included (do not write into it)."""
        return self._step.labels

    @property
    def table(self):
        """Lesion table of :attr:`labels` (None before the first segmentation)."""
        return self._step.table

    @property
    def result(self):
        """The Result of the last segmentation (its labels may differ from :attr:`labels`)."""
        return self._step.result

    @property
    def edited(self) -> bool:
        """True if the labels differ from what the last segmentation gave."""
        return self._step.edited

    @property
    def can_undo(self) -> bool:
        return self._at > 0

    @property
    def can_redo(self) -> bool:
        return self._at < len(self._history) - 1

    @property
    def totals(self) -> dict | None:
        from .lesions import summarize

        return None if self.table is None else summarize(self.table)

    # ------------------------------------------------------------------ settings
    def set_options(self, **options: Any) -> None:
        """Change segmentation options (names of :func:`bmeviz.segment`'s keyword arguments)."""
        keys = _segment_keys() - {"reference", "seeds", "seeds_mm", "region", "reference_radius_mm"}
        bad = sorted(set(options) - keys - {"reference_radius_mm"})
        if bad:
            raise ParameterError(f"unknown option(s) {', '.join(bad)}; known: {', '.join(sorted(keys))}")
        if any(k not in self.options or self.options[k] != v for k, v in options.items()):
            self.options.update(options)
            self._threshold = None

    def set_reference(self, *, point: Sequence[float] | None = None, mask: Any = None, name: str | None = None,
                      radius_mm: float | None = None, auto: bool = False) -> None:
        """Normal marrow: a ``point`` (voxel index, with ``radius_mm``), a ``mask`` on the image
        grid, or ``auto=True``: found inside the region with no click (what was used is
        :attr:`reference_used` once the threshold is computed)."""
        from .pipeline import resolve_mask

        if auto:
            if point is not None or mask is not None:
                raise ParameterError("give the reference as a point, a mask or auto (one of them)")
            if self.reference_auto:
                return
            self.reference_point = self.reference_mask = self._reference_given = None
            self.reference_auto, self.reference_name = True, "automatic"
            self._threshold = None
            return
        self.reference_auto = False
        if mask is not None and mask is self._reference_given and radius_mm is None:
            return  # the same mask object again: nothing to do (the widget syncs on every click)
        if (point is None) == (mask is None):
            raise ParameterError("give the reference as a point or as a mask (one of them)")
        same_radius = radius_mm is None or float(radius_mm) == self.options.get("reference_radius_mm")
        if radius_mm is not None:
            self.options["reference_radius_mm"] = float(radius_mm)
        if point is not None:
            p = np.asarray(point, float).reshape(-1)
            if p.size != 3 or not np.all(np.isfinite(p)):
                raise ParameterError(f"the reference point must be 3 voxel indices; got {point!r}")
            idx = tuple(int(v) for v in np.rint(p))
            if idx == self.reference_point and same_radius:
                return
            if any(i < 0 or i >= n for i, n in zip(idx, self.volume.shape)):
                raise ParameterError(f"the reference click is outside the image (voxel {list(idx)}); "
                                     "click inside normal marrow")
            self.reference_point, self.reference_mask = idx, None
            self.reference_name = name or f"point {list(idx)}"
        else:
            self.reference_mask = resolve_mask(mask, self.volume, f"reference {name or ''}".strip())
            self._reference_given = mask
            self.reference_point = None
            self.reference_name = name or "mask"
        self._threshold = None

    def clear_reference(self) -> None:
        if self.has_reference:
            self._threshold = None
        self.reference_point = self.reference_mask = self.reference_name = self._reference_given = None
        self.reference_auto = False

    def set_region(self, mask: Any = None, *, name: str | None = None) -> None:
        """Where BME is searched (bone/marrow), a mask on the image grid; None: the whole image."""
        from .pipeline import resolve_mask

        if mask is self._region_given and (mask is None or name == self.region_name):
            return  # unchanged
        self._region_given = mask
        self.region = None if mask is None else resolve_mask(mask, self.volume, f"region {name or ''}".strip())
        self.region_name = None if mask is None else (name or "region")
        self._threshold = None

    @property
    def has_reference(self) -> bool:
        from .pipeline import DEFAULTS

        return (self.reference_point is not None or self.reference_mask is not None or self.reference_auto
                or DEFAULTS.get("reference") is not None)

    def _reference_arg(self) -> Any:
        if self.reference_mask is not None:
            return self.reference_mask
        if self.reference_point is not None:
            return self.reference_point
        if self.reference_auto:
            return "auto"
        from .pipeline import DEFAULTS

        if DEFAULTS.get("reference") is not None:  # a core default (e.g. an automatic reference)
            return DEFAULTS["reference"]
        raise ParameterError("no reference yet: click normal marrow (Place point) or draw it, then try again")

    @property
    def threshold(self):
        """The core's Threshold for the current reference, rule and region (None if it cannot be made)."""
        if self._threshold is None:
            from .pipeline import reference_threshold  # segment()'s own path: preview = outline

            try:
                self.reference_used, self.reference_info, self._threshold = reference_threshold(
                    self.volume, reference=self._reference_arg(), region=self.region, **self.options)
                self._threshold_error = None
            except BmevizError as exc:
                self._threshold_error = str(exc)
                return None
        return self._threshold

    @property
    def threshold_error(self) -> str | None:
        """Why there is no threshold (None when there is one)."""
        return None if self.threshold is not None else self._threshold_error

    # ------------------------------------------------------------------ seeds
    def seed_problem(self, point: Sequence[float]) -> str | None:
        """Why ``point`` (a voxel index) cannot be a seed, in words; None if it can."""
        p = np.asarray(point, float).reshape(-1)
        if p.size != 3 or not np.all(np.isfinite(p)):
            return f"a seed is 3 voxel indices (slice, row, column); got {point!r}"
        idx = tuple(int(v) for v in np.rint(p))
        shape = self.volume.shape
        if any(i < 0 or i >= n for i, n in zip(idx, shape)):
            return (f"the click is outside the image (voxel {list(idx)}; the image has {shape[0]} slices of "
                    f"{shape[1]} × {shape[2]}): no seed added")
        value = self.volume.array[idx]
        if not np.isfinite(value):
            return f"the click is on a missing (NaN) voxel {list(idx)}: no seed added"
        if self.region is not None and not self.region[idx]:
            return (f"the click is outside the search region {self.region_name!r} (voxel {list(idx)}): "
                    "BME is only measured inside it; no seed added")
        return None

    def add_seed(self, point: Sequence[float], *, grow: bool = True):
        """Add a seed (voxel index) and, with ``grow`` and a reference, outline the lesions again.

        Raises :class:`SeedRefused` (nothing changes) when the click cannot be a seed.
        Returns the Result (or None when nothing was grown).
        """
        problem = self.seed_problem(point)
        if problem:
            raise SeedRefused(problem)
        seeds = (*self.seeds, tuple(float(v) for v in np.asarray(point, float).reshape(3)))
        return self._set_seeds(seeds, grow=grow, what=f"seed {len(seeds)} added")

    def remove_seed(self, index: int | None = None, *, grow: bool = True):
        """Remove seed ``index`` (0-based; None: the last one) and outline again from the rest."""
        if not self.seeds:
            raise ParameterError("there is no seed to remove")
        i = len(self.seeds) - 1 if index is None else int(index)
        if not 0 <= i < len(self.seeds):
            raise ParameterError(f"there is no seed {i + 1}: there are {len(self.seeds)} seed(s)")
        seeds = self.seeds[:i] + self.seeds[i + 1:]
        return self._set_seeds(seeds, grow=grow, what=f"seed {i + 1} removed")

    def set_seeds(self, seeds: Sequence[Sequence[float]], *, grow: bool = True):
        """Replace all seeds (e.g. moved or deleted in napari); each is checked like a click.

        Raises :class:`SeedRefused` naming the first bad seed (1-based); nothing changes then.
        """
        new = tuple(tuple(float(v) for v in np.asarray(q, float).reshape(3)) for q in seeds)
        for i, q in enumerate(new):
            problem = self.seed_problem(q)
            if problem:
                raise SeedRefused(f"seed {i + 1}: {problem}")
        if new == self.seeds:
            return self.result
        return self._set_seeds(new, grow=grow, what="seeds changed")

    def apply_result(self, result, *, seeds: Sequence | None = None, what: str = "grown") -> None:
        """Take a Result computed elsewhere (a worker thread) from :meth:`segment_kwargs` as one step."""
        s = self.seeds if seeds is None else tuple(tuple(float(v) for v in q) for q in seeds)
        self.messages = tuple(_one_based(m) for m in result.messages)
        self._push(_Step(s, result.labels, result, result.table, False, what))

    def _set_seeds(self, seeds: tuple, *, grow: bool, what: str):
        if not seeds:
            empty = np.zeros(self.volume.shape, np.int32)
            self._push(_Step((), empty, None, None, False, what))
            return None
        if not grow or not self.has_reference:
            self._push(dataclasses.replace(self._step, seeds=seeds, what=what))
            return None
        res = self._segment(seeds=seeds)
        self._push(_Step(seeds, res.labels, res, res.table, False, what))
        return res

    # ------------------------------------------------------------------ segmentation
    def segment_kwargs(self, *, seeds: Sequence | None = None) -> dict:
        """What :func:`bmeviz.segment` gets from this session (``seeds=()``: find all in the region)."""
        kwargs = {k: v for k, v in self.options.items() if k != "reference_radius_mm"}
        kwargs["reference"] = self._reference_arg()
        if self.reference_point is not None:
            kwargs["reference_radius_mm"] = self.options.get("reference_radius_mm")
        kwargs["region"] = self.region
        s = self.seeds if seeds is None else seeds
        if len(s):
            kwargs["seeds"] = np.asarray(s, float)
        return kwargs

    def _segment(self, *, seeds: Sequence):
        import warnings

        from .errors import BmevizWarning
        from .pipeline import segment

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BmevizWarning)
            res = segment(self.volume, **self.segment_kwargs(seeds=seeds))
        self.messages = tuple(_one_based(m) for m in res.messages)
        self.warnings = tuple(_one_based(str(w.message)) for w in caught if issubclass(w.category, BmevizWarning))
        for w in caught:  # passed on (a caller that shows warnings sees them numbered as the user counts)
            if not issubclass(w.category, BmevizWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return res

    def grow(self):
        """Outline the lesions again from the current seeds (after a change of options)."""
        if not self.seeds:
            raise ParameterError("no seeds yet: click each lesion (or use Find all in region)")
        res = self._segment(seeds=self.seeds)
        self._push(_Step(self.seeds, res.labels, res, res.table, False, "grown"))
        return res

    def find_all(self):
        """Every above-threshold lesion in the region (the seeds are kept but not used)."""
        res = self._segment(seeds=())
        self._push(_Step(self.seeds, res.labels, res, res.table, False, "found all in region"))
        return res

    # ------------------------------------------------------------------ hand edits
    def _measure(self, labels: np.ndarray):
        from .lesions import lesion_table

        thr = self.result.threshold if self.result is not None else self.threshold
        region = self.result.region if self.result is not None else self.region
        box = _box_of(labels != 0) or (slice(0, 1),) * 3
        return lesion_table(labels[box], self.volume.array[box], affine=self.volume.affine,
                            reference=None if thr is None else thr.stats,
                            region=None if region is None else region[box], origin=tuple(b.start for b in box),
                            region_voxels=None if region is None else int(np.count_nonzero(region)))

    def set_labels(self, labels: Any, *, what: str = "brush edit") -> bool:
        """Take hand-edited labels (a brush stroke); re-measured. False if nothing changed."""
        new = np.array(labels, dtype=self.labels.dtype, copy=True)
        if new.shape != self.volume.shape:
            raise ParameterError(f"edited labels have shape {new.shape}; the image is {self.volume.shape}")
        if np.array_equal(new, self.labels):
            return False
        base = self.result.labels if self.result is not None else None
        edited = not (base is not None and np.array_equal(new, base))
        self._push(_Step(self.seeds, new, self.result, self._measure(new), edited, what))
        return True

    def _ids(self, ids: Sequence[int]) -> list[int]:
        present = set(np.unique(self.labels).tolist()) - {0}
        out = []
        for i in ids:
            i = int(i)
            if i not in present:
                raise ParameterError(f"there is no lesion {i}; lesions: {', '.join(map(str, sorted(present))) or 'none'}")
            out.append(i)
        return out

    def delete_lesion(self, lesion_id: int) -> None:
        """Remove lesion ``lesion_id`` (its voxels become background)."""
        (i,) = self._ids([lesion_id])
        self.set_labels(np.where(self.labels == i, 0, self.labels), what=f"lesion {i} deleted")

    def merge_lesions(self, ids: Sequence[int]) -> int:
        """Merge lesions ``ids`` into the smallest id of them; returns that id."""
        ids = self._ids(ids)
        if len(set(ids)) < 2:
            raise ParameterError("merging needs two or more lesion ids")
        keep = min(ids)
        self.set_labels(np.where(np.isin(self.labels, ids), keep, self.labels),
                        what=f"lesions {', '.join(map(str, sorted(set(ids))))} merged into {keep}")
        return keep

    def split_lesion(self, lesion_id: int) -> list[int]:
        """Split lesion ``lesion_id``: by the seeds inside it (each voxel to its nearest seed, in
        mm) when it holds two or more, else into its face-connected (6-connectivity) parts.
        Returns the ids of the parts (the first keeps ``lesion_id``)."""
        from scipy import ndimage as ndi

        (i,) = self._ids([lesion_id])
        mask = self.labels == i
        inside = [s for s in self.seeds if mask[tuple(int(v) for v in np.rint(s))]]
        if len(inside) >= 2:
            idx = np.argwhere(mask).astype(float)
            sp = np.asarray(self.volume.spacing, float)
            d = (((idx[:, None, :] - np.asarray(inside)[None]) * sp) ** 2).sum(-1)
            part = d.argmin(axis=1) + 1
            n = len(inside)
        else:
            lab, n = ndi.label(mask, structure=ndi.generate_binary_structure(3, 1))
            part = lab[mask]
            if n < 2:
                raise ParameterError(f"lesion {i} is one piece: put a seed in each part you want, then split")
        top = int(self.labels.max())
        new_ids = [i] + list(range(top + 1, top + n))
        out = self.labels.copy()
        out[mask] = np.asarray(new_ids)[part - 1]
        self.set_labels(out, what=f"lesion {i} split into {n}")
        return new_ids

    # ------------------------------------------------------------------ history
    def _push(self, step: _Step) -> None:
        old = self.labels
        del self._history[self._at + 1:]
        self._history.append(step)
        if len(self._history) > MAX_HISTORY:
            del self._history[: len(self._history) - MAX_HISTORY]
        self._at = len(self._history) - 1
        self.last_box = changed_box(old, step.labels)
        self._changed()

    def undo(self) -> bool:
        """Go back one step (seeds and labels); False if there is none."""
        if not self.can_undo:
            return False
        old = self.labels
        self._at -= 1
        self.last_box = changed_box(old, self.labels)
        self._changed()
        return True

    def redo(self) -> bool:
        """Go forward one step; False if there is none."""
        if not self.can_redo:
            return False
        old = self.labels
        self._at += 1
        self.last_box = changed_box(old, self.labels)
        self._changed()
        return True

    @property
    def last_action(self) -> str:
        return self._step.what

    def current_result(self):
        """The last Result with the current labels (hand edits included, and noted), or None."""
        res = self.result
        if res is None or not self.edited:
            return res
        return res.with_labels(self.labels)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        """The session as a JSON-friendly record (what :meth:`save` writes)."""
        from ._jsonable import jsonable

        return {
            "format": _FORMAT,
            "version": _VERSION,
            "image": {"source": self.source, "series": self.series, "shape": list(self.volume.shape),
                      "affine": np.round(self.volume.affine, 6).tolist()},
            "options": jsonable(self.options),
            "reference": {"name": self.reference_name, "auto": self.reference_auto,
                          "point": None if self.reference_point is None else list(self.reference_point),
                          "mask": self._packed(self.reference_mask)},
            "region": {"name": self.region_name, "mask": self._packed(self.region)},
            "seeds": [list(s) for s in self.seeds],
            "mode": None if self.result is None else self.result.params.get("mode"),
            "edited": self.edited,
            "labels": _pack(self.labels),
            "totals": jsonable(self.totals),
        }

    def _packed(self, mask: np.ndarray | None) -> dict | None:
        """:func:`_pack` of a mask that does not change between steps, computed once (autosave
        after every click must not compress the whole region again)."""
        if mask is None:
            return None
        cache = self.__dict__.setdefault("_pack_cache", {})
        key = id(mask)
        if key not in cache or cache[key][0] is not mask:
            cache.clear() if len(cache) > 4 else None
            cache[key] = (mask, _pack(mask))
        return cache[key][1]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the session to ``path`` (JSON, atomically); returns the path."""
        from .io._atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict()) + "\n")

    def autosave(self) -> Path | None:
        """Write the session to the autosave file, if there is one."""
        return None if self.autosave_path is None else self.save(self.autosave_path)

    def _changed(self) -> None:
        if self.autosave_path is not None and self.autosave_now:
            self.autosave()

    @classmethod
    def load(cls, path: str | os.PathLike, *, volume: Volume | None = None,
             autosave: str | os.PathLike | None = None) -> Session:
        """A session from a file :meth:`save` wrote; the scan is opened again from its source
        unless ``volume`` is given. The labels are restored exactly; the Result (threshold,
        provenance) is computed again from the saved inputs."""
        p = Path(path)
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ParameterError(f"{p}: no such session file") from None
        except (OSError, ValueError) as exc:
            raise ParameterError(f"{p}: not a readable bmeviz session ({exc})") from None
        if not isinstance(record, dict) or record.get("format") != _FORMAT:
            raise ParameterError(f"{p}: not a bmeviz session file")
        image = record.get("image") or {}
        if volume is None:
            from .io import load

            if not image.get("source"):
                raise ParameterError(f"{p}: the session does not say which scan it belongs to; open the scan "
                                     "and give it as volume=")
            volume = load(image["source"], series=image.get("series")) if image.get("series") else load(image["source"])
        if list(volume.shape) != list(image.get("shape", volume.shape)) or (
                image.get("affine") is not None and not np.allclose(volume.affine, image["affine"], atol=1e-3)):
            raise ParameterError(f"{p}: the session belongs to a scan of shape {image.get('shape')} on another "
                                 f"grid; this image is {list(volume.shape)}")
        s = cls(volume, source=image.get("source"), series=image.get("series"))
        s.autosave_now = False
        opts = {k: v for k, v in (record.get("options") or {}).items() if k in s.options}
        s.options.update(opts)
        ref = record.get("reference") or {}
        if ref.get("point") is not None:
            s.set_reference(point=ref["point"], name=ref.get("name"))
        elif ref.get("mask") is not None:
            s.set_reference(mask=_unpack(ref["mask"], str(p)), name=ref.get("name"))
        elif ref.get("auto"):
            s.set_reference(auto=True)
        reg = record.get("region") or {}
        if reg.get("mask") is not None:
            s.set_region(_unpack(reg["mask"], str(p)), name=reg.get("name"))
        seeds = tuple(tuple(float(v) for v in q) for q in record.get("seeds") or [])
        labels = _unpack(record.get("labels"), str(p))
        res = None
        if s.has_reference and (seeds or record.get("mode") == "all-in-region"):
            try:
                res = s._segment(seeds=seeds if record.get("mode") != "all-in-region" else ())
            except BmevizError:
                res = None
        if labels is None:
            labels = np.zeros(volume.shape, np.int32) if res is None else res.labels
        labels = labels.astype(res.labels.dtype if res is not None else np.int32, copy=False)
        edited = not (res is not None and np.array_equal(labels, res.labels))
        table = res.table if (res is not None and not edited) else None
        s._history = [_Step(seeds, labels, res, table, edited and res is not None, "loaded")]
        s._at = 0
        if table is None and labels.any():
            s._history[0] = dataclasses.replace(s._step, table=s._measure(labels))
        s.last_box = _box_of(labels != 0)
        s.autosave_path = None if autosave is None else Path(autosave)
        s.autosave_now = True
        return s


def _one_based(message: str) -> str:
    """The core's messages count seeds from 0 ("seed 3" = the 4th click); users count from 1."""
    import re

    if "seed" not in message:
        return message
    return re.sub(r"\b(\d+) at (voxel \[|\()", lambda m: f"{int(m.group(1)) + 1} at {m.group(2)}", message)


def session_path(out_dir: str | os.PathLike, name: str = "session") -> Path:
    """Where a session is saved next to the outputs of an export: ``<out_dir>/<name>.bmeviz-session.json``."""
    return Path(out_dir) / f"{name}{SESSION_SUFFIX}"
