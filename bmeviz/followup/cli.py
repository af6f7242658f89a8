"""``bmeviz followup BASELINE FOLLOWUP --out DIR``: the change between two visits.

Each visit takes a lesion mask (``--baseline-mask`` / ``--followup-mask``) or is outlined
with ``segment`` from its own options (``--baseline-reference...``, ``--followup-seed-mm``,
...). Prints the totals and the registration quality; writes the files of
:data:`bmeviz.followup.change.OUTPUTS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_cli"]


def _visit_options(args: argparse.Namespace, visit: str) -> dict:
    from ..cli import _triple

    get = lambda name: getattr(args, f"{visit}_{name}")  # noqa: E731
    opts: dict = {}
    if get("reference"):
        opts["reference"] = get("reference")
    elif get("reference_point"):
        opts["reference"] = _triple(get("reference_point"), f"--{visit}-reference-point")
    elif get("reference_point_mm"):
        opts["reference"] = {"point_mm": _triple(get("reference_point_mm"), f"--{visit}-reference-point-mm")}
    if get("reference_radius_mm") is not None:
        opts["reference_radius_mm"] = get("reference_radius_mm")
    if get("region"):
        opts["region"] = get("region")
    seeds = [_triple(s, f"--{visit}-seed") for s in get("seed") or []]
    seeds_mm = [_triple(s, f"--{visit}-seed-mm") for s in get("seed_mm") or []]
    if seeds:
        opts["seeds"] = seeds
    if seeds_mm:
        opts["seeds_mm"] = seeds_mm
    k = args.k
    if k is not None and k != "adaptive":
        try:
            k = float(k)
        except ValueError:
            from ..errors import ParameterError

            raise ParameterError(f"--k must be a number or 'adaptive'; got {k!r}") from None
    if k == "adaptive":
        k = None
    for key, value in (("rule", args.rule), ("k", k), ("edge", args.edge), ("min_volume_mm3", args.min_volume_mm3),
                       ("min_slices", args.min_slices)):
        if value is not None:
            opts[key] = value
    return opts


def _run(args: argparse.Namespace) -> int:
    from ..cli import _check_out_dir
    from .change import OUTPUTS, compare

    out = Path(args.out)
    inputs = [Path(p) for p in (args.baseline, args.followup, args.baseline_mask, args.followup_mask, args.region)
              if p]
    _check_out_dir(out, inputs, args.force, OUTPUTS)
    b_opts = _visit_options(args, "baseline")
    f_opts = _visit_options(args, "followup")
    res = compare(args.baseline, args.followup, baseline_mask=args.baseline_mask, followup_mask=args.followup_mask,
                  baseline_options=b_opts, followup_options=f_opts, region=args.region,
                  change_pct_threshold=args.change_pct, sdc_ml=args.sdc_ml, max_distance_mm=args.max_distance_mm)
    res.save(out, include_phi=args.include_phi, report=not args.no_report)
    q = res.registration.quality
    reg = res.registration
    print(f"registration: NCC {q['ncc_before']:.3f} -> {q['ncc_after']:.3f}, MI {q['mi_before']:.3f} -> "
          f"{q['mi_after']:.3f} (in the {q['measured_in']}); rotation {reg.rotation_deg:.2f} deg, translation "
          f"{reg.translation_mm:.1f} mm; {reg.seconds:.1f} s")
    cols = ["track", "status", "baseline_id", "followup_id", "baseline_ml", "followup_ml", "change_ml", "change_pct"]
    if len(res.table):
        print(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    t = res.totals
    print(f"total: baseline {t['baseline_ml']:.3f} mL, follow-up {t['followup_ml']:.3f} mL, change "
          f"{t['change_ml']:+.3f} mL" + (f" ({t['change_pct']:+.1f}%)" if t["change_pct"] is not None else "")
          + f"; {t['persisting']} persisting, {t['shrunk']} shrunk, {t['grown']} grown, {t['resolved']} resolved, "
          f"{t['new']} new")
    print(f"wrote: {out}")
    return 0


def add_cli(subparsers, command) -> None:
    """Add ``bmeviz followup`` to the ``bmeviz`` command."""
    from .match import MATCH_DEFAULTS

    p = subparsers.add_parser("followup", help="register a follow-up onto its baseline and measure BME change per lesion")
    p.add_argument("baseline", help="baseline scan (DICOM folder or NIfTI)")
    p.add_argument("followup", help="follow-up scan (DICOM folder or NIfTI)")
    p.add_argument("--out", required=True, help="output folder (change.csv, transform.tfm, change.png, report.html...)")
    p.add_argument("--region", help="bone region on the baseline grid: focuses the registration (default: "
                                    "--baseline-region)")
    for visit in ("baseline", "followup"):
        g = p.add_argument_group(f"{visit} lesions: a mask, or segment options")
        g.add_argument(f"--{visit}-mask", help=f"lesion mask of the {visit} (labels or 0/1) on its grid")
        g.add_argument(f"--{visit}-reference", help="normal-marrow mask on that visit's grid")
        g.add_argument(f"--{visit}-reference-point", help="Z,Y,X voxel in normal marrow of that visit")
        g.add_argument(f"--{visit}-reference-point-mm", help="X,Y,Z RAS mm in normal marrow (use = before negatives)")
        g.add_argument(f"--{visit}-reference-radius-mm", type=float, help="radius of the reference ball (default 8)")
        g.add_argument(f"--{visit}-region", help="search region (bone) on that visit's grid")
        g.add_argument(f"--{visit}-seed", action="append", metavar="Z,Y,X", help="lesion click (voxel); repeatable")
        g.add_argument(f"--{visit}-seed-mm", action="append", metavar="X,Y,Z", help="lesion click (RAS mm); repeatable")
    g = p.add_argument_group("segment options for both visits")
    g.add_argument("--rule", choices=["q3-iqr", "mean-sd", "percentile", "otsu"])
    g.add_argument("--k", help="k of the rule ('adaptive' for q3-iqr)")
    g.add_argument("--edge", choices=["threshold", "half-max"])
    g.add_argument("--min-volume-mm3", type=float)
    g.add_argument("--min-slices", type=int)
    g = p.add_argument_group("change")
    g.add_argument("--change-pct", type=float, default=MATCH_DEFAULTS["change_pct_threshold"],
                   help="relative change (%%) beyond which a lesion is shrunk/grown (default 25)")
    g.add_argument("--sdc-ml", type=float, help="smallest detectable change in mL, when known (raises the threshold "
                                                "for small lesions)")
    g.add_argument("--max-distance-mm", type=float, default=MATCH_DEFAULTS["max_distance_mm"],
                   help="pair lesions that do not overlap when their centroids are this close (default 10)")
    g = p.add_argument_group("output")
    g.add_argument("--no-report", action="store_true", help="skip report.html")
    g.add_argument("--include-phi", action="store_true", help="keep file paths and UIDs in provenance")
    g.add_argument("--force", action="store_true", help="write into a folder bmeviz did not create")
    command("followup")(_run)
