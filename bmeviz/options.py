"""The one options model of :func:`bmeviz.segment`.

Every segmentation option is one field of :class:`SegmentOptions`, and the field says
everything about it: default, kind, choices, range, help, CLI flag, manifest column.
``segment()`` takes its defaults from it, ``bmeviz segment`` and ``bmeviz batch``
generate their flags from it (:func:`add_arguments`), a batch manifest parses its columns
with it (:meth:`Option.parse`), a widget builds its controls from
:meth:`SegmentOptions.fields`, and provenance records :meth:`SegmentOptions.to_dict`.

Adding an option = one field here + the algorithm that uses it (and its keyword in
``segment()``'s signature, which is checked against this model by the tests).

>>> from bmeviz.options import SegmentOptions
>>> SegmentOptions().edge
'threshold'
>>> SegmentOptions.option("k").parse("adaptive")
'adaptive'
>>> [o.name for o in SegmentOptions.fields()][:3]
['rule', 'k', 'high_k']
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import ParameterError

__all__ = ["Option", "SegmentOptions", "add_arguments", "from_arguments", "DEFAULTS", "mode_defaults"]

#: k of rule='q3-iqr' when k is not given (segment(); compute_threshold's own default stays the
#: published adaptive k). Chosen leave-one-scan-out on the SIJ development scans (docs/reference.md).
Q3_IQR_K = 2.0

#: min_contrast_sd of "all in region" runs when not given (seeded runs: off). Chosen leave-one-scan-out
#: on the SIJ development scans; it removes bright non-BME structures of low contrast (docs/reference.md).
REGION_MIN_CONTRAST_SD = 7.0

_TRUE = {"1", "yes", "y", "true", "t", "on", "x"}
_FALSE = {"0", "no", "n", "false", "f", "off"}


def parse_bool(value: Any, what: str) -> bool:
    """``yes``/``no`` (and 1/0, true/false, on/off, x) as a bool; ValueError otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what} must be yes or no; got {value!r}")


@dataclass(frozen=True)
class Option:
    """What one option of :class:`SegmentOptions` is.

    Attributes
    ----------
    name : str
        The keyword of :func:`bmeviz.segment` and the manifest column.
    default : Any
        Its default (``None`` often means "chosen by mode", see ``help``).
    kind : {'choice', 'float', 'int', 'bool', 'k'}
        How strings are parsed (``'k'``: a number or ``'adaptive'``).
    help : str
        One line for ``--help``, the docs and a widget's tooltip.
    choices : tuple, optional
        The allowed values (choice options; also ``connectivity``).
    minimum, maximum : float, optional
        The allowed range; ``exclusive_minimum`` makes the minimum exclusive.
    nullable : bool
        ``none`` (or an empty cell) is allowed and means the default behaviour.
    group : str
        Where it is listed in ``--help`` (``threshold``, ``growing and clean-up``, ``reference``).
    widget : bool
        Whether a GUI shows it by default.
    """

    name: str
    default: Any
    kind: str
    help: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    nullable: bool = True
    group: str = "growing and clean-up"
    widget: bool = True

    @property
    def flag(self) -> str:
        """The CLI flag, e.g. ``--min-volume-mm3``."""
        return "--" + self.name.replace("_", "-")

    @property
    def column(self) -> str:
        """The manifest column (case-insensitive; '-' and ' ' read as '_')."""
        return self.name

    def parse(self, value: Any) -> Any:
        """``value`` (a string from a flag or a manifest cell, or a Python value) parsed
        and checked; raises ValueError with a message that names the option."""
        name = self.name
        if isinstance(value, str):
            value = value.strip()
        nullable = self.nullable and self.kind != "choice"
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            if nullable:
                return None
            if value is None:
                raise ValueError(f"{name} cannot be none")
        if self.kind == "choice":
            text = str(value).lower()
            if text not in self.choices:
                raise ValueError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}")
            return text
        if self.kind == "k":
            if isinstance(value, str) and value.lower() == "adaptive":
                return "adaptive"
            return _finite(value, f"k must be a number or 'adaptive'; got {value!r}", "k")
        if self.kind == "bool":
            return parse_bool(value, name)
        if self.kind == "int":
            try:
                f = float(value)
            except (TypeError, ValueError):
                f = float("nan")
            if not math.isfinite(f) or f != int(f):
                raise ValueError(f"{name} must be a whole number; got {value!r}")
            i = int(f)
            if self.choices is not None and i not in self.choices:
                raise ValueError(f"{name} must be {', '.join(map(str, self.choices[:-1]))} or {self.choices[-1]}; "
                                 f"got {value!r}")
            if self.minimum is not None and i < self.minimum:
                raise ValueError(f"{name} must be at least {self.minimum:g}; got {value!r}")
            return i
        f = _finite(value, f"{name} must be a number (or 'none'); got {value!r}", name)
        if self.minimum is not None:
            if self.exclusive_minimum and f <= self.minimum:
                raise ValueError(f"{name} must be > {self.minimum:g}; got {value!r}")
            if not self.exclusive_minimum and f < self.minimum:
                raise ValueError(f"{name} must be >= {self.minimum:g}; got {value!r}")
        if self.maximum is not None and f > self.maximum:
            raise ValueError(f"{name} must be at most {self.maximum:g}; got {value!r}")
        return f

    def to_dict(self) -> dict:
        """The description as plain data (for a widget, the docs or JSON)."""
        out = dataclasses.asdict(self)
        out["flag"] = self.flag
        out["column"] = self.column
        return out


