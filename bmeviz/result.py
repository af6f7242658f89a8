"""What :func:`bmeviz.segment` returns: :class:`Result` (data only) and its :class:`Note` messages.

A Result holds arrays, the lesion table, the threshold and the parameters; it writes
nothing itself (:mod:`bmeviz.export` writes the output folder; :meth:`Result.save` is a
thin delegate). :meth:`Result.with_labels` re-measures hand-edited labels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._jsonable import jsonable
from ._version import __version__
from .lesions import lesion_table, summarize
from .volume import Volume

__all__ = ["Result", "Note"]


class Note(str):
    """A message of a Result: the text (a ``str``, as before) with a ``code`` to test on.

    Codes: ``below-threshold`` (a seed grew nothing), ``leak-guard`` (a seed hit the leak
    guard), ``seed-moved`` (a click below the threshold moved onto its lesion),
    ``leak-raised`` (a seed grown above the level where its region leaked), ``leak-shared``
    (a seed inside a leaked region, too faint to be separated from it), ``cleaned-away`` (a clicked lesion removed by an explicit clean-up),
    ``edited`` (labels edited by hand). ``seed`` is the seed's number, or None.

    >>> n = Note("seed 0 hit the leak guard", code="leak-guard", seed=0)
    >>> n.code, "leak guard" in n
    ('leak-guard', True)
    """

    code: str
    seed: int | None

    def __new__(cls, text: str, *, code: str, seed: int | None = None) -> Note:
        self = super().__new__(cls, text)
        self.code = code
        self.seed = seed
        return self

    def __reduce__(self):  # picklable (Dask workers return Results' notes)
        return (_note, (str(self), self.code, self.seed))


def _note(text: str, code: str, seed: int | None) -> Note:
    return Note(text, code=code, seed=seed)


EDITED = "labels edited by hand in napari after segmentation; the table measures the edited labels"


@dataclass(frozen=True)
class Result:
    """What :func:`segment` found: mask, labels, table, threshold and provenance."""

    volume: Volume = field(repr=False)
    mask: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    table: Any = field(repr=False)  # pandas.DataFrame
    threshold: Any  # bmeviz.threshold.Threshold
    params: dict = field(repr=False)
    reference: np.ndarray = field(repr=False)
    region: np.ndarray | None = field(repr=False, default=None)
    grow: Any = field(repr=False, default=None)  # bmeviz.grow.GrowResult or None
    messages: tuple[str, ...] = ()

    @property
    def totals(self) -> dict:
        return summarize(self.table)

    @property
    def total_volume_ml(self) -> float:
        return float(self.totals["total_volume_ml"])

    @property
    def n_lesions(self) -> int:
        return int(self.totals["n_lesions"])

    def __repr__(self) -> str:
        return (f"Result(n_lesions={self.n_lesions}, total_volume_ml={self.total_volume_ml:.3f}, "
                f"threshold={self.threshold.value:.4g} ({self.threshold.rule}, k={self.threshold.k}))")

    def with_labels(self, labels: Any, *, note: str = EDITED) -> Result:
        """This result with ``labels`` (e.g. edited by hand) and the table measured on them.

        The table is measured exactly as :func:`segment` measures (same reference
        statistics and region); ``note`` is added to ``messages`` (code ``edited``).
        Labels equal to the current ones give this result back.

        Examples
        --------
        >>> import bmeviz
        >>> from bmeviz.data import make_phantom
        >>> ph = make_phantom(shape=(12, 64, 64), spacing=(3.0, 2.0, 2.0), seed=2)
        >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
        >>> edited = res.labels.copy(); edited[edited == 1] = 0
        >>> res.with_labels(edited).n_lesions == res.n_lesions - 1
        True
        """
        lab = np.asarray(labels)
        if lab.shape == self.labels.shape and np.array_equal(lab, self.labels):
            return self
        table = lesion_table(lab, self.volume.array, affine=self.volume.affine,
                             reference=self.threshold.stats, region=self.region)
        return dataclasses.replace(self, labels=lab, mask=lab > 0, table=table,
                                   messages=(*self.messages, Note(note, code="edited")))

    def provenance(self, *, include_phi: bool = False) -> dict:
        """Everything that shaped the result, JSON-serialisable; no identifiers unless asked."""
        md = self.volume.metadata
        source = {
            "name": _input_name(md, include_phi),
            "description": md.get("description"),
            "sequence": md.get("sequence"),
            "series_number": md.get("series_number"),
            "echo": md.get("echo"),
            "manufacturer": md.get("manufacturer"),
            "shape": list(self.volume.shape),
            "spacing_mm": [round(s, 6) for s in self.volume.spacing],
            "affine": np.round(self.volume.affine, 6).tolist(),
            "rescale": md.get("rescale"),
        }
        if include_phi:
            source["files"] = md.get("source_files")
            source["series_uid"] = md.get("series_uid")
        return {
            "software": {"name": "bmeviz", "version": __version__},
            "input": source,
            "params": self.params,
            "threshold": self.threshold.to_dict(),
            "grow": None if self.grow is None else self.grow.to_dict(),
            "totals": jsonable(self.totals),
            "messages": [str(m) for m in self.messages],
        }

    def save(
        self,
        out_dir: str | os.PathLike,
        *,
        overlay: bool = True,
        include_phi: bool = False,
        seg: bool = False,
        report: bool = False,
    ) -> dict[str, Path]:
        """Write ``bme_mask.nii.gz`` (lesion ids on the source grid), ``lesions.csv``,
        ``provenance.json`` and ``overlay.png`` to ``out_dir``, each atomically; with
        ``seg=True`` also ``bme_seg.dcm`` (DICOM SEG, DICOM sources only) and with
        ``report=True`` ``report.html``. A delegate of :func:`bmeviz.export.write_outputs`."""
        from .export import write_outputs  # at call time: keeps `import bmeviz` free of matplotlib

        return write_outputs(self, out_dir, overlay=overlay, include_phi=include_phi, seg=seg, report=report).paths


def _input_name(md: Mapping, include_phi: bool) -> str | None:
    files = md.get("source_files") or []
    if not files:
        return None
    from .io.dicom.geometry import common_folder  # relative names: commonpath is "" (issue 12)

    where = common_folder([str(f) for f in files])
    if include_phi:
        return where
    # folder and file names often carry patient names: a short digest identifies the input
    # (the same input gives the same id) without naming it
    return "sha256:" + hashlib.sha256(os.path.abspath(where).encode()).hexdigest()[:16]
