"""Cohort runs: a manifest of scans through :func:`bmeviz.segment` on Dask.

One CSV row per scan (``study_id``, ``image``, the reference, optional region, seeds and
per-row options); :func:`run` (CLI: ``bmeviz batch MANIFEST --out DIR``) validates the
whole manifest first, then segments every study on a Dask LocalCluster sized to the
machine (``workers=``) or on an existing cluster (``scheduler="tcp://host:8786"``), and
writes, per study, what ``bmeviz segment`` writes, into ``DIR/<study_id>/``; at the end
``DIR/cohort.csv`` (one row per study) and ``DIR/cohort.png`` (total BME volume per study).

- A failing study is recorded with its error and does not stop the others.
- Resumable: a study whose outputs exist and whose inputs + parameters hash (stored in
  its ``provenance.json`` under ``"batch"``) is unchanged is skipped; ``force=True``
  redoes it. Each study is written into ``DIR/.<study_id>.tmp-*`` and renamed into place,
  so a killed run never leaves a half-written study that looks done.
- ``workers=0`` runs the studies one after the other in this process, without Dask.

Nothing here imports Dask (or pandas) at import time: ``import bmeviz.batch`` is light.
The format and the commands are described in ``docs/batch.md``.

>>> from bmeviz.batch import parse_points
>>> parse_points("12,140,96; 14,150,90")
[(12.0, 140.0, 96.0), (14.0, 150.0, 90.0)]
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import difflib
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BmevizError, BmevizWarning, ParameterError, warn

__all__ = ["run", "plan", "read_manifest", "parse_points", "ManifestError", "COHORT_COLUMNS", "MANIFEST_COLUMNS",
           "add_cli"]

#: Columns of ``cohort.csv`` (and of the DataFrame :func:`run` returns), in order.
COHORT_COLUMNS = ("study_id", "status", "n_lesions", "total_volume_ml", "threshold", "rule", "k_used", "error",
                  "seconds", "notes")

#: segment() options a manifest row (or the command) may set, with their parser kind.
_OPTION_KINDS: dict[str, str] = {
    "rule": "rule",
    "k": "k",
    "high_k": "float",
    "upper": "float",
    "method": "method",
    "edge": "edge",
    "min_volume_mm3": "float",
    "min_slices": "int",
    "fill_holes": "bool",
    "connectivity": "connectivity",
    "max_volume_ml": "float",
    "max_radius_mm": "float",
    "confidence_k": "float",
}
_CHOICES = {
    "rule": ("q3-iqr", "mean-sd", "percentile", "otsu"),
    "method": ("connected", "confidence"),
    "edge": ("threshold", "half-max"),
}
#: Options that cannot be 'none'.
_NOT_NONE = {"connectivity", "confidence_k", "fill_holes"}

#: Every column a manifest may have (case-insensitive; '-' and ' ' read as '_').
MANIFEST_COLUMNS = (
    "study_id", "image", "series", "echo", "volume",
    "reference_mask", "reference_point", "reference_point_mm", "reference_radius_mm",
    "region_mask", "seeds", "seeds_mm", "seg", "report",
) + tuple(_OPTION_KINDS)
_ALIASES = {"region": "region_mask", "reference": "reference_mask", "seed": "seeds", "seed_mm": "seeds_mm",
            "study": "study_id", "id": "study_id", "path": "image"}
_RESERVED = {"cohort.csv", "cohort.png", "batch.json"}
_STUDY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LOCK = ".bmeviz-batch.lock"
#: How long to try reaching an existing Dask scheduler.
CONNECT_TIMEOUT = "10s"
_TMP = re.compile(r"\..+\.(tmp|old)-[0-9a-f]{8}$")


class ManifestError(ParameterError):
    """A manifest has bad rows; ``problems`` lists ``(line, study_id, message)`` for each."""

    def __init__(self, message: str, problems: Sequence[tuple[Any, str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


_UNSET = object()


# ----------------------------------------------------------------------------- parsing values
def _blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip() == ""


def parse_points(value: Any, *, what: str = "points") -> list[tuple[float, float, float]]:
    """``"Z,Y,X;Z,Y,X"`` (or a sequence of triples) as a list of 3-tuples of floats."""
    if _blank(value):
        return []
    if isinstance(value, str):
        parts = [p for p in re.split(r"[;|]", value) if p.strip()]
        pts = [_triple(p, what) for p in parts]
    else:
        seq = list(value)
        if len(seq) == 3 and all(isinstance(v, numbers.Number) for v in seq):
            seq = [seq]
        pts = [_triple(p, what) for p in seq]
    return pts


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip().strip("()[]")) if p]
    else:
        parts = list(value)
    try:
        vals = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{what} must be three numbers like 12,140,96; got {value!r}")
    return vals  # type: ignore[return-value]


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "yes", "y", "true", "t", "on", "x"}:
        return True
    if text in {"0", "no", "n", "false", "f", "off"}:
        return False
    raise ValueError(f"{what} must be yes or no; got {value!r}")


def _option(name: str, value: Any) -> Any:
    """Parse one segment option; raises ValueError with a message for the user."""
    kind = _OPTION_KINDS[name]
    if isinstance(value, str):
        value = value.strip()
    if isinstance(value, str) and value.lower() == "none" and name not in _NOT_NONE and kind not in _CHOICES:
        return None
    if value is None and name not in _NOT_NONE and kind not in _CHOICES:
        return None
    if kind in _CHOICES:
        text = str(value).lower()
        if text not in _CHOICES[kind]:
            raise ValueError(f"{name} must be one of {', '.join(_CHOICES[kind])}; got {value!r}")
        return text
    if kind == "k":
        if isinstance(value, str) and value.lower() == "adaptive":
            return "adaptive"
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"k must be a number or 'adaptive'; got {value!r}") from None
        if not math.isfinite(f):
            raise ValueError(f"k must be a finite number; got {value!r}")
        return f
    if kind == "bool":
        return _bool(value, name)
    if kind in {"int", "connectivity"}:
        try:
            f = float(value)
        except (TypeError, ValueError):
            f = float("nan")
        if not math.isfinite(f) or f != int(f):
            raise ValueError(f"{name} must be a whole number; got {value!r}")
        i = int(f)
        if kind == "connectivity" and i not in (6, 18, 26):
            raise ValueError(f"connectivity must be 6, 18 or 26; got {value!r}")
        if kind == "int" and i < 1:
            raise ValueError(f"{name} must be at least 1; got {value!r}")
        return i
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number (or 'none'); got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if name in {"min_volume_mm3"} and f < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    if name in {"max_volume_ml", "max_radius_mm", "confidence_k"} and f <= 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return f


def _normalise_column(name: Any) -> str:
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(key, key)


# ----------------------------------------------------------------------------- the manifest
@dataclass
class _Study:
    """One validated manifest row (picklable: it travels to the workers as a dict)."""

    line: Any
    study_id: str
    image: str
    series: str | None = None
    echo: float | None = None
    volume: int | None = None
    reference_mask: str | None = None
    reference_point: tuple | None = None
    reference_point_mm: tuple | None = None
    reference_radius_mm: float | None = None
    region_mask: str | None = None
    seeds: list = field(default_factory=list)
    seeds_mm: list = field(default_factory=list)
    seg: bool | None = None
    report: bool | None = None
    options: dict = field(default_factory=dict)  # only what the row sets
    missing: list = field(default_factory=list)  # input paths that do not exist (soft problems)

    def inputs(self) -> list[tuple[str, str]]:
        out = [("image", self.image)]
        if self.reference_mask:
            out.append(("reference_mask", self.reference_mask))
        if self.region_mask:
            out.append(("region_mask", self.region_mask))
        return out


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """Header and ``(line, {column: text})`` rows of a CSV manifest (comments and blank lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
    delimiter = "," if "," in first else (";" if ";" in first else ("\t" if "\t" in first else ","))
    reader = csv.reader(text.splitlines(keepends=True), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, dict]] = []
    for rec in reader:
        line = reader.line_num
        if not rec or all(not c.strip() for c in rec) or rec[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [_normalise_column(c) for c in rec]
            continue
        if len(rec) > len(header) and any(c.strip() for c in rec[len(header):]):
            rows.append((line, {"__extra__": rec[len(header):], **dict(zip(header, rec))}))
        else:
            rows.append((line, dict(zip(header, rec))))
    if header is None:
        raise ManifestError(f"{path}: the manifest is empty (needs a header with study_id,image,... and one row per scan)")
    return header, rows


def _check_header(header: Sequence[str], where: str) -> None:
    dup = sorted({c for c in header if header.count(c) > 1 and c})
    if dup:
        raise ManifestError(f"{where}: column(s) {', '.join(dup)} appear twice")
    unknown = [c for c in header if c and c not in MANIFEST_COLUMNS]
    typos = []
    for c in unknown:
        close = difflib.get_close_matches(c, MANIFEST_COLUMNS, n=1, cutoff=0.8)
        if close:
            typos.append(f"{c!r} (did you mean {close[0]!r}?)")
    if typos:
        raise ManifestError(f"{where}: unknown column(s) {', '.join(typos)}; the columns are: {', '.join(MANIFEST_COLUMNS)}")
    missing = [c for c in ("study_id", "image") if c not in header]
    if missing:
        raise ManifestError(f"{where}: the manifest needs the column(s) {', '.join(missing)} "
                            f"(found: {', '.join(c for c in header if c) or 'none'})")
    others = [c for c in unknown if c]
    if others:
        warn(f"{where}: column(s) {', '.join(others)} are not bmeviz's and are ignored "
             "(merge them with cohort.csv on study_id)")


def _resolve_path(value: Any, base: Path) -> str:
    p = Path(os.path.expanduser(str(value).strip()))
    if not p.is_absolute():
        p = base / p
    return str(Path(os.path.abspath(p)))


def _is_nifti_name(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def _parse_row(line: Any, raw: Mapping[str, Any], base: Path) -> tuple[_Study, list[str]]:
    problems: list[str] = []
    sid_raw = raw.get("study_id")
    sid = "" if _blank(sid_raw) else str(sid_raw).strip()
    if "__extra__" in raw:
        problems.append(f"{len(raw['__extra__'])} more value(s) than columns (a comma inside an unquoted value? "
                        'quote it: "12,140,96")')
    if not sid:
        problems.append("study_id is empty")
    elif not _STUDY_ID.fullmatch(sid) or sid.lower() in _RESERVED:
        problems.append(f"study_id {sid!r} cannot be a folder name: use letters, digits, '.', '_' and '-' "
                        "(starting with a letter or digit, at most 128), not cohort.csv/cohort.png/batch.json")
    if _blank(raw.get("image")):
        problems.append("image is empty (a DICOM folder or file, or a NIfTI file)")
        image = ""
    else:
        image = _resolve_path(raw["image"], base)
    st = _Study(line=line, study_id=sid, image=image)

    def take(name: str, fn):
        v = raw.get(name)
        if _blank(v):
            return None
        try:
            return fn(v)
        except ValueError as exc:
            problems.append(str(exc))
            return None

    def number(name, *, positive=False, whole=False, low=None):
        def parse(v):
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = float("nan")
            if not math.isfinite(f) or (positive and f <= 0) or (whole and f != int(f)) or (low is not None and f < low):
                kind = "a whole number" if whole else "a number"
                cond = " > 0" if positive else (f" >= {low}" if low is not None else "")
                raise ValueError(f"{name} must be {kind}{cond}; got {v!r}")
            return int(f) if whole else f
        return parse

    st.series = take("series", lambda v: str(v).strip())
    st.echo = take("echo", number("echo"))
    st.volume = take("volume", number("volume", whole=True, low=0))
    if image and _is_nifti_name(image) and (st.series is not None or st.echo is not None):
        problems.append("series/echo apply to DICOM; this image is a NIfTI file (one series)")
    if image and not _is_nifti_name(image) and st.volume is not None:
        problems.append("volume applies to 4D NIfTI files, not DICOM")
    st.reference_mask = take("reference_mask", lambda v: _resolve_path(v, base))
    pt = take("reference_point", lambda v: _triple(v, "reference_point"))
    pt_mm = take("reference_point_mm", lambda v: _triple(v, "reference_point_mm"))
    st.reference_point, st.reference_point_mm = pt, pt_mm
    st.reference_radius_mm = take("reference_radius_mm", number("reference_radius_mm", positive=True))
    ref_cols_given = [n for n in ("reference_mask", "reference_point", "reference_point_mm") if not _blank(raw.get(n))]
    if not ref_cols_given:
        problems.append("no reference: give reference_mask (normal-marrow mask) or reference_point Z,Y,X "
                        "(with reference_radius_mm)")
    elif len(ref_cols_given) > 1:
        problems.append(f"give one reference, not {' and '.join(ref_cols_given)}")
    if st.reference_mask is not None and not _blank(raw.get("reference_radius_mm")):
        problems.append("reference_radius_mm applies to reference_point, not to reference_mask")
    if pt is not None and any(v < 0 for v in pt):
        problems.append(f"reference_point {pt} has a negative voxel index")
    st.region_mask = take("region_mask", lambda v: _resolve_path(v, base))
    st.seeds = take("seeds", lambda v: parse_points(v, what="seeds")) or []
    st.seeds_mm = take("seeds_mm", lambda v: parse_points(v, what="seeds_mm")) or []
    if any(min(p) < 0 for p in st.seeds):
        problems.append("seeds has a negative voxel index (voxel seeds are slice,row,column >= 0; RAS mm go in seeds_mm)")
    st.seg = take("seg", lambda v: _bool(v, "seg"))
    st.report = take("report", lambda v: _bool(v, "report"))
    if st.seg and image and _is_nifti_name(image):
        problems.append("seg=yes needs a DICOM source (a SEG references the source images); this image is NIfTI")
    for name in _OPTION_KINDS:
        if name in raw and not _blank(raw[name]):
            try:
                st.options[name] = _option(name, raw[name])
            except ValueError as exc:
                problems.append(str(exc))
    return st, problems


def _check_combined(st: _Study, defaults: Mapping[str, Any]) -> list[str]:
    """Problems of the row's options merged with the command's defaults."""
    from .pipeline import DEFAULTS

    opts = {**defaults, **st.options}
    problems = []
    rule = opts.get("rule") or DEFAULTS.get("rule")
    if opts.get("k") == "adaptive" and rule != "q3-iqr":
        problems.append(f"k=adaptive applies to rule q3-iqr, not {rule}")
    if opts.get("method") == "confidence" and not (st.seeds or st.seeds_mm):
        problems.append("method=confidence needs seeds (click the lesions)")
    return problems


def _validate(rows: Sequence[tuple[Any, Mapping[str, Any]]], base: Path, defaults: Mapping[str, Any],
              where: str) -> list[_Study]:
    studies: list[_Study] = []
    problems: list[tuple[Any, str, str]] = []
    first_seen: dict[str, Any] = {}
    for line, raw in rows:
        st, probs = _parse_row(line, raw, base)
        probs += _check_combined(st, defaults)
        if st.study_id:
            key = st.study_id.lower()
            if key in first_seen:
                probs.append(f"study_id {st.study_id!r} is already used on line {first_seen[key]} "
                             "(study ids name output folders; case does not count)")
            else:
                first_seen[key] = line
        for p in probs:
            problems.append((line, st.study_id or "?", p))
        studies.append(st)
    if not rows:
        raise ManifestError(f"{where}: the manifest has a header but no scan rows")
    if problems:
        bad = len({p[0] for p in problems})
        listing = "\n".join(f"  line {ln} (study {sid}): {msg}" for ln, sid, msg in problems)
        raise ManifestError(f"{where}: {bad} bad row(s) of {len(rows)}; nothing was run. Fix them and run again:\n"
                            f"{listing}", problems)
    for st in studies:
        for kind, path in st.inputs():
            if not os.path.exists(path):
                st.missing.append(f"{kind} not found: {path}")
    return studies


def _rows_of(manifest: Any) -> tuple[list[tuple[Any, dict]], Path, str]:
    """Rows, the folder relative paths resolve against, and a name for messages."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(manifest, pd.DataFrame):
        header = [_normalise_column(c) for c in manifest.columns]
        _check_header([h for h in header if h not in ("line", "missing")], "manifest")
        rows = []
        for i, rec in enumerate(manifest.itertuples(index=False), start=1):
            d = {h: v for h, v in zip(header, rec) if h not in ("line", "missing")}
            line = getattr(rec, "line", None) if "line" in header else None
            rows.append((i if line is None or _blank(line) else line, d))
        return rows, Path.cwd(), "manifest"
    path = Path(manifest)
    header, rows = _read_rows(path)
    _check_header(header, str(path))
    return rows, Path(os.path.abspath(path)).parent, str(path)


def read_manifest(path: Any, *, strict: bool = False, **defaults: Any) -> Any:
    """Read and validate a manifest; every bad row is reported at once.

    Parameters
    ----------
    path : path-like or pandas.DataFrame
        The CSV (relative paths resolve against its folder), or a DataFrame with the
        same columns (relative paths resolve against the working directory).
    strict : bool
        Missing input files are errors too (by default they are listed with a warning
        and those studies are recorded as failed by :func:`run`, which runs the rest).
    **defaults
        The command's segment options (checked in combination with each row).

    Returns
    -------
    pandas.DataFrame
        One row per study, parsed: absolute paths, points as tuples, options as dicts,
        ``line`` (in the CSV) and ``missing`` (input files not found).

    Raises
    ------
    ManifestError
        One error listing every bad row (line, study_id, problem); its ``problems``
        attribute has them as tuples.
    """
    import pandas as pd

    defaults = _check_defaults(defaults)
    rows, base, where = _rows_of(path)
    studies = _validate(rows, base, defaults, where)
    _check_missing(studies, strict, where)
    records = []
    for st in studies:
        rec = {k: getattr(st, k) for k in ("study_id", "image", "series", "echo", "volume", "reference_mask",
                                            "reference_point", "reference_point_mm", "reference_radius_mm",
                                            "region_mask", "seeds", "seeds_mm", "seg", "report")}
        rec.update({k: st.options.get(k) for k in _OPTION_KINDS})
        rec["line"] = st.line
        rec["missing"] = "; ".join(st.missing) or None
        records.append(rec)
    return pd.DataFrame(records, dtype=object)


def _check_missing(studies: Sequence[_Study], strict: bool, where: str) -> None:
    bad = [(st.line, st.study_id, m) for st in studies for m in st.missing]
    if not bad:
        return
    listing = "\n".join(f"  line {ln} (study {sid}): {msg}" for ln, sid, msg in bad)
    if strict:
        raise ManifestError(f"{where}: {len({b[0] for b in bad})} row(s) name input files that do not exist; "
                            f"nothing was run:\n{listing}", bad)
    warn(f"{where}: {len({b[0] for b in bad})} row(s) name input files that do not exist; those studies are "
         f"recorded as failed and the others run:\n{listing}")


def _check_defaults(defaults: Mapping[str, Any]) -> dict:
    """The command's defaults, parsed; unknown names are an error."""
    out: dict[str, Any] = {}
    bad = []
    for name, value in defaults.items():
        if name not in _OPTION_KINDS and name not in ("reference_radius_mm", "series", "echo"):
            raise ParameterError(
                f"unknown option {name!r} for batch; segment options are: {', '.join(_OPTION_KINDS)}, "
                "reference_radius_mm, series, echo")
        if value is None and name in ("reference_radius_mm", "series", "echo"):
            continue
        try:
            if name == "reference_radius_mm":
                f = float(value)
                if not math.isfinite(f) or f <= 0:
                    raise ValueError(f"reference_radius_mm must be a positive number; got {value!r}")
                out[name] = f
            elif name == "series":
                out[name] = str(value)
            elif name == "echo":
                out[name] = float(value)
            else:
                out[name] = _option(name, value)
        except (TypeError, ValueError) as exc:
            bad.append(f"{name}: {exc}")
    if bad:
        raise ParameterError("bad batch option(s): " + "; ".join(bad))
    return out


# ----------------------------------------------------------------------------- hashing and resuming
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
    from . import __version__
    from .pipeline import DEFAULTS

    opts = {k: DEFAULTS[k] for k in _OPTION_KINDS if k in DEFAULTS}
    opts.update({k: v for k, v in defaults.items() if k in _OPTION_KINDS})
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


# ----------------------------------------------------------------------------- the work of one study
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


def _commit(tmp: Path, final: Path) -> None:
    """Move the finished ``tmp`` folder to ``final``, replacing an old one."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _process_study(task: Mapping[str, Any]) -> dict:
    """Load, segment and save one study (runs on a Dask worker); never raises for a study's error."""
    from .io import load
    from .pipeline import segment

    t0 = time.perf_counter()
    out = Path(task["out"])
    sid = task["study_id"]
    tmp = out / f".{sid}.tmp-{uuid.uuid4().hex[:8]}"
    row: dict[str, Any] = {"study_id": sid, "status": "failed", "n_lesions": None, "total_volume_ml": None,
                           "threshold": None, "rule": None, "k_used": None, "error": None, "seconds": None,
                           "notes": None}
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BmevizWarning)
        try:
            vol = load(task["image"], series=task["series"], echo=task["echo"], volume=task["volume"])
            ref = task["reference"]
            if "mask" in ref:
                reference: Any = ref["mask"]
            elif "point" in ref:
                reference = tuple(ref["point"])
            else:
                reference = {"point_mm": tuple(ref["point_mm"])}
            opts = dict(task["options"])
            res = segment(vol, reference=reference, region=task["region"], seeds=task["seeds"],
                          seeds_mm=task["seeds_mm"], reference_radius_mm=ref.get("radius_mm"), **opts)
            outs = task["outputs"]
            res.save(tmp, overlay=outs["overlay"], include_phi=outs["include_phi"], seg=False, report=False)
            written = ["bme_mask.nii.gz", "lesions.csv", "provenance.json"]
            if outs["overlay"]:
                written.append("overlay.png")
            if outs["seg"]:
                from .io.seg import save_seg

                try:
                    save_seg(res, tmp / "bme_seg.dcm", include_phi=outs["include_phi"])
                    written.append("bme_seg.dcm")
                except BmevizError as exc:  # e.g. an anonymiser removed the FrameOfReferenceUID
                    notes.append(f"no DICOM SEG: {exc}")
            if task.get("seg_skipped"):
                notes.append("no DICOM SEG: the source is not DICOM")
            if outs["report"]:
                from .report import save_report

                save_report(res, tmp / "report.html", include_phi=outs["include_phi"], title=sid)
                written.append("report.html")
            notes.extend(res.messages)
            notes.extend(str(w.message) for w in caught if issubclass(w.category, BmevizWarning))
            notes = list(dict.fromkeys(_scrub(n, task) for n in notes))
            seconds = round(time.perf_counter() - t0, 3)
            from .io._atomic import atomic_write_text

            prov_path = tmp / "provenance.json"
            prov = json.loads(prov_path.read_text(encoding="utf-8"))
            prov["batch"] = {
                "hash": task["hash"],
                "study_id": sid,
                "manifest_line": task["line"],
                "seconds": seconds,
                "outputs": written,
                "notes": notes,
                "options": task["options"],
                "host": socket.gethostname() if outs["include_phi"] else None,
                "inputs": ({k: task[k] for k in ("image", "region", "series", "echo")} | {"reference": ref})
                if outs["include_phi"] else None,
            }
            atomic_write_text(prov_path, json.dumps(prov, indent=2, default=str) + "\n")
            _commit(tmp, out / sid)
            thr = res.threshold
            row.update(status="ok", n_lesions=res.n_lesions, total_volume_ml=res.total_volume_ml,
                       threshold=float(thr.value), rule=thr.rule, k_used=res.params.get("k_used"), seconds=seconds)
        except BmevizError as exc:
            row["error"] = _scrub(str(exc), task)
        except Exception as exc:  # an unexpected error: record it with its type, keep going
            row["error"] = _scrub(f"{type(exc).__name__}: {exc}", task)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if row["status"] != "ok":
        notes.extend(str(w.message) for w in caught if issubclass(w.category, BmevizWarning))
        notes = list(dict.fromkeys(_scrub(n, task) for n in notes))
        row["seconds"] = round(time.perf_counter() - t0, 3)
    row["notes"] = "; ".join(notes) or None
    return row


def _worker_version() -> str:
    from . import __version__

    return __version__


# ----------------------------------------------------------------------------- progress
class _Progress:
    """studies done / failed / remaining on stderr: one rewritten line on a terminal, else one line each."""

    def __init__(self, total: int, *, stream: Any = None, enabled: bool = True, skipped: int = 0) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.ok = 0
        self.failed = 0
        self.skipped = skipped
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.enabled:
            self._draw("")

    def update(self, study_id: str, status: str, seconds: Any = None) -> None:
        if status == "ok":
            self.ok += 1
        else:
            self.failed += 1
        if self.enabled:
            took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
            self._draw(f"{study_id} {status}{took}")

    def _draw(self, last: str) -> None:
        done = self.ok + self.failed
        width = 24
        filled = int(round(width * done / self.total)) if self.total else width
        el = int(time.perf_counter() - self.t0)
        bar = "#" * filled + "-" * (width - filled)
        text = (f"bmeviz batch [{bar}] {done}/{self.total} done: {self.ok} ok, {self.failed} failed, "
                f"{self.total - done} remaining ({el // 60:02d}:{el % 60:02d})")
        if last:
            text += f"  {last}"
        if self.tty:
            self.stream.write("\r" + text[:200].ljust(100))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------- output folder
def _prepare_out(out: Path, studies: Sequence[_Study], include_phi: bool) -> None:
    for st in studies:
        img = Path(st.image)
        if img.is_dir():
            try:
                out.relative_to(img)
                inside = True
            except ValueError:
                inside = False
            if inside:
                raise ParameterError(f"--out {out} is inside the image folder of study {st.study_id}; bmeviz never "
                                     "writes into its inputs (and would read its own outputs back): choose another folder")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file; give a folder")
    if out.exists() and any(out.iterdir()) and not (out / "batch.json").exists():
        raise ParameterError(f"--out {out} exists and holds files bmeviz batch did not write (no batch.json); "
                             "choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _lock(out: Path):
    path = out / _LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                other = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                other = {}
            alive = False
            if other.get("host") == me["host"] and isinstance(other.get("pid"), int):
                try:
                    os.kill(other["pid"], 0)
                    alive = True
                    with contextlib.suppress(OSError):  # killed but not yet reaped (a zombie): owns nothing
                        alive = "\nState:\tZ" not in Path(f"/proc/{other['pid']}/status").read_text()
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
            elif other.get("host"):
                alive = True
            if alive:
                raise ParameterError(
                    f"{out}: another bmeviz batch (pid {other.get('pid')} on {other.get('host')}, started "
                    f"{other.get('started')}) is writing here; wait for it, or delete {path} if it is not running"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale lock of a run that died
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _clean_stale(out: Path) -> None:
    for p in out.iterdir():
        if p.is_dir() and _TMP.match(p.name):
            shutil.rmtree(p, ignore_errors=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- running on Dask
def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        n = os.cpu_count() or 1
    return max(1, n)


@contextlib.contextmanager
def _client(workers: int | None, scheduler: Any, n_tasks: int, dashboard: bool):
    """A distributed Client: on ``scheduler`` (address, Client or cluster), or on a new LocalCluster."""
    try:
        import logging

        from distributed import Client, LocalCluster
    except ImportError:
        raise ParameterError("bmeviz batch needs Dask: pip install 'bmeviz[dask]' (dask[distributed]); "
                             "or run without it with workers=0 (CLI: --workers 0)") from None
    if scheduler is not None:
        if hasattr(scheduler, "submit"):  # a Client
            yield scheduler
            return
        address = getattr(scheduler, "scheduler_address", scheduler)  # a cluster object
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ParameterError(f"cannot reach the Dask scheduler at {address}: {exc}. Start one with "
                                 "'dask scheduler' and workers with 'dask worker ADDRESS', or leave out --scheduler "
                                 "for a local cluster") from None
        try:
            _check_workers(client, address)
            yield client
        finally:
            client.close()
        return
    import dask

    n = workers if workers is not None else min(_default_workers(), max(1, n_tasks))
    # Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers, which turns off
    # glibc's adaptive mmap threshold: every large NumPy array is then a fresh mmap, ten
    # times the page faults and ~15-30% more time per study here (benchmarks/bench_batch.py).
    # A study's arrays are freed when it ends, so the default allocator is kept.
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":8787" if dashboard else ":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        if dashboard:
            print(f"bmeviz batch: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        with contextlib.suppress(Exception):
            cluster.close()


def _check_workers(client: Any, address: str) -> None:
    from . import __version__

    try:
        client.wait_for_workers(1, timeout=30)
    except Exception:
        raise ParameterError(f"the Dask scheduler at {address} has no worker; start some with "
                             f"'dask worker {address}'") from None
    try:
        versions = client.run(_worker_version)
    except Exception as exc:
        raise ParameterError(f"the Dask workers at {address} cannot run bmeviz ({type(exc).__name__}: {exc}); "
                             f"install bmeviz {__version__} in every worker's environment") from None
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        raise ParameterError(f"Dask workers run another bmeviz version ({sorted(set(wrong.values()))}; this is "
                             f"{__version__}): install the same version everywhere")


def _run_tasks(tasks: Sequence[dict], *, workers: int | None, scheduler: Any, progress: _Progress,
               dashboard: bool) -> dict[str, dict]:
    results: dict[str, dict] = {}
    if not tasks:
        return results
    if workers == 0 and scheduler is None:
        try:
            for t in tasks:
                r = _process_study(t)
                results[t["study_id"]] = r
                progress.update(r["study_id"], r["status"], r["seconds"])
        except KeyboardInterrupt:
            for t in tasks:
                results.setdefault(t["study_id"], _failed_row(t["study_id"], "interrupted"))
            raise _Interrupted(results) from None
        return results
    with _client(workers, scheduler, len(tasks), dashboard) as client:
        from distributed import as_completed

        futures = {}
        for t in tasks:
            key = f"bmeviz-study-{t['study_id']}-{t['hash'][:12]}-{uuid.uuid4().hex[:6]}"
            futures[client.submit(_process_study, t, key=key, pure=False, retries=0)] = t
        try:
            for fut in as_completed(list(futures)):
                t = futures[fut]
                try:
                    r = fut.result()
                except Exception as exc:  # the worker died (memory), was lost, or the task was cancelled
                    r = _failed_row(t["study_id"], _scrub(f"{type(exc).__name__}: {exc}", t))
                results[t["study_id"]] = r
                progress.update(r["study_id"], r["status"], r["seconds"])
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            for t in tasks:
                results.setdefault(t["study_id"], _failed_row(t["study_id"], "interrupted"))
            raise _Interrupted(results) from None
    return results


class _Interrupted(Exception):
    def __init__(self, results: dict) -> None:
        super().__init__("interrupted")
        self.results = results


def _failed_row(study_id: str, error: str) -> dict:
    return {"study_id": study_id, "status": "failed", "n_lesions": None, "total_volume_ml": None, "threshold": None,
            "rule": None, "k_used": None, "error": error, "seconds": None, "notes": None}


def _prepare(manifest: Any, out: Any, *, force: bool, strict: bool, outputs: Mapping[str, Any],
             defaults: Mapping[str, Any]) -> tuple[list[_Study], list[dict | None], dict[str, dict], Path, Path, str]:
    defaults = _check_defaults(defaults)
    rows, base, where = _rows_of(manifest)
    studies = _validate(rows, base, defaults, where)
    _check_missing(studies, strict, where)
    out_p = Path(os.path.abspath(os.path.expanduser(str(out))))
    tasks: list[dict | None] = []
    fixed: dict[str, dict] = {}
    for st in studies:
        if st.missing:
            msg = "; ".join(st.missing)
            if not outputs.get("include_phi"):
                msg = "; ".join(_missing_short(m, base) for m in st.missing)
            fixed[st.study_id] = _failed_row(st.study_id, msg)
            tasks.append(None)
            continue
        t = _task(st, defaults, outputs, out_p, base)
        tasks.append(t)
        if not force:
            prov = _done(out_p / st.study_id, t["hash"])
            if prov is not None:
                fixed[st.study_id] = _row_from_provenance(st.study_id, prov, "skipped")
    return studies, tasks, fixed, out_p, base, where


def _missing_short(msg: str, base: Path) -> str:
    kind, _, path = msg.partition(" not found: ")
    if path.startswith(str(base) + os.sep):
        return f"{kind} not found: {os.path.relpath(path, base)}"
    return f"{kind} not found: …/{os.path.basename(path)}"


def plan(manifest: Any, out: Any, *, force: bool = False, strict: bool = False, overlay: bool = True,
         seg: bool = False, report: bool = False, include_phi: bool = False, **defaults: Any) -> Any:
    """What :func:`run` would do, without doing it: one row per study with ``action``
    (``run``, ``skip`` = up to date, ``fail`` = input missing) and ``reason``."""
    import pandas as pd

    outputs = {"overlay": overlay, "seg": seg, "report": report, "include_phi": include_phi}
    studies, tasks, fixed, out_p, _, _ = _prepare(manifest, out, force=force, strict=strict, outputs=outputs,
                                                  defaults=defaults)
    recs = []
    for st, t in zip(studies, tasks):
        f = fixed.get(st.study_id)
        if f is not None and f["status"] == "failed":
            recs.append({"study_id": st.study_id, "action": "fail", "reason": f["error"]})
        elif f is not None:
            recs.append({"study_id": st.study_id, "action": "skip", "reason": "outputs up to date"})
        else:
            exists = (out_p / st.study_id).exists()
            recs.append({"study_id": st.study_id, "action": "run",
                         "reason": ("forced" if force else "inputs or parameters changed") if exists else "new"})
    return pd.DataFrame.from_records(recs, columns=["study_id", "action", "reason"])


def run(
    manifest: Any,
    out: Any,
    *,
    workers: int | None = None,
    scheduler: Any = None,
    force: bool = False,
    strict: bool = False,
    overlay: bool = True,
    seg: bool = False,
    report: bool = False,
    include_phi: bool = False,
    progress: bool = True,
    dashboard: bool = False,
    **defaults: Any,
) -> Any:
    """Segment every study of a manifest, on Dask; returns the cohort table.

    Parameters
    ----------
    manifest : path-like or pandas.DataFrame
        The CSV manifest (see :func:`read_manifest` and ``docs/batch.md``).
    out : path-like
        Output folder: ``<study_id>/`` per study, ``cohort.csv``, ``cohort.png``,
        ``batch.json``. A new or empty folder, or one an earlier run wrote.
    workers : int, optional
        Worker processes of the LocalCluster (1 thread each); default one per core
        (at most one per study). ``0`` runs the studies in this process without Dask.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``; a ``Client`` or
        cluster object works too). The workers must see the same paths and run the
        same bmeviz version.
    force : bool
        Redo studies whose outputs are up to date.
    strict : bool
        Missing input files stop the run before any work (default: those studies fail,
        the others run).
    overlay, seg, report : bool
        Write ``overlay.png`` (default), ``bme_seg.dcm`` (DICOM sources; a row's ``seg``
        column overrides), ``report.html`` (a row's ``report`` column overrides).
    include_phi : bool
        Keep file paths and UIDs in provenance, reports, SEG and error messages.
    progress : bool
        Show studies done / failed / remaining on stderr.
    **defaults
        segment() options for every row without its own: ``rule``, ``k``, ``high_k``,
        ``upper``, ``method``, ``edge``, ``min_volume_mm3``, ``min_slices``,
        ``fill_holes``, ``connectivity``, ``max_volume_ml``, ``max_radius_mm``,
        ``confidence_k``, and ``reference_radius_mm``, ``series``, ``echo``.

    Returns
    -------
    pandas.DataFrame
        The cohort table (:data:`COHORT_COLUMNS`), also written to ``out/cohort.csv``;
        ``status`` is ``ok``, ``failed`` or ``skipped`` (up to date, not redone).

    Raises
    ------
    ManifestError
        Bad rows, every one listed, before any work.
    ParameterError
        A bad option, an output folder that is not bmeviz's, an unreachable scheduler.
    """
    import pandas as pd

    from . import __version__

    outputs = {"overlay": overlay, "seg": seg, "report": report, "include_phi": include_phi}
    if scheduler is not None and workers is not None:
        raise ParameterError("give workers= (a local cluster) or scheduler= (an existing one), not both")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ParameterError(f"workers must be a whole number >= 0; got {workers!r}")
    studies, tasks, fixed, out_p, base, where = _prepare(manifest, out, force=force, strict=strict,
                                                         outputs=outputs, defaults=defaults)
    _prepare_out(out_p, studies, include_phi)
    todo = [t for t in tasks if t is not None and t["study_id"] not in fixed]
    started = _now()
    with _lock(out_p):
        _clean_stale(out_p)
        info = {"software": {"name": "bmeviz", "version": __version__}, "started": started, "finished": None,
                "manifest": where if include_phi else Path(where).name, "studies": len(studies),
                "defaults": _check_defaults(defaults), "outputs": outputs,
                "cluster": ("in-process" if workers == 0 and scheduler is None else
                            "existing scheduler" if scheduler is not None else "LocalCluster")}
        from .io._atomic import atomic_write_text

        atomic_write_text(out_p / "batch.json", json.dumps(info, indent=2, default=str) + "\n")
        n_skip = sum(1 for r in fixed.values() if r["status"] == "skipped")
        n_missing = sum(1 for r in fixed.values() if r["status"] == "failed")
        if progress:
            print(f"bmeviz batch: {len(studies)} studies: {len(todo)} to run, {n_skip} up to date (skipped)"
                  + (f", {n_missing} with missing inputs" if n_missing else ""), file=sys.stderr)
        bar = _Progress(len(todo), enabled=progress, skipped=n_skip)
        interrupted = None
        try:
            results = _run_tasks(todo, workers=workers, scheduler=scheduler, progress=bar, dashboard=dashboard)
        except _Interrupted as exc:
            results = exc.results
            interrupted = exc
        rows = []
        for st in studies:
            r = fixed.get(st.study_id) or results.get(st.study_id) or _failed_row(st.study_id, "not run")
            rows.append({c: r.get(c) for c in COHORT_COLUMNS})
        table = pd.DataFrame.from_records(rows, columns=list(COHORT_COLUMNS))
        for c in ("n_lesions",):
            table[c] = table[c].astype("Int64")
        _write_cohort(table, out_p)
        info["finished"] = _now()
        info["counts"] = {s: int((table["status"] == s).sum()) for s in ("ok", "failed", "skipped")}
        atomic_write_text(out_p / "batch.json", json.dumps(info, indent=2, default=str) + "\n")
    if interrupted is not None:
        raise KeyboardInterrupt
    return table


def _write_cohort(table: Any, out: Path) -> None:
    from .io._atomic import atomic_path

    with atomic_path(out / "cohort.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    fig = cohort_figure(table)
    with atomic_path(out / "cohort.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def cohort_figure(table: Any) -> Any:
    """Bar chart of the total BME volume per study (failed studies marked); a matplotlib Figure."""
    import numpy as np
    from matplotlib.figure import Figure

    n = len(table)
    width = float(min(40.0, max(6.0, 0.32 * n + 2.0)))
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(n)
    vol = np.array([float(v) if v is not None and not _isnan(v) else 0.0 for v in table["total_volume_ml"]])
    status = list(table["status"])
    colors = ["tab:blue" if s == "ok" else "tab:cyan" if s == "skipped" else "lightgrey" for s in status]
    ax.bar(x, vol, color=colors, edgecolor="none")
    failed = [i for i, s in enumerate(status) if s == "failed"]
    top = float(vol.max()) if n and vol.max() > 0 else 1.0
    for i in failed:
        ax.text(i, top * 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=7, color="tab:red")
    ax.set_xticks(x)
    step = max(1, int(math.ceil(n / 80)))
    labels = [str(s) if i % step == 0 else "" for i, s in enumerate(table["study_id"])]
    ax.set_xticklabels(labels, rotation=90 if n > 8 else 0, fontsize=7 if n > 30 else 9)
    ax.set_ylabel("total BME volume (mL)")
    ok = status.count("ok") + status.count("skipped")
    ax.set_title(f"BME volume per study: {ok} measured, {len(failed)} failed", fontsize=10)
    ax.set_xlim(-0.6, max(n, 1) - 0.4)
    ax.set_ylim(0, top * 1.08)
    from matplotlib.patches import Patch

    handles = [Patch(color="tab:blue", label="run now"), Patch(color="tab:cyan", label="up to date (kept)")]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True


# ----------------------------------------------------------------------------- the command
def add_cli(subparsers: Any, command: Any) -> None:
    """Add ``bmeviz batch`` to the CLI (called by :func:`bmeviz.cli.build_parser`)."""
    from .pipeline import DEFAULTS

    def _d(name: str) -> str:
        v = DEFAULTS.get(name)
        return "as bmeviz segment" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))

    p = subparsers.add_parser(
        "batch", help="segment every scan of a manifest (CSV) on Dask; cohort table and plot",
        description="Segment every scan of a manifest on Dask. Writes OUT/<study_id>/ (as bmeviz segment), "
                    "OUT/cohort.csv and OUT/cohort.png. Reruns skip studies that are up to date. "
                    "The manifest format: docs/batch.md.")
    p.add_argument("manifest", help="CSV: study_id,image,[series],reference_mask | reference_point "
                                    "[+reference_radius_mm],[region_mask],[seeds],[seeds_mm],[rule],[k],[edge],[seg]...")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("where it runs")
    g.add_argument("--workers", type=int, help="local worker processes, 1 thread each (default: one per core; "
                                               "0: in this process, no Dask)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--dashboard", action="store_true", help="serve the Dask dashboard of the local cluster (:8787)")
    g.add_argument("--force", action="store_true", help="redo studies whose outputs are up to date")
    g.add_argument("--strict", action="store_true", help="missing input files stop the run (default: those fail)")
    g.add_argument("--check", action="store_true", help="validate the manifest and show what would run; run nothing")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    g = p.add_argument_group("defaults for rows that do not set them")
    g.add_argument("--series", help="series key, UID, number or description (DICOM)")
    g.add_argument("--echo", type=float, help="echo of multi-echo series")
    g.add_argument("--reference-radius-mm", type=float,
                   help=f"radius of reference points (default {_d('reference_radius_mm')} mm)")
    g.add_argument("--rule", choices=_CHOICES["rule"], help=f"default {_d('rule')}")
    g.add_argument("--k", help="k of the rule ('adaptive' for q3-iqr, the default)")
    g.add_argument("--high-k", type=float, help="strong threshold for hysteresis")
    g.add_argument("--method", choices=_CHOICES["method"], help="default connected")
    g.add_argument("--edge", choices=_CHOICES["edge"], help=f"default {_d('edge')}")
    g.add_argument("--min-volume-mm3", type=float, help=f"drop smaller lesions (default {_d('min_volume_mm3')})")
    g.add_argument("--min-slices", type=int, help=f"consecutive slices a lesion must span (default {_d('min_slices')})")
    g.add_argument("--connectivity", type=int, choices=[6, 18, 26], help="default 26")
    g.add_argument("--max-volume-ml", type=float, help=f"leak guard per seed in mL (default {_d('max_volume_ml')})")
    g.add_argument("--fill-holes", action="store_true", default=None, help="fill holes enclosed in a lesion")
    g = p.add_argument_group("outputs")
    g.add_argument("--no-overlay", action="store_true", help="skip overlay.png")
    g.add_argument("--seg", action="store_true", help="also write bme_seg.dcm for DICOM sources (a row's seg column overrides)")
    g.add_argument("--report", action="store_true", help="also write report.html (a row's report column overrides)")
    g.add_argument("--include-phi", action="store_true",
                   help="keep paths, UIDs and (in the SEG) patient identifiers; off: none")
    command("batch")(_cli)


def _cli(args: Any) -> int:
    names = ("series", "echo", "reference_radius_mm", "rule", "k", "high_k", "method", "edge", "min_volume_mm3",
             "min_slices", "connectivity", "max_volume_ml", "fill_holes")
    defaults = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    common = dict(force=args.force, strict=args.strict, overlay=not args.no_overlay, seg=args.seg,
                  report=args.report, include_phi=args.include_phi)
    if args.check:
        table = plan(args.manifest, args.out, **common, **defaults)
        print(table.to_string(index=False))
        counts = table["action"].value_counts()
        print(f"\n{len(table)} studies: {int(counts.get('run', 0))} to run, {int(counts.get('skip', 0))} up to date, "
              f"{int(counts.get('fail', 0))} with missing inputs")
        return 0
    table = run(args.manifest, args.out, workers=args.workers, scheduler=args.scheduler,
                progress=not args.no_progress, dashboard=args.dashboard, **common, **defaults)
    counts = table["status"].value_counts()
    n_failed = int(counts.get("failed", 0))
    for _, r in table[table["status"] == "failed"].iterrows():
        print(f"failed: {r['study_id']}: {r['error']}")
    print(f"{len(table)} studies: {int(counts.get('ok', 0))} ok, {n_failed} failed, "
          f"{int(counts.get('skipped', 0))} up to date (skipped)")
    out = Path(args.out)
    print(f"wrote: {out / 'cohort.csv'}, {out / 'cohort.png'}")
    return 1 if n_failed else 0
