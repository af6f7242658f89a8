"""Grouping header entries into series (stacks): :class:`SeriesInfo` and :func:`group`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...volume import plane_of
from ..sequence import classify, is_fat_suppressed, is_fluid_sensitive
from .geometry import _normal, _orientation_key
from .headers import Frame


@dataclass(frozen=True)
class SeriesInfo:
    """One series (one stack of slices) found by :func:`bmeviz.list_series`.

    ``key`` is unique in a listing and is what ``bmeviz.load(path, series=key)`` takes;
    it is the SeriesInstanceUID, with ``#echo=N``, ``#type=...`` or ``#stack=N`` appended
    when one UID holds several stacks.
    """

    key: str
    uid: str
    number: int | None
    description: str
    sequence: str
    fat_suppressed: bool
    fluid_sensitive: bool
    n_slices: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None  # (slice, row, column) mm; slice from positions
    plane: str
    echo: float | None
    echo_time: float | None
    image_type: tuple[str, ...]
    manufacturer: str
    modality: str
    n_files: int
    frames: tuple[Frame, ...] = field(repr=False, compare=False)

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.path for f in self.frames))

    def to_dict(self) -> dict:
        """JSON-friendly record (no file list)."""
        return {
            "key": self.key,
            "uid": self.uid,
            "number": self.number,
            "description": self.description,
            "sequence": self.sequence,
            "fat_suppressed": self.fat_suppressed,
            "fluid_sensitive": self.fluid_sensitive,
            "n_slices": self.n_slices,
            "shape": list(self.shape),
            "spacing": None if self.spacing is None else [round(s, 4) for s in self.spacing],
            "plane": self.plane,
            "echo": self.echo,
            "echo_time": self.echo_time,
            "image_type": "\\".join(self.image_type),
            "manufacturer": self.manufacturer,
            "modality": self.modality,
            "n_files": self.n_files,
        }



def _is_localizer(f: Frame) -> bool:
    return "LOCALIZER" in f.image_type or classify(f.header) == "localizer"


def group(frames: Sequence[Frame]) -> list[SeriesInfo]:
    """Split header entries into stacks (series), localizers left out, sorted by series number."""
    by_uid: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        if not _is_localizer(f):
            by_uid[f.series_uid].append(f)
    out: list[SeriesInfo] = []
    for uid, items in by_uid.items():
        splits: list[tuple[str, list[Frame]]] = [("", items)]
        for name, keyfn in (
            ("echo", lambda f: f.echo),
            ("type", lambda f: f.image_type),
            ("size", lambda f: (f.rows, f.columns)),
            ("stack", _orientation_key),
        ):
            new = []
            for suffix, part in splits:
                buckets: dict[Any, list[Frame]] = defaultdict(list)
                for f in part:
                    buckets[keyfn(f)].append(f)
                if name == "stack" and None in buckets and len(buckets) == 2:
                    # images without orientation stay with the one stack: check_geometry names them
                    lost = buckets.pop(None)
                    next(iter(buckets.values())).extend(lost)
                if len(buckets) == 1:
                    new.append((suffix, part))
                    continue
                # echo splits only when they repeat positions (true multi-echo); otherwise
                # e.g. a slightly varying TE would break one stack into many.
                if name == "echo" and not _positions_repeat(part):
                    new.append((suffix, part))
                    continue
                for i, (k, b) in enumerate(sorted(buckets.items(), key=lambda kv: _sort_key(kv[0]))):
                    if name == "echo":
                        tag = f"echo={_fmt_echo(k)}"
                    elif name == "type":
                        tag = "type=" + "\\".join(k)
                    elif name == "size":
                        tag = f"size={k[0]}x{k[1]}"
                    else:
                        tag = f"stack={i + 1}"
                    new.append((f"{suffix}#{tag}", b))
            splits = new
        multi_echo = len({f.echo for f in items}) > 1 and _positions_repeat(items)
        for suffix, part in splits:
            out.append(_series_info(uid + suffix, uid, part, multi_echo))
    out.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.key))
    return out


def _sort_key(k: Any) -> tuple:
    if k is None:
        return (0, "")
    if isinstance(k, (int, float)):
        return (1, float(k))
    return (2, str(k))


def _fmt_echo(e: Any) -> str:
    if e is None:
        return "none"
    return str(int(e)) if float(e).is_integer() else f"{e:g}"


def _positions_repeat(frames: Sequence[Frame]) -> bool:
    pos = [f.position for f in frames if f.position is not None]
    return len({tuple(np.round(p, 2)) for p in pos}) < len(pos)


def _series_info(key: str, uid: str, frames: list[Frame], multi_echo: bool) -> SeriesInfo:
    h = frames[0].header
    label = classify(h)
    f0 = frames[0]
    positions = [f.position for f in frames if f.position is not None]
    n_positions = len({tuple(np.round(p, 2)) for p in positions}) or len(frames)
    spacing = None
    plane = "unknown"
    if f0.orientation is not None:
        normal = _normal(f0.orientation)
        plane = plane_of(normal)
        if f0.pixel_spacing is not None:
            d = np.unique(np.round([np.dot(p, normal) for p in positions], 3))
            slice_step = float(np.median(np.diff(d))) if d.size > 1 else float("nan")
            spacing = (slice_step, f0.pixel_spacing[0], f0.pixel_spacing[1])
    echoes = {f.echo for f in frames}
    echo = f0.echo if (multi_echo and len(echoes) == 1) else None
    return SeriesInfo(
        key=key,
        uid=uid,
        number=f0.series_number,
        description=str(h.get("SeriesDescription") or h.get("ProtocolName") or ""),
        sequence=label,
        fat_suppressed=is_fat_suppressed(h) or label in {"STIR", "DIXON WATER"},
        fluid_sensitive=is_fluid_sensitive(label),
        n_slices=n_positions,
        shape=(n_positions, f0.rows, f0.columns),
        spacing=spacing,
        plane=plane,
        echo=echo,
        echo_time=f0.echo_time if len({f.echo_time for f in frames}) == 1 else None,
        image_type=f0.image_type,
        manufacturer=str(h.get("Manufacturer") or ""),
        modality=str(h.get("Modality") or ""),
        n_files=len({f.path for f in frames}),
        frames=tuple(frames),
    )

