"""Region assist for a cohort: one search region per scan of a CSV, in one process.

``bmeviz region --manifest CASES.csv --out-dir DIR --atlas ATLASES/ --refine R.joblib``
(or :func:`regions_from_manifest`) reads the atlases and the refiner once, prepares every
atlas before the first scan (its normalised image, clicks and registration pyramid) and imports
PyTorch once,
so every scan after the first costs the outline itself (about 2.7 s on the SIJ scans with a
U-Net refiner, against 7-9 s for a separate ``bmeviz region`` call per scan; measured in
``benchmarks/bench_region_cohort.py``).

The manifest has one row per scan:

``case_id``
    names the output, ``DIR/<case_id>_region.nii.gz``: letters, digits, ``.``, ``_``, ``-``
    (the name ``bmeviz validate --region-dir`` and ``bmeviz batch`` take).
``image``
    the T1 (or the fluid-sensitive scan itself); paths are relative to the CSV.
``seeds_mm`` or ``seeds``
    the clicks, one per bone: RAS mm ``x,y,z`` or voxels ``slice,row,column``, separated by
    ``;`` (both columns may be given).
``on`` (optional)
    the fluid-sensitive scan whose grid the region is written on.

The whole manifest is checked before anything runs (every problem with its line, in one
:class:`~bmeviz.errors.ParameterError`). A scan that fails (unreadable, a click in dark
tissue, ...) is recorded with its error, a region an earlier run wrote under its name is
removed, and the others go on. ``DIR/regions.csv`` (written
atomically at the end, one row per case, no input paths) has the volume, the time (the whole
case, and the outline alone), the atlases fused, their agreement and any warning or error.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable

from .errors import BmevizError, BmevizWarning, ParameterError

__all__ = ["regions_from_manifest", "REGION_MANIFEST_COLUMNS", "REGION_TABLE_COLUMNS"]

REGION_MANIFEST_COLUMNS = ("case_id", "image", "seeds_mm", "seeds", "on")
REGION_TABLE_COLUMNS = ("case_id", "status", "file", "voxels", "volume_ml", "seconds", "outline_seconds", "method",
                        "atlases",
                        "agreement", "warning", "error")
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _rows(path: Path) -> list[tuple[int, dict]]:
    """The ``(line, {column: text})`` rows, read as ``bmeviz batch`` reads its manifests (comments,
    blank lines, ``,``/``;``/tab; ``study_id`` is taken for ``case_id``), with the columns checked."""
    from .batch.manifest import _read_rows

    header, rows = _read_rows(path)
    header = ["case_id" if c == "study_id" else c for c in header]
    unknown = [c for c in header if c not in REGION_MANIFEST_COLUMNS]
    if unknown:
        raise ParameterError(f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; the columns are "
                             f"{', '.join(REGION_MANIFEST_COLUMNS)}")
    if "case_id" not in header or "image" not in header or not {"seeds_mm", "seeds"} & set(header):
        raise ParameterError(f"{path}: the manifest needs the columns case_id, image and seeds_mm (RAS mm) or "
                             f"seeds (voxels); found {', '.join(header) or 'none'}")
    out = [(line, {("case_id" if k == "study_id" else k): (v if k == "__extra__" else str(v).strip())
                   for k, v in raw.items()}) for line, raw in rows]
    if not out:
        raise ParameterError(f"{path}: the manifest has no case (a header case_id,image,seeds_mm[,on] and one row "
                             "per scan)")
    return out


def _cases(path: Path) -> list[dict]:
    """The manifest's cases, checked: every problem of every row in one ParameterError."""
    from .batch.manifest import parse_points

    base = path.resolve().parent
    cases, problems, seen = [], [], {}
    for line, raw in _rows(path):
        where = f"line {line}"
        if "__extra__" in raw:
            problems.append(f"{where}: more cells than the header (clicks or a path with commas? put them in "
                            "double quotes)")
            continue
        cid = raw.get("case_id", "")
        if not _SAFE.match(cid):
            problems.append(f"{where}: case_id {cid!r} must be letters, digits, '.', '_' or '-' (it names the file)")
        elif cid in seen:
            problems.append(f"{where}: case_id {cid!r} is also on line {seen[cid]}")
        else:
            seen[cid] = line
        case = {"case_id": cid, "line": line}
        for col in ("image", "on"):
            val = raw.get(col, "")
            if not val:
                if col == "image":
                    problems.append(f"{where}: no image")
                case[col] = None
                continue
            p = Path(os.path.expanduser(val))
            p = p if p.is_absolute() else base / p
            if not p.exists():
                problems.append(f"{where}: {col} {val}: no such file or folder")
            case[col] = p
        for col in ("seeds_mm", "seeds"):
            try:
                case[col] = parse_points(raw.get(col, ""), what=col) or None
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                case[col] = None
        if not (case["seeds_mm"] or case["seeds"]):
            problems.append(f"{where}: no clicks (seeds_mm as 'x,y,z; x,y,z' in RAS mm, or seeds in voxels)")
        cases.append(case)
    if problems:
        raise ParameterError(f"{path}: {len(problems)} problem(s) in the manifest, nothing was run:\n  "
                             + "\n  ".join(problems))
    return cases


