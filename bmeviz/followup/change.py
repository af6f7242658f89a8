"""``compare()``: two visits in, a lesion-by-lesion change table and its outputs out.

The path (the CLI, napari and notebooks all call this):

1. **Each visit on its own**: lesions from the given mask (labels kept; a binary mask is
   split into 26-connected lesions), or outlined with :func:`bmeviz.segment` from that
   visit's options (its own reference, region and seeds). Each lesion is measured on its own
   visit's grid and against that visit's own normal marrow (ratio, z-score): raw
   intensities are never compared across visits.
2. **Register** the follow-up onto the baseline (:func:`bmeviz.followup.register.register`,
   rigid, Mattes MI, focused on ``region`` when given).
3. **Bring the follow-up over**: its image (linear) and its lesion ids (nearest neighbour)
   onto the baseline grid.
4. **Match** lesions into tracks and give each a status (:mod:`bmeviz.followup.match`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._jsonable import jsonable
from ..errors import ParameterError
from ..volume import Volume
from .match import MATCH_DEFAULTS, match_lesions
from .register import Registration, register

__all__ = ["compare", "FollowupResult", "OUTPUTS"]

#: Files :meth:`FollowupResult.save` writes.
OUTPUTS = ("change.csv", "followup_on_baseline.nii.gz", "followup_mask_on_baseline.nii.gz", "transform.tfm",
           "baseline_mask.nii.gz", "followup_mask.nii.gz", "change.png", "checkerboard.png", "report.html",
           "provenance.json")


@dataclass(frozen=True)
class Visit:
    """One visit: its image, lesion ids on its own grid, the lesion table and how they were got."""

    volume: Volume = field(repr=False)
    labels: np.ndarray = field(repr=False)
    table: Any = field(repr=False)
    source: str = "mask"  # 'mask' or 'segment'
    reference: Any = field(repr=False, default=None)  # ReferenceStats or None
    result: Any = field(repr=False, default=None)  # bmeviz.Result when segmented

    @property
    def total_ml(self) -> float:
        return float(self.table["volume_ml"].sum()) if len(self.table) else 0.0


def _load(image: Any, name: str) -> Volume:
    if isinstance(image, Volume):
        return image
    if isinstance(image, (str, os.PathLike)):
        from ..io import load

        return load(image)
    raise ParameterError(f"{name} must be a bmeviz.Volume or a path to a scan (DICOM folder or NIfTI); "
                         f"got {type(image).__name__}")


def _labels_of(mask: Any, volume: Volume, name: str) -> np.ndarray:
    """Lesion ids on ``volume``'s grid: label images kept, binary masks split into lesions."""
    from ..lesions import label

    if isinstance(mask, (str, os.PathLike)):
        from ..io import load

        mask = load(mask)
    if isinstance(mask, Volume):
        if mask.shape != volume.shape or not np.allclose(mask.affine, volume.affine, atol=1e-3):
            raise ParameterError(f"{name} is not on its visit's grid (shape {mask.shape} vs {volume.shape}, or "
                                 "another affine): give the mask drawn on that scan")
        mask = mask.array
    arr = np.asarray(mask)
    if arr.shape != volume.shape:
        raise ParameterError(f"{name} has shape {arr.shape}; its visit is {volume.shape}: it must be on the same grid")
    if arr.dtype != bool and not np.issubdtype(arr.dtype, np.number):
        raise ParameterError(f"{name} must hold lesion ids or 0/1, not {arr.dtype}")
    arr = np.nan_to_num(arr)
    if arr.dtype != bool and np.any((arr != np.round(arr)) | (arr < 0)):
        raise ParameterError(f"{name} must hold non-negative whole lesion ids (or 0/1); it has fractions or negatives")
    ints = arr.astype(np.int64)
    if ints.max() <= 1:
        return label(ints > 0, connectivity=26).astype(np.int32)
    return ints.astype(np.int32)


def _options(opts: Any, name: str) -> dict:
    if opts is None:
        return {}
    if isinstance(opts, Mapping):
        return dict(opts)
    for attr in ("kwargs", "to_kwargs", "as_kwargs", "to_dict"):  # an options object (bmeviz.options)
        if hasattr(opts, attr):
            return dict(getattr(opts, attr)())
    raise ParameterError(f"{name} must be a dict of segment() options; got {type(opts).__name__}")