def _finite(value: Any, not_a_number: str, name: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(not_a_number) from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return f


def _opt(default: Any, kind: str, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"option": dict(default=default, kind=kind, help=help, **kw)})


# ----------------------------------------------------------------------------- checks of Python values
# segment() receives Python values; these checks are what it checked before the model (the
# algorithms check the rest with their own messages).
def _check_choice(name: str, choices: tuple) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in choices:
            listed = " or ".join(repr(c) for c in choices) if len(choices) == 2 else \
                ", ".join(repr(c) for c in choices)
            raise ParameterError(f"{name} must be {listed}; got {value!r}")
        return value

    return check


def _check_upper(value: Any) -> Any:
    if value is None:
        return None
    try:
        upper = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"upper must be a number (an upper intensity bound) or None; got {value!r}") from None
    if math.isnan(upper):
        raise ParameterError("upper is NaN; give a number or None")
    return upper


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "method": _check_choice("method", ("connected", "confidence")),
    "edge": _check_choice("edge", ("threshold", "half-max")),
    "upper": _check_upper,
}


@dataclass(frozen=True)
class SegmentOptions:
    """The options of :func:`bmeviz.segment`, with their defaults (the single source).

    Examples
    --------
    >>> from bmeviz.options import SegmentOptions
    >>> o = SegmentOptions(edge="half-max")
    >>> o.to_dict()["edge"], o.connectivity
    ('half-max', 26)
    >>> SegmentOptions.from_strings({"k": "2", "fill_holes": "yes"}).k
    2.0
    """

    rule: str = _opt("q3-iqr", "choice", "threshold rule on the reference: Q3 + k*IQR (published, adaptive k), "
                     "mean + k*SD, a percentile, or Otsu inside the region",
                     choices=("q3-iqr", "mean-sd", "percentile", "otsu"), nullable=False, group="threshold")
    # none = the rule's default; for q3-iqr that is Q3_IQR_K = 2 on the robust reference, chosen
    # leave-one-scan-out on the SIJ development scans (benchmarks/reproducibility_sij.py,
    # docs/reference.md); the published adaptive k is k='adaptive'
    k: Any = _opt(None, "k", "k of the rule (default: 2.0 for q3-iqr on the robust reference, 'adaptive' for the "
                  "published adaptive k; 2.0 for mean-sd; 99 for percentile)", group="threshold")
    high_k: float | None = _opt(None, "float", "strong threshold for hysteresis (keep lesions reaching it)",
                                group="threshold")
    upper: float | None = _opt(None, "float", "upper intensity bound (keeps very bright fluid out)",
                               group="threshold", widget=False)
    method: str = _opt("connected", "choice", "connected threshold from the seeds, or confidence-connected "
                       "(re-estimates the lesion's mean/SD; needs seeds)",
                       choices=("connected", "confidence"), nullable=False)
    edge: str = _opt("threshold", "choice", "lesion edge: the reference threshold (what readers outline), or each "
                     "lesion's half-maximum (the physical lesion on the phantom)",
                     choices=("threshold", "half-max"), nullable=False)
    min_volume_mm3: float | None = _opt(None, "float", "drop smaller lesions (default: 0 with seeds, 10 without)",
                                        minimum=0.0)
    min_slices: int | None = _opt(None, "int", "consecutive slices a lesion must span (default: 1 with seeds, "
                                  "2 without)", minimum=1)
    fill_holes: bool = _opt(False, "bool", "fill holes enclosed in a lesion", nullable=False)
    connectivity: int = _opt(26, "int", "voxel connectivity in 3D (6 faces, 18 +edges, 26 +corners)",
                             choices=(6, 18, 26), nullable=False)
    reference_radius_mm: float = _opt(8.0, "float", "radius of the reference ball around a reference point (mm)",
                                      minimum=0.0, exclusive_minimum=True, maximum=1e4, nullable=False,
                                      group="reference")
    # real SIJ lesions reach ~110 mL (1013); a flood of joint fluid and soft tissue is far larger
    max_volume_ml: float | None = _opt(300.0, "float", "leak guard per seed (mL): a seed growing more is stopped "
                                       "and dropped with a warning", minimum=0.0, exclusive_minimum=True)
    max_radius_mm: float | None = _opt(None, "float", "confine growth from each seed to a ball of this radius (mm)",
                                       minimum=0.0, exclusive_minimum=True, widget=False)
    confidence_k: float = _opt(2.5, "float", "k of method=confidence (lesion mean +- k*SD)", minimum=0.0,
                               exclusive_minimum=True, nullable=False, widget=False)
    # robust reference and click handling (issue 11; bmeviz/reference.py, docs/reference.md)
    robust_reference: bool = _opt(True, "bool", "clean the reference before statistics: keep it inside the region, "
                                  "reference_edge_mm from its edge, and drop outliers beyond reference_fence robust SDs "
                                  "(vessels, fluid, lesion edge, cortex)", nullable=False, group="reference")
    # a point's ball is placement-dependent (marrow is not uniform on STIR); the automatic reference's
    # marrow near the point is not: threshold CV 0.6-2.3% vs 4-10% between simulated users (docs/reference.md)
    reference_search_mm: float | None = _opt(40.0, "float", "a reference point with a region: the reference is the "
                                             "normal marrow the automatic reference finds within this distance of the "
                                             "point (at least reference_radius_mm); none or 0: the ball around the "
                                             "point, cleaned", minimum=0.0, group="reference")
    reference_edge_mm: float = _opt(2.0, "float", "robust reference: in-plane distance from the region's edge left out "
                                    "(mm)", minimum=0.0, nullable=False, group="reference", widget=False)
    reference_fence: float = _opt(2.5, "float", "robust reference: outlier fence in robust SDs (1.4826*MAD) around "
                                  "the median", minimum=0.0, exclusive_minimum=True, nullable=False,
                                  group="reference", widget=False)
    adaptive_top: float | None = _opt(99.0, "float", "adaptive q3-iqr: the reference percentile the threshold comes "
                                      "within IQR/2 of (none: the maximum, as published)", minimum=50.0, maximum=100.0,
                                      group="threshold", widget=False)
    min_contrast_sd: float | None = _opt(None, "float", "keep lesions whose 90th-percentile intensity is at least this "
                                         "many robust SDs above the reference median (default: 7 without seeds, off "
                                         "with seeds; 0: off)", minimum=0.0)
    leak_jump: float | None = _opt(3.0, "float", "a seed's region that shrinks by this factor when the threshold rises "
                                   "by 1/4 robust SD had leaked: that seed grows above the collapse (up to 3 SD higher; "
                                   "none: off)", minimum=1.0, exclusive_minimum=True, widget=False)
    fragment_gap_mm: float | None = _opt(0.6, "float", "a clicked lesion also takes its above-threshold fragments "
                                         "(>= 20 mm3) that an in-plane gap of this size separates from it (none: off)",
                                         minimum=0.0, exclusive_minimum=True, widget=False)
    seed_snap_mm: float | None = _opt(3.0, "float", "a click below the threshold moves to the brightest voxel of the "
                                      "region within this distance (mm) when that one is above it (none: never)",
                                      minimum=0.0, exclusive_minimum=True, widget=False)

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name)))

    # ------------------------------------------------------------------ the description
    @classmethod
    def fields(cls) -> tuple[Option, ...]:
        """Every option's :class:`Option` (default, kind, choices, range, help, flag, column), in order."""
        return _FIELDS

    @classmethod
    def option(cls, name: str) -> Option:
        """The :class:`Option` called ``name``; ParameterError naming the known ones otherwise."""
        try:
            return _BY_NAME[name]
        except KeyError:
            raise ParameterError(f"unknown option {name!r}; the options are: {', '.join(_BY_NAME)}") from None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(_BY_NAME)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_strings(cls, values: Mapping[str, Any]) -> SegmentOptions:
        """Options from strings (flags, manifest cells); missing names keep their defaults.

        Raises ParameterError listing every bad value.
        """
        return cls(**parse_values(values))

    def replace(self, **changes: Any) -> SegmentOptions:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The options as plain data (for provenance and hashing)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def kwargs(self) -> dict:
        """The keywords for :func:`bmeviz.segment` (``segment(vol, ..., **opts.kwargs())``)."""
        return self.to_dict()


