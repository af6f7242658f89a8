"""Region assist on the real SIJ scans: Dice vs the manual regions, time, click robustness,
and the end-to-end effect on ``bmeviz.segment``.

    python benchmarks/region_sij.py                     # everything (a few minutes)
    python benchmarks/region_sij.py --no-segment        # region Dice and time only
    python benchmarks/region_sij.py --write-regions DIR # also write <id>_assisted_region.nii.gz
    python benchmarks/region_sij.py --atlas auto --no-segment   # + the atlas path, leave-one-out
    python benchmarks/region_sij.py --atlas auto --no-segment --stir-atlas   # + atlases on the STIR alone
    python benchmarks/region_sij.py --atlas auto --refine --write-regions DIR  # + the refiner (~16 min with --no-segment)
    python benchmarks/region_sij.py --atlas auto --no-segment --set threshold=0.5   # another atlas parameter
    python benchmarks/region_sij.py --atlas auto --refine --no-segment --refine-set 'train_seeds=[1,2]'  # refiner
    python benchmarks/region_sij.py --atlas auto --refine --no-segment --refine-set 'model="boosting"'  # its boosting

``--atlas auto`` uses the 7 scans of ../shared as the atlas folder (symlinks in a temporary
folder, ``<id>_T1W.nii.gz`` + ``<id>_disease_region.nii.gz``): each scan is outlined from the
other six, the scan itself being excluded by region_from_seeds (same id); ``--atlas DIR``
uses your folder. With ``--atlas``, ``--write-regions`` writes ``<id>_atlas_region.nii.gz``
(the atlas regions, STIR grid) instead of the classical ones, and the end-to-end comparison
uses them.

Data: ``../shared/data/sij-stir-dev`` and ``sij-t1-extra`` beside the project (never copied
into the repository); without them the script prints a skip message and exits 0.

Clicks are derived from the manual region, reproducibly, as a user would place them: the
region is restricted to its brighter half on the T1 (smoothed, so the dark joint line and
lesions are avoided) and, for the right ilium, the sacrum and the left ilium (RAS x below
-45 mm, within 20 mm, above +45 mm of the region's median x), the deepest point (maximum of
the distance transform, in mm) is the click. A second user: for each bone, a random point
(fixed seed) among those at least half as deep; the Dice between the two regions says how
much the result moves with the clicks.

End to end (scans with reader masks): ``segment`` with the normal-marrow mask as reference,
seeded (brightest STIR voxel per R11 component, as benchmarks/validate_sij.py) and region
only (no seeds), once with the manual region and once with the assisted one; mean Dice over
the four readers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEV = SHARED / "sij-stir-dev"
EXTRA = SHARED / "sij-t1-extra"
DEV_IDS = ("1007", "1013", "1234", "4386", "2014")
EXTRA_IDS = ("1001", "2016")
READERS = ("R11", "R12", "R21", "R22")
RESULTS = ROOT / "benchmarks" / "results"


def paths(sid: str) -> dict:
    if sid in EXTRA_IDS:
        return {"t1": EXTRA / f"{sid}_T1W.nii.gz", "region": EXTRA / f"{sid}_disease_region.nii.gz", "stir": None}
    return {"t1": DEV / "images" / f"{sid}_T1W.nii.gz", "region": DEV / "disease_region" / f"{sid}_disease_region.nii.gz",
            "stir": DEV / "images" / f"{sid}_STIR.nii.gz"}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def clicks_from_region(vol, region: np.ndarray, *, perturb: int | None = None) -> np.ndarray:
    """One click per bone (right ilium, sacrum, left ilium), from the manual region (see the
    module docstring); ``perturb`` = random seed of a second user's clicks."""
    sm = ndi.gaussian_filter(np.asarray(vol.array, np.float32), (0, 2, 2))
    bright = region & (sm >= np.median(sm[region]))
    bright = ndi.binary_opening(bright, np.ones((1, 3, 3), bool))
    edt = ndi.distance_transform_edt(bright, sampling=vol.spacing)
    idx = np.argwhere(bright)
    x = vol.index_to_ras(idx)[:, 0]
    xc = float(np.median(x))
    rng = None if perturb is None else np.random.default_rng(perturb)
    out = []
    for sel in (x - xc < -45, np.abs(x - xc) < 20, x - xc > 45):
        cand, depth = idx[sel], edt[tuple(idx[sel].T)]
        if rng is None:
            out.append(cand[int(np.argmax(depth))])
        else:
            ok = np.flatnonzero(depth >= 0.5 * depth.max())
            out.append(cand[int(rng.choice(ok))])
    return np.asarray(out, dtype=int)