def _short(text: str, case: dict, base: Path) -> str:
    """The message with the case's input paths shortened (paths often carry patient names)."""
    for p in (case["image"], case["on"]):
        if p is None:
            continue
        for form in sorted({str(p), os.path.realpath(p)}, key=len, reverse=True):
            rel = os.path.relpath(form, base) if form.startswith(str(base) + os.sep) else "…/" + os.path.basename(form)
            text = text.replace(form, rel)
    return text


def regions_from_manifest(manifest: str | os.PathLike, out_dir: str | os.PathLike, *, atlas: Any = None,
                          atlas_best: int | None = None, refine: Any = None, contrast: str = "auto",
                          progress: Callable[[str], None] | None = None) -> list[dict]:
    """Outline the search region of every scan of ``manifest`` (see the module docstring) into
    ``out_dir`` and return the rows of ``out_dir/regions.csv`` (dicts with
    :data:`REGION_TABLE_COLUMNS`).

    ``atlas``, ``atlas_best``, ``refine`` and ``contrast``: as for
    :func:`bmeviz.region.region_from_seeds`, the same for every scan; the atlases and the
    refiner are read once.

    Raises
    ------
    ParameterError
        A manifest with problems (all of them listed, nothing run), an output folder that is a
        file, an output that would overwrite an input, a refiner that cannot be read.
    """
    from .io import load, save_mask
    from .io._atomic import atomic_write_text
    from .region import region_from_seeds

    if refine is not None and atlas is None:
        raise ParameterError("refine needs atlas: the refiner redraws the border of the atlas region")
    path = Path(manifest)
    cases = _cases(path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out-dir {out}: exists and is not a folder")
    outputs = {c["case_id"]: (out / f"{c['case_id']}_region.nii.gz").resolve() for c in cases}
    inputs = {Path(p).resolve() for c in cases for p in (c["image"], c["on"]) if p is not None}
    clash = [str(o) for o in outputs.values() if o in inputs]
    if clash:
        raise ParameterError(f"the region(s) {', '.join(clash)} would overwrite an input; choose another --out-dir")
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    if refine is not None:  # read once, not once per scan
        from .region_refine import as_refiner

        refine = as_refiner(refine)
    if atlas is not None:  # read and prepared once, before the first scan: every scan costs its outline alone
        from .region_atlas import prepare_atlases

        t = time.perf_counter()
        atlas = prepare_atlases(atlas, params=getattr(refine, "atlas_params", None))
        say(f"{len(atlas)} atlas(es) read and prepared in {time.perf_counter() - t:.1f} s")
    base = path.resolve().parent
    table = []
    for n, case in enumerate(cases, 1):
        row = dict.fromkeys(REGION_TABLE_COLUMNS, "")
        row["case_id"] = case["case_id"]
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", BmevizWarning)
                vol = load(case["image"])
                on = load(case["on"]) if case["on"] is not None else None
                res = region_from_seeds(vol, seeds=case["seeds"], seeds_mm=case["seeds_mm"], contrast=contrast,
                                        on=on, atlas=atlas, atlas_best=atlas_best, refine=refine)
                save_mask(res.mask.array, on if on is not None else vol, outputs[case["case_id"]])
            info = res.info
            row.update(status="ok", file=outputs[case["case_id"]].name, voxels=info["voxels"],
                       volume_ml=round(info["volume_ml"], 3), outline_seconds=round(info["seconds"], 2),
                       method=info["method"],
                       atlases=" ".join(info.get("atlases", [])),
                       agreement="" if info.get("agreement") is None else info["agreement"])
            msgs = [str(w.message) for w in caught if issubclass(w.category, BmevizWarning)]
            row["warning"] = _short(" | ".join(msgs), case, base)
        except Exception as exc:  # noqa: BLE001 - one scan never stops the cohort; bad input is a BmevizError
            what = "" if isinstance(exc, BmevizError) else "unexpected error, please report it: "
            row.update(status="failed", error=_short(f"{what}{type(exc).__name__}: {exc}", case, base))
            outputs[case["case_id"]].unlink(missing_ok=True)  # no region of an earlier run beside a failed row
        row["seconds"] = round(time.perf_counter() - t0, 2)
        table.append(row)
        say(f"{n}/{len(cases)} {case['case_id']}: " + (f"{row['volume_ml']} mL in {row['seconds']} s"
                                                       if row["status"] == "ok" else row["error"]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=REGION_TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(out / "regions.csv", buf.getvalue())
    return table