def _visit(volume: Volume, mask: Any, opts: dict, name: str) -> Visit:
    from ..lesions import lesion_table
    from ..pipeline import resolve_reference, segment
    from ..threshold import reference_stats

    if mask is not None:
        labels = _labels_of(mask, volume, f"{name}_mask")
        stats = None
        if opts.get("reference") is not None:
            ref, _ = resolve_reference(opts["reference"], volume, radius_mm=opts.get("reference_radius_mm"))
            stats = reference_stats(np.asarray(volume.array, float), ref)
        table = lesion_table(labels, np.asarray(volume.array), affine=volume.affine, reference=stats)
        return Visit(volume=volume, labels=labels, table=table, source="mask", reference=stats)
    if opts.get("reference") is None:
        raise ParameterError(f"the {name} visit needs a lesion mask ({name}_mask=...) or segment options with its "
                             f"normal-marrow reference ({name}_options={{'reference': ...}}; CLI --{name}-mask or "
                             f"--{name}-reference / --{name}-reference-point)")
    res = segment(volume, **opts)
    return Visit(volume=volume, labels=np.asarray(res.labels, np.int32), table=res.table, source="segment",
                 reference=res.threshold.stats, result=res)


@dataclass(frozen=True)
class FollowupResult:
    """What :func:`compare` found: both visits, the registration, the change table."""

    baseline: Visit = field(repr=False)
    followup: Visit = field(repr=False)
    registration: Registration = field(repr=False)
    table: Any = field(repr=False)  # pandas.DataFrame, one row per lesion track
    followup_on_baseline: np.ndarray = field(repr=False)
    followup_labels_on_baseline: np.ndarray = field(repr=False)
    region: np.ndarray | None = field(repr=False, default=None)
    params: dict = field(repr=False, default_factory=dict)

    @property
    def totals(self) -> dict:
        """Baseline, follow-up and change (mL, %), and the number of tracks per status."""
        b, f = self.baseline.total_ml, self.followup.total_ml
        counts = {s: int((self.table["status"] == s).sum()) for s in ("persisting", "shrunk", "grown", "resolved", "new")}
        return {"baseline_ml": b, "followup_ml": f, "change_ml": f - b,
                "change_pct": 100.0 * (f - b) / b if b > 0 else None,
                "baseline_lesions": int(len(self.baseline.table)), "followup_lesions": int(len(self.followup.table)),
                **counts}

    def __repr__(self) -> str:
        t = self.totals
        q = self.registration.quality
        return (f"FollowupResult(baseline_ml={t['baseline_ml']:.3f}, followup_ml={t['followup_ml']:.3f}, "
                f"change_ml={t['change_ml']:+.3f}, tracks={len(self.table)}, ncc_after={q['ncc_after']:.3f})")

    def provenance(self, *, include_phi: bool = False) -> dict:
        """Both visits, the registration (parameters and quality), matching rules and totals."""
        from ..result import _input_name
        from .._version import __version__

        def visit(v: Visit) -> dict:
            md = v.volume.metadata
            out = {"name": _input_name(md, include_phi), "sequence": md.get("sequence"),
                   "shape": list(v.volume.shape), "spacing_mm": [round(s, 6) for s in v.volume.spacing],
                   "affine": np.round(v.volume.affine, 6).tolist(), "rescale": md.get("rescale"),
                   "lesions_from": v.source, "lesions": int(len(v.table)), "total_ml": v.total_ml,
                   "reference": None if v.reference is None else v.reference.to_dict()}
            if include_phi:
                out["description"] = md.get("description")
                out["files"] = md.get("source_files")
                out["series_uid"] = md.get("series_uid")
            if v.result is not None:
                out["segment"] = v.result.provenance(include_phi=include_phi)["params"]
                out["threshold"] = v.result.threshold.to_dict()
            return out

        return jsonable({
            "software": {"name": "bmeviz", "version": __version__, "command": "followup"},
            "baseline": visit(self.baseline), "followup": visit(self.followup),
            "registration": self.registration.to_dict(), "matching": self.params.get("matching"),
            "totals": self.totals,
        })

    def save(self, out_dir: str | os.PathLike, *, include_phi: bool = False, figures: bool = True,
             report: bool = True) -> dict[str, Path]:
        """Write the follow-up outputs into ``out_dir``, each atomically (see ``docs/followup.md``)."""
        import SimpleITK as sitk

        from ..io import save_mask, save_volume
        from ..io._atomic import atomic_path, atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        with atomic_path(out / "change.csv") as tmp:
            self.table.to_csv(tmp, index=False, float_format="%.6g")
        paths["table"] = out / "change.csv"
        b = self.baseline.volume
        paths["followup_on_baseline"] = save_volume(b, out / "followup_on_baseline.nii.gz",
                                                    array=self.followup_on_baseline, dtype=np.float32)
        paths["followup_mask_on_baseline"] = save_mask(self.followup_labels_on_baseline, b,
                                                       out / "followup_mask_on_baseline.nii.gz")
        paths["baseline_mask"] = save_mask(self.baseline.labels, b, out / "baseline_mask.nii.gz")
        paths["followup_mask"] = save_mask(self.followup.labels, self.followup.volume, out / "followup_mask.nii.gz")
        with atomic_path(out / "transform.tfm") as tmp:
            sitk.WriteTransform(self.registration.transform, str(tmp))
        paths["transform"] = out / "transform.tfm"
        if figures:
            from .figures import save_change_figure, save_checkerboard

            paths["change"] = save_change_figure(self, out / "change.png")
            paths["checkerboard"] = save_checkerboard(self, out / "checkerboard.png")
        if report:
            from .report import save_followup_report

            paths["report"] = save_followup_report(self, out / "report.html", include_phi=include_phi)
        paths["provenance"] = atomic_write_text(out / "provenance.json",
                                                json.dumps(self.provenance(include_phi=include_phi), indent=2) + "\n")
        return paths