def auto_atlas_dir(tmp: Path) -> Path:
    """A folder of symlinks to the 7 T1 scans and their manual regions (never copied)."""
    for sid in DEV_IDS + EXTRA_IDS:
        p = paths(sid)
        if p["t1"].is_file() and p["region"].is_file():
            (tmp / f"{sid}_T1W.nii.gz").symlink_to(p["t1"].resolve())
            (tmp / f"{sid}_disease_region.nii.gz").symlink_to(p["region"].resolve())
    return tmp


def run_region(sid: str, write: Path | None, atlas: Path | None = None, atlas_best: int | None = None,
               stir_atlas: bool = False, refine: bool = False) -> dict:
    import bmeviz
    from bmeviz.region import region_from_seeds

    p = paths(sid)
    t1 = bmeviz.load(p["t1"])
    manual = bmeviz.load(p["region"]).array > 0
    stir = bmeviz.load(p["stir"]) if p["stir"] else None
    seeds = clicks_from_region(t1, manual)
    seeds2 = clicks_from_region(t1, manual, perturb=int(sid))
    row: dict = {"id": sid, "seeds": seeds.tolist(), "seeds_perturbed": seeds2.tolist(),
                 "manual_ml": float(manual.sum() * t1.voxel_volume_mm3 / 1000)}
    res = region_from_seeds(t1, seeds=seeds, contrast="t1", on=stir)
    row["t1_dice"], row["t1_seconds"] = dice(res.mask.array, manual), res.info["seconds"]
    row["t1_ml"] = res.info["volume_ml"]
    res2 = region_from_seeds(t1, seeds=seeds2, contrast="t1", on=stir)
    row["t1_perturbed_dice"] = dice(res2.mask.array, manual)
    row["t1_click_agreement"] = dice(res2.mask.array, res.mask.array)
    if stir is not None:
        try:
            rs = region_from_seeds(stir, seeds=seeds, contrast="stir")
            row["stir_dice"], row["stir_seconds"] = dice(rs.mask.array, manual), rs.info["seconds"]
        except bmeviz.BmevizError as exc:
            row["stir_dice"], row["stir_error"] = 0.0, str(exc)
    row["_mask"] = res.mask.array
    ref = None
    if atlas is not None and refine:  # a refiner trained on the other scans only (this one excluded)
        from bmeviz.region_refine import train_refiner

        t = time.perf_counter()
        ref = train_refiner(atlas, exclude=[sid], validate=False)
        row["refiner_train_seconds"] = time.perf_counter() - t
        plain = region_from_seeds(t1, seeds=seeds, contrast="t1", on=stir, atlas=atlas, atlas_best=atlas_best)
        row["atlas_plain_dice"], row["atlas_plain_seconds"] = dice(plain.mask.array, manual), plain.info["seconds"]
        row["refiner_model"] = ref.model
        if ref.model == "boosting" and len(ref.models) > 1:  # its first stage alone, as the refiner of round 4
            from bmeviz.region_refine import Refiner

            one = Refiner(ref.models[:1], {**ref.params, "stages": 1}, ref.atlases)
            r1 = region_from_seeds(t1, seeds=seeds, contrast="t1", on=stir, atlas=atlas, atlas_best=atlas_best,
                                   refine=one)
            row["refined_1stage_dice"] = dice(r1.mask.array, manual)
        if ref.model == "boosting":  # the same refiner predicting every voxel (predict_step 1, as in round 5)
            full = Refiner(ref.models, {**ref.params, "predict_step": 1}, ref.atlases)
            rf = region_from_seeds(t1, seeds=seeds, contrast="t1", on=stir, atlas=atlas, atlas_best=atlas_best,
                                   refine=full)
            row["refined_step1_dice"] = dice(rf.mask.array, manual)
            row["refine_step1_seconds"] = rf.info["refine_seconds"]
            row["_step1"] = rf.mask.array
    if atlas is not None:
        ra = region_from_seeds(t1, seeds=seeds, contrast="t1", on=stir, atlas=atlas, atlas_best=atlas_best,
                               refine=ref)
        row["atlas_dice"], row["atlas_seconds"], row["atlas_ml"] = (dice(ra.mask.array, manual), ra.info["seconds"],
                                                                    ra.info["volume_ml"])
        row["atlas_used"], row["atlas_excluded"] = ra.info["atlases"], ra.info["excluded"]
        row["refine_seconds"] = ra.info.get("refine_seconds")
        if "_step1" in row:  # how far the default step moves the region from predicting every voxel
            row["step1_agreement"] = dice(row.pop("_step1"), ra.mask.array)
        row["atlas_ranking"] = ra.info["ranking"]
        row["atlas_agreement"], row["atlas_warning"] = ra.info["agreement"], ra.info["warning"]
        ra2 = region_from_seeds(t1, seeds=seeds2, contrast="t1", on=stir, atlas=atlas, atlas_best=atlas_best,
                                refine=ref)
        row["atlas_perturbed_dice"] = dice(ra2.mask.array, manual)
        row["atlas_click_agreement"] = dice(ra2.mask.array, ra.mask.array)
        if stir_atlas and stir is not None:  # no T1: the other scans' T1 atlases on the STIR itself
            from bmeviz.region_atlas import load_atlases

            others = [(a.image, a.region) for a in load_atlases(atlas) if a.name != sid]
            try:
                rs_ = region_from_seeds(stir, seeds=seeds, contrast="stir", atlas=others, atlas_best=atlas_best)
                row["stir_atlas_dice"], row["stir_atlas_warning"] = dice(rs_.mask.array, manual), rs_.info["warning"]
            except bmeviz.BmevizError as exc:
                row["stir_atlas_dice"], row["stir_atlas_error"] = 0.0, str(exc)
        row["_mask"] = ra.mask.array
    if write is not None:
        name = ("refined_region" if ref is not None else "atlas_region") if atlas is not None else "assisted_region"
        bmeviz.save_mask(row["_mask"], stir if stir is not None else t1, write / f"{sid}_{name}.nii.gz")
    return row


