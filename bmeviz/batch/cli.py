"""``bmeviz batch``: its flags (the segment options generated from the options model) and handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..options import SegmentOptions, add_arguments
from .runner import plan, run


def add_cli(subparsers: Any, command: Any) -> None:
    """Add ``bmeviz batch`` to the CLI (called by :func:`bmeviz.cli.build_parser`)."""
    p = subparsers.add_parser(
        "batch", help="segment every scan of a manifest (CSV) on Dask; cohort table and plot",
        description="Segment every scan of a manifest on Dask. Writes OUT/<study_id>/ (as bmeviz segment), "
                    "OUT/cohort.csv and OUT/cohort.png. Reruns skip studies that are up to date. "
                    "The manifest format: docs/batch.md.")
    p.add_argument("manifest", help="CSV: study_id,image,[series],reference_mask | reference_point "
                                    "[+reference_radius_mm],[region_mask],[seeds],[seeds_mm],[rule],[k],[edge],[seg]...")
    p.add_argument("--out", required=True, help="output folder")
    g = p.add_argument_group("where it runs")
    g.add_argument("--workers", type=int, help="local worker processes, 1 thread each (default: one per core; "
                                               "0: in this process, no Dask)")
    g.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--dashboard", action="store_true", help="serve the Dask dashboard of the local cluster (:8787)")
    g.add_argument("--force", action="store_true", help="redo studies whose outputs are up to date")
    g.add_argument("--strict", action="store_true", help="missing input files stop the run (default: those fail)")
    g.add_argument("--check", action="store_true", help="validate the manifest and show what would run; run nothing")
    g.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    g = p.add_argument_group("defaults for rows that do not set them")
    g.add_argument("--series", help="series key, UID, number or description (DICOM)")
    g.add_argument("--echo", type=float, help="echo of multi-echo series")
    add_arguments(p, groups={"threshold": g, "growing and clean-up": g, "reference": g})
    g = p.add_argument_group("outputs")
    g.add_argument("--no-overlay", action="store_true", help="skip overlay.png")
    g.add_argument("--seg", action="store_true", help="also write bme_seg.dcm for DICOM sources (a row's seg column overrides)")
    g.add_argument("--report", action="store_true", help="also write report.html (a row's report column overrides)")
    g.add_argument("--include-phi", action="store_true",
                   help="keep paths, UIDs and (in the SEG) patient identifiers; off: none")
    command("batch")(_cli)


def _cli(args: Any) -> int:
    names = ("series", "echo") + SegmentOptions.names()  # the flags add_arguments generated
    defaults = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    common = dict(force=args.force, strict=args.strict, overlay=not args.no_overlay, seg=args.seg,
                  report=args.report, include_phi=args.include_phi)
    if args.check:
        table = plan(args.manifest, args.out, **common, **defaults)
        print(table.to_string(index=False))
        counts = table["action"].value_counts()
        print(f"\n{len(table)} studies: {int(counts.get('run', 0))} to run, {int(counts.get('skip', 0))} up to date, "
              f"{int(counts.get('fail', 0))} with missing inputs")
        return 0
    table = run(args.manifest, args.out, workers=args.workers, scheduler=args.scheduler,
                progress=not args.no_progress, dashboard=args.dashboard, **common, **defaults)
    counts = table["status"].value_counts()
    n_failed = int(counts.get("failed", 0))
    for _, r in table[table["status"] == "failed"].iterrows():
        print(f"failed: {r['study_id']}: {r['error']}")
    print(f"{len(table)} studies: {int(counts.get('ok', 0))} ok, {n_failed} failed, "
          f"{int(counts.get('skipped', 0))} up to date (skipped)")
    out = Path(args.out)
    print(f"wrote: {out / 'cohort.csv'}, {out / 'cohort.png'}")
    return 1 if n_failed else 0