_FIELDS = tuple(Option(name=f.name, **f.metadata["option"]) for f in dataclasses.fields(SegmentOptions))
_BY_NAME = {o.name: o for o in _FIELDS}

#: The defaults of :func:`bmeviz.segment`, read-only (derived from :class:`SegmentOptions`).
DEFAULTS: Mapping[str, Any] = MappingProxyType({o.name: o.default for o in _FIELDS})


def parse_values(values: Mapping[str, Any]) -> dict:
    """``{name: string}`` parsed with each :class:`Option`; ParameterError listing every bad one."""
    out, bad = {}, []
    for name, value in values.items():
        opt = SegmentOptions.option(name)
        try:
            out[name] = opt.parse(value)
        except ValueError as exc:
            bad.append(str(exc))
    if bad:
        raise ParameterError("; ".join(bad))
    return out


def mode_defaults(*, seeded: bool, min_volume_mm3: float | None, min_slices: int | None) -> tuple[float, int]:
    """The clean-up by mode: seeded runs keep what the user clicked (0 mm³, 1 slice);
    "all in region" runs keep lesions of >= 10 mm³ on >= 2 consecutive slices (ASAS: BME
    seen on 2 slices; chosen on the SIJ development scans, docs/validation.md)."""
    if min_volume_mm3 is None:
        min_volume_mm3 = 0.0 if seeded else 10.0
    if min_slices is None:
        min_slices = 1 if seeded else 2
    return min_volume_mm3, min_slices


