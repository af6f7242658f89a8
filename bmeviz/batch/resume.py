"""Resuming: what a worker needs for one study, its hash, and whether its outputs are up to date.

A study is skipped when its folder's ``provenance.json`` holds the same hash (inputs'
sizes and times, options, outputs, bmeviz version) and every output it lists exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..options import DEFAULTS
from .manifest import _OPTION_NAMES, _is_nifti_name, _Study


def _file_facts(path: str, base: Path) -> list:
    """``[name, size, mtime_ns]`` of a file, or of every file under a folder (sorted)."""
    p = Path(path)
    try:
        rel = os.path.relpath(p, base)
    except ValueError:  # another drive on Windows
        rel = str(p)
    if p.is_dir():
        facts = []
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for f in sorted(files):
                if f.startswith("."):
                    continue
                fp = Path(root) / f
                with contextlib.suppress(OSError):
                    s = fp.stat()
                    facts.append([os.path.relpath(fp, p), s.st_size, s.st_mtime_ns])
        return [rel, facts]
    try:
        s = p.stat()
        return [rel, s.st_size, s.st_mtime_ns]
    except OSError:
        return [rel, None, None]


def _task(st: _Study, defaults: Mapping[str, Any], outputs: Mapping[str, Any], out: Path, base: Path) -> dict:
    """Everything a worker needs for one study, and its hash."""
    opts = {k: DEFAULTS[k] for k in _OPTION_NAMES}  # read from the options model, as segment() does
    opts.update({k: v for k, v in defaults.items() if k in _OPTION_NAMES})
    opts.update(st.options)
    if opts.get("k") == "adaptive":
        opts["k"] = None  # the same threshold: hash them alike
    radius = st.reference_radius_mm if st.reference_radius_mm is not None else \
        defaults.get("reference_radius_mm", DEFAULTS["reference_radius_mm"])
    if st.reference_mask:
        reference: Any = {"mask": st.reference_mask}
    elif st.reference_point is not None:
        reference = {"point": list(st.reference_point), "radius_mm": radius}
    else:
        reference = {"point_mm": list(st.reference_point_mm or ()), "radius_mm": radius}
    is_dicom = not _is_nifti_name(st.image)
    want_seg = st.seg if st.seg is not None else bool(outputs.get("seg"))
    outs = {"overlay": bool(outputs.get("overlay", True)),
            "seg": bool(want_seg and is_dicom),
            "report": st.report if st.report is not None else bool(outputs.get("report")),
            "include_phi": bool(outputs.get("include_phi"))}
    task = {
        "study_id": st.study_id,
        "line": st.line,
        "image": st.image,
        "series": st.series if st.series is not None else defaults.get("series"),
        "echo": st.echo if st.echo is not None else defaults.get("echo"),
        "volume": st.volume,
        "reference": reference,
        "region": st.region_mask,
        "seeds": [list(p) for p in st.seeds] or None,
        "seeds_mm": [list(p) for p in st.seeds_mm] or None,
        "options": opts,
        "outputs": outs,
        "seg_skipped": bool(want_seg and not is_dicom),
        "out": str(out),
        "base": str(base),
    }

    def rel(p):
        if p is None:
            return None
        try:
            return os.path.relpath(p, base)
        except ValueError:  # another drive (Windows)
            return p

    hashed = {
        "bmeviz": __version__,
        "image": rel(st.image), "series": task["series"], "echo": task["echo"], "volume": st.volume,
        "reference": {k: (rel(v) if k == "mask" else v) for k, v in reference.items()},
        "region": rel(st.region_mask), "seeds": task["seeds"], "seeds_mm": task["seeds_mm"],
        "options": opts, "outputs": outs,
        "files": [_file_facts(p, base) for _, p in st.inputs()],
    }
    task["hash"] = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()
    return task


def _done(folder: Path, digest: str) -> dict | None:
    """The stored provenance of a finished study whose hash is ``digest`` and outputs are all there."""
    try:
        prov = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    batch = prov.get("batch") or {}
    if batch.get("hash") != digest:
        return None
    if not all((folder / name).is_file() for name in batch.get("outputs") or ["bme_mask.nii.gz"]):
        return None
    return prov


def _row_from_provenance(study_id: str, prov: Mapping[str, Any], status: str) -> dict:
    totals = prov.get("totals") or {}
    thr = prov.get("threshold") or {}
    params = prov.get("params") or {}
    batch = prov.get("batch") or {}
    return {"study_id": study_id, "status": status, "n_lesions": totals.get("n_lesions"),
            "total_volume_ml": totals.get("total_volume_ml"), "threshold": thr.get("value"),
            "rule": thr.get("rule") or params.get("rule"), "k_used": params.get("k_used"), "error": None,
            "seconds": batch.get("seconds"), "notes": "; ".join(batch.get("notes") or []) or None}
