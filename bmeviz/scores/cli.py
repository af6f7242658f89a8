"""``bmeviz score``: SPARCC / Berlin / MOAKS / WORMS from a lesion mask and an anatomy label map.

Imported by :mod:`bmeviz.cli` (``_EXTENSION_MODULES``) to add the sub-command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_cli", "read_joint_lines"]


def add_cli(subparsers, command) -> None:
    """Add ``score`` to the ``bmeviz`` sub-commands and register its handler."""
    from .sparcc import DEFAULTS

    p = subparsers.add_parser(
        "score", help="semi-quantitative scores (SPARCC, Berlin, MOAKS, WORMS) from lesion outlines",
        description="Score the lesions of IMAGE in an anatomy label map (SIJ quadrants 1-8, knee subregions) "
                    "and write OUT/scores.csv (one row per unit; the points/grade column sums to the total), "
                    "OUT/scores.json and OUT/figures/slice_XXX.png. Rules and cut-offs: docs/scores.md.")
    p.add_argument("image", help="the scan (NIfTI or DICOM folder)")
    p.add_argument("--series", help="series key, UID, number or description (DICOM)")
    p.add_argument("--echo", type=float, help="echo number of a multi-echo series")
    p.add_argument("--volume", type=int, help="volume index of a 4D NIfTI")
    p.add_argument("--lesions", required=True, metavar="MASK", help="lesion mask or labels on the image grid")
    a = p.add_argument_group("anatomy (one of)")
    a.add_argument("--anatomy", metavar="LABELS", help="label map on the image grid (SIJ values 1-8 or named)")
    a.add_argument("--anatomy-names", metavar="TABLE", help="JSON {value: name} or CSV value,name for --anatomy")
    a.add_argument("--joint-lines", metavar="JSON", help="SIJ joint lines drawn on a few slices (see docs/scores.md); "
                                                        "with --region builds the quadrants")
    a.add_argument("--region", metavar="MASK", help="bone region for --joint-lines")
    a.add_argument("--snap-to", metavar="IMAGE", help="move each slice's joint line onto the dark articular line of "
                                                    "IMAGE (T1 on the same grid), within 4 mm")
    a.add_argument("--save-anatomy", metavar="FILE", help="also write the quadrant map built from --joint-lines (NIfTI)")
    p.add_argument("--scheme", required=True, choices=["sparcc", "berlin", "moaks", "worms"])
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--slices", metavar="FIRST-LAST", help="slices to score (SPARCC default: 6 chosen automatically)")
    f = p.add_mutually_exclusive_group()
    f.add_argument("--fluid-mask", metavar="M", help="SPARCC 'intense' reference: mask of CSF / presacral vessels")
    f.add_argument("--fluid-point-mm", metavar="X,Y,Z", help="SPARCC 'intense' reference: RAS point in fluid "
                                                           "(write --fluid-point-mm=-1,2,3 for negatives)")
    p.add_argument("--fluid-radius-mm", type=float, default=DEFAULTS["fluid_radius_mm"],
                   help=f"radius of the fluid ball (default {DEFAULTS['fluid_radius_mm']} mm)")
    p.add_argument("--deep-mm", type=float, default=DEFAULTS["deep_mm"], help="SPARCC 'deep' depth (default 10 mm)")
    p.add_argument("--intense-fraction", type=float, default=DEFAULTS["intense_fraction"],
                   help=f"SPARCC 'intense': lesion statistic >= this x fluid median (default {DEFAULTS['intense_fraction']})")
    p.add_argument("--intense-stat", default=DEFAULTS["intense_stat"], choices=["mean", "median", "p75", "p90", "max"])
    p.add_argument("--override", action="append", metavar="KEY=VALUE",
                   help="a reader's correction, recorded: SPARCC SLICE:JOINT:UNIT=POINTS (e.g. 9:right:deep=0), "
                        "graded UNIT=GRADE (e.g. right_upper_iliac=2); repeatable")
    p.add_argument("--no-figures", action="store_true", help="skip the per-slice PNGs")
    p.add_argument("--report", action="store_true", help="also write OUT/report.html (self-contained: the score, "
                                                       "the table, the slice figures)")
    command("score")(_score)


def read_joint_lines(path, *, volume, region=None) -> dict:
    """Joint lines from JSON: ``{"paths": [[[slice, row, col], ...], ...]}`` (as napari Shapes) or
    ``{"right": {"SLICE": [[row, col], ...]}, "left": {...}}``."""
    from ..errors import ParameterError, UnreadableFileError
    from .anatomy import lines_from_paths

    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UnreadableFileError(f"cannot read joint lines {path}: {e}") from None
    if isinstance(obj, dict) and "paths" in obj:
        return lines_from_paths(obj["paths"], volume=volume, region=region)
    if isinstance(obj, dict) and ({"right", "left"} & set(obj)):
        try:
            return {side: {int(k): v for k, v in (obj.get(side) or {}).items()} for side in ("right", "left")}
        except (TypeError, ValueError, AttributeError):
            raise ParameterError(f"{path}: right/left must map slice numbers to [[row, col], ...]") from None
    raise ParameterError(f"{path}: expected {{'paths': [...]}} or {{'right': {{slice: points}}, 'left': ...}}")


def _score(args: argparse.Namespace) -> int:
    from ..cli import _triple, load_from_args
    from ..errors import ParameterError
    from ..io import save_mask
    from ..pipeline import resolve_mask
    from .anatomy import load_anatomy, sij_quadrants
    from .outputs import score, write_scores

    vol = load_from_args(args)
    if bool(args.anatomy) == bool(args.joint_lines):
        raise ParameterError("give the anatomy as --anatomy LABELS or as --joint-lines JSON with --region MASK")
    if args.anatomy:
        anatomy = load_anatomy(args.anatomy, like=vol, names=args.anatomy_names)
    else:
        if not args.region:
            raise ParameterError("--joint-lines needs --region MASK (the bone: sacrum and ilia)")
        region = resolve_mask(args.region, vol, "--region")
        snap = None
        if args.snap_to:
            from ..io import load

            snap = load(args.snap_to)
            if snap.shape != vol.shape:
                raise ParameterError(f"--snap-to image has shape {snap.shape}; the image is {vol.shape}")
        anatomy = sij_quadrants(region, read_joint_lines(args.joint_lines, volume=vol, region=region), volume=vol,
                                snap_to=snap)
        if args.save_anatomy:
            save_mask(anatomy.labels, vol, args.save_anatomy)
    opts: dict = {"slices": args.slices, "overrides": args.override}
    if args.scheme == "sparcc":
        opts.update(fluid=args.fluid_mask, fluid_radius_mm=args.fluid_radius_mm, deep_mm=args.deep_mm,
                    intense_fraction=args.intense_fraction, intense_stat=args.intense_stat,
                    fluid_point_mm=_triple(args.fluid_point_mm, "--fluid-point-mm") if args.fluid_point_mm else None)
    elif args.fluid_mask or args.fluid_point_mm:
        raise ParameterError(f"--fluid-mask / --fluid-point-mm are for SPARCC; {args.scheme} does not use them")
    res = score(vol, args.lesions, anatomy, scheme=args.scheme, **opts)
    written = write_scores(res, vol, args.out, figures=not args.no_figures)
    if args.report:
        from ..io._atomic import atomic_write_text
        from .outputs import report_page

        atomic_write_text(Path(args.out) / "report.html", report_page(res, vol, figures=not args.no_figures))
    by = ", ".join(f"{k} {v}" for k, v in res.by_joint().items())
    print(f"{args.scheme.upper()} total {res.total} (max {res.params['maximum']}; {by}) on slices "
          f"{res.slices[0]}-{res.slices[-1]} -> {written['csv'].parent}")
    return 0
