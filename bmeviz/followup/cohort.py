"""Per-subject BME trajectories from a cohort table with ``subject`` and ``visit`` columns.

The batch runner's ``cohort.csv`` (one row per study, ``total_volume_ml``; with a manifest
that has ``subject`` and ``visit`` columns, those are carried into it) becomes
``trajectories.csv`` (one row per subject and visit, in visit order, with the change from the
subject's first visit and from the previous one) and ``trajectories.png`` (one line per
subject). Volumes are each study's own measurement; nothing is registered here (for lesion-by-
lesion change between two visits, use :func:`bmeviz.followup.compare`).

Visit order: numeric when every visit of a subject parses as a number (1, 2, 10), then as a
date (2024-03-01), else as text (baseline < followup only if they sort so: use numbers or dates).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["trajectories", "save_trajectories", "trajectory_figure", "TRAJECTORY_COLUMNS"]

TRAJECTORY_COLUMNS = ("subject", "visit", "order", "study_id", "status", "total_volume_ml", "n_lesions",
                      "change_from_first_ml", "change_from_first_pct", "change_from_previous_ml")


def _read(table: Any):
    import pandas as pd

    if isinstance(table, (str, os.PathLike)):
        try:
            return pd.read_csv(table)
        except (OSError, ValueError) as exc:
            from ..errors import UnreadableFileError

            raise UnreadableFileError(f"{table}: cannot read the cohort table ({exc})") from None
    if isinstance(table, pd.DataFrame):
        return table.copy()
    raise ParameterError(f"cohort table must be a pandas DataFrame or a CSV path; got {type(table).__name__}")


def _sort_key(visits):
    import pandas as pd

    vals = pd.Series(visits).astype(str)
    num = pd.to_numeric(vals, errors="coerce")
    if num.notna().all():
        return num.to_numpy(float)
    dates = pd.to_datetime(vals, errors="coerce", format="mixed") if hasattr(pd, "to_datetime") else None
    if dates is not None and dates.notna().all():
        return dates.astype("int64").to_numpy(float)
    return np.argsort(np.argsort(vals.to_numpy())).astype(float)


def trajectories(table: Any, *, volume_column: str = "total_volume_ml"):
    """One row per subject and visit, in visit order, with changes from the first and previous visit.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"subject": ["a", "a", "b", "a"], "visit": [2, 1, 1, 3],
    ...                   "total_volume_ml": [4.0, 10.0, 2.0, 0.0]})
    >>> tr = trajectories(t)
    >>> tr[["subject", "visit", "change_from_first_ml"]].values.tolist()
    [['a', 1, 0.0], ['a', 2, -6.0], ['a', 3, -10.0], ['b', 1, 0.0]]
    """
    import pandas as pd

    df = _read(table)
    missing = [c for c in ("subject", "visit", volume_column) if c not in df.columns]
    if missing:
        raise ParameterError(f"the cohort table has no {', '.join(missing)} column(s); give the manifest 'subject' "
                             f"and 'visit' columns (the columns are: {', '.join(map(str, df.columns))})")
    if df["subject"].isna().any() or df["visit"].isna().any():
        raise ParameterError("every row of the cohort table needs a subject and a visit")
    dup = df.duplicated(["subject", "visit"])
    if dup.any():
        first = df[dup].iloc[0]
        raise ParameterError(f"subject {first['subject']!r} has visit {first['visit']!r} twice; each visit once")
    parts = []
    for subject, g in df.groupby("subject", sort=True):
        g = g.copy()
        g["order"] = _sort_key(g["visit"].tolist())
        g = g.sort_values("order")
        g["order"] = np.arange(1, len(g) + 1)
        vol = pd.to_numeric(g[volume_column], errors="coerce")
        first = vol.iloc[0]
        g["total_volume_ml"] = vol
        g["change_from_first_ml"] = vol - first
        g["change_from_first_pct"] = 100.0 * (vol - first) / first if first and np.isfinite(first) else np.nan
        g["change_from_previous_ml"] = vol.diff()
        parts.append(g)
    out = pd.concat(parts, ignore_index=True)
    for c in TRAJECTORY_COLUMNS:
        if c not in out.columns:
            out[c] = pd.NA
    return out[list(TRAJECTORY_COLUMNS)]


def trajectory_figure(traj):
    """One line per subject: total BME volume by visit order (failed studies left out)."""
    from ..plot._draw import _new_figure

    fig = _new_figure((7.0, 4.2))
    ax = fig.add_subplot(111)
    for subject, g in traj.groupby("subject", sort=True):
        ok = g["total_volume_ml"].notna()
        ax.plot(g["order"][ok], g["total_volume_ml"][ok], marker="o", label=str(subject))
    ax.set_xlabel("visit (in order)")
    ax.set_ylabel("total BME volume (mL)")
    n = traj["subject"].nunique()
    if n <= 12:
        ax.legend(fontsize=7, title="subject", title_fontsize=8)
    ax.set_title(f"BME trajectories, {n} subject(s)", fontsize=10)
    ax.set_xticks(sorted(set(int(v) for v in traj["order"])))
    fig.subplots_adjust(left=0.11, right=0.97, top=0.9, bottom=0.13)
    return fig


def save_trajectories(table: Any, out_dir: str | os.PathLike, *, volume_column: str = "total_volume_ml") -> dict:
    """Write ``trajectories.csv`` and ``trajectories.png`` into ``out_dir`` (atomically)."""
    from ..io._atomic import atomic_path

    traj = trajectories(table, volume_column=volume_column)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "trajectories.csv") as tmp:
        traj.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out / "trajectories.png") as tmp:
        trajectory_figure(traj).savefig(tmp, format="png", dpi=100)
    return {"table": out / "trajectories.csv", "figure": out / "trajectories.png", "trajectories": traj}
