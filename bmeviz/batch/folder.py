"""The output folder of a batch run: checks, the lock against a second run, stale temporaries."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path

from ..errors import ParameterError
from .manifest import _Study


_LOCK = ".bmeviz-batch.lock"


_TMP = re.compile(r"\..+\.(tmp|old)-[0-9a-f]{8}$")


def _prepare_out(out: Path, studies: Sequence[_Study], include_phi: bool) -> None:
    for st in studies:
        img = Path(st.image)
        if img.is_dir():
            try:
                out.relative_to(img)
                inside = True
            except ValueError:
                inside = False
            if inside:
                raise ParameterError(f"--out {out} is inside the image folder of study {st.study_id}; bmeviz never "
                                     "writes into its inputs (and would read its own outputs back): choose another folder")
    if out.exists() and not out.is_dir():
        raise ParameterError(f"--out {out} is a file; give a folder")
    if out.exists() and any(out.iterdir()) and not (out / "batch.json").exists():
        raise ParameterError(f"--out {out} exists and holds files bmeviz batch did not write (no batch.json); "
                             "choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def _lock(out: Path):
    path = out / _LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                other = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                other = {}
            alive = False
            if other.get("host") == me["host"] and isinstance(other.get("pid"), int):
                try:
                    os.kill(other["pid"], 0)
                    alive = True
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    alive = True
            elif other.get("host"):
                alive = True
            if alive:
                raise ParameterError(
                    f"{out}: another bmeviz batch (pid {other.get('pid')} on {other.get('host')}, started "
                    f"{other.get('started')}) is writing here; wait for it, or delete {path} if it is not running"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # a stale lock of a run that died
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _clean_stale(out: Path) -> None:
    for p in out.iterdir():
        if p.is_dir() and _TMP.match(p.name):
            shutil.rmtree(p, ignore_errors=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
