"""The one writer of an output folder: mask, table, provenance, overlay, SEG, report.

``bmeviz segment``, ``bmeviz batch``, napari's "Save" and :meth:`bmeviz.Result.save`
all call :func:`write_outputs`, so a folder means the same whoever wrote it:

================  =====================================================================
bme_mask.nii.gz   lesion ids (0 = none) on the source grid (:func:`bmeviz.io.save_mask`)
lesions.csv       the lesion table (one row per lesion)
provenance.json   everything that shaped the result (:meth:`Result.provenance`)
overlay.png       the outlines on the slice with most BME (``overlay=True``)
bme_seg.dcm       DICOM SEG referencing the source images (``seg=True``; DICOM sources)
report.html       self-contained case report (``report=True``)
================  =====================================================================

Every file is written atomically (a temporary name, then a rename); with
``atomic_folder=True`` the whole folder is built beside the target and renamed into place
(a killed run never leaves a half-written folder that looks done).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import plot
from . import report as _report
from .errors import BmevizError
from .io import save_mask
from .io._atomic import atomic_path, atomic_write_text
from .io.seg import save_seg as _save_seg_arrays

__all__ = ["write_outputs", "save_seg", "Written", "OUTPUTS"]

#: Every file :func:`write_outputs` may write, in order.
OUTPUTS = ("bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png", "bme_seg.dcm", "report.html")


@dataclass
class Written:
    """What :func:`write_outputs` wrote: ``paths`` by role (mask, table, provenance,
    overlay, seg, report), and ``notes`` (e.g. why no SEG was written)."""

    folder: Path
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """File names written, in :data:`OUTPUTS` order."""
        written = {p.name for p in self.paths.values()}
        return [n for n in OUTPUTS if n in written]


def save_seg(result: Any, path: str | os.PathLike, *, include_phi: bool = False, per_lesion: bool = True) -> Path:
    """Write ``result``'s lesions as a DICOM SEG (segment names and colours as in
    ``lesions.csv`` and ``overlay.png``); see :func:`bmeviz.io.seg.save_seg`."""
    labels = np.asarray(result.labels)
    n_max = int(labels.max()) if labels.size else 0
    if per_lesion and n_max > 0:
        names = [f"BME lesion {i}" for i in range(1, n_max + 1)]
        colors = plot.lesion_colors(n_max) if n_max > 1 else np.array([[1.0, 0.2, 0.2]])
    else:
        names, colors = ["BME"], np.array([[1.0, 0.2, 0.2]])
    thr = result.threshold
    parameters = {"rule": str(thr.rule), "k": "none" if thr.k is None else f"{thr.k:g}",
                  "threshold": f"{thr.value:.6g}", "edge": str(result.params.get("edge")),
                  "mode": str(result.params.get("mode"))}
    description = (f"Bone marrow edema: {len(result.table)} lesion(s), {result.total_volume_ml:.3f} mL; "
                   f"threshold {thr.value:.4g} ({thr.rule})")
    return _save_seg_arrays(labels, result.volume, path, segment_names=names, colors=colors,
                            algorithm_parameters=parameters, description=description,
                            semiautomatic=bool(result.params.get("seeds")), include_phi=include_phi,
                            per_lesion=per_lesion)


def write_outputs(
    result: Any,
    out_dir: str | os.PathLike,
    *,
    overlay: bool = True,
    seg: bool = False,
    report: bool = False,
    include_phi: bool = False,
    title: str | None = None,
    seg_errors: str = "raise",
    atomic_folder: bool = False,
    provenance_extra: Callable[[Written], Mapping[str, Any]] | None = None,
) -> Written:
    """Write the output folder of ``result`` (see the module docstring).

    Parameters
    ----------
    result : bmeviz.Result
    out_dir : path-like
        The folder (made if missing).
    overlay, seg, report : bool
        Also write ``overlay.png``, ``bme_seg.dcm``, ``report.html``.
    include_phi : bool
        Keep file paths and UIDs in provenance, the SEG's patient module and the report.
    title : str, optional
        The report's heading (e.g. the study id).
    seg_errors : {'raise', 'note'}
        A SEG that cannot be written (a NIfTI source, no FrameOfReferenceUID) raises,
        or is left out with a note in :attr:`Written.notes`.
    atomic_folder : bool
        Build the folder beside ``out_dir`` (``.<name>.tmp-XXXXXXXX``) and rename it into
        place, replacing an older one (batch studies).
    provenance_extra : callable, optional
        Called with the :class:`Written` so far; its mapping is merged into
        ``provenance.json`` (batch adds its ``"batch"`` record this way).

    Returns
    -------
    Written
    """
    final = Path(out_dir)
    folder = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}" if atomic_folder else final
    written = Written(folder=final)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written.paths["mask"] = save_mask(result.labels, result.volume, folder / "bme_mask.nii.gz")
        with atomic_path(folder / "lesions.csv") as tmp:
            result.table.to_csv(tmp, index=False, float_format="%.6g")
        written.paths["table"] = folder / "lesions.csv"
        prov = result.provenance(include_phi=include_phi)
        written.paths["provenance"] = _write_json(folder / "provenance.json", prov)
        if overlay:
            written.paths["overlay"] = plot.save_overlay(result, folder / "overlay.png")
        if seg:
            try:
                written.paths["seg"] = save_seg(result, folder / "bme_seg.dcm", include_phi=include_phi)
            except BmevizError as exc:  # e.g. an anonymiser removed the FrameOfReferenceUID
                if seg_errors != "note":
                    raise
                written.notes.append(f"no DICOM SEG: {exc}")
        if report:
            written.paths["report"] = _report.save_report(result, folder / "report.html", include_phi=include_phi,
                                                          title=title)
        if provenance_extra is not None:  # what was written is known now: provenance says it
            _write_json(folder / "provenance.json", {**prov, **provenance_extra(written)})
        if atomic_folder:
            _replace_folder(folder, final)
            written.paths = {k: final / p.name for k, p in written.paths.items()}
    finally:
        if atomic_folder and folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
    return written


def _replace_folder(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` folder to ``final``, replacing an old one."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, data: Mapping[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
