"""``bmeviz validate``: the command over :func:`bmeviz.validate.validate`."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from ..errors import ParameterError

__all__ = ["add_cli", "parse_set", "parse_sessions"]


def _value(text: str) -> Any:
    t = text.strip()
    low = t.lower()
    if low in {"none", "null"}:
        return None
    if low in {"true", "false"}:
        return low == "true"
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    return t


def parse_set(items: list[str] | None) -> dict:
    """``--set name=value`` options for :func:`bmeviz.segment` (numbers, true/false, none, text).

    >>> parse_set(["edge=half-max", "k=2", "min_slices=1", "upper=none"])
    {'edge': 'half-max', 'k': 2, 'min_slices': 1, 'upper': None}
    """
    out = {}
    for item in items or []:
        name, sep, val = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ParameterError(f"--set {item!r}: give name=value, e.g. --set edge=half-max")
        out[name] = _value(val)
    return out


def _radius(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        raise ParameterError(f"--radius-mm {text!r}: give MIN,MAX in mm, e.g. 6,10") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise ParameterError(f"--radius-mm {text!r}: give MIN,MAX in mm, e.g. 6,10")
    return parts[0], parts[1]


def parse_sessions(text: str | None) -> dict | None:
    """``--sessions "R1=R11+R12;R2=R21+R22"``: which reader masks are sessions of one reader.

    >>> parse_sessions("A=A1+A2;B=B1")
    {'A': ['A1', 'A2'], 'B': ['B1']}
    """
    if not text:
        return None
    out = {}
    for item in filter(None, (x.strip() for x in text.split(";"))):
        name, sep, members = item.partition("=")
        names = [m.strip() for m in members.split("+") if m.strip()]
        if not sep or not name.strip() or not names:
            raise ParameterError(f"--sessions {item!r}: give READER=MASK+MASK, e.g. R1=R11+R12;R2=R21+R22")
        out[name.strip()] = names
    return out


def _run(args: argparse.Namespace) -> int:
    from . import read_manifest, sij_cases, validate
    from .study import region_in_dir

    if (args.manifest is None) == (args.sij_dir is None):
        raise ParameterError("give either a MANIFEST.csv or --sij-dir DIR (not both)")
    skipped: list[dict] = []
    if args.sij_dir is not None:
        cases, skipped = sij_cases(args.sij_dir, region_dir=args.region_dir, region_label=args.region_label)
    else:
        cases = read_manifest(args.manifest)
        if args.region_dir is not None:
            from dataclasses import replace

            new = []
            for c in cases:
                q = region_in_dir(args.region_dir, c.case_id)
                if q is None:
                    skipped.append({"case_id": c.case_id, "reason": f"no {args.region_label} region in --region-dir"})
                    new.append(c)
                else:
                    new.append(replace(c, alt_regions={**c.alt_regions, args.region_label: q}))
            cases = new
    if args.cases:
        want = [x.strip() for x in args.cases.split(",") if x.strip()]
        unknown = sorted(set(want) - {c.case_id for c in cases})
        if unknown:
            raise ParameterError(f"--cases: no such case(s) {', '.join(unknown)}; have {', '.join(c.case_id for c in cases)}")
        cases = [c for c in cases if c.case_id in want]
    for note in skipped:
        print(f"note: case {note['case_id']}: {note['reason']}", file=sys.stderr)
    # the command as run, with folders reduced to their last name (no paths in the report)
    def name(path):
        return None if path is None else ".../" + str(path).rstrip("/").split("/")[-1]

    shown = ["bmeviz", "validate"]
    for flag, val in (("", name(args.manifest)), ("--sij-dir", name(args.sij_dir)), ("--out", name(args.out)),
                      ("--region-dir", name(args.region_dir)), ("--users", args.users), ("--seed", args.seed),
                      ("--reference-mode", args.reference_mode), ("--modes", args.modes),
                      ("--click-reader", args.click_reader), ("--radius-mm", args.radius_mm),
                      ("--cases", args.cases), ("--jobs", args.jobs), ("--doc", name(args.doc))):
        if val is not None:
            shown += [flag, str(val)] if flag else [str(val)]
    for item in args.set or []:
        shown += ["--set", item]
    v = validate(cases, n_users=args.users, seed=args.seed, reference_mode=args.reference_mode, modes=args.modes,
                 click_reader=args.click_reader, options=parse_set(args.set), radius_mm=_radius(args.radius_mm),
                 sessions=parse_sessions(args.sessions),
                 jobs=args.jobs, out=args.out, doc=args.doc, skipped=skipped,
                 command=" ".join(shlex.quote(s) for s in shown))
    s = v.summary
    print(f"{len(s['cases'])} case(s), {s['run']['n_runs']} segment() calls, {s['run']['seconds']:.1f} s")
    for key, o in s["overall"].items():
        bud = o["between_user_dice"]
        print(f"  {key:<22} Dice vs readers {o['dice_mean']:.2f}"
              + ("" if bud != bud else f"  between-user Dice {bud:.2f}  volume CV {o['volume_cv_mean']:.0%}"))
    print(f"  readers: inter-reader Dice {s['readers']['inter_dice']:.2f}")
    for a in s["acceptance"]:
        value = f"{a['value']:.0%}" if "CV" in a["criterion"] else f"{a['value']:.2f}"
        print(f"  [{'met' if a['pass'] else 'NOT met'}] {a['criterion']}: {value} (target {a['target']}); "
              f"{a['detail']}")
    for name, p in v.paths.items():
        print(f"wrote {p}")
    return 0


def add_cli(subparsers: Any, command: Any) -> None:
    """Add ``bmeviz validate`` (called by :func:`bmeviz.cli.build_parser`)."""
    p = subparsers.add_parser(
        "validate", help="agreement with reader masks and reproducibility between simulated users: a report",
        description="Segment scans with reader masks in several modes (simulated users with point references "
                    "and one click per lesion, the manual reference ROI, region only) and report Dice, volume "
                    "differences, ICC, Bland-Altman and the smallest detectable change next to the readers' own "
                    "agreement. Writes OUT/validation.csv, summary.json, validation.md/.html and figures. "
                    "See docs/validation.md.")
    p.add_argument("manifest", nargs="?", help="CSV: case_id,image,reader:<name>... | readers (name=path;...),"
                                               "normal_marrow,region,[assisted_region]")
    p.add_argument("--sij-dir", help="a folder in the SIJ STIR layout (images/, inflammation/, normal_marrow/, "
                                     "disease_region/); scans without reader masks are skipped")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--region-dir", help="alternative regions (<case_id>_*.nii.gz), reported next to the manual ones")
    p.add_argument("--region-label", default="assisted", help="name of the alternative region (default assisted)")
    p.add_argument("--users", type=int, default=10, help="simulated users per scan (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the users' choices (default 0)")
    p.add_argument("--reference-mode", choices=["point", "mask", "auto"], default="point",
                   help="reference of the main modes: simulated point (default), manual ROI mask, or 'auto' "
                        "(needs a segment() with reference='auto')")
    p.add_argument("--modes", help="comma-separated modes, e.g. clicks/point,region/mask (default: clicks and region "
                                   "with the reference mode, and with the manual ROI)")
    p.add_argument("--click-reader", help="whose lesions users click (default the first reader; 'union')")
    p.add_argument("--radius-mm", default="6,10", help="range of the users' reference radius, MIN,MAX (default 6,10)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="a bmeviz.segment option for every run, e.g. --set edge=half-max --set k=2 (repeatable)")
    p.add_argument("--sessions", help="reader masks that are sessions of one reader, e.g. 'R1=R11+R12;R2=R21+R22' "
                                      "(default: names <reader><digit> sharing a prefix)")
    p.add_argument("--cases", help="only these case ids (comma-separated)")
    p.add_argument("--jobs", type=int, default=1, help="processes, one case each (default 1)")
    p.add_argument("--doc", help="also update this Markdown page between its VALIDATE markers (figures in its images/)")
    command("validate")(_run)
