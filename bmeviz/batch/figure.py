"""The cohort figure: total BME volume per study."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["cohort_figure"]


def cohort_figure(table: Any) -> Any:
    """Bar chart of the total BME volume per study (failed studies marked); a matplotlib Figure."""
    from matplotlib.figure import Figure  # matplotlib when drawing: `import bmeviz.batch` stays light
    from matplotlib.patches import Patch

    n = len(table)
    width = float(min(40.0, max(6.0, 0.32 * n + 2.0)))
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(n)
    vol = np.array([float(v) if v is not None and not _isnan(v) else 0.0 for v in table["total_volume_ml"]])
    status = list(table["status"])
    colors = ["tab:blue" if s == "ok" else "tab:cyan" if s == "skipped" else "lightgrey" for s in status]
    ax.bar(x, vol, color=colors, edgecolor="none")
    failed = [i for i, s in enumerate(status) if s == "failed"]
    top = float(vol.max()) if n and vol.max() > 0 else 1.0
    for i in failed:
        ax.text(i, top * 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=7, color="tab:red")
    ax.set_xticks(x)
    step = max(1, int(math.ceil(n / 80)))
    labels = [str(s) if i % step == 0 else "" for i, s in enumerate(table["study_id"])]
    ax.set_xticklabels(labels, rotation=90 if n > 8 else 0, fontsize=7 if n > 30 else 9)
    ax.set_ylabel("total BME volume (mL)")
    ok = status.count("ok") + status.count("skipped")
    ax.set_title(f"BME volume per study: {ok} measured, {len(failed)} failed", fontsize=10)
    ax.set_xlim(-0.6, max(n, 1) - 0.4)
    ax.set_ylim(0, top * 1.08)
    handles = [Patch(color="tab:blue", label="run now"), Patch(color="tab:cyan", label="up to date (kept)")]
    ax.legend(handles=handles, fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True
