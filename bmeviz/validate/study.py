"""Cases, simulated users and the per-case runs of ``bmeviz validate``.

A *case* is one scan with its reader masks, a normal-marrow ROI (the manual reference)
and a search region (optionally also alternative regions, e.g. from region assist).
Each case is segmented with :func:`bmeviz.segment` in several *modes*:

- ``clicks/point``: simulated users. Each puts the reference point at a random voxel of
  the normal-marrow ROI with a random radius (6–10 mm by default) and clicks once in the
  bright half of each lesion of the click reader (a random voxel among the lesion's voxels
  above its median intensity; lesions are 26-connected components);
- ``clicks/mask``: the same clicks, the manual normal-marrow ROI as the reference;
- ``clicks/auto``: the same clicks, ``reference='auto'`` (only where ``segment`` has it);
- ``region/<reference>``: no clicks ("find all in region"), with that reference (one run
  when the reference needs no user input, one run per user with points).

Users are reproducible: user ``u`` of case ``c`` draws from
``numpy.random.default_rng([seed, crc32(c), u])``, the same draws in every mode.
"""

from __future__ import annotations

import csv
import functools
import inspect
import re
import time
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BmevizError, ParameterError, UnreadableFileError
from ..metrics import dice, pairwise_dice, volume_ml

__all__ = ["Case", "User", "read_manifest", "sij_cases", "simulate_users", "run_case", "reader_groups",
           "parse_modes", "check_options", "SIJ_READERS", "REFERENCES"]

#: Reader masks of the SIJ development layout: 2 readers x 2 sessions.
SIJ_READERS = ("R11", "R12", "R21", "R22")
#: Reference kinds a mode can use.
REFERENCES = ("point", "mask", "auto")
_KINDS = ("clicks", "region")
#: segment() arguments the study sets itself (not settable with ``options``).
_RESERVED = {"volume", "reference", "seeds", "seeds_mm", "region", "reference_radius_mm"}
_STRUCT26 = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class Case:
    """One scan of a validation study: paths (or arrays/Volumes) on the image's grid."""

    case_id: str
    image: Any
    readers: Mapping[str, Any]
    normal_marrow: Any = None
    region: Any = None
    alt_regions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class User:
    """One simulated user's choices on one case (voxel indices are ``(slice, row, col)``)."""

    index: int
    reference_index: tuple[int, int, int]
    reference_mm: tuple[float, float, float]
    radius_mm: float
    clicks: np.ndarray = field(repr=False)


# ----------------------------------------------------------------------------- inputs
def _case_id(value: str, where: str) -> str:
    cid = str(value).strip()
    if not cid or not re.fullmatch(r"[A-Za-z0-9._-]+", cid):
        raise ParameterError(f"{where}: case_id {value!r} must be letters, digits, '.', '_' or '-' (it names outputs)")
    return cid