# ----------------------------------------------------------------------------- argparse
def add_arguments(parser: Any, *, skip: tuple[str, ...] = (), groups: Mapping[str, Any] | None = None,
                  default_help: Callable[[Option], str] | None = None) -> None:
    """Add one flag per option to ``parser`` (an ArgumentParser), grouped by ``Option.group``.

    Every flag defaults to ``None`` ("not given"): the value comes from the model (or a
    manifest row) then. Choices and numbers are checked by argparse as before; ``--k``
    stays a string (``adaptive`` or a number) parsed by :func:`from_arguments`.
    ``groups`` maps a group name to an existing argument group to add into.
    """
    made: dict[str, Any] = dict(groups or {})
    for opt in _FIELDS:
        if opt.name in skip:
            continue
        g = made.get(opt.group)
        if g is None:
            g = made[opt.group] = parser.add_argument_group(opt.group)
        text = opt.help
        if default_help is not None:
            text = default_help(opt)
        elif opt.default is not None and opt.default is not False and "default" not in text:
            text += f" (default {opt.default:g})" if isinstance(opt.default, float) else f" (default {opt.default})"
        kw: dict[str, Any] = {"help": text.replace("%", "%%"), "default": None, "dest": opt.name}
        flag = opt.flag
        if opt.kind == "bool" and opt.default is True:  # on by default: --flag no turns it off
            kw.update(metavar="yes/no")
        elif opt.kind == "bool":
            kw["action"] = "store_true"
        elif opt.kind == "choice":
            kw["choices"] = list(opt.choices)
        elif opt.kind == "int":
            kw["type"] = int
            if opt.choices is not None:
                kw["choices"] = list(opt.choices)
        elif opt.kind == "float":
            # an option on by default that 'none' turns off (e.g. --seed-snap-mm none) stays a string
            # here and is parsed by from_arguments
            kw["type"] = str if (opt.nullable and opt.default is not None) else float
        g.add_argument(flag, **kw)


def from_arguments(args: argparse.Namespace, *, prefix: str = "") -> dict:
    """The options given on the command line (not None), parsed; ParameterError naming the flag."""
    given = {o.name: getattr(args, o.name) for o in _FIELDS if getattr(args, o.name, None) is not None}
    out = {}
    for name, value in given.items():
        try:
            out[name] = _BY_NAME[name].parse(value)
        except ValueError as exc:
            raise ParameterError(f"{prefix}{exc}") from None
    return out
