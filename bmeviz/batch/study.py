"""The work of one study: load, segment, write its folder; errors become the study's row."""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import export, io, pipeline  # modules, looked up at call time (tests replace segment)
from ..errors import BmevizError, BmevizWarning


def _scrub(text: str, task: Mapping[str, Any]) -> str:
    """Replace input and output paths in a message by short forms (paths often carry names)."""
    if task["outputs"].get("include_phi") or not text:
        return text
    base = task["base"]
    subs: list[tuple[str, str]] = []
    paths = [task["image"], task.get("region"), (task["reference"] or {}).get("mask")]
    for p in paths:
        if not p:
            continue
        for form in {p, os.path.realpath(p)}:
            rel = os.path.relpath(form, base) if form.startswith(base + os.sep) else None
            subs.append((form, rel if rel else "…/" + os.path.basename(form)))
            parent = os.path.dirname(form)
            if parent and parent != os.sep:
                if (parent + os.sep).startswith(base + os.sep):
                    prel = os.path.relpath(parent, base)
                    subs.append((parent + os.sep, "" if prel == "." else prel + os.sep))
                else:
                    subs.append((parent + os.sep, "…/"))
    for form in {task["out"], os.path.realpath(task["out"])}:
        subs.append((form + os.sep, "<out>/"))
    for form in {base, os.path.realpath(base)}:
        subs.append((form + os.sep, ""))
    for old, new in sorted(subs, key=lambda s: -len(s[0])):
        text = text.replace(old, new)
    return text


def _reference(ref: Mapping[str, Any]) -> Any:
    if "mask" in ref:
        return ref["mask"]
    if "point" in ref:
        return tuple(ref["point"])
    return {"point_mm": tuple(ref["point_mm"])}


def _process_study(task: Mapping[str, Any]) -> dict:
    """Load, segment and save one study (runs on a Dask worker); never raises for a study's error.

    The study folder is written by :func:`bmeviz.export.write_outputs` (what ``bmeviz
    segment`` writes), built beside its place and renamed into it; provenance carries
    the batch record (hash, outputs, notes) that resuming reads.
    """
    t0 = time.perf_counter()
    out = Path(task["out"])
    sid = task["study_id"]
    row = _failed_row(sid, None)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BmevizWarning)
        try:
            vol = io.load(task["image"], series=task["series"], echo=task["echo"], volume=task["volume"])
            ref = task["reference"]
            res = pipeline.segment(vol, reference=_reference(ref), region=task["region"], seeds=task["seeds"],
                                   seeds_mm=task["seeds_mm"], reference_radius_mm=ref.get("radius_mm"),
                                   **task["options"])
            outs = task["outputs"]

            def batch_record(written: export.Written) -> dict:
                notes.extend(written.notes)
                if task.get("seg_skipped"):
                    notes.append("no DICOM SEG: the source is not DICOM")
                notes.extend(str(m) for m in res.messages)
                notes.extend(str(w.message) for w in caught if issubclass(w.category, BmevizWarning))
                notes[:] = list(dict.fromkeys(_scrub(n, task) for n in notes))
                row["seconds"] = round(time.perf_counter() - t0, 3)
                return {"batch": {
                    "hash": task["hash"],
                    "study_id": sid,
                    "manifest_line": task["line"],
                    "seconds": row["seconds"],
                    "outputs": written.names,
                    "notes": list(notes),
                    "options": task["options"],
                    "host": socket.gethostname() if outs["include_phi"] else None,
                    "inputs": ({k: task[k] for k in ("image", "region", "series", "echo")} | {"reference": ref})
                    if outs["include_phi"] else None,
                }}

            export.write_outputs(res, out / sid, overlay=outs["overlay"], seg=outs["seg"], report=outs["report"],
                                 include_phi=outs["include_phi"], title=sid, seg_errors="note", atomic_folder=True,
                                 provenance_extra=batch_record)
            thr = res.threshold
            row.update(status="ok", n_lesions=res.n_lesions, total_volume_ml=res.total_volume_ml,
                       threshold=float(thr.value), rule=thr.rule, k_used=res.params.get("k_used"))
        except BmevizError as exc:
            row["error"] = _scrub(str(exc), task)
        except Exception as exc:  # an unexpected error: record it with its type, keep going
            row["error"] = _scrub(f"{type(exc).__name__}: {exc}", task)
    if row["status"] != "ok":
        notes.extend(str(w.message) for w in caught if issubclass(w.category, BmevizWarning))
        notes = list(dict.fromkeys(_scrub(n, task) for n in notes))
        row["seconds"] = round(time.perf_counter() - t0, 3)
    row["notes"] = "; ".join(notes) or None
    return row


def _failed_row(study_id: str, error: str | None) -> dict:
    return {"study_id": study_id, "status": "failed", "n_lesions": None, "total_volume_ml": None, "threshold": None,
            "rule": None, "k_used": None, "error": error, "seconds": None, "notes": None}
