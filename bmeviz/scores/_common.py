"""What every scheme shares: the result type, slice ranges, overrides, lesion labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..volume import Volume

__all__ = ["ScoreResult", "parse_slices", "parse_overrides", "lesion_labels", "SCHEMES"]

SCHEMES = ("sparcc", "berlin", "moaks", "worms")


@dataclass(frozen=True)
class ScoreResult:
    """A scored scan: one row per scored unit, the total, and how it was reached.

    Attributes
    ----------
    scheme : str
    rows : pandas.DataFrame
        One row per unit (SPARCC: slice x joint x {4 quadrants, intense, deep}; graded schemes:
        quadrant / subregion). ``points`` (SPARCC) or ``grade`` sums to ``total``.
    total : int
    slices : list of int
        The slices scored (SPARCC: 6 consecutive).
    params : dict
        Parameters, how the slices were chosen, the fluid reference, the overrides (JSON-ready).
    """

    scheme: str
    rows: Any
    total: int
    slices: list
    params: dict
    _figure_data: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def value_column(self) -> str:
        return "points" if self.scheme == "sparcc" else "grade"

    def by_joint(self) -> dict:
        """Sum per joint (SIJ) or per bone (knee)."""
        col = "joint" if "joint" in self.rows else None
        if col is None:
            bone = self.rows["unit"].str.split("_").str[0]
            return {k: int(v) for k, v in self.rows.groupby(bone)[self.value_column].sum().items()}
        return {k: int(v) for k, v in self.rows.groupby(col)[self.value_column].sum().items()}

    def to_dict(self) -> dict:
        """JSON-ready summary (what scores.json holds, without the rows)."""
        from .._jsonable import jsonable

        return jsonable({"scheme": self.scheme, "total": self.total, "by_joint": self.by_joint(),
                         "slices": self.slices, "params": self.params})

    def __repr__(self) -> str:
        return f"ScoreResult({self.scheme}: total {self.total} over {len(self.rows)} units, slices {self.slices})"


def parse_slices(value: Any, n_slices: int) -> list[int] | None:
    """``'5-10'``, ``(5, 10)`` or a list of slice indices -> sorted list (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            if "-" in text:
                a, b = (int(t) for t in text.split("-", 1))
                out = list(range(a, b + 1))
            else:
                out = [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise ParameterError(f"slices must be FIRST-LAST (e.g. 5-10) or a comma list; got {value!r}") from None
    elif isinstance(value, tuple) and len(value) == 2:
        out = list(range(int(value[0]), int(value[1]) + 1))
    else:
        try:
            out = sorted(int(v) for v in value)
        except (TypeError, ValueError):
            raise ParameterError(f"slices must be FIRST-LAST or a list of integers; got {value!r}") from None
    if not out:
        raise ParameterError(f"slices {value!r} select no slice (FIRST must not exceed LAST)")
    bad = [s for s in out if not 0 <= s < n_slices]
    if bad:
        raise ParameterError(f"slices {bad} are outside the image (0-{n_slices - 1})")
    return sorted(set(out))


def parse_overrides(overrides: Any, *, scheme: str) -> dict:
    """Overrides as ``{key: value}``.

    SPARCC keys are ``(slice, joint, unit)`` or ``'SLICE:JOINT:UNIT'`` (unit one of the 4 quadrants,
    ``intense``, ``deep``) with 0 or 1 points; graded keys are unit names with a grade 0-3. A list
    of ``'KEY=VALUE'`` strings (the CLI's ``--override``) is accepted too.
    """
    if overrides is None:
        return {}
    items: list[tuple[Any, Any]] = []
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        for o in overrides:
            if not isinstance(o, str) or "=" not in o:
                raise ParameterError(f"override {o!r} must be KEY=VALUE (SPARCC: SLICE:JOINT:UNIT=POINTS, "
                                     f"graded: UNIT=GRADE)")
            k, v = o.rsplit("=", 1)
            items.append((k.strip(), v.strip()))
    out: dict = {}
    top = 1 if scheme == "sparcc" else 3
    for k, v in items:
        try:
            val = int(v)
        except (TypeError, ValueError):
            raise ParameterError(f"override {k}={v!r}: the value must be an integer") from None
        if not 0 <= val <= top:
            raise ParameterError(f"override {k}={val}: {'points are 0 or 1' if top == 1 else 'grades are 0-3'}")
        if scheme == "sparcc":
            if isinstance(k, str):
                parts = k.split(":")
                if len(parts) != 3:
                    raise ParameterError(f"SPARCC override {k!r} must be SLICE:JOINT:UNIT (e.g. 9:right:deep)")
                try:
                    key = (int(parts[0]), parts[1].strip().lower(), parts[2].strip().lower())
                except ValueError:
                    raise ParameterError(f"SPARCC override {k!r}: SLICE must be an integer") from None
            else:
                key = (int(k[0]), str(k[1]).lower(), str(k[2]).lower())
            if key[1] not in ("right", "left"):
                raise ParameterError(f"SPARCC override {k!r}: joint must be right or left")
            if key[2] not in ("upper_iliac", "lower_iliac", "upper_sacral", "lower_sacral", "intense", "deep"):
                raise ParameterError(f"SPARCC override {k!r}: unit must be a quadrant "
                                     "(upper_iliac, lower_iliac, upper_sacral, lower_sacral), intense or deep")
        else:
            key = str(k).strip().lower()
        out[key] = val
    return out


def lesion_labels(lesions: Any, volume: Volume) -> np.ndarray:
    """3D lesion labels (26-connected components, numbered in scan order) from a mask, label map,
    Volume or NIfTI path on ``volume``'s grid. An empty mask is valid (a scan without BME scores 0)."""
    from ..lesions import label

    if isinstance(lesions, (str, bytes)) or hasattr(lesions, "__fspath__"):
        from ..io import load

        lesions = load(lesions)
    if isinstance(lesions, Volume):
        if lesions.shape != volume.shape or not np.allclose(lesions.affine, volume.affine, atol=1e-3):
            raise ParameterError(f"lesions are on another grid (shape {lesions.shape}) than the image "
                                 f"{volume.shape}; resample them onto the image first")
        lesions = lesions.array
    arr = np.asarray(lesions)
    if arr.shape != volume.shape:
        raise ParameterError(f"lesions has shape {arr.shape}; the image is {volume.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ParameterError(f"lesions must be a mask or integer labels, not {arr.dtype}")
    mask = np.nan_to_num(arr.astype(float)) > 0
    if not mask.any():
        return np.zeros(volume.shape, np.int32)
    return label(mask, connectivity=26).astype(np.int32)
