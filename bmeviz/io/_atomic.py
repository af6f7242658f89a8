"""Atomic output: write to a temporary file beside the target, then rename over it.

The temporary file is ``.<name>.<pid>-<random>.tmp<ext>``; it is flushed to disk (fsync)
before the rename, so a full disk is seen before the target is replaced. A process killed while writing
(SIGKILL, power loss) cannot remove it; the next write of the same target does, when the
process named in it is gone (or a zombie), so a killed run leaves nothing behind once it
is rerun. A write that fails (disk full, permission, Ctrl-C) removes its temporary file
itself and leaves the target as it was; an ``OSError`` names the target and the reason.

Several files that belong together (a result: mask, table, provenance, overlay) are written
inside :func:`atomic_group`: each is written to its temporary file, and only when all of
them succeeded are they renamed into place; if one fails, none replaces anything.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "atomic_group", "clean_stale_temps", "pid_alive"]

#: The open :func:`atomic_group`: (temporary, target) renames waiting for the group's end.
_GROUP: contextvars.ContextVar[list | None] = contextvars.ContextVar("bmeviz_atomic_group", default=None)


def _suffix(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".tar.gz"):
        if name.endswith(ext):
            return ext
    return path.suffix


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:  # no /proc (macOS): trust kill()
        return True


def _temp_re(name: str) -> re.Pattern:
    return re.compile(r"\." + re.escape(name) + r"\.(\d+)-[A-Za-z0-9_]+\.tmp")


def clean_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove temporary files of atomic writes in ``folder`` (of target ``name``, or any)
    whose writing process is gone; returns what was removed."""
    folder = Path(folder)
    pattern = _temp_re(name) if name else re.compile(r"\..+\.(\d+)-[A-Za-z0-9_]+\.tmp")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        if int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``path``.

    The temporary name keeps the target's extension (writers such as nibabel choose the
    format from it). On error the temporary file is removed and the target is untouched;
    an ``OSError`` of the writer (e.g. ENOSPC, disk full) is raised again naming the target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target.parent, target.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=".tmp" + _suffix(target),
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file private (0600); outputs get the usual mode (0666 less umask)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        _flush(tmp_path)
        group = _GROUP.get()
        if group is not None:
            group.append((tmp_path, target))  # renamed when the whole group has been written
        else:
            os.replace(tmp_path, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if getattr(exc, "filename", None) in (str(target), target):
            raise
        raise _named(exc, target) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _flush(path: Path) -> None:
    """Push the written file to the disk (a full disk can show up only here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Write several files all or nothing: every :func:`atomic_path` inside the block keeps
    its temporary file until the block ends; then all are renamed into place. If anything
    fails inside the block, every temporary file is removed and no target is touched."""
    if _GROUP.get() is not None:  # nested: the outer group decides
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
    except BaseException:
        _GROUP.reset(token)
        for tmp, _ in pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    _GROUP.reset(token)
    try:
        for i, (tmp, target) in enumerate(pending):
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp, _ in pending[i:]:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError):
            raise _named(exc, pending[i][1]) from exc
        raise


def _named(exc: OSError, target: Path) -> OSError:
    """The same kind of OSError, naming the output and saying what happened in words."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    if code == errno.ENOSPC:
        reason = "no space left on the device (disk full)"
    elif code == errno.EDQUOT:
        reason = "disk quota exceeded"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    elif code == errno.EROFS:
        reason = "read-only file system"
    new = type(exc)(code, f"{reason}; nothing was written there") if code else \
        OSError(f"cannot write {target}: {reason}; nothing was written there")
    new.filename = str(target)
    return new


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
