"""Cohort runs: a manifest of scans through :func:`bmeviz.segment` on Dask.

One CSV row per scan (``study_id``, ``image``, the reference, optional region, seeds and
per-row options); :func:`run` (CLI: ``bmeviz batch MANIFEST --out DIR``) validates the
whole manifest first, then segments every study on a Dask LocalCluster sized to the
machine (``workers=``) or on an existing cluster (``scheduler="tcp://host:8786"``), and
writes, per study, what ``bmeviz segment`` writes, into ``DIR/<study_id>/``; at the end
``DIR/cohort.csv`` (one row per study) and ``DIR/cohort.png`` (total BME volume per study).

- A failing study is recorded with its error and does not stop the others.
- Resumable: a study whose outputs exist and whose inputs + parameters hash (stored in
  its ``provenance.json`` under ``"batch"``) is unchanged is skipped; ``force=True``
  redoes it. Each study is written into ``DIR/.<study_id>.tmp-*`` and renamed into place,
  so a killed run never leaves a half-written study that looks done.
- ``workers=0`` runs the studies one after the other in this process, without Dask.

Nothing here imports Dask (or pandas) at import time: ``import bmeviz.batch`` is light.
The format and the commands are described in ``docs/batch.md``.

The package, one job a module: :mod:`~bmeviz.batch.manifest` (reading and validating),
:mod:`~bmeviz.batch.resume` (task, hash, up-to-date check), :mod:`~bmeviz.batch.study`
(one study through :func:`bmeviz.segment` and :func:`bmeviz.export.write_outputs`),
:mod:`~bmeviz.batch.folder` (output folder checks and the lock),
:mod:`~bmeviz.batch.cluster` (Dask), :mod:`~bmeviz.batch.runner` (:func:`run`,
:func:`plan`), :mod:`~bmeviz.batch.figure` (cohort.png), :mod:`~bmeviz.batch.cli`.

>>> from bmeviz.batch import parse_points
>>> parse_points("12,140,96; 14,150,90")
[(12.0, 140.0, 96.0), (14.0, 150.0, 90.0)]
"""

from __future__ import annotations

#: How long to try reaching an existing Dask scheduler (read when connecting).
CONNECT_TIMEOUT = "10s"

from .cli import add_cli  # noqa: E402
from .figure import cohort_figure  # noqa: E402
from .manifest import MANIFEST_COLUMNS, PASS_THROUGH, ManifestError, parse_points, read_manifest  # noqa: E402
from .runner import COHORT_COLUMNS, plan, run  # noqa: E402
from .study import _scrub  # noqa: E402,F401  (tests)

__all__ = ["run", "plan", "read_manifest", "parse_points", "ManifestError", "COHORT_COLUMNS", "MANIFEST_COLUMNS",
           "PASS_THROUGH", "cohort_figure", "add_cli"]