def run_segment(sid: str, assisted: np.ndarray) -> dict:
    import bmeviz

    vol = bmeviz.load(DEV / "images" / f"{sid}_STIR.nii.gz")
    normal = bmeviz.load(DEV / "normal_marrow" / f"{sid}_normal_marrow.nii.gz").array > 0
    manual = bmeviz.load(DEV / "disease_region" / f"{sid}_disease_region.nii.gz").array > 0
    readers = {r: bmeviz.load(DEV / "inflammation" / f"{sid}_inflammation_{r}.nii.gz").array > 0 for r in READERS}
    lab, n = ndi.label(readers["R11"], structure=np.ones((3, 3, 3), bool))
    seeds = np.asarray(ndi.maximum_position(vol.array, lab, np.arange(1, n + 1)), int).reshape(-1, 3)
    out = {}
    for name, region in (("manual", manual), ("assisted", assisted)):
        for mode, s in (("seeded", seeds), ("region-only", None)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = bmeviz.segment(vol, reference=normal, region=region, seeds=s)
                    m = res.labels > 0
                except bmeviz.BmevizError:
                    m = np.zeros(vol.shape, bool)
            out[f"{name} {mode}"] = float(np.mean([dice(m, r) for r in readers.values()]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-segment", action="store_true", help="skip the end-to-end segment() comparison")
    ap.add_argument("--write-regions", metavar="DIR", help="write <id>_assisted_region.nii.gz (STIR grid) here")
    ap.add_argument("--atlas", metavar="auto|DIR", help="also the atlas path: auto = the other scans of ../shared")
    ap.add_argument("--atlas-best", type=int, default=None,
                    help="atlases fused (best after the affine ranking; default: the library's, 4)")
    ap.add_argument("--ids", help="comma-separated scan ids (default all 7)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an atlas parameter (bmeviz.region_atlas.ATLAS_PARAMS), e.g. threshold=0.5 or "
                         "seeds=[1,2] (the value is JSON)")
    ap.add_argument("--refine", action="store_true",
                    help="with --atlas: also the refiner, trained for each scan on the other scans (honest "
                         "leave-one-out; about 1.5 minutes of training per scan); --refine-set model=\"boosting\" "
                         "for the boosting model")
    ap.add_argument("--refine-set", action="append", default=[], metavar="KEY=VALUE",
                    help="with --refine: override a refiner parameter (bmeviz.region_refine.REFINE_PARAMS), e.g. "
                         "train_seeds=[1,2] (the value is JSON)")
    ap.add_argument("--stir-atlas", action="store_true",
                    help="with --atlas: also the atlas path on the STIR alone (the scan's own T1 left out)")
    args = ap.parse_args(argv)
    from bmeviz.region_atlas import ATLAS_PARAMS
    from bmeviz.region_refine import REFINE_PARAMS

    if any(item.partition("=")[0] == "n_best" for item in args.set):
        ap.error("--set n_best: use --atlas-best N")
    for flag, items, params, what in (("--set", args.set, ATLAS_PARAMS, "atlas"),
                                      ("--refine-set", args.refine_set, REFINE_PARAMS, "refiner")):
        for item in items:  # KEY=JSON into the module's parameters (a list becomes a tuple)
            key, _, value = item.partition("=")
            if key not in params:
                ap.error(f"{flag} {item}: unknown {what} parameter {key!r}; known: {', '.join(params)}")
            val = json.loads(value)
            params[key] = tuple(val) if isinstance(val, list) else val
    if not DEV.is_dir():
        print(f"skip: SIJ data not found at {DEV} (it lives beside the project, never in the repository)")
        return 0
    write = Path(args.write_regions) if args.write_regions else None
    ids = [s for s in DEV_IDS] + [s for s in EXTRA_IDS if EXTRA.is_dir()]
    if args.ids:
        ids = [s for s in args.ids.split(",") if s in ids]
        if not ids:
            ap.error(f"--ids {args.ids}: none of these scans is in {DEV} or {EXTRA}")
    atlas = None
    if args.atlas == "auto":
        import tempfile

        tmpdir = tempfile.TemporaryDirectory(prefix="bmeviz-atlas-")
        atlas = auto_atlas_dir(Path(tmpdir.name))
    elif args.atlas:
        atlas = Path(args.atlas)
    rows = []
    head = (f"{'scan':6} {'T1 Dice':>8} {'s':>6} {'perturbed':>9} {'clicks agree':>12} {'STIR Dice':>9} "
            f"{'mL':>7} {'manual mL':>9}")
    if atlas is not None:
        head += f" | {'atlas Dice':>10} {'s':>6} {'perturbed':>9} {'clicks agree':>12} {'mL':>7} {'atl. agree':>10}  atlases"
    print(head)
    for sid in ids:
        row = run_region(sid, write, atlas, args.atlas_best, args.stir_atlas, args.refine and atlas is not None)
        rows.append(row)
        line = (f"{sid:6} {row['t1_dice']:8.3f} {row['t1_seconds']:6.2f} {row['t1_perturbed_dice']:9.3f} "
                f"{row['t1_click_agreement']:12.3f} {row.get('stir_dice', float('nan')):9.3f} {row['t1_ml']:7.1f} "
                f"{row['manual_ml']:9.1f}")
        if atlas is not None:
            line += (f" | {row['atlas_dice']:10.3f} {row['atlas_seconds']:6.1f} {row['atlas_perturbed_dice']:9.3f} "
                     f"{row['atlas_click_agreement']:12.3f} {row['atlas_ml']:7.1f} {row['atlas_agreement'] or float('nan'):10.2f}  "
                     f"{','.join(row['atlas_used'])}{'  WARNING' if row['atlas_warning'] else ''}")
            if "atlas_plain_dice" in row:
                line += (f" | {row['refiner_model']} refiner: trained in {row['refiner_train_seconds']:.0f} s, "
                         f"refine step {row['refine_seconds']:.1f} s; without it {row['atlas_plain_dice']:.3f} "
                         f"({row['atlas_plain_seconds']:.1f} s)")
            if "refined_1stage_dice" in row:
                line += f" | one stage {row['refined_1stage_dice']:.3f}"
            if "refined_step1_dice" in row:
                line += (f" | every voxel {row['refined_step1_dice']:.3f} ({row['refine_step1_seconds']:.1f} s, "
                         f"default step {row['refine_seconds']:.1f} s; regions agree {row['step1_agreement']:.3f})")
            if "stir_atlas_dice" in row:
                line += (f" | STIR atlas Dice {row['stir_atlas_dice']:.3f}"
                         f"{' WARNING' if row.get('stir_atlas_warning') else ''}"
                         f"{' ERROR ' + row['stir_atlas_error'][:60] if row.get('stir_atlas_error') else ''}")
        print(line, flush=True)
    dev = [r for r in rows if r["id"] in DEV_IDS] or rows
    print(f"mean (dev T1) {np.mean([r['t1_dice'] for r in dev]):.3f}; all {np.mean([r['t1_dice'] for r in rows]):.3f}; "
          f"max time {max(r['t1_seconds'] for r in rows):.2f} s")
    if atlas is not None:
        print(f"atlas: mean (dev) {np.mean([r['atlas_dice'] for r in dev]):.3f}; all "
              f"{np.mean([r['atlas_dice'] for r in rows]):.3f}; seconds {min(r['atlas_seconds'] for r in rows):.1f}-"
              f"{max(r['atlas_seconds'] for r in rows):.1f}")
        if any("atlas_plain_dice" in r for r in rows):
            print(f"refined (the rows' atlas Dice) vs without the refiner: mean (dev) "
                  f"{np.mean([r['atlas_plain_dice'] for r in dev]):.3f}; all "
                  f"{np.mean([r['atlas_plain_dice'] for r in rows]):.3f}")
        if any("refined_step1_dice" in r for r in rows):
            print(f"refined, every voxel: mean (dev) {np.mean([r['refined_step1_dice'] for r in dev]):.3f}; all "
                  f"{np.mean([r['refined_step1_dice'] for r in rows]):.3f}; refine step "
                  f"{np.mean([r['refine_step1_seconds'] for r in rows]):.1f} s against "
                  f"{np.mean([r['refine_seconds'] for r in rows]):.1f} s at the default step")
        if any("refined_1stage_dice" in r for r in rows):
            print(f"refined, first stage only: mean (dev) {np.mean([r['refined_1stage_dice'] for r in dev]):.3f}; all "
                  f"{np.mean([r['refined_1stage_dice'] for r in rows]):.3f}")
    if not args.no_segment:
        print("\nend to end: mean Dice vs the 4 readers (segment with the normal-marrow reference)")
        print(f"{'scan':6} {'manual seeded':>13} {'assisted seeded':>15} {'manual region-only':>18} "
              f"{'assisted region-only':>20}")
        for row in rows:
            if row["id"] in ("1007", "1013", "1234", "4386"):
                row["segment"] = run_segment(row["id"], row["_mask"])
                s = row["segment"]
                print(f"{row['id']:6} {s['manual seeded']:13.3f} {s['assisted seeded']:15.3f} "
                      f"{s['manual region-only']:18.3f} {s['assisted region-only']:20.3f}")
        seg = [r["segment"] for r in rows if "segment" in r]
        if not seg:
            seg = [{}]
        means = {k: float(np.mean([s[k] for s in seg])) for k in seg[0]}
        print("mean   " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()))
    for r in rows:
        r.pop("_mask", None)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ((f"region_sij_refine_{REFINE_PARAMS['model']}.json" if args.refine else "region_sij_atlas.json")
                     if atlas is not None
                     else "region_sij.json")
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}, indent=1, default=float))
    print(f"wrote {out}" + (f" and the regions to {write}" if write else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
