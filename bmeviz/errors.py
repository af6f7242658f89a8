"""The bmeviz exception family.

Every public entry point (``load``, ``list_series``, ``segment``, the CLI, the napari
reader and widget, batch) raises only these for bad input. Messages say what was
wrong, where (file or parameter), and what to do about it.
"""

from __future__ import annotations

import os
import warnings

__all__ = [
    "BmevizError",
    "UnreadableFileError",
    "NotAVolumeError",
    "InconsistentGeometryError",
    "SeriesSelectionError",
    "ParameterError",
    "ResourceLimitError",
    "BmevizWarning",
    "warn",
    "memory_limit",
    "check_memory",
    "format_bytes",
]


class BmevizError(Exception):
    """Base class of every error bmeviz raises for bad input or bad parameters."""


class UnreadableFileError(BmevizError, OSError):
    """A file or folder is missing, unreadable, truncated or of an unknown format."""


class NotAVolumeError(BmevizError):
    """The input can be read but does not form a 3D volume (too few slices, duplicates...)."""


class InconsistentGeometryError(BmevizError):
    """Slices disagree about geometry: mixed orientations, gantry tilt, uneven spacing."""


class SeriesSelectionError(BmevizError, LookupError):
    """The requested series or echo does not exist, or the choice is ambiguous."""


class ParameterError(BmevizError, ValueError):
    """A parameter has a bad value (wrong shape, out of range, out of the volume...)."""


class ResourceLimitError(BmevizError, MemoryError):
    """An operation would need more memory (or volume) than bmeviz allows."""


class BmevizWarning(UserWarning):
    """Something was skipped or guessed; the message says what and why."""


def warn(message: str, *, stacklevel: int = 3) -> None:
    """Emit a :class:`BmevizWarning` (also what the CLI prints)."""
    warnings.warn(message, BmevizWarning, stacklevel=stacklevel)


# ----------------------------------------------------------------------------- memory limits
#: Environment variable that caps the memory one loaded volume may need (in GB).
MAX_MEMORY_ENV = "BMEVIZ_MAX_MEMORY_GB"
#: Share of the available memory one volume may take (the rest is for the pipeline's masks).
MEMORY_SHARE = 0.8


def format_bytes(n: float) -> str:
    """``1.5 GB``-style size (decimal units)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def _available_memory() -> int | None:
    """Bytes of memory this process can still use: RAM available (Linux ``MemAvailable``,
    else free pages), and where set, what is left under the container's cgroup limit and
    the address-space limit (``RLIMIT_AS``) minus what is already mapped."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    room = _cgroup_room()  # a container's memory limit, which /proc/meminfo does not show
    if room is not None:
        avail = room if avail is None else min(avail, room)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            mapped = 0
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        mapped = int(line.split()[1]) * 1024
                        break
            room = max(0, soft - mapped)
            avail = room if avail is None else min(avail, room)
    except (ImportError, OSError, ValueError):
        pass
    return avail


def _cgroup_room() -> int | None:
    """Bytes left under the cgroup (container) memory limit, v2 or v1; None when unlimited."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
            if text == "max":
                return None
            limit = int(text)
            if limit >= 1 << 60:  # v1 writes "unlimited" as a huge number
                return None
            with open(usage_file) as f:
                usage = int(f.read().strip())
            return max(0, limit - usage)
        except (OSError, ValueError):
            continue
    return None


def memory_limit() -> int | None:
    """Most bytes one volume may need: ``$BMEVIZ_MAX_MEMORY_GB`` if set, else 80% of the
    memory available now (None when that cannot be known)."""
    env = os.environ.get(MAX_MEMORY_ENV, "").strip()
    if env:
        try:
            value = float(env)
        except ValueError:
            raise ParameterError(f"{MAX_MEMORY_ENV}={env!r} is not a number of GB") from None
        if value > 0:
            return int(value * 1e9)
    avail = _available_memory()
    return None if avail is None else int(avail * MEMORY_SHARE)


def check_memory(nbytes: int, what: str, hint: str = "crop or downsample it first") -> None:
    """Refuse up front (:class:`ResourceLimitError`) if ``what`` needs more than :func:`memory_limit`.

    Called before any large array is allocated, with the size the load will need, so a
    corrupt header or a huge scan stops with the size instead of exhausting the machine.
    """
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        source = (f"the {MAX_MEMORY_ENV} limit" if os.environ.get(MAX_MEMORY_ENV, "").strip()
                  else "what this machine has available")
        raise ResourceLimitError(
            f"{what} needs {format_bytes(nbytes)} of memory, more than {source} "
            f"({format_bytes(limit)}); {hint} (or raise {MAX_MEMORY_ENV} on a bigger machine)"
        )