def compare(
    baseline: Any,
    followup: Any,
    *,
    baseline_mask: Any = None,
    followup_mask: Any = None,
    baseline_options: Any = None,
    followup_options: Any = None,
    region: Any = None,
    registration: Mapping | None = None,
    min_overlap: float = MATCH_DEFAULTS["min_overlap"],
    max_distance_mm: float = MATCH_DEFAULTS["max_distance_mm"],
    change_pct_threshold: float = MATCH_DEFAULTS["change_pct_threshold"],
    sdc_ml: float | None = MATCH_DEFAULTS["sdc_ml"],
) -> FollowupResult:
    """Register a follow-up onto its baseline, match the lesions and measure their change.

    Parameters
    ----------
    baseline, followup : Volume or path
        The two visits (DICOM folder or NIfTI); any grids.
    baseline_mask, followup_mask : mask, optional
        Lesions of each visit on that visit's grid (array, Volume or NIfTI path): label
        ids (kept) or a binary mask (split into 26-connected lesions).
    baseline_options, followup_options : dict, optional
        :func:`bmeviz.segment` options of each visit (``reference``, ``region``, ``seeds``,
        ``seeds_mm``, ``rule``, ...): used to outline a visit without a mask, and its
        ``reference`` to measure each visit against its own normal marrow.
    region : mask on the baseline grid, optional
        Bone region for the registration (metric and quality); default the baseline
        options' ``region``.
    registration : dict, optional
        Options of :func:`bmeviz.followup.register.register` (``sampling``, ``margin_mm``,
        ``warn_ncc``, ``min_ncc``, ...).
    min_overlap, max_distance_mm, change_pct_threshold, sdc_ml
        Matching and status rules (:mod:`bmeviz.followup.match`).

    Returns
    -------
    FollowupResult
        ``.table`` (pandas, one row per lesion track), ``.totals``, ``.registration``,
        ``.save(dir)``.
    """
    from ..pipeline import resolve_mask
    from ._sitk import require_sitk

    require_sitk()  # before any work: say up front when registration cannot run
    b_vol = _load(baseline, "baseline")
    f_vol = _load(followup, "followup")
    b_opts = _options(baseline_options, "baseline_options")
    f_opts = _options(followup_options, "followup_options")
    if region is None:
        region = b_opts.get("region")
    region_mask = resolve_mask(region, b_vol, "region")
    b_visit = _visit(b_vol, baseline_mask, b_opts, "baseline")
    f_visit = _visit(f_vol, followup_mask, f_opts, "followup")
    reg_opts = dict(registration or {})
    reg = register(b_vol, f_vol, region=region_mask, **reg_opts)
    image_on_b = reg.resample(f_vol, b_vol)
    labels_on_b = reg.resample(f_vol, b_vol, labels=True, array=f_visit.labels).astype(np.int32)
    inv = np.linalg.inv(reg.matrix_ras)
    fc = f_visit.table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]].to_numpy(float)
    fc_on_b = fc @ inv[:3, :3].T + inv[:3, 3] if len(fc) else fc
    matching = {"min_overlap": float(min_overlap), "max_distance_mm": float(max_distance_mm),
                "change_pct_threshold": float(change_pct_threshold),
                "sdc_ml": None if sdc_ml is None else float(sdc_ml)}
    table = match_lesions(b_visit.labels, labels_on_b, b_visit.table, f_visit.table,
                          followup_centroids_on_baseline=fc_on_b, **matching)
    return FollowupResult(baseline=b_visit, followup=f_visit, registration=reg, table=table,
                          followup_on_baseline=image_on_b, followup_labels_on_baseline=labels_on_b,
                          region=region_mask, params={"matching": matching, "registration": reg_opts})
