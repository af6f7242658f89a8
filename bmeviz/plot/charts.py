"""Charts: intensity histograms, lesion volumes, Bland-Altman agreement."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ParameterError
from ._draw import _new_figure, _unpack
from .view import lesion_colors


def histogram(
    volume: Any,
    reference: Any = None,
    result: Any = None,
    *,
    ax: Any = None,
    bins: int = 80,
    max_lesions: int = 8,
    title: str | None = None,
):
    """Intensities of normal marrow (the reference) and of each lesion, with the threshold.

    Both distributions are normalised (each integrates to 1), so a small reference and
    large lesions compare; lesions are stacked in their outline colours. The threshold
    of the result is a dashed line, the strong (hysteresis) threshold a dotted one.

    Parameters
    ----------
    volume : Volume
        The image that was segmented (``result.volume`` when None).
    reference : (S, R, C) bool array, optional
        The normal-marrow reference mask (``result.reference`` when None).
    result : Result
        From :func:`bmeviz.segment`: its labels and threshold are drawn.
    ax : matplotlib Axes, optional
    bins : int
        Number of bins over the range shown.
    max_lesions : int
        Lesions beyond this many are pooled as "other lesions" (grey).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import bmeviz
    >>> from bmeviz import plot
    >>> from bmeviz.data import make_phantom
    >>> ph = make_phantom(shape=(12, 64, 64), spacing=(3.0, 1.6, 1.6), seed=2)
    >>> res = bmeviz.segment(ph.volume, reference=ph.reference, region=ph.bone, seeds=ph.seeds)
    >>> ax = plot.histogram(ph.volume, ph.reference, res)
    >>> ax.get_xlabel()
    'intensity'
    """
    if result is None:
        raise ParameterError("histogram needs the result of bmeviz.segment (result=)")
    volume = result.volume if volume is None else volume
    volume, _ = _unpack(volume, None)
    ref = result.reference if reference is None else reference
    ref = np.asarray(ref)
    if ref.shape != volume.shape:
        raise ParameterError(f"reference shape {ref.shape} differs from the volume's {volume.shape}")
    ref = ref.astype(bool)
    labels = np.asarray(result.labels)
    if labels.shape != volume.shape:
        raise ParameterError(f"result is on another grid {labels.shape} than the volume {volume.shape}")
    img = volume.array
    ref_vals = np.asarray(img[ref], float)
    ref_vals = ref_vals[np.isfinite(ref_vals)]
    nz = np.flatnonzero(labels)
    ids = labels.ravel()[nz]
    les_vals = np.asarray(img.ravel()[nz], float)
    ok = np.isfinite(les_vals)
    ids, les_vals = ids[ok], les_vals[ok]
    thr = result.threshold
    pool = np.concatenate([ref_vals, les_vals, [thr.value]])
    lo, hi = np.percentile(pool, [0.05, 99.95]) if pool.size > 1 else (pool.min() - 1, pool.max() + 1)
    lo, hi = min(lo, thr.value), max(hi, thr.value, lo + 1e-6)
    pad = 0.03 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, int(bins) + 1)
    width = edges[1] - edges[0]
    if ax is None:
        fig = _new_figure((6.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
    if ref_vals.size:
        ax.hist(np.clip(ref_vals, edges[0], edges[-1]), bins=edges,
                weights=np.full(ref_vals.size, 1.0 / (ref_vals.size * width)),
                color="0.55", alpha=0.6, histtype="stepfilled",
                label=f"normal marrow (reference, {ref_vals.size} voxels)")
    if les_vals.size:
        uniq = np.unique(ids)
        colors = lesion_colors(int(uniq.max()))
        shown = uniq[:max_lesions]
        data, cols, names = [], [], []
        for i in shown:
            data.append(np.clip(les_vals[ids == i], edges[0], edges[-1]))
            cols.append(colors[i - 1])
            names.append(f"lesion {i}")
        rest = ~np.isin(ids, shown)
        if rest.any():
            data.append(np.clip(les_vals[rest], edges[0], edges[-1]))
            cols.append((0.3, 0.3, 0.3))
            names.append(f"other lesions ({len(uniq) - len(shown)})")
        w = 1.0 / (les_vals.size * width)
        ax.hist(data, bins=edges, weights=[np.full(d.size, w) for d in data], color=cols,
                histtype="stepfilled", stacked=True, alpha=0.85, label=names)
    ax.axvline(thr.value, color="black", ls="--", lw=1.2,
               label=f"threshold {thr.value:.4g} ({thr.rule}" + (f", k={thr.k:.3g}" if thr.k is not None else "") + ")")
    if thr.high is not None:
        ax.axvline(thr.high, color="black", ls=":", lw=1.2, label=f"strong threshold {thr.high:.4g}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("intensity")
    ax.set_ylabel("density (each group sums to 1)")
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda j: (not names[j].startswith("normal"),
                                                     "threshold" in names[j], _lesion_key(names[j])))
    ax.legend([handles[j] for j in order], [names[j] for j in order], fontsize=7, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("reference vs lesion intensities" if title is None else title, fontsize=9)
    return ax


def _lesion_key(name: str) -> float:
    parts = name.split()
    return float(parts[1]) if len(parts) == 2 and parts[0] == "lesion" and parts[1].isdigit() else np.inf


def volumes(
    table: Any,
    *,
    ax: Any = None,
    title: str | None = None,
    annotate: bool = True,
):
    """Per-lesion volumes in mL as bars coloured like the lesions' outlines.

    Parameters
    ----------
    table : pandas.DataFrame, dict or Result
        A lesion table (``Result.table``; columns ``lesion_id`` and ``volume_ml``).
    ax : matplotlib Axes, optional
    title : str, optional
        Default: the total volume and number of lesions.
    annotate : bool
        Write each bar's volume above it.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import pandas as pd
    >>> from bmeviz import plot
    >>> ax = plot.volumes(pd.DataFrame({"lesion_id": [1, 2, 3], "volume_ml": [9.9, 3.7, 0.5]}))
    >>> ax.get_title()
    'BME: 3 lesions, 14.10 mL'
    >>> [round(float(b.get_height()), 1) for b in ax.patches]
    [9.9, 3.7, 0.5]
    """
    if hasattr(table, "table") and not hasattr(table, "columns"):
        table = table.table
    if isinstance(table, dict) and {"lesion_id", "volume_ml"} <= set(table):
        import pandas as pd

        table = pd.DataFrame({k: table[k] for k in ("lesion_id", "volume_ml")})
    if not hasattr(table, "columns") or not {"lesion_id", "volume_ml"} <= set(table.columns):
        raise ParameterError("volumes needs a lesion table with columns 'lesion_id' and 'volume_ml' (Result.table)")
    ids = np.asarray(table["lesion_id"], dtype=int)
    ml = np.asarray(table["volume_ml"], dtype=float)
    if ax is None:
        fig = _new_figure((max(3.5, 0.45 * len(ids) + 2.0), 3.2), layout="constrained")
        ax = fig.add_subplot()
    total = float(np.nansum(ml))
    if ids.size:
        colors = lesion_colors(int(ids.max()))[ids - 1]
        x = np.arange(ids.size)
        bars = ax.bar(x, ml, color=colors, edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, [str(i) for i in ids], fontsize=8 if ids.size < 25 else 6)
        if annotate:
            ax.bar_label(bars, labels=[f"{v:.2f}" for v in ml], fontsize=7, padding=2)
        ax.set_xlim(-0.6, ids.size - 0.4)
        ax.set_ylim(0, ml.max() * 1.15 if ml.max() > 0 else 1)
    else:
        ax.text(0.5, 0.5, "no lesions", transform=ax.transAxes, ha="center", va="center")
        ax.set_xticks([])
    ax.set_xlabel("lesion")
    ax.set_ylabel("volume (mL)")
    ax.spines[["top", "right"]].set_visible(False)
    n = int(ids.size)
    ax.set_title(f"BME: {n} lesion{'s' if n != 1 else ''}, {total:.2f} mL" if title is None else title, fontsize=9)
    return ax


def bland_altman(
    a: Any,
    b: Any,
    *,
    ax: Any = None,
    groups: Any = None,
    labels: Any = None,
    log_x: bool = False,
    units: str = "mL",
    names: tuple[str, str] = ("bmeviz", "reader"),
    title: str | None = None,
):
    """Bland–Altman plot: the difference ``a - b`` of paired measurements against their mean.

    The bias (mean difference) is a solid line and the 95 % limits of agreement
    (bias ± 1.96 SD of the differences, sample SD) are dashed, each labelled with its
    value. Non-finite pairs are left out.

    Parameters
    ----------
    a, b : array_like
        Paired measurements of the same things (e.g. lesion volume by bmeviz and by a
        reader, one pair per scan).
    ax : matplotlib Axes, optional
    groups : sequence, optional
        A group per pair (e.g. the reader): each group has its own colour and legend entry.
    labels : sequence of str, optional
        A short text beside each point (e.g. the scan id).
    log_x : bool
        Logarithmic mean axis, for volumes spanning decades.
    units : str
        Unit of the measurements, for the axis labels.
    names : (str, str)
        What ``a`` and ``b`` are, for the axis label.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from bmeviz import plot
    >>> ax = plot.bland_altman([1.0, 2.2, 2.9, 4.3], [1.1, 2.0, 3.0, 4.0])
    >>> [t.get_text() for t in ax.texts]
    ['bias +0.075', '+1.96 SD +0.48', '-1.96 SD -0.33']
    """
    x = np.asarray(a, dtype=float).ravel()
    y = np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ParameterError(f"a and b must be paired: {x.size} and {y.size} values")
    grp = None if groups is None else np.asarray(list(groups), dtype=object)
    if grp is not None and grp.size != x.size:
        raise ParameterError(f"groups has {grp.size} entries for {x.size} pairs")
    txt = None if labels is None else [str(t) for t in labels]
    if txt is not None and len(txt) != x.size:
        raise ParameterError(f"labels has {len(txt)} entries for {x.size} pairs")
    ok = np.isfinite(x) & np.isfinite(y)
    mean, diff = (x + y) / 2.0, x - y
    if ax is None:
        fig = _new_figure((6.0, 4.0), layout="constrained")
        ax = fig.add_subplot()
    if grp is None:
        ax.scatter(mean[ok], diff[ok], s=28, color="tab:blue", edgecolor="black", linewidth=0.4, zorder=3)
    else:
        palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
                   "tab:olive", "tab:cyan"]
        markers = "osD^v<>p"
        for j, g in enumerate(dict.fromkeys(grp[ok].tolist())):
            sel = ok & (grp == g)
            ax.scatter(mean[sel], diff[sel], s=28, color=palette[j % len(palette)], marker=markers[j % len(markers)],
                       edgecolor="black", linewidth=0.4, zorder=3, label=str(g))
        ax.legend(fontsize=7, frameon=False, loc="best")
    if txt is not None:
        for xm, d, t, good in zip(mean, diff, txt, ok):
            if good:
                ax.annotate(t, (xm, d), xytext=(4, 3), textcoords="offset points", fontsize=6, color="0.3")
    if log_x:
        ax.set_xscale("log")
    ax.axhline(0.0, color="0.7", lw=0.8, zorder=1)
    if ok.sum() >= 2:
        bias = float(diff[ok].mean())
        sd = float(diff[ok].std(ddof=1))
        for val, ls, name in ((bias, "-", "bias"), (bias + 1.96 * sd, "--", "+1.96 SD"),
                              (bias - 1.96 * sd, "--", "-1.96 SD")):
            ax.axhline(val, color="black", ls=ls, lw=1.0, zorder=2)
            ax.text(1.0, val, f"{name} {val:+.2g}", transform=ax.get_yaxis_transform(), ha="right",
                    va="bottom", fontsize=7)
    elif ok.sum() == 1:
        ax.axhline(float(diff[ok][0]), color="black", lw=1.0)
    ax.set_xlabel(f"mean of {names[0]} and {names[1]} ({units})" + (", log scale" if log_x else ""))
    ax.set_ylabel(f"{names[0]} − {names[1]} ({units})")
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("Bland–Altman" if title is None else title, fontsize=9)
    return ax
