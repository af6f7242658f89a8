"""``bmeviz validate``: agreement with readers and reproducibility between users, as a report.

Takes scans with reader masks (a manifest CSV, or the SIJ development layout) and reports,
per case and overall: Dice against each reader, volume differences, ICC, Bland–Altman,
the smallest detectable change, next to the readers' own agreement (inter- and
intra-reader); and a reproducibility study of simulated users (a random reference point in
the normal-marrow ROI, one click in the bright half of each reader lesion) with the
between-user Dice and volume CV, against the region-only ("find all") and the
manual-ROI-reference modes. Segmentation goes through the public :func:`bmeviz.segment`
with its current defaults; ``options`` changes any of them for every run.

Python::

    from bmeviz.validate import validate, sij_cases
    cases, skipped = sij_cases("../shared/data/sij-stir-dev")
    v = validate(cases, n_users=10, seed=0, out="validation/")
    v.summary["acceptance"]

Command: ``bmeviz validate --sij-dir DIR --out OUT`` or ``bmeviz validate MANIFEST.csv --out OUT``
(see ``docs/validation.md``). Statistics and their references: :mod:`bmeviz.validate.stats`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from .stats import bland_altman, cv, icc, sdc
from .study import Case, read_manifest, sij_cases, simulate_users, run_case, parse_modes, check_options
from .summary import summarize

__all__ = ["validate", "Validation", "Case", "read_manifest", "sij_cases", "simulate_users", "run_case",
           "icc", "bland_altman", "sdc", "cv", "summarize"]


@dataclass(frozen=True)
class Validation:
    """Result of :func:`validate`: ``summary`` (JSON-able dict), ``results`` (per-case runs),
    ``paths`` (files written, when ``out`` was given)."""

    summary: dict = field(repr=False)
    results: list = field(repr=False)
    paths: dict = field(default_factory=dict)

    @property
    def table(self):
        """The per case x mode x user x reader rows as a pandas DataFrame."""
        import pandas as pd

        from .report import csv_rows

        return pd.DataFrame(csv_rows(self.results))

    def markdown(self) -> str:
        """The report as Markdown."""
        from .report import markdown

        return markdown(self.summary)

    def write(self, out: str | os.PathLike) -> dict:
        """Write the report files into ``out`` (see :func:`bmeviz.validate.report.write_outputs`)."""
        from .report import write_outputs

        return write_outputs(out, self.summary, self.results)


def _sources() -> dict:
    pkg = Path(__file__).resolve().parents[1]
    out = {}
    for n in ("pipeline.py", "threshold.py", "grow.py", "lesions.py", "reference.py", "edge.py"):
        p = pkg / n
        if p.exists():
            out[f"bmeviz/{n}"] = hashlib.sha256(p.read_bytes()).hexdigest()[:12]
    return out


def _one(task: tuple) -> dict:
    case, kw = task
    return run_case(case, **kw)


def validate(cases: Sequence[Case], *, n_users: int = 10, seed: int = 0, reference_mode: str = "point",
             modes: Sequence[str] | str | None = None, click_reader: str | None = None,
             options: Mapping[str, Any] | None = None, radius_mm: tuple[float, float] = (6.0, 10.0),
             perturb: bool = True, sessions: Mapping[str, list[str]] | None = None, jobs: int = 1,
             out: str | os.PathLike | None = None, doc: str | os.PathLike | None = None,
             skipped: Sequence[dict] = (), command: str | None = None) -> Validation:
    """Run the validation study on ``cases`` and (optionally) write the report.

    Parameters
    ----------
    cases : list of Case
        From :func:`read_manifest` or :func:`sij_cases`, or built by hand.
    n_users : int
        Simulated users per case (at least 5 for the issue-11 criteria).
    seed : int
        Seed of the users' random choices (fixed: the same study twice gives the same numbers).
    reference_mode : {'point', 'mask', 'auto'}
        The reference of the main modes: a simulated point, the manual ROI, or
        ``reference='auto'`` (where :func:`bmeviz.segment` supports it).
    modes : list of str, optional
        ``clicks/<ref>`` and ``region/<ref>``; default: both with ``reference_mode``, and
        with the manual ROI for comparison.
    click_reader : str, optional
        Whose lesions the users click (default: the first reader; ``'union'``: the union).
    options : dict, optional
        :func:`bmeviz.segment` keyword options for every run (e.g. ``{'edge': 'half-max'}``).
    radius_mm : (float, float)
        Range of the users' reference radius.
    perturb : bool
        False: every user makes the same nominal choice (a check of the harness).
    sessions : dict, optional
        Reader -> its session masks (default: from the names, R11/R12 = one reader).
    jobs : int
        Processes (one case each); 1 runs here.
    out, doc : path, optional
        Folder for the report files; a Markdown page to update between its markers.

    Returns
    -------
    Validation
    """
    if not cases:
        raise ParameterError("no cases to validate")
    if int(n_users) < 1:
        raise ParameterError(f"n_users must be at least 1; got {n_users}")
    mode_list = parse_modes(modes, reference_mode)
    opts = check_options(options)
    kw = dict(modes=mode_list, n_users=int(n_users), seed=int(seed), click_reader=click_reader, options=opts,
              radius_mm=(float(radius_mm[0]), float(radius_mm[1])), perturb=bool(perturb))
    t0 = time.perf_counter()
    jobs = max(1, int(jobs))
    if jobs == 1 or len(cases) == 1:
        results = [run_case(c, **kw) for c in cases]
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(cases))) as ex:
            results = list(ex.map(_one, [(c, kw) for c in cases]))
    summary = summarize(results, sessions=sessions)
    from .. import __version__

    click = sorted({r["click_reader"] for r in results})
    summary["run"] = {
        "command": command or "bmeviz.validate.validate(...)",
        "date": _dt.date.today().isoformat(),
        "bmeviz_version": __version__,
        "n_users": int(n_users), "seed": int(seed), "reference_mode": reference_mode, "modes": mode_list,
        "click_reader": ", ".join(click), "options": opts, "radius_mm": list(kw["radius_mm"]),
        "perturb": bool(perturb), "jobs": jobs, "cpus": os.cpu_count(),
        "n_runs": sum(len(r["runs"]) for r in results),
        "seconds": time.perf_counter() - t0,
        "case_seconds": {r["case_id"]: round(r["seconds"], 2) for r in results},
        "skipped": list(skipped), "sources": _sources(),
    }
    v = Validation(summary=summary, results=results)
    paths = {}
    if out is not None:
        paths.update(v.write(out))
    if doc is not None:
        from .report import update_doc

        paths["doc"] = update_doc(doc, summary)
    return Validation(summary=summary, results=results, paths=paths)