def read_manifest(path: str | Path) -> list[Case]:
    """Cases from a CSV manifest.

    Columns: ``case_id``, ``image``, reader masks as ``reader:<name>`` columns and/or a
    ``readers`` column ``name=path;name=path``, ``normal_marrow`` (manual reference ROI),
    ``region``, optionally ``assisted_region`` (or any ``region:<label>`` column) for an
    alternative region. Relative paths are relative to the manifest's folder. Empty cells
    mean "not given".
    """
    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(f"manifest {p} does not exist or is not a file")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            header = [h.strip() for h in (rows[0].keys() if rows else [])]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UnreadableFileError(f"manifest {p}: cannot read it as CSV ({e})") from None
    if not rows:
        raise ParameterError(f"manifest {p} has no rows")
    for need in ("case_id", "image"):
        if need not in header:
            raise ParameterError(f"manifest {p} has no {need!r} column (columns: {', '.join(header)})")
    base = p.parent

    def resolve(v: str | None) -> Path | None:
        if v is None or not str(v).strip():
            return None
        q = Path(str(v).strip()).expanduser()
        return q if q.is_absolute() else base / q

    cases, seen = [], set()
    for i, raw in enumerate(rows, start=2):
        row = {str(k).strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"manifest {p} line {i}"
        cid = _case_id(row.get("case_id", ""), where)
        if cid in seen:
            raise ParameterError(f"{where}: case_id {cid!r} appears twice")
        seen.add(cid)
        readers: dict[str, Path] = {}
        for k, v in row.items():
            if k.startswith("reader:") and v:
                readers[k.split(":", 1)[1].strip()] = resolve(v)
        for item in filter(None, (s.strip() for s in row.get("readers", "").split(";"))):
            name, sep, val = item.partition("=")
            if not sep or not name.strip() or not val.strip():
                raise ParameterError(f"{where}: readers entry {item!r} must be name=path")
            readers[name.strip()] = resolve(val)
        alt = {k.split(":", 1)[1].strip(): resolve(v) for k, v in row.items() if k.startswith("region:") and v}
        if row.get("assisted_region"):
            alt["assisted"] = resolve(row["assisted_region"])
        if not row.get("image"):
            raise ParameterError(f"{where}: the image cell is empty")
        cases.append(Case(cid, resolve(row["image"]), readers, resolve(row.get("normal_marrow")),
                          resolve(row.get("region")), alt))
    return cases


def region_in_dir(directory: str | Path, case_id: str) -> Path | None:
    """The NIfTI of ``case_id`` in ``directory``: ``<id>.nii[.gz]`` or the one ``<id>_*`` file
    (preferring names with 'region'); None when there is none."""
    d = Path(directory)
    found = sorted(q for q in d.iterdir() if q.name.endswith((".nii", ".nii.gz"))
                   and (q.name.split(".")[0] == case_id or q.name.startswith(case_id + "_")))
    if len(found) > 1:
        found = [q for q in found if "region" in q.name] or found
    if len(found) > 1:
        raise ParameterError(f"--region-dir {d}: several files for case {case_id}: {', '.join(q.name for q in found)}")
    return found[0] if found else None


def sij_cases(directory: str | Path, *, readers: Sequence[str] = SIJ_READERS,
              region_dir: str | Path | None = None, region_label: str = "assisted") -> tuple[list[Case], list[dict]]:
    """Cases of the SIJ STIR layout (``images/<id>_STIR.nii.gz``, ``inflammation/<id>_inflammation_<R>``,
    ``normal_marrow/``, ``disease_region/``) and notes on the scans skipped (no reader mask)."""
    d = Path(directory)
    if not (d / "images").is_dir():
        raise UnreadableFileError(f"--sij-dir {d}: no images/ folder (expected the sij-stir-dev layout)")
    if region_dir is not None and not Path(region_dir).is_dir():
        raise UnreadableFileError(f"--region-dir {region_dir} is not a folder")
    cases, skipped = [], []
    for img in sorted((d / "images").glob("*_STIR.nii*")):
        cid = img.name.split("_STIR")[0]
        rd = {r: q for r in readers for q in (d / "inflammation").glob(f"{cid}_inflammation_{r}.nii*")}
        if not rd:
            skipped.append({"case_id": cid, "reason": "no reader masks"})
            continue
        alt = {}
        if region_dir is not None:
            q = region_in_dir(region_dir, cid)
            if q is None:
                skipped.append({"case_id": cid, "reason": f"no {region_label} region in --region-dir (manual region only)"})
            else:
                alt[region_label] = q
        nm = next(iter((d / "normal_marrow").glob(f"{cid}_normal_marrow.nii*")), None)
        rg = next(iter((d / "disease_region").glob(f"{cid}_disease_region.nii*")), None)
        cases.append(Case(cid, img, {r: rd[r] for r in readers if r in rd}, nm, rg, alt))
    if not cases:
        raise ParameterError(f"--sij-dir {d}: no scan with reader masks")
    return cases, skipped


def reader_groups(names: Sequence[str]) -> dict[str, list[str]]:
    """Readers grouped by person: names ``<reader><session digit>`` sharing a prefix (R11, R12 ->
    R1) are sessions of one reader; any other name is a reader of its own.

    >>> reader_groups(["R11", "R12", "R21", "R22", "alice"])
    {'R1': ['R11', 'R12'], 'R2': ['R21', 'R22'], 'alice': ['alice']}
    """
    pref: dict[str, list[str]] = {}
    for n in names:
        m = re.fullmatch(r"(.+?)(\d)", n)
        pref.setdefault(m.group(1) if m else n, []).append(n)
    out: dict[str, list[str]] = {}
    for p, members in pref.items():
        if len(members) > 1:
            out[p] = members
        else:
            out[members[0]] = members
    return out


def parse_modes(modes: Sequence[str] | str | None, reference_mode: str) -> list[str]:
    """The modes to run (``kind/reference``). Default: clicks and region-only with the main
    ``reference_mode``, with the manual ROI, and with ``'auto'`` where ``segment`` has it."""
    if reference_mode not in REFERENCES:
        raise ParameterError(f"reference mode must be one of {', '.join(REFERENCES)}; got {reference_mode!r}")
    if modes is None:
        out = [f"clicks/{reference_mode}", f"region/{reference_mode}"]
        if reference_mode != "mask":
            out += ["clicks/mask", "region/mask"]
        if reference_mode != "auto" and auto_reference_supported():
            out += ["clicks/auto", "region/auto"]
        return out
    if isinstance(modes, str):
        modes = [m.strip() for m in modes.split(",") if m.strip()]
    for m in modes:
        kind, _, ref = m.partition("/")
        if kind not in _KINDS or ref not in REFERENCES:
            raise ParameterError(f"mode {m!r} must be clicks/<ref> or region/<ref> with <ref> in {', '.join(REFERENCES)}")
    return list(dict.fromkeys(modes))


@functools.lru_cache(maxsize=1)
def auto_reference_supported() -> bool:
    """Whether :func:`bmeviz.segment` accepts ``reference='auto'`` (probed once on a tiny scan:
    a bmeviz without it takes 'auto' for a file name)."""
    from ..volume import Volume

    segment = _segment_fn()
    if "reference" not in inspect.signature(segment).parameters:
        return False
    img = 100.0 + 10.0 * (np.indices((8, 16, 16)).sum(axis=0) % 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            segment(Volume(img, np.eye(4)), reference="auto", region=np.ones(img.shape, bool))
        except UnreadableFileError:
            return False
        except BmevizError:  # 'auto' understood; the toy scan just has no marrow to find
            return True
        except Exception:  # noqa: BLE001 - whatever else: do not offer the mode by default
            return False
    return True


def _segment_fn():
    from .. import segment  # the public API, resolved at call time (picks up the current defaults)

    return segment


def check_options(options: Mapping[str, Any] | None) -> dict:
    """``segment`` options for every run; refuses unknown names and the ones the study sets."""
    opts = dict(options or {})
    params = inspect.signature(_segment_fn()).parameters
    for name in opts:
        if name in _RESERVED:
            raise ParameterError(f"option {name!r} is set by the study itself (modes, users); remove it from --set")
        if name not in params:
            known = ", ".join(n for n in params if n not in _RESERVED)
            raise ParameterError(f"unknown segment option {name!r}; known: {known}")
    return opts


def _load_volume(src: Any, what: str):
    from ..io import load
    from ..volume import Volume

    return src if isinstance(src, Volume) else load(src)


def _load_mask(src: Any, volume, what: str) -> np.ndarray:
    from ..io import load
    from ..volume import Volume

    if isinstance(src, (str, Path)):
        m = load(src)
        if m.shape != volume.shape or not np.allclose(m.affine, volume.affine, atol=1e-3):
            raise ParameterError(f"{what} ({src}) is not on the image's grid (shape {m.shape} vs {volume.shape}); "
                                 "resample it first")
        src = m
    arr = src.array if isinstance(src, Volume) else np.asarray(src)
    if arr.shape != volume.shape:
        raise ParameterError(f"{what} has shape {arr.shape}; the image is {volume.shape}")
    return np.nan_to_num(arr) > 0 if arr.dtype != bool else arr


# ----------------------------------------------------------------------------- users
def _nearest(points: np.ndarray, target: np.ndarray, spacing) -> np.ndarray:
    d = (((points - target) * np.asarray(spacing)) ** 2).sum(axis=1)
    return points[int(np.argmin(d))]


def bright_halves(image: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Per 26-connected lesion of ``mask``: the voxel indices above the lesion's median intensity
    (all its voxels when none is above, e.g. a flat lesion)."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask, structure=_STRUCT26)
    out = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        loc = np.argwhere(lab[sl] == i)
        vals = image[sl][tuple(loc.T)]
        keep = vals > np.median(vals)
        if not keep.any():
            keep[:] = True
        out.append(loc[keep] + np.array([s.start for s in sl]))
    return out


def simulate_users(volume, normal: np.ndarray | None, lesions: list[np.ndarray], *, n_users: int, seed: int,
                   case_id: str, radius_mm: tuple[float, float] = (6.0, 10.0), perturb: bool = True) -> list[User]:
    """``n_users`` users of one case: a reference point in ``normal`` and one click per lesion.

    ``lesions`` are the bright-half voxels of each lesion (:func:`bright_halves`). With
    ``perturb=False`` every user makes the same nominal choice (the ROI voxel nearest its
    centroid, the mid radius, the bright-half voxel nearest its centroid), so their results
    must be identical.
    """
    if n_users < 1:
        raise ParameterError(f"the number of users must be at least 1; got {n_users}")
    lo, hi = (float(radius_mm[0]), float(radius_mm[1]))
    if not (0 < lo <= hi):
        raise ParameterError(f"reference radius range must be 0 < min <= max mm; got {radius_mm}")
    sp = volume.spacing
    roi = np.argwhere(normal) if normal is not None else None
    users = []
    for u in range(n_users):
        rng = np.random.default_rng([int(seed), zlib.crc32(case_id.encode()), u])
        if roi is not None and len(roi):
            ref = roi[rng.integers(len(roi))] if perturb else _nearest(roi, roi.mean(axis=0), sp)
        else:
            ref = np.array(volume.shape) // 2
        radius = float(rng.uniform(lo, hi)) if perturb else (lo + hi) / 2
        clicks = [v[rng.integers(len(v))] if perturb else _nearest(v, v.mean(axis=0), sp) for v in lesions]
        users.append(User(u, tuple(int(x) for x in ref), tuple(float(x) for x in volume.index_to_ras(ref)),
                          radius, np.asarray(clicks, int).reshape(-1, 3)))
    return users


# ----------------------------------------------------------------------------- one case
def _run(segment, volume, *, kind: str, ref: str, user: User | None, normal, region, options) -> tuple[Any, int]:
    kw = dict(options)
    if ref == "point":
        kw.update(reference={"point_mm": user.reference_mm}, reference_radius_mm=user.radius_mm)
    elif ref == "mask":
        if normal is None:
            raise ParameterError("mode with reference 'mask' needs a normal_marrow ROI for every case")
        kw["reference"] = normal
    else:
        kw["reference"] = "auto"
    if kind == "clicks" and user is not None and len(user.clicks):
        kw["seeds"] = user.clicks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = segment(volume, region=region, **kw)
        except UnreadableFileError as e:
            if ref != "auto":
                raise
            raise ParameterError("reference mode 'auto' needs a bmeviz whose segment() accepts reference='auto' "
                                 f"(an automatic reference); this one does not ({e})") from None
    return res, len(caught)


def run_case(case: Case, *, modes: Sequence[str], n_users: int = 10, seed: int = 0, click_reader: str | None = None,
             options: Mapping[str, Any] | None = None, radius_mm: tuple[float, float] = (6.0, 10.0),
             perturb: bool = True) -> dict:
    """Segment one case in every mode for every simulated user; per-run rows and aggregates.

    Returns a JSON-able dict: ``case_id``, ``readers`` (volumes, pairwise Dice), ``runs``
    (one dict per region source x mode x user) and ``between_user_dice`` per
    ``region|mode`` (all pairs of users). Masks are not kept.
    """
    try:
        return _run_case(case, modes=modes, n_users=n_users, seed=seed, click_reader=click_reader, options=options,
                         radius_mm=radius_mm, perturb=perturb)
    except BmevizError as e:
        if str(e).startswith(f"case {case.case_id}"):
            raise
        raise type(e)(f"case {case.case_id}: {e}") from None


def _run_case(case: Case, *, modes, n_users, seed, click_reader, options, radius_mm, perturb) -> dict:
    t0 = time.perf_counter()
    segment = _segment_fn()
    opts = check_options(options)
    volume = _load_volume(case.image, f"case {case.case_id} image")
    image = np.asarray(volume.array, dtype=float)
    vvox = volume.voxel_volume_mm3
    readers = {r: _load_mask(src, volume, f"case {case.case_id} reader {r}") for r, src in case.readers.items()}
    if not readers:
        raise ParameterError(f"case {case.case_id} has no reader masks")
    normal = None if case.normal_marrow is None else _load_mask(case.normal_marrow, volume,
                                                                  f"case {case.case_id} normal_marrow")
    regions = {"manual": None if case.region is None else _load_mask(case.region, volume, f"case {case.case_id} region")}
    for label, src in case.alt_regions.items():
        regions[label] = _load_mask(src, volume, f"case {case.case_id} region {label}")
    if click_reader in (None, ""):
        click_reader = next(iter(readers))
    if click_reader == "union":
        click_mask = np.logical_or.reduce(list(readers.values()))
    elif click_reader in readers:
        click_mask = readers[click_reader]
    else:
        raise ParameterError(f"click reader {click_reader!r} is not a reader of case {case.case_id} "
                             f"({', '.join(readers)}) nor 'union'")
    lesions = bright_halves(image, click_mask)
    if any(m.split("/")[1] == "point" for m in modes) and (normal is None or not normal.any()):
        raise ParameterError(f"case {case.case_id}: point references are drawn inside the normal-marrow ROI; give one")
    users = simulate_users(volume, normal, lesions, n_users=n_users, seed=seed, case_id=case.case_id,
                           radius_mm=radius_mm, perturb=perturb)
    names = list(readers)
    out: dict = {
        "case_id": case.case_id,
        "voxel_volume_mm3": vvox,
        "n_lesions_clicked": len(lesions),
        "click_reader": click_reader,
        "readers": {
            "volume_ml": {r: volume_ml(m, vvox) for r, m in readers.items()},
            "dice": {f"{a}/{b}": dice(readers[a], readers[b]) for i, a in enumerate(names) for b in names[i + 1:]},
        },
        "users": [{"user": u.index, "radius_mm": round(u.radius_mm, 3), "n_clicks": int(len(u.clicks))} for u in users],
        "runs": [],
        "between_user_dice": {},
    }
    for src, region in regions.items():
        for mode in modes:
            kind, ref = mode.split("/")
            needs_users = ref == "point" or kind == "clicks"
            masks = []
            for user in (users if needs_users else [None]):
                t = time.perf_counter()
                clicks = user.clicks if (kind == "clicks" and user is not None) else np.empty((0, 3), int)
                if kind == "clicks" and not len(clicks):  # nothing to click (an empty reader mask): nothing found
                    res, n_warn = None, 0
                    mask = np.zeros(volume.shape, bool)
                else:
                    res, n_warn = _run(segment, volume, kind=kind, ref=ref, user=user or users[0], normal=normal,
                                       region=region, options=opts)
                    mask = np.asarray(res.mask, bool)
                labels = None if res is None else np.asarray(res.labels)
                not_grown = int(sum(labels[tuple(c)] == 0 for c in clicks)) if labels is not None else 0
                thr = getattr(res, "threshold", None)
                out["runs"].append({
                    "region": src, "mode": mode, "user": None if user is None else user.index,
                    "volume_ml": volume_ml(mask, vvox),
                    "dice": {r: dice(mask, m) for r, m in readers.items()},
                    "threshold": None if thr is None else float(thr.value),
                    "k_used": None if thr is None or thr.k is None else float(thr.k),
                    "n_lesions": 0 if res is None else int(res.n_lesions),
                    "n_clicks": int(len(clicks)), "clicks_not_grown": not_grown,
                    "warnings": n_warn, "seconds": round(time.perf_counter() - t, 3),
                })
                masks.append(mask)
            if len(masks) > 1:
                out["between_user_dice"][f"{src}|{mode}"] = pairwise_dice(masks)
            del masks
    out["seconds"] = time.perf_counter() - t0
    return out
