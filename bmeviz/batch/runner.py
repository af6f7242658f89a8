"""Running a manifest: :func:`plan` (what would run) and :func:`run` (do it; the cohort table)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import ParameterError
from ..io._atomic import atomic_path, atomic_write_text
from .cluster import _Interrupted, _run_tasks
from .figure import cohort_figure
from .folder import _clean_stale, _lock, _now, _prepare_out
from .manifest import PASS_THROUGH, _check_defaults, _check_missing, _rows_of, _Study, _validate
from .resume import _done, _row_from_provenance, _task
from .study import _failed_row


#: Columns of ``cohort.csv`` (and of the DataFrame :func:`run` returns), in order.
COHORT_COLUMNS = ("study_id", "status", "n_lesions", "total_volume_ml", "threshold", "rule", "k_used", "error",
                  "seconds", "notes")


def _prepare(manifest: Any, out: Any, *, force: bool, strict: bool, outputs: Mapping[str, Any],
             defaults: Mapping[str, Any]) -> tuple[list[_Study], list[dict | None], dict[str, dict], Path, Path, str]:
    defaults = _check_defaults(defaults)
    rows, base, where = _rows_of(manifest)
    studies = _validate(rows, base, defaults, where)
    _check_missing(studies, strict, where)
    out_p = Path(os.path.abspath(os.path.expanduser(str(out))))
    tasks: list[dict | None] = []
    fixed: dict[str, dict] = {}
    for st in studies:
        if st.missing:
            msg = "; ".join(st.missing)
            if not outputs.get("include_phi"):
                msg = "; ".join(_missing_short(m, base) for m in st.missing)
            fixed[st.study_id] = _failed_row(st.study_id, msg)
            tasks.append(None)
            continue
        t = _task(st, defaults, outputs, out_p, base)
        tasks.append(t)
        if not force:
            prov = _done(out_p / st.study_id, t["hash"])
            if prov is not None:
                fixed[st.study_id] = _row_from_provenance(st.study_id, prov, "skipped")
    return studies, tasks, fixed, out_p, base, where


def _missing_short(msg: str, base: Path) -> str:
    kind, _, path = msg.partition(" not found: ")
    if path.startswith(str(base) + os.sep):
        return f"{kind} not found: {os.path.relpath(path, base)}"
    return f"{kind} not found: …/{os.path.basename(path)}"


def plan(manifest: Any, out: Any, *, force: bool = False, strict: bool = False, overlay: bool = True,
         seg: bool = False, report: bool = False, include_phi: bool = False, **defaults: Any) -> Any:
    """What :func:`run` would do, without doing it: one row per study with ``action``
    (``run``, ``skip`` = up to date, ``fail`` = input missing) and ``reason``."""
    import pandas as pd

    outputs = {"overlay": overlay, "seg": seg, "report": report, "include_phi": include_phi}
    studies, tasks, fixed, out_p, _, _ = _prepare(manifest, out, force=force, strict=strict, outputs=outputs,
                                                  defaults=defaults)
    recs = []
    for st, t in zip(studies, tasks):
        f = fixed.get(st.study_id)
        if f is not None and f["status"] == "failed":
            recs.append({"study_id": st.study_id, "action": "fail", "reason": f["error"]})
        elif f is not None:
            recs.append({"study_id": st.study_id, "action": "skip", "reason": "outputs up to date"})
        else:
            exists = (out_p / st.study_id).exists()
            recs.append({"study_id": st.study_id, "action": "run",
                         "reason": ("forced" if force else "inputs or parameters changed") if exists else "new"})
    return pd.DataFrame.from_records(recs, columns=["study_id", "action", "reason"])


def run(
    manifest: Any,
    out: Any,
    *,
    workers: int | None = None,
    scheduler: Any = None,
    force: bool = False,
    strict: bool = False,
    overlay: bool = True,
    seg: bool = False,
    report: bool = False,
    include_phi: bool = False,
    progress: bool = True,
    dashboard: bool = False,
    **defaults: Any,
) -> Any:
    """Segment every study of a manifest, on Dask; returns the cohort table.

    Parameters
    ----------
    manifest : path-like or pandas.DataFrame
        The CSV manifest (see :func:`read_manifest` and ``docs/batch.md``).
    out : path-like
        Output folder: ``<study_id>/`` per study, ``cohort.csv``, ``cohort.png``,
        ``batch.json``. A new or empty folder, or one an earlier run wrote.
    workers : int, optional
        Worker processes of the LocalCluster (1 thread each); default one per core
        (at most one per study). ``0`` runs the studies in this process without Dask.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``; a ``Client`` or
        cluster object works too). The workers must see the same paths and run the
        same bmeviz version.
    force : bool
        Redo studies whose outputs are up to date.
    strict : bool
        Missing input files stop the run before any work (default: those studies fail,
        the others run).
    overlay, seg, report : bool
        Write ``overlay.png`` (default), ``bme_seg.dcm`` (DICOM sources; a row's ``seg``
        column overrides), ``report.html`` (a row's ``report`` column overrides).
    include_phi : bool
        Keep file paths and UIDs in provenance, reports, SEG and error messages.
    progress : bool
        Show studies done / failed / remaining on stderr.
    **defaults
        segment() options for every row without its own: ``rule``, ``k``, ``high_k``,
        ``upper``, ``method``, ``edge``, ``min_volume_mm3``, ``min_slices``,
        ``fill_holes``, ``connectivity``, ``max_volume_ml``, ``max_radius_mm``,
        ``confidence_k``, and ``reference_radius_mm``, ``series``, ``echo``.

    Returns
    -------
    pandas.DataFrame
        The cohort table (:data:`COHORT_COLUMNS`), also written to ``out/cohort.csv``;
        ``status`` is ``ok``, ``failed`` or ``skipped`` (up to date, not redone).

    Raises
    ------
    ManifestError
        Bad rows, every one listed, before any work.
    ParameterError
        A bad option, an output folder that is not bmeviz's, an unreachable scheduler.
    """
    import pandas as pd

    outputs = {"overlay": overlay, "seg": seg, "report": report, "include_phi": include_phi}
    if scheduler is not None and workers is not None:
        raise ParameterError("give workers= (a local cluster) or scheduler= (an existing one), not both")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ParameterError(f"workers must be a whole number >= 0; got {workers!r}")
    studies, tasks, fixed, out_p, base, where = _prepare(manifest, out, force=force, strict=strict,
                                                         outputs=outputs, defaults=defaults)
    _prepare_out(out_p, studies, include_phi)
    todo = [t for t in tasks if t is not None and t["study_id"] not in fixed]
    started = _now()
    with _lock(out_p):
        _clean_stale(out_p)
        info = {"software": {"name": "bmeviz", "version": __version__}, "started": started, "finished": None,
                "manifest": where if include_phi else Path(where).name, "studies": len(studies),
                "defaults": _check_defaults(defaults), "outputs": outputs,
                "cluster": ("in-process" if workers == 0 and scheduler is None else
                            "existing scheduler" if scheduler is not None else "LocalCluster")}
        atomic_write_text(out_p / "batch.json", json.dumps(info, indent=2, default=str) + "\n")
        n_skip = sum(1 for r in fixed.values() if r["status"] == "skipped")
        n_missing = sum(1 for r in fixed.values() if r["status"] == "failed")
        if progress:
            print(f"bmeviz batch: {len(studies)} studies: {len(todo)} to run, {n_skip} up to date (skipped)"
                  + (f", {n_missing} with missing inputs" if n_missing else ""), file=sys.stderr)
        bar = _Progress(len(todo), enabled=progress, skipped=n_skip)
        interrupted = None
        try:
            results = _run_tasks(todo, workers=workers, scheduler=scheduler, progress=bar, dashboard=dashboard)
        except _Interrupted as exc:
            results = exc.results
            interrupted = exc
        rows = []
        carried = [c for c in PASS_THROUGH if any(c in st.carry for st in studies)]
        for st in studies:
            r = fixed.get(st.study_id) or results.get(st.study_id) or _failed_row(st.study_id, "not run")
            rows.append({c: r.get(c) for c in COHORT_COLUMNS} | {c: st.carry.get(c) for c in carried})
        table = pd.DataFrame.from_records(rows, columns=list(COHORT_COLUMNS) + carried)
        for c in ("n_lesions",):
            table[c] = table[c].astype("Int64")
        _write_cohort(table, out_p)
        info["finished"] = _now()
        info["counts"] = {s: int((table["status"] == s).sum()) for s in ("ok", "failed", "skipped")}
        atomic_write_text(out_p / "batch.json", json.dumps(info, indent=2, default=str) + "\n")
    if interrupted is not None:
        raise KeyboardInterrupt
    return table


def _write_cohort(table: Any, out: Path) -> None:
    with atomic_path(out / "cohort.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    fig = cohort_figure(table)
    with atomic_path(out / "cohort.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


class _Progress:
    """studies done / failed / remaining on stderr: one rewritten line on a terminal, else one line each."""

    def __init__(self, total: int, *, stream: Any = None, enabled: bool = True, skipped: int = 0) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total > 0
        self.ok = 0
        self.failed = 0
        self.skipped = skipped
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.enabled:
            self._draw("")

    def update(self, study_id: str, status: str, seconds: Any = None) -> None:
        if status == "ok":
            self.ok += 1
        else:
            self.failed += 1
        if self.enabled:
            took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
            self._draw(f"{study_id} {status}{took}")

    def _draw(self, last: str) -> None:
        done = self.ok + self.failed
        width = 24
        filled = int(round(width * done / self.total)) if self.total else width
        el = int(time.perf_counter() - self.t0)
        bar = "#" * filled + "-" * (width - filled)
        text = (f"bmeviz batch [{bar}] {done}/{self.total} done: {self.ok} ok, {self.failed} failed, "
                f"{self.total - done} remaining ({el // 60:02d}:{el % 60:02d})")
        if last:
            text += f"  {last}"
        if self.tty:
            self.stream.write("\r" + text[:200].ljust(100))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
