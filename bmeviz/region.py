"""Region assist: a bone-marrow search region from one click per bone.

The search region ("where BME is looked for") is the marrow of the bones of the joint:
on the sacroiliac joint the sacrum and both ilia, on the knee the femur, tibia and
patella. This module outlines it from a T1-weighted scan of the same session (marrow fat
bright, cortex a dark line) or from the fluid-sensitive scan itself, starting from one
click (seed) per bone, and writes it on the grid of the fluid-sensitive scan.

How it works (classical image processing, no trained model):

1. The image is smoothed in-plane (slices are thick: 3.3 mm on the SIJ protocol) and a
   *dark-line map* is computed per slice: the black top-hat (grey closing minus image)
   with a disk of 2.5 mm, high on cortex, joint lines and fascia, low inside marrow.
2. For each seed, the marrow's own statistics (median and IQR in a 5 mm ball) set an
   intensity band and the depth a dark line needs to count as a border.
3. On the seed's slice the marrow is flooded (2D, 4-connected) from the seed inside the
   band and inside the borders, with thin bridges cut by an opening. The border depth is
   chosen per slice as the deepest level before the flooded area jumps (a leak through
   a gap of the cortex into soft tissue), capped in area.
4. The outline is carried slice by slice to both sides: the previous slice's outline,
   eroded, seeds the next slice, whose flood must stay within a few mm of it and never
   uses a laxer border level than the seed's slice; it stops where the bone ends.
5. The union regrows in-plane by a few mm inside the band, stopped by the strictest
   borders; it is widened onto the cortex.
6. Holes (lesions, vessels, dark trabeculae: all inside marrow) are filled slice by slice
   after a small 3D closing; the union over seeds is the region, resampled (nearest
   neighbour) onto the grid of ``on``.

Limits, measured in ``docs/region.md``: the cortex of the SIJ on T1 has gaps and the
marrow of these patients is not much brighter than muscle, so the region is a starting
point to correct with the brush, not a replacement for a drawn region.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ._arrays import ball
from .errors import ParameterError
from .volume import Volume

__all__ = ["region_from_seeds", "RegionResult", "PARAMS", "add_cli"]

#: Tunable parameters of the outline (see the module docstring); pass overrides as
#: ``params={...}`` to :func:`region_from_seeds`.
PARAMS: dict[str, Any] = {
    "smooth_px": 1.0,  # in-plane Gaussian sigma (pixels) before everything
    "tophat_mm": 2.5,  # disk radius of the dark-line (black top-hat) map
    "stats_mm": 5.0,  # ball radius around a seed for the marrow statistics
    "band_low_iqr": 2.5,  # band: median - this * IQR ...
    "band_high_iqr": 2.5,  # ... to median + this * IQR
    "levels": (0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.13, 0.16, 0.20),  # border depth / marrow median
    "jump": 2.5,  # a level whose area exceeds jump * the previous one is a leak
    "max_area_cm2": 60.0,  # area cap of one bone on its seed slice
    "grow": 1.4,  # a propagated slice may have at most grow * the previous area (+ slack)
    "follow_mm": 3.0,  # a propagated slice stays within this distance of the previous outline
    "erode_mm": 1.5,  # the previous outline is eroded by this much to seed the next slice
    "min_area_mm2": 15.0,
    "min_line_mm2": 20.0,  # dark specks smaller than this (texture, vessels) are not borders
    "start_mm": 3.0,  # the flood starts from a disk of this radius around the click  # propagation stops below this area
    "no_laxer": True,   # propagated slices never use a more lenient border level than the seed slice
    "regrow_mm": 8.0,  # after the outline: geodesic regrowth in-plane within the band (mm)
    "pad_mm": 1.2,  # the outline is widened by this much in-plane (onto the cortex)
    "close_mm": 3.0,  # 3D closing radius before the slice-wise hole filling
    "bright_check": 0.10,  # T1: a seed's marrow median must exceed this quantile of the body
}

CONTRASTS = ("t1", "stir", "auto")


class RegionResult(NamedTuple):
    """What :func:`region_from_seeds` returns: the mask on the output grid and a record."""

    mask: Volume
    """Bool mask (Volume on the grid of ``on``, or of the input)."""
    info: dict
    """Seeds (voxel and mm), contrast, per-seed statistics, voxels, volume (mL), seconds."""


# ----------------------------------------------------------------------------- helpers
def _disk(radius_mm: float, spacing_rc: tuple[float, float]) -> np.ndarray:
    ry = max(1, int(radius_mm / spacing_rc[0]))
    rx = max(1, int(radius_mm / spacing_rc[1]))
    y, x = np.ogrid[-ry:ry + 1, -rx:rx + 1]
    return (y * spacing_rc[0]) ** 2 + (x * spacing_rc[1]) ** 2 <= radius_mm ** 2 + 1e-6


def _ball(radius_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """A ball structuring element of ``radius_mm`` on the anisotropic grid (:func:`bmeviz._arrays.ball`)."""
    n = [int(radius_mm / s) for s in spacing]
    return ball([-k for k in n], [k + 1 for k in n], (0, 0, 0), spacing, radius_mm, rtol=1e-6 / radius_mm ** 2)


def _local(array: np.ndarray, seed, radius_mm: float, spacing) -> np.ndarray:
    """Values of ``array`` within ``radius_mm`` of voxel ``seed``."""
    box = tuple(slice(max(0, int(p) - int(radius_mm / s)), min(n, int(p) + int(radius_mm / s) + 1))
                for p, s, n in zip(seed, spacing, array.shape))
    grids = np.meshgrid(*[(np.arange(b.start, b.stop) - p) * s for b, p, s in zip(box, seed, spacing)],
                        indexing="ij")
    return array[box][sum(g ** 2 for g in grids) <= radius_mm ** 2 + 1e-6]


def _box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty 2D mask, widened by ``margin`` pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
            slice(max(0, cols[0] - margin), cols[-1] + margin + 1))


def _flood(free: np.ndarray, start: np.ndarray, cut: np.ndarray | None) -> np.ndarray:
    """Pixels of ``free`` (opened by ``cut``) 4-connected to ``start``."""
    from scipy import ndimage as ndi

    f = ndi.binary_opening(free, cut) if cut is not None else free
    lab, _ = ndi.label(f)
    ids = np.unique(lab[start & f])
    ids = ids[ids > 0]
    return np.isin(lab, ids) if ids.size else np.zeros_like(free)


def _stable_flood(tophat: np.ndarray, ok: np.ndarray, depth_ref: float, start: np.ndarray, cut, *,
                  levels, jump: float, max_area: float, min_line: int) -> tuple[np.ndarray, int]:
    """The largest flood from ``start`` before a leak.

    Borders are the pixels whose dark-line depth exceeds ``level * depth_ref``; levels go
    from strict (shallow lines already block) to lenient (only deep cortex blocks). The
    result is the flood of the last level before the area jumps by ``jump`` or passes
    ``max_area`` (empty if even the strictest level passes it), and the index of its level."""
    from scipy import ndimage as ndi

    prev = None
    for i, level in enumerate(levels):
        border = tophat > level * depth_ref
        lab, n = ndi.label(border, structure=np.ones((3, 3), bool))
        if n:  # dark specks (texture, vessels) are not borders: only lines of some extent
            keep = np.bincount(lab.ravel()) > min_line
            keep[0] = False
            border = keep[lab]
        c = _flood((ok & ~border) | start, start, cut)
        area = int(c.sum())
        if prev is not None and (area > max_area or area > jump * prev.sum() + 50):
            return prev, i - 1
        if prev is None and area > max_area:
            return np.zeros_like(c), 0
        prev = c
    return (prev, len(levels) - 1) if prev is not None else (np.zeros_like(start), 0)


def _outline(image: np.ndarray, spacing, seeds: np.ndarray, p: dict) -> tuple[np.ndarray, list[dict]]:
    """The marrow mask (bool, image grid) grown from ``seeds`` (N, 3) voxel indices."""
    from scipy import ndimage as ndi

    sp_rc = (spacing[1], spacing[2])
    sm = ndi.gaussian_filter(image.astype(np.float32), (0, p["smooth_px"], p["smooth_px"]))
    n_r, n_c = (2 * max(1, int(round(p["tophat_mm"] / s))) + 1 for s in sp_rc)
    tophat = ndi.grey_closing(sm, size=(1, n_r, n_c)) - sm  # square window: separable, fast
    cut = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    px = spacing[1] * spacing[2]
    erode = _disk(p["erode_mm"], sp_rc)
    follow = _disk(p["follow_mm"], sp_rc)
    min_px = p["min_area_mm2"] / px
    min_line = int(p["min_line_mm2"] / px)
    yy, xx = np.ogrid[:image.shape[1], :image.shape[2]]
    out = np.zeros(image.shape, bool)
    allowed = np.zeros(image.shape, bool)
    per_seed = []
    for seed in seeds:
        z0, y0, x0 = (int(v) for v in seed)
        vals = _local(sm, seed, p["stats_mm"], spacing)
        q1, med, q3 = np.percentile(vals, [25, 50, 75])
        iqr = max(float(q3 - q1), 0.05 * abs(float(med)), 1e-6)
        band = (sm >= med - p["band_low_iqr"] * iqr) & (sm <= med + p["band_high_iqr"] * iqr)
        if p["regrow_mm"]:
            allowed |= band & (tophat <= p["levels"][0] * abs(med))
        start = ((yy - y0) * spacing[1]) ** 2 + ((xx - x0) * spacing[2]) ** 2 <= p["start_mm"] ** 2
        start &= band[z0]
        start[y0, x0] = True
        c0, chosen = _stable_flood(tophat[z0], band[z0], abs(med), start, cut, levels=p["levels"], jump=p["jump"],
                           max_area=p["max_area_cm2"] * 100.0 / px, min_line=min_line)
        slices = [z0] if c0.any() else []
        out[z0] |= c0
        for step in (1, -1):
            prev, z = c0, z0 + step
            while c0.any() and 0 <= z < image.shape[0]:
                # work on the bounding box of the previous outline: the flood cannot leave it by more
                # than follow_mm
                box = _box(prev, follow.shape[0] // 2 + 3)
                start = ndi.binary_erosion(prev[box], erode) & band[z][box]
                if start.sum() < min_px:
                    break
                near = ndi.binary_dilation(prev[box], follow)
                c = np.zeros_like(prev)
                levels = p["levels"][:chosen + 1] if p["no_laxer"] else p["levels"]
                c[box], _ = _stable_flood(tophat[z][box], band[z][box] & near, abs(med), start, cut,
                                          levels=levels, jump=p["jump"], max_area=p["grow"] * prev.sum() + 50,
                                          min_line=min_line)
                if c.sum() < min_px:
                    break
                out[z] |= c
                slices.append(z)
                prev, z = c, z + step
        per_seed.append({"median": float(med), "iqr": float(iqr), "slices": sorted(slices),
                         "voxels": int(out.sum())})
    if p["regrow_mm"]:  # a limited in-plane regrowth inside the band, strictest borders
        steps = int(round(p["regrow_mm"] / min(sp_rc)))
        out = ndi.binary_dilation(out, np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool), iterations=steps,
                                  mask=allowed | out)
    if p["pad_mm"]:  # the flood stops inside the cortex; the region's border is the cortex
        out = ndi.binary_dilation(out, _disk(p["pad_mm"], sp_rc)[None])
    if p["close_mm"]:
        out = ndi.binary_closing(out, _ball(p["close_mm"], spacing))
    for z in range(out.shape[0]):
        out[z] = ndi.binary_fill_holes(out[z])
    return out, per_seed


def _on_grid(mask: np.ndarray, source: Volume, on: Volume | None) -> Volume:
    """``mask`` (on ``source``'s grid) on the grid of ``on`` (default ``source``): the same
    array when the grids agree within a fraction of a voxel, else nearest-neighbour
    resampling (:func:`bmeviz.geometry.to_grid`; other frames of reference are refused)."""
    from .geometry import same_grid, to_grid

    meta = {"description": "bone region (bmeviz region assist)"}
    src = Volume(mask.astype(bool), source.affine, dict(source.metadata))
    if on is None or same_grid(src, on):
        target = source if on is None else on
        return Volume(mask.astype(bool), target.affine, meta)
    res = to_grid(Volume(mask.astype(np.uint8), source.affine, dict(source.metadata)), on, order=0)
    return Volume(np.asarray(res.array) > 0, on.affine, meta)


def _resolve_contrast(volume: Volume, contrast: str) -> str:
    if contrast not in CONTRASTS:
        raise ParameterError(f"contrast must be one of {', '.join(CONTRASTS)}; got {contrast!r}")
    if contrast != "auto":
        return contrast
    seq = str(volume.metadata.get("sequence") or "").upper()
    if seq.startswith("T1") or not seq:
        return "t1"  # T1-weighted, or unknown: marrow assumed bright
    return "stir"  # a fluid-sensitive or other named sequence


def _seed_indices(volume: Volume, seeds, seeds_mm) -> np.ndarray:
    pts = []
    for name, given, to_index in (("seeds", seeds, None), ("seeds_mm", seeds_mm, volume.ras_to_index)):
        if given is None:
            continue
        arr = np.asarray(given, dtype=float)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
            raise ParameterError(f"{name} must be (N, 3) finite numbers, one row per bone; got shape {arr.shape}")
        idx = np.rint(to_index(arr) if to_index is not None else arr).astype(int)
        for raw, i in zip(arr, idx):
            if not volume.contains_index(i):
                where = "RAS mm" if to_index is not None else "voxel (slice, row, column)"
                raise ParameterError(f"{name}: {where} {tuple(round(float(v), 2) for v in raw)} is outside the image "
                                     f"(shape {volume.shape}): click inside the bone")
        pts.append(idx)
    if not pts:
        raise ParameterError("give at least one seed (seeds= voxel or seeds_mm= RAS mm), one click per bone")
    return np.concatenate(pts)


def region_from_seeds(volume: Volume, *, seeds: Any = None, seeds_mm: Any = None, contrast: str = "auto",
                      on: Volume | None = None, params: dict | None = None, atlas: Any = None,
                      atlas_best: int | None = None, refine: Any = None) -> RegionResult:
    """Outline the bone marrow of the clicked bones; the search region for :func:`bmeviz.segment`.

    Parameters
    ----------
    volume : Volume
        A T1-weighted scan (marrow bright, cortex dark) or the fluid-sensitive scan itself.
    seeds : (N, 3) array_like, optional
        One voxel ``(slice, row, column)`` of ``volume`` per bone, well inside its marrow.
    seeds_mm : (N, 3) array_like, optional
        The same as RAS mm ``(x, y, z)``; both may be given.
    contrast : {'auto', 't1', 'stir'}
        ``'auto'`` reads the sequence from the metadata (fluid-sensitive names -> ``'stir'``).
        On ``'t1'`` every seed must be in bright marrow.
    on : Volume, optional
        The fluid-sensitive scan whose grid the region is written on (same frame of
        reference); default: the grid of ``volume``.
    params : dict, optional
        Overrides of :data:`PARAMS` (or, with ``atlas``, of
        :data:`bmeviz.region_atlas.ATLAS_PARAMS`).
    atlas : str, path or sequence of (Volume, mask), optional
        Outline by registering drawn regions of other patients instead (a folder of
        ``<id>_T1W.nii.gz`` + ``<id>_disease_region.nii.gz``, a CSV manifest with
        ``image,region`` columns, or pairs); see :mod:`bmeviz.region_atlas`. The scan
        itself is never its own atlas. Needs SimpleITK; about 20 s for 6 atlases.
    atlas_best : int, optional
        How many atlases (the best after the affine ranking) are fused; default 4.
    refine : Refiner or path, optional
        With ``atlas`` on a T1 scan: redraw the atlas region's border with a classifier
        trained on the atlas folder (:func:`bmeviz.region_refine.train_refiner`, or
        ``bmeviz region-refiner``); about 4 s more. Needs scikit-learn.

    Returns
    -------
    RegionResult
        ``mask`` (bool Volume on the grid of ``on``) and ``info``.

    Raises
    ------
    ParameterError
        No seed, a seed outside the image, a seed in dark tissue on T1, an unknown
        parameter, or nothing grown.
    """
    if not isinstance(volume, Volume):
        raise ParameterError(f"volume must be a bmeviz.Volume (bmeviz.load(path)); got {type(volume).__name__}")
    if on is not None and not isinstance(on, Volume):
        raise ParameterError(f"on must be a bmeviz.Volume (the fluid-sensitive scan); got {type(on).__name__}")
    if refine is not None and atlas is None:
        raise ParameterError("refine needs atlas: the refiner redraws the border of the atlas region")
    p = dict(PARAMS)
    unknown = set(params or {}) - set(PARAMS)
    if unknown and atlas is None:
        raise ParameterError(f"unknown region parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(PARAMS)}")
    if atlas is None:
        p.update(params or {})
    t0 = time.perf_counter()
    kind = _resolve_contrast(volume, contrast)
    idx = _seed_indices(volume, seeds, seeds_mm)
    image = np.asarray(volume.array, dtype=np.float32)
    if not np.all(np.isfinite(image)):
        image = np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0)
    if kind == "t1":
        body = image[image > 0.1 * np.percentile(image, 99)]
        floor = float(np.quantile(body, p["bright_check"])) if body.size else 0.0
        for i, s in enumerate(idx):
            med = float(np.median(_local(image, s, 2.0, volume.spacing)))
            if med < floor:
                raise ParameterError(
                    f"seed {i + 1} at voxel {tuple(int(v) for v in s)} is in dark tissue on this T1 (median "
                    f"{med:.4g} < {floor:.4g}, the {p['bright_check']:.0%} quantile of the body): click inside "
                    "the bright marrow of the bone, not on cortex, muscle or fluid (or use contrast='stir')")
    atlas_info = None
    if atlas is not None:
        from .region_atlas import atlas_outline

        mask, atlas_info = atlas_outline(volume, idx, atlas, n_best=atlas_best, params=params, contrast=kind,
                                         refine=refine)
        per_seed = []
    else:
        mask, per_seed = _outline(image, volume.spacing, idx, p)
    if not mask.any():
        raise ParameterError("nothing was outlined from these seeds: click well inside the marrow of each bone")
    out = _on_grid(mask, volume, on)
    vox = int(out.array.sum())
    info = {
        "contrast": kind,
        "seeds": idx.tolist(),
        "seeds_mm": [[round(float(v), 3) for v in r] for r in volume.index_to_ras(idx)],
        "per_seed": per_seed,
        "voxels": vox,
        "volume_ml": vox * out.voxel_volume_mm3 / 1000.0,
        "resampled": not (on is None or (on.shape == volume.shape and np.allclose(on.affine, volume.affine, atol=1e-3))),
        "seconds": time.perf_counter() - t0,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
    }
    if atlas_info is not None:
        info["method"] = "atlas"
        del info["params"]
        info.update(atlas_info)
        info["seconds"] = time.perf_counter() - t0
    else:
        info["method"] = "classical"
    return RegionResult(out, info)


# ----------------------------------------------------------------------------- CLI
def add_cli(subparsers, command) -> None:
    """``bmeviz region IMAGE --seed-mm=X,Y,Z ... --out REGION.nii.gz [--on FLUID_IMAGE] [--atlas DIR]``."""
    p = subparsers.add_parser("region", help="outline the bone-marrow search region from one click per bone")
    p.add_argument("image", nargs="?", help="T1-weighted scan (or the fluid-sensitive scan itself): DICOM or NIfTI")
    p.add_argument("--manifest", metavar="CASES.csv",
                   help="instead of IMAGE: one region per row of a CSV (case_id,image,seeds_mm[,seeds][,on]) into "
                        "--out-dir, the atlases and the refiner read once (docs/region.md)")
    p.add_argument("--out-dir", metavar="DIR", help="with --manifest: DIR/<case_id>_region.nii.gz and DIR/regions.csv")
    p.add_argument("--series", help="series key, UID, number or description of IMAGE (DICOM)")
    p.add_argument("--echo", type=float, help="echo number of a multi-echo series")
    p.add_argument("--volume", type=int, help="volume index of a 4D NIfTI")
    p.add_argument("--seed", action="append", metavar="Z,Y,X", help="voxel (slice,row,column) in a bone; repeatable")
    p.add_argument("--seed-mm", action="append", metavar="X,Y,Z",
                   help="RAS mm in a bone; repeatable; write --seed-mm=-12.5,40.2,3 for negatives")
    p.add_argument("--contrast", choices=CONTRASTS, default="auto", help="t1 (marrow bright), stir, or auto")
    p.add_argument("--on", metavar="FLUID_IMAGE", help="write the region on this scan's grid (default IMAGE)")
    p.add_argument("--out", help="output mask, .nii.gz (written atomically)")
    p.add_argument("--atlas", metavar="DIR_OR_CSV",
                   help="outline by registering drawn regions of other patients: a folder of <id>_T1W.nii.gz + "
                        "<id>_disease_region.nii.gz, or a CSV with image,region columns (needs SimpleITK)")
    p.add_argument("--atlas-best", type=int, default=None, metavar="N",
                   help="with --atlas: fuse the N best-matching atlases (default 4)")
    p.add_argument("--refine", metavar="REFINER.joblib",
                   help="with --atlas on a T1: redraw the atlas region's border with a refiner trained on the atlas "
                        "folder (bmeviz region-refiner; needs scikit-learn)")
    command("region")(_cli_region)


def _cli_region(args) -> int:
    from .cli import _triple, load_from_args
    from .io import load, save_mask

    if args.atlas_best is not None and not args.atlas:
        raise ParameterError("--atlas-best needs --atlas")
    if args.refine and not args.atlas:
        raise ParameterError("--refine needs --atlas: the refiner redraws the border of the atlas region")
    if args.manifest:
        return _cli_manifest(args)
    if args.out_dir:
        raise ParameterError("--out-dir goes with --manifest; for one scan give IMAGE and --out REGION.nii.gz")
    if not args.image or not args.out:
        raise ParameterError("give IMAGE and --out REGION.nii.gz (or --manifest CASES.csv and --out-dir DIR)")
    out = Path(args.out)
    if not str(out).endswith((".nii", ".nii.gz")):
        raise ParameterError(f"--out {out}: the region is a NIfTI mask; end the name in .nii.gz")
    for src in (args.image, args.on):
        if src and Path(src).exists() and out.resolve() == Path(src).resolve():
            raise ParameterError(f"--out {out} would overwrite the input {src}; choose another file")
    vol = load_from_args(args)
    on = load(args.on) if args.on else None
    seeds = [_triple(s, "--seed") for s in args.seed or []]
    seeds_mm = [_triple(s, "--seed-mm") for s in args.seed_mm or []]
    res = region_from_seeds(vol, seeds=seeds or None, seeds_mm=seeds_mm or None, contrast=args.contrast, on=on,
                            atlas=args.atlas, atlas_best=args.atlas_best, refine=args.refine)
    save_mask(res.mask.array, on if on is not None else vol, out)
    info = res.info
    how = info["contrast"] if not args.atlas else f"atlases {', '.join(info['atlases'])}"
    if info.get("refiner"):
        how += f", refined ({'U-Net' if info['refiner'].get('model') == 'unet' else 'boosting'})"
    print(f"region: {info['voxels']} voxels, {info['volume_ml']:.1f} mL from {len(info['seeds'])} seed(s) "
          f"({how}), {info['seconds']:.2f} s")
    print(f"wrote: {out}  (use it with: bmeviz segment FLUID_IMAGE --region {out} ...)")
    return 0


def _cli_manifest(args) -> int:
    import sys

    from .region_cohort import regions_from_manifest

    given = [f for f, v in (("IMAGE", args.image), ("--out", args.out), ("--seed", args.seed),
                            ("--seed-mm", args.seed_mm), ("--on", args.on), ("--series", args.series),
                            ("--echo", args.echo), ("--volume", args.volume)) if v]
    if given:
        raise ParameterError(f"--manifest: {', '.join(given)} belong in the manifest's rows (case_id,image,seeds_mm,"
                             "seeds,on), not on the command line")
    if not args.out_dir:
        raise ParameterError("--manifest needs --out-dir DIR")
    table = regions_from_manifest(args.manifest, args.out_dir, atlas=args.atlas, atlas_best=args.atlas_best,
                                  refine=args.refine, contrast=args.contrast,
                                  progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    ok = [r for r in table if r["status"] == "ok"]
    later = [r["seconds"] for r in ok[1:]]
    per = f"; {sum(later) / len(later):.2f} s per scan after the first" if later else ""
    print(f"regions: {len(ok)} of {len(table)} case(s) written to {args.out_dir}{per}; table: "
          f"{Path(args.out_dir) / 'regions.csv'}")
    return 0 if len(ok) == len(table) else 1
