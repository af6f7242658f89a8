"""The manifest: one CSV row per scan, parsed and validated (every bad row reported at once).

Option columns are those of :class:`bmeviz.options.SegmentOptions` (parsed with its
:meth:`~bmeviz.options.Option.parse`); ``subject`` and ``visit`` pass through to
``cohort.csv``.
"""

from __future__ import annotations

import csv
import difflib
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._arrays import parse_triple
from ..errors import ParameterError, warn
from ..options import DEFAULTS, SegmentOptions, parse_bool

#: segment() options a manifest row (or the command) may set: the options model's, except
#: reference_radius_mm (a reference column of its own, listed with the reference).
_OPTION_NAMES = tuple(n for n in SegmentOptions.names() if n != "reference_radius_mm")

#: Columns copied as they are into the study's row of cohort.csv (for follow-up per subject).
PASS_THROUGH = ("subject", "visit")

#: Every column a manifest may have (case-insensitive; '-' and ' ' read as '_').
MANIFEST_COLUMNS = (
    "study_id", "image", "series", "echo", "volume",
    "reference_mask", "reference_point", "reference_point_mm", "reference_radius_mm",
    "region_mask", "seeds", "seeds_mm", "seg", "report",
) + _OPTION_NAMES


_ALIASES = {"region": "region_mask", "reference": "reference_mask", "seed": "seeds", "seed_mm": "seeds_mm",
            "study": "study_id", "id": "study_id", "path": "image"}


_RESERVED = {"cohort.csv", "cohort.png", "batch.json"}


_STUDY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class ManifestError(ParameterError):
    """A manifest has bad rows; ``problems`` lists ``(line, study_id, message)`` for each."""

    def __init__(self, message: str, problems: Sequence[tuple[Any, str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


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
    return parse_triple(value, what, error=ValueError)


def _option(name: str, value: Any) -> Any:
    """Parse one segment option (:meth:`bmeviz.options.Option.parse`); ValueError with a message."""
    return SegmentOptions.option(name).parse(value)


def _normalise_column(name: Any) -> str:
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(key, key)


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
    carry: dict = field(default_factory=dict)  # pass-through columns (subject, visit) for cohort.csv
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
    others = [c for c in unknown if c and c not in PASS_THROUGH]
    if others:
        warn(f"{where}: column(s) {', '.join(others)} are not bmeviz's and are ignored "
             "(merge them with cohort.csv on study_id)")
    carried = [c for c in header if c in PASS_THROUGH]
    if carried:
        warn(f"{where}: column(s) {', '.join(carried)} are not bmeviz's and are ignored by the segmentation; "
             "cohort.csv carries them along")


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
    st.seg = take("seg", lambda v: parse_bool(v, "seg"))
    st.report = take("report", lambda v: parse_bool(v, "report"))
    if st.seg and image and _is_nifti_name(image):
        problems.append("seg=yes needs a DICOM source (a SEG references the source images); this image is NIfTI")
    st.carry = {c: str(raw[c]).strip() for c in PASS_THROUGH if c in raw and not _blank(raw[c])}
    for name in _OPTION_NAMES:
        if name in raw and not _blank(raw[name]):
            try:
                st.options[name] = _option(name, raw[name])
            except ValueError as exc:
                problems.append(str(exc))
    return st, problems


def _check_combined(st: _Study, defaults: Mapping[str, Any]) -> list[str]:
    """Problems of the row's options merged with the command's defaults."""
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
        rec.update({k: st.options.get(k) for k in _OPTION_NAMES})
        rec.update(st.carry)
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
        if name not in _OPTION_NAMES and name not in ("reference_radius_mm", "series", "echo"):
            raise ParameterError(
                f"unknown option {name!r} for batch; segment options are: {', '.join(_OPTION_NAMES)}, "
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
