"""The ``bmeviz`` command.

Every sub-command is a thin shell over the Python API: it parses arguments, calls the
core, prints. Errors from bad input print one line ``bmeviz: error: ...`` and exit 2
(``--debug`` shows the traceback); warnings print as ``bmeviz: warning: ...``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from .errors import BmevizError, BmevizWarning

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
    from .io import list_series

    infos = list_series(args.path)
    if args.json:
        import json

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
    from .io import load

    series = args.series
    return load(args.image if hasattr(args, "image") else args.path, series=series, echo=args.echo, volume=args.volume)


@command("info")
def _info(args: argparse.Namespace) -> int:
    vol = load_from_args(args)
    print(vol)
    md = vol.metadata
    print(f"  affine (slice,row,col -> RAS mm):\n" + "\n".join("    " + " ".join(f"{v:10.4f}" for v in row) for row in vol.affine))
    for key in ("description", "sequence", "manufacturer", "echo", "echo_time", "rescale", "geometry"):
        if md.get(key) not in (None, "", {}):
            print(f"  {key}: {md[key]}")
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

    for extend in _EXTENSIONS:
        extend(sub)
    return parser


#: Functions that add sub-parsers (kept beside the code they call).
_EXTENSIONS: list[Callable[[argparse._SubParsersAction], None]] = []


def _format_warning(message, category, filename, lineno, line=None) -> str:
    if issubclass(category, BmevizWarning):
        return f"bmeviz: warning: {message}\n"
    return f"{category.__name__}: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

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
    except KeyboardInterrupt:
        print("bmeviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
