"""Graded schemes: 0-3 per quadrant / subregion by the share of it that is BME.

- **Berlin** (SIJ; the Berlin method as cited by the SPA imaging group, doi:10.1136/ard.2010.147033):
  per quadrant, over the slices through the cartilaginous joint,
  0 none, 1 < 33 %, 2 33-66 %, 3 > 66 % of the quadrant with BME; max 24.
- **MOAKS** (knee; Hunter et al., Osteoarthritis Cartilage 2011;19:990-1002): BML size per subregion,
  0 none, 1 < 33 %, 2 33-66 %, 3 > 66 % of the subregion's volume. (The < 10 % / 10-75 % cut-offs in
  MOAKS are for cartilage, not BML.)
- **WORMS** (knee; Peterfy et al., Osteoarthritis Cartilage 2004;12:177-190): bone marrow abnormality
  per region, 0 none, 1 < 25 %, 2 25-50 %, 3 > 50 % of the region.

Boundaries: grade 0 is exactly no BME voxel; a share equal to a cut-off goes to the higher grade
(Berlin / MOAKS 33 % -> 2; 66 % -> 2, since 3 needs *more than* 66 %); WORMS 25 % -> 2, 50 % -> 2
(3 needs more than 50 %). In short: grade 1 for 0 < share < c1, grade 2 for c1 <= share <= c2,
grade 3 for share > c2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ..volume import Volume
from ._common import ScoreResult, lesion_labels, parse_overrides, parse_slices
from .anatomy import Anatomy

__all__ = ["score_graded", "grade", "CUTOFFS"]

#: (c1, c2) share cut-offs per scheme (fractions), and the citation.
CUTOFFS: dict[str, tuple[float, float]] = {"berlin": (0.33, 0.66), "moaks": (0.33, 0.66), "worms": (0.25, 0.50)}
CITATIONS = {
    "berlin": "Berlin SIJ method (doi:10.1136/ard.2010.147033)",
    "moaks": "MOAKS BML size (Hunter et al. 2011, doi:10.1016/j.joca.2011.05.004)",
    "worms": "WORMS bone marrow abnormality (Peterfy et al. 2004, doi:10.1016/j.joca.2003.11.003)",
}


def grade(share: float, scheme: str) -> int:
    """The 0-3 grade of a BME ``share`` (0-1) under ``scheme``'s cut-offs.

    >>> [grade(s, "worms") for s in (0.0, 0.001, 0.2499, 0.25, 0.50, 0.5001)]
    [0, 1, 1, 2, 2, 3]
    >>> [grade(s, "moaks") for s in (0.0, 0.3299, 0.33, 0.66, 0.6601)]
    [0, 1, 2, 2, 3]
    """
    if scheme not in CUTOFFS:
        raise ParameterError(f"scheme must be one of {sorted(CUTOFFS)}; got {scheme!r}")
    c1, c2 = CUTOFFS[scheme]
    if not share > 0:
        return 0
    if share < c1:
        return 1
    if share <= c2:
        return 2
    return 3


def _band(g: int, scheme: str) -> str:
    c1, c2 = (round(100 * c) for c in CUTOFFS[scheme])
    return {0: "none", 1: f"< {c1}%", 2: f"{c1}-{c2}%", 3: f"> {c2}%"}[g]


def score_graded(image: Volume, lesions: Any, anatomy: Anatomy, *, scheme: str, slices: Any = None,
                 overrides: Any = None) -> ScoreResult:
    """Berlin, MOAKS or WORMS grades of ``lesions`` per unit of ``anatomy``.

    Parameters
    ----------
    image : Volume
        The scan (its grid and voxel size).
    lesions : mask, label map, Volume or path
    anatomy : Anatomy
        SIJ quadrants for Berlin; knee subregions (or any named map) for MOAKS / WORMS.
    scheme : {'berlin', 'moaks', 'worms'}
    slices : optional
        Restrict to these slices (Berlin default: every slice with quadrants, i.e. where the joint
        line was drawn or interpolated -- the cartilaginous joint; MOAKS / WORMS default: all).
    overrides : dict or list of 'UNIT=GRADE'
        A reader's corrections (recorded).

    Returns
    -------
    ScoreResult
        One row per unit with ``bme_share`` and ``grade``; ``rows.grade.sum() == total``.
    """
    if scheme not in CUTOFFS:
        raise ParameterError(f"scheme must be one of {sorted(CUTOFFS)}; got {scheme!r}")
    if not isinstance(anatomy, Anatomy):
        raise ParameterError(f"anatomy must be a bmeviz.scores.Anatomy; got {type(anatomy).__name__}")
    if scheme == "berlin" and anatomy.kind != "sij":
        raise ParameterError(f"Berlin needs an SIJ quadrant map (labels 1-8); this anatomy is {anatomy.kind!r}")
    if scheme in ("moaks", "worms") and anatomy.kind == "sij":
        raise ParameterError(f"{scheme.upper()} scores knee subregions; this anatomy is an SIJ quadrant map")
    if anatomy.labels.shape != image.shape:
        raise ParameterError(f"anatomy has shape {anatomy.labels.shape}; the image is {image.shape}")
    lab3 = lesion_labels(lesions, image)
    chosen = parse_slices(slices, image.shape[0])
    how = "given (--slices)" if chosen is not None else "every slice with anatomy labels"
    if chosen is None:
        chosen = anatomy.slices()
    sel = np.zeros(image.shape[0], bool)
    sel[chosen] = True
    an = np.where(sel[:, None, None], anatomy.labels, 0)
    vox_mm3 = float(np.prod(image.spacing))
    names = anatomy.names
    by_lower = {str(n).lower(): n for n in names.values()}
    over = {by_lower.get(k, k): v for k, v in parse_overrides(overrides, scheme=scheme).items()}
    unknown = [k for k in over if k not in names.values()]
    if unknown:
        raise ParameterError(f"overrides name unknown units {unknown}; units are: {', '.join(names.values())}")
    flat_an = an.ravel()
    n_unit = np.bincount(flat_an, minlength=max(names) + 1)
    n_bme = np.bincount(flat_an, weights=(lab3.ravel() > 0), minlength=max(names) + 1)
    rows = []
    for value, name in names.items():
        nu, nb = int(n_unit[value]), int(n_bme[value])
        share = nb / nu if nu else 0.0
        g = grade(share, scheme) if nu else 0
        ids = sorted(int(v) for v in np.unique(lab3[(an == value) & (lab3 > 0)])) if nb else []
        if not nu:
            reason = "unit not in the anatomy on the scored slices"
        elif nb:
            reason = f"BME {100 * share:.1f}% of the unit ({nb * vox_mm3 / 1000:.2f} mL; lesion {', '.join(map(str, ids))}): {_band(g, scheme)}"
        else:
            reason = "no BME"
        row = dict(scheme=scheme, unit=name, label=value, unit_voxels=nu, unit_volume_mm3=round(nu * vox_mm3, 2),
                   bme_voxels=nb, bme_volume_mm3=round(nb * vox_mm3, 3), bme_share=round(share, 4), grade=g,
                   lesion=";".join(map(str, ids)), reason=reason)
        if anatomy.kind == "sij":
            row["joint"] = "right" if value <= 4 else "left"
        rows.append(row)
    import pandas as pd

    df = pd.DataFrame(rows)
    df["auto_grade"] = df["grade"]
    df["overridden"] = False
    for key, val in over.items():
        i = df.index[df["unit"] == key][0]
        old = int(df.at[i, "grade"])
        df.at[i, "grade"] = val
        df.at[i, "overridden"] = True
        df.at[i, "reason"] = f"{df.at[i, 'reason']}; overridden by the reader: {old} -> {val}"
    total = int(df["grade"].sum())
    c1, c2 = CUTOFFS[scheme]
    params = {"rule": CITATIONS[scheme], "cutoffs": {"grade1": f"0 < share < {c1}", "grade2": f"{c1} <= share <= {c2}",
                                                       "grade3": f"share > {c2}"},
              "slices": {"how": how}, "anatomy": anatomy.source, "auto_total": int(df["auto_grade"].sum()),
              "overrides": [{"unit": k, "grade": v} for k, v in over.items()], "maximum": 3 * len(names)}
    return ScoreResult(scheme, df, total, [int(s) for s in chosen], params,
                       {"lesions": lab3, "anatomy": anatomy, "markers": {}})
