"""The ``bmeviz`` command.

Every sub-command is a thin shell over the Python API: it parses arguments, calls the
core, prints. Errors from bad input (a :class:`~bmeviz.BmevizError`) and from the machine
(a folder that cannot be written, a full disk, out of memory) print one line
``bmeviz: error: ...`` and exit 2; anything else is a bug and prints one line
``bmeviz: internal error: ...`` and exits 3. ``--debug`` shows the traceback. Warnings
print as ``bmeviz: warning: ...``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from ._arrays import parse_triple
from ._version import __version__
from .data import make_phantom
from .errors import BmevizError, BmevizWarning, ParameterError
from .export import write_outputs
from .io import list_series, load, save_mask, save_volume
from .metrics import match_lesions
from .options import add_arguments, from_arguments
from .pipeline import segment

# pandas, matplotlib and highdicom are imported by the commands that use them, when they run

__all__ = ["main", "build_parser"]

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(fn):
        _COMMANDS[name] = fn
        return fn

    return register


# ----------------------------------------------------------------------------- series / info
@command("series")
def _series(args: argparse.Namespace) -> int:
    infos = list_series(args.path)
    if args.json:
        print(json.dumps([s.to_dict() for s in infos], indent=2))
        return 0
    rows = []
    for i, s in enumerate(infos):
        sp = "-" if s.spacing is None else "x".join(f"{v:.3g}" for v in s.spacing)
        rows.append(
            [
                str(i),
                "" if s.number is None else str(s.number),
                (s.description or "")[:32],
                s.sequence + (" *" if s.fluid_sensitive else ""),
                "" if s.echo is None else f"{s.echo:g}",
                s.plane,
                "x".join(str(n) for n in s.shape),
                sp,
                s.key if args.keys else _short_key(s.key),
            ]
        )
    header = ["#", "series", "description", "sequence", "echo", "plane", "shape", "spacing mm", "key"]
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"\n{len(infos)} series; * = fluid-sensitive (shows BME). Load one with: "
          "bmeviz info PATH --series KEY  (or bmeviz.load(PATH, series=KEY))")
    return 0


def _short_key(key: str) -> str:
    uid, _, rest = key.partition("#")
    short = uid if len(uid) <= 20 else "..." + uid[-14:]
    return short + (f"#{rest}" if rest else "")


def _add_series_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series", help="series key, UID, number or description (default: the fluid-sensitive one)")
    p.add_argument("--echo", type=float, help="echo number of a multi-echo series")
    p.add_argument("--volume", type=int, help="volume index of a 4D NIfTI")


def load_from_args(args: argparse.Namespace):
    series = args.series
    return load(args.image if hasattr(args, "image") else args.path, series=series, echo=args.echo, volume=args.volume)


@command("info")
def _info(args: argparse.Namespace) -> int:
    vol = load_from_args(args)
    print(vol)
    md = vol.metadata
    print("  affine (slice,row,col -> RAS mm):\n" + "\n".join("    " + " ".join(f"{v:10.4f}" for v in row) for row in vol.affine))
    for key in ("description", "sequence", "manufacturer", "echo", "echo_time", "rescale", "geometry"):
        if md.get(key) not in (None, "", {}):
            print(f"  {key}: {md[key]}")
    return 0


# ----------------------------------------------------------------------------- segment / demo
def _triple(text: str, what: str) -> tuple[float, float, float]:
    return parse_triple(text, what, hint=" (three comma-separated numbers; for negative values write --seed-mm=-12.5,40.2,3)")


#: Files ``bmeviz segment`` may write into ``--out``.
SEGMENT_OUTPUTS = ("bme_mask.nii.gz", "lesions.csv", "provenance.json", "overlay.png", "bme_seg.dcm", "report.html")
# (the same as bmeviz.export.OUTPUTS, kept here so that building the parser imports nothing heavy)


def _written_by_bmeviz(folder: Path) -> bool:
    """A folder an earlier bmeviz run wrote: its provenance.json (or the demo's result/
    provenance.json) says ``software: bmeviz``."""
    for prov in (folder / "provenance.json", folder / "result" / "provenance.json"):
        try:
            info = json.loads(prov.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("software"), dict) and info["software"].get("name") == "bmeviz":
            return True
    return False


def _check_out_dir(out: Path, inputs: list[Path], force: bool, outputs: Sequence[str] = ()) -> None:
    """Refuse an output folder that is (or is inside) an input folder, that is a file, or
    that holds files bmeviz did not write (``--force`` writes beside them, but never over
    a file of the same name that bmeviz did not write)."""
    out_r = out.resolve()
    for src in inputs:
        src_r = src.resolve()
        folder = src_r if src_r.is_dir() else src_r.parent
        if out_r == folder or (src_r.is_dir() and folder in out_r.parents):
            if not force:
                raise ParameterError(f"--out {out} is inside the input folder {folder}; bmeviz never writes "
                                     "into its inputs: choose another folder (or --force)")
        if src_r.is_file() and src_r.parent == out_r and src_r.name in outputs:
            raise ParameterError(f"--out {out} would overwrite the input {src}; choose another folder")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file, not a folder; choose a new or empty folder")
    existing = out_r
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ParameterError(f"--out {out}: {existing} is a file, not a folder; choose another output folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ParameterError(f"--out {out}: no permission to write in {existing}; choose a folder you can write to")
    try:
        held = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise ParameterError(f"--out {out}: cannot list the folder ({exc.strerror or exc})") from None
    if held and not _written_by_bmeviz(out):
        if not force:
            raise ParameterError(f"--out {out} exists and holds files bmeviz did not write; choose an empty or new "
                                 "folder (or --force to write beside them; nothing there is deleted)")
        clash = [name for name in outputs if (out / name).exists()]
        if clash:
            raise ParameterError(f"--out {out} already holds {', '.join(clash)}, not written by bmeviz; even with "
                                 "--force bmeviz does not overwrite them: choose another folder")


def _print_result(res, out=None) -> None:
    t = res.threshold
    st = t.stats
    if st is not None:
        print(f"reference: {res.params['reference']['voxels']} voxels, mean {st.mean:.4g}, SD {st.sd:.4g}, "
              f"Q3 {st.q3:.4g}, IQR {st.iqr:.4g}")
    print(f"threshold: {t.value:.4g} ({t.rule}" + (f", k={t.k:g}" if t.k is not None else "") + ")"
          + (f", strong {t.high:.4g}" if t.high is not None else ""))
    for m in res.messages:
        print(f"note: {m}")
    cols = ["lesion_id", "volume_ml", "voxels", "mean_intensity", "ratio_to_reference", "first_slice", "last_slice"]
    if len(res.table):
        print(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    tot = res.totals
    print(f"total: {tot['n_lesions']} lesion(s), {tot['total_volume_ml']:.3f} mL"
          + (f", {100 * tot['bme_fraction_of_region']:.2f}% of the region" if tot.get("bme_fraction_of_region") is not None else ""))
    if out is not None:
        print(f"wrote: {out}")


def _segment_kwargs(args: argparse.Namespace) -> dict:
    """The segment options given as flags (generated from :class:`bmeviz.options.SegmentOptions`)."""
    kwargs = from_arguments(args, prefix="--")
    kwargs.pop("reference_radius_mm", None)  # passed on its own (it shapes the reference)
    return kwargs


@command("segment")
def _segment(args: argparse.Namespace) -> int:
    out = Path(args.out)
    inputs = [Path(args.image)] + [Path(p) for p in (args.reference, args.region) if p and p != "auto"]
    _check_out_dir(out, inputs, args.force, SEGMENT_OUTPUTS)
    vol = load_from_args(args)
    if args.reference:
        reference = args.reference  # a mask, or 'auto' (normal marrow found inside --region)
    elif args.reference_point:
        reference = _triple(args.reference_point, "--reference-point")
    elif args.reference_point_mm:
        reference = {"point_mm": _triple(args.reference_point_mm, "--reference-point-mm")}
    elif args.region:
        reference = "auto"  # no reference given: normal marrow found inside the region
    else:
        raise ParameterError("give the normal-marrow reference: --reference MASK.nii.gz, or --reference-point "
                             "Z,Y,X (voxel) / --reference-point-mm X,Y,Z with --reference-radius-mm R, or "
                             "--region MASK (with --reference auto, the default then)")
    seeds = [_triple(s, "--seed") for s in args.seed or []]
    seeds_mm = [_triple(s, "--seed-mm") for s in args.seed_mm or []]
    res = segment(vol, reference=reference, region=args.region, seeds=seeds or None, seeds_mm=seeds_mm or None,
                  reference_radius_mm=args.reference_radius_mm, **_segment_kwargs(args))
    write_outputs(res, out, overlay=not args.no_overlay, include_phi=args.include_phi, seg=args.seg,
                  report=args.report)
    _print_result(res, out)
    return 0


def _add_segment_options(p: argparse.ArgumentParser, reference_group: argparse._ArgumentGroup) -> None:
    """One flag per option of :class:`bmeviz.options.SegmentOptions`, then the outputs."""
    add_arguments(p, groups={"reference": reference_group})
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="output folder (bme_mask.nii.gz, lesions.csv, provenance.json, overlay.png)")
    g.add_argument("--no-overlay", action="store_true", help="skip overlay.png")
    g.add_argument("--seg", action="store_true", help="also write bme_seg.dcm (DICOM SEG; DICOM input only)")
    g.add_argument("--report", action="store_true", help="also write report.html (self-contained case report)")
    g.add_argument("--include-phi", action="store_true", help="keep file paths and UIDs in provenance (off: no identifiers)")
    g.add_argument("--force", action="store_true", help="write into a folder bmeviz did not create")


@command("demo")
def _demo(args: argparse.Namespace) -> int:
    """The whole path on the synthetic STIR phantom, compared with its ground truth."""
    out = Path(args.out)
    _check_out_dir(out, [], args.force, ("input", "result"))
    inputs = out / "input"
    ph = make_phantom(seed=0)
    # the demo goes through files, as a user's data would
    save_volume(ph.volume, inputs / "phantom_stir.nii.gz")
    save_mask(ph.reference, ph.volume, inputs / "reference.nii.gz")
    save_mask(ph.bone, ph.volume, inputs / "bone_region.nii.gz")
    save_mask(ph.truth, ph.volume, inputs / "truth.nii.gz")
    vol = load(inputs / "phantom_stir.nii.gz")
    print(vol)
    print(f"seeds (one click per lesion, voxel slice,row,col): {ph.seeds.tolist()}")
    res = segment(vol, reference=inputs / "reference.nii.gz", region=inputs / "bone_region.nii.gz",
                  seeds=ph.seeds, edge="half-max")
    write_outputs(res, out / "result")
    _print_result(res, out / "result")
    print("\nagainst the phantom's ground truth:")
    for m in match_lesions(res.labels, ph.truth, voxel_volume_mm3=vol.voxel_volume_mm3):
        print(f"  lesion {m['truth_id']}: truth {m['truth_ml']:.3f} mL, bmeviz {m['found_ml']:.3f} mL "
              f"({m['error_pct']:+.1f}%), Dice {m['dice']:.3f}")
    print(f"\nopen {out / 'result' / 'overlay.png'} to see the outlines; bme_mask.nii.gz overlays "
          f"{inputs / 'phantom_stir.nii.gz'} in ITK-SNAP or 3D Slicer.")
    return 0


# ----------------------------------------------------------------------------- parser / main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bmeviz",
        description="Show and measure bone marrow edema (BME) on fat-suppressed fluid-sensitive MRI.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("series", help="list the series in a DICOM folder (headers only)")
    p.add_argument("path", help="DICOM folder or file")
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.add_argument("--keys", action="store_true", help="print full series keys")

    p = sub.add_parser("info", help="load a scan and print its geometry and metadata")
    p.add_argument("path", help="DICOM folder/file or NIfTI")
    _add_series_args(p)

    p = sub.add_parser("segment", help="outline and measure BME in one scan")
    p.add_argument("image", help="DICOM folder/file or NIfTI of a fluid-sensitive series (STIR, T2/PD FS)")
    _add_series_args(p)
    g = p.add_argument_group("reference (normal marrow) and region")
    g.add_argument("--reference", help="normal-marrow mask (NIfTI on the image grid), or 'auto': found inside "
                   "--region (the default when only --region is given)")
    g.add_argument("--reference-point", help="Z,Y,X voxel (slice,row,column) in normal marrow")
    g.add_argument("--reference-point-mm", help="X,Y,Z in RAS mm in normal marrow (use = before negatives)")
    g.add_argument("--region", help="search region mask (bone/marrow) on the image grid")
    ref_group = g
    g = p.add_argument_group("seeds (clicks in lesions; none = every lesion in the region)")
    g.add_argument("--seed", action="append", metavar="Z,Y,X", help="voxel (slice,row,column); repeatable")
    g.add_argument("--seed-mm", action="append", metavar="X,Y,Z", help="RAS mm; repeatable; write --seed-mm=-12.5,40.2,3 for negatives")
    _add_segment_options(p, ref_group)

    p = sub.add_parser("demo", help="run the whole path on the synthetic STIR phantom")
    p.add_argument("--out", default="bmeviz-demo", help="output folder (default bmeviz-demo)")
    p.add_argument("--force", action="store_true", help="write into a folder bmeviz did not create")

    for name in _EXTENSION_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional part that is not installed
            continue
        module.add_cli(sub, command)
    return parser


#: Modules that add their own sub-commands: each has ``add_cli(subparsers, command)``,
#: adds a parser and registers its handler with the ``command(name)`` decorator. They
#: must not import heavy optional packages (napari, Qt, dask) at import time.
_EXTENSION_MODULES = ("bmeviz.batch", "bmeviz.napari.cli", "bmeviz.validate.cli", "bmeviz.scores.cli", "bmeviz.region",
                      "bmeviz.region_refine", "bmeviz.followup.cli")


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, BmevizWarning):
        return f"bmeviz: warning: {message}\n"
    return f"{category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"bmeviz {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 1
    warnings.formatwarning = _format_warning
    warnings.simplefilter("always", BmevizWarning)
    try:
        return _COMMANDS[args.command](args)
    except BmevizError as exc:
        if args.debug:
            raise
        print(f"bmeviz: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine, not the data: a folder that cannot be written, a full disk
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"bmeviz: error: {where}{exc.strerror or exc} (check the path, its permissions and the free space; "
              "--debug for the traceback)", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print("bmeviz: error: out of memory; crop or downsample the scan, or use a bigger machine "
              "(--debug for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bmeviz: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not the input: say so in one line and how to report it
        if args.debug:
            raise
        print(f"bmeviz: internal error ({type(exc).__name__}: {exc}); this is a bug in bmeviz, not a problem "
              "with your data: please report it with the output of the same command run with --debug",
              file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
