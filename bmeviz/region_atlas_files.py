"""The atlas files of region assist: an atlas folder, CSV manifest or list of pairs read into
:class:`Atlas` records (each read once per process and kept with what registering it needs),
in one array orientation, and the check that an atlas is not the scan being outlined.
:mod:`bmeviz.region_atlas` registers them."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import BmevizError, ParameterError
from .geometry import directions, orientation_like, turn, turned
from .volume import Volume

IMAGE_SUFFIX = "_T1W"
REGION_SUFFIX = "_disease_region"
_NII = (".nii.gz", ".nii")


class Atlas(NamedTuple):
    """One atlas: a name (file id), the T1 Volume, its bool region on the same grid, and the
    image file (resolved; None for an atlas given as a Volume)."""

    name: str
    image: Volume
    region: np.ndarray
    path: str | None = None
    prep: dict | None = None  # an atlas read from a file keeps its normalised image and clicks here (reused)


_CACHE: dict[tuple, Atlas] = {}


def _load_pair(name: str, image_path: Path, region_path: Path) -> Atlas:
    from .geometry import same_grid
    from .io import load

    if not region_path.is_file():
        raise ParameterError(f"atlas {image_path}: its region {region_path.name} is missing (each atlas image "
                             f"<id>{IMAGE_SUFFIX}.nii.gz needs <id>{REGION_SUFFIX}.nii.gz beside it)")
    key = tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in (image_path, region_path))
    if key in _CACHE:
        return _CACHE[key]._replace(name=name)
    vols = []
    for p in (image_path, region_path):
        try:
            vols.append(load(p))
        except BmevizError as exc:
            raise ParameterError(f"atlas file {p} cannot be read: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad atlas file
            raise ParameterError(f"atlas file {p} cannot be read: {type(exc).__name__}: {exc}") from None
    image, region = vols
    if not same_grid(image, region):
        raise ParameterError(f"atlas region {region_path} is not on the grid of its image {image_path.name} "
                             f"(shapes {region.shape} / {image.shape}, or the affines differ): redraw or resample it")
    mask = np.asarray(region.array) > 0
    if not mask.any():
        raise ParameterError(f"atlas region {region_path} is empty")
    atlas = Atlas(name, image, mask, str(image_path.resolve()), {})
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = atlas
    return atlas


def _strip(name: str) -> str:
    for ext in _NII:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def load_atlases(atlas: Any) -> list[Atlas]:
    """The atlases of a folder, a CSV manifest or a list of ``(Volume, mask)`` pairs.

    Parameters
    ----------
    atlas : str, path, or sequence of (Volume, mask)
        A folder of ``<id>_T1W.nii.gz`` with ``<id>_disease_region.nii.gz`` beside each;
        a ``.csv`` with columns ``image`` and ``region`` (relative paths are relative to
        the CSV); or pairs of a T1 Volume and its region (bool array or Volume on its grid).

    Every atlas is given the array orientation of the first (transposes and flips only, see
    :func:`orientation_like`): a folder whose scans were stored with other row, column or slice
    orders registers and trains as one.

    Raises
    ------
    ParameterError
        An empty folder, an image without its region, an unreadable file, a region not on
        its image's grid, or an empty region; the message names the file.
    """
    out = _load_atlases(atlas)
    ref = directions(out[0].image)
    return [out[0]] + [_oriented_atlas(a, orientation_like(a.image, ref)) for a in out[1:]]


def _load_atlases(atlas: Any) -> list[Atlas]:
    """:func:`load_atlases` before the orientation."""
    if isinstance(atlas, (str, os.PathLike)):
        path = Path(atlas)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if _strip(p.name).endswith(IMAGE_SUFFIX) and p.is_file())
            if not images:
                raise ParameterError(f"atlas folder {path} holds no <id>{IMAGE_SUFFIX}.nii.gz image (with "
                                     f"<id>{REGION_SUFFIX}.nii.gz beside it)")
            out = []
            for img in images:
                sid = _strip(img.name)[: -len(IMAGE_SUFFIX)]
                ext = img.name[len(_strip(img.name)):]
                out.append(_load_pair(sid, img, img.with_name(f"{sid}{REGION_SUFFIX}{ext}")))
            return out
        if path.is_file() and path.suffix.lower() == ".csv":
            try:
                with open(path, newline="", encoding="utf-8") as fh:
                    rows = list(csv.DictReader(fh))
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise ParameterError(f"atlas manifest {path} cannot be read: {exc}") from None
            if not rows or not {"image", "region"} <= set(rows[0]):
                raise ParameterError(f"atlas manifest {path} needs a header with columns image,region and one row "
                                     "per atlas")
            out = []
            for i, row in enumerate(rows):
                img, reg = (Path(row[k].strip()) for k in ("image", "region"))
                img, reg = (p if p.is_absolute() else path.parent / p for p in (img, reg))
                if not img.is_file():
                    raise ParameterError(f"atlas manifest {path}, row {i + 2}: image {img} does not exist")
                name = _strip(img.name)
                out.append(_load_pair(name[: -len(IMAGE_SUFFIX)] if name.endswith(IMAGE_SUFFIX) else name, img, reg))
            return out
        raise ParameterError(f"atlas {path}: not a folder of atlases or a .csv manifest")
    try:
        pairs = list(atlas)
    except TypeError:
        raise ParameterError(f"atlas must be a folder, a CSV manifest or a list of (Volume, mask); got "
                             f"{type(atlas).__name__}") from None
    if not pairs:
        raise ParameterError("atlas: the list of (Volume, mask) pairs is empty")
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, Atlas):  # already loaded (bmeviz.region_refine trains on a folder's atlases)
            out.append(pair)
            continue
        try:
            image, region = pair
        except (TypeError, ValueError):
            raise ParameterError(f"atlas[{i}] must be a (Volume, mask) pair") from None
        if not isinstance(image, Volume):
            raise ParameterError(f"atlas[{i}]: the image must be a bmeviz.Volume; got {type(image).__name__}")
        mask = np.asarray(region.array if isinstance(region, Volume) else region) > 0
        if mask.shape != image.shape or not mask.any():
            raise ParameterError(f"atlas[{i}]: the region must be a non-empty mask of shape {image.shape}; got "
                                 f"shape {mask.shape}")
        out.append(Atlas(f"atlas{i}", image, mask))
    return out


def _target_keys(volume: Volume) -> tuple[set[str], set[str]]:
    """The scan's ids (file name without extension, and without ``_T1W``) and resolved files."""
    ids, files = set(), set()
    for f in volume.metadata.get("source_files") or []:
        path = Path(str(f))
        stem = _strip(path.name)
        ids.add(stem[: -len(IMAGE_SUFFIX)] if stem.endswith(IMAGE_SUFFIX) else stem)
        try:
            files.add(str(path.resolve()))
        except OSError:
            pass
    return ids, files


def _is_target(atlas: Atlas, volume: Volume, keys: tuple[set[str], set[str]]) -> bool:
    """The atlas is the scan itself: the same id, the same file, or the same voxel data."""
    ids, files = keys
    if atlas.name in ids or (atlas.path is not None and atlas.path in files):
        return True
    if atlas.image.shape != volume.shape or not np.allclose(atlas.image.affine, volume.affine, atol=1e-3):
        return False
    return bool(np.array_equal(np.asarray(atlas.image.array), np.asarray(volume.array)))


def _describe(how: tuple) -> dict:
    return {"axes": [int(v) for v in how[0]], "flipped": [bool(v) for v in how[1]]}


def _oriented_atlas(a: Atlas, how: tuple | None) -> Atlas:
    if how is None:
        return a
    key = ("turned", how)
    if a.prep is not None and key in a.prep:
        return a.prep[key]
    out = Atlas(a.name, turned(a.image, how), turn(a.region, how), a.path, {} if a.prep is not None else None)
    if a.prep is not None:
        a.prep[key] = out
    return out
