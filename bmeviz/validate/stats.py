"""Agreement statistics for method-comparison studies: ICC, Bland–Altman, SEM/SDC, CV.

Formulas (``n`` subjects = cases, ``k`` raters = readers, users or methods; a complete
``n x k`` table ``Y``; two-way ANOVA mean squares: ``MSR`` rows/subjects, ``MSC``
columns/raters, ``MSE`` residual, ``MSW`` within subjects):

- ICC(1,1) = (MSR − MSW) / (MSR + (k−1)·MSW) (one-way random);
- ICC(2,1) = (MSR − MSE) / (MSR + (k−1)·MSE + k·(MSC − MSE)/n) (two-way random, absolute
  agreement: a systematic offset between raters counts as disagreement);
- ICC(3,1) = (MSR − MSE) / (MSR + (k−1)·MSE) (two-way mixed, consistency: offsets ignored).
  Shrout & Fleiss, Psychol Bull 1979;86:420–428; McGraw & Wong, Psychol Methods 1996;1:30–46
  (their 95 % confidence intervals, F-based, are computed here too).
- SEM (agreement) = √(σ²_rater + σ²_error) with σ²_rater = max(0, (MSC − MSE)/n) and
  σ²_error = MSE; SEM (consistency) = √MSE. SDC = 1.96·√2·SEM: the smallest change of one
  subject's value that exceeds measurement error with 95 % confidence (de Vet et al.,
  J Clin Epidemiol 2006;59:1033–1039; Terwee et al., J Clin Epidemiol 2007;60:34–42).
- Bland–Altman: differences ``d = a − b``; bias = mean(d); limits of agreement
  bias ± 1.96·SD(d) (SD with n−1); 95 % CI of the bias bias ± t(n−1)·SD/√n and of each
  limit ± t(n−1)·SD·√(3/n) (Bland & Altman, Lancet 1986;i:307–310).
- CV = SD (n−1) / mean.

>>> r = icc([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
>>> round(r["icc1"], 2), round(r["icc2"], 2), round(r["icc3"], 2)
(0.17, 0.29, 0.71)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["icc", "bland_altman", "sdc", "cv", "pairwise", "Z95"]

#: The two-sided 95 % normal quantile used for limits of agreement and the SDC.
Z95 = 1.96


def _table(values: Any) -> np.ndarray:
    y = np.asarray(values, dtype=float)
    if y.ndim != 2:
        raise ParameterError(f"ICC needs a 2D table (subjects x raters); got shape {y.shape}")
    if y.shape[0] < 2 or y.shape[1] < 2:
        raise ParameterError(f"ICC needs at least 2 subjects and 2 raters; got {y.shape[0]} x {y.shape[1]}")
    if not np.all(np.isfinite(y)):
        raise ParameterError("ICC table has missing or non-finite values; give a complete table")
    return y


def _f_ppf(q: float, d1: float, d2: float) -> float:
    from scipy import stats

    return float(stats.f.ppf(q, d1, d2))


def icc(values: Any, *, alpha: float = 0.05) -> dict:
    """Intraclass correlations ICC(1,1), ICC(2,1), ICC(3,1), their CIs, SEM and SDC.

    Parameters
    ----------
    values : (n, k) array_like
        One row per subject (case), one column per rater (reader, user, method).
    alpha : float
        1 − confidence level of the intervals.

    Returns
    -------
    dict
        ``icc1``, ``icc2``, ``icc3``; ``icc2_ci``, ``icc3_ci`` (lower, upper); ``msr``,
        ``msc``, ``mse``, ``msw``; ``sem_agreement``, ``sem_consistency``,
        ``sdc_agreement``, ``sdc_consistency`` (units of the values); ``n``, ``k``,
        ``mean``. A table with no spread between subjects gives NaN ICCs.

    Examples
    --------
    Shrout & Fleiss (1979), Table 2 (6 targets, 4 judges):

    >>> r = icc([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]])
    >>> [round(x, 2) for x in r["icc3_ci"]]
    [0.34, 0.95]
    """
    y = _table(values)
    n, k = y.shape
    grand = y.mean()
    ss_total = float(((y - grand) ** 2).sum())
    ss_rows = float(k * ((y.mean(axis=1) - grand) ** 2).sum())
    ss_cols = float(n * ((y.mean(axis=0) - grand) ** 2).sum())
    ss_err = max(0.0, ss_total - ss_rows - ss_cols)
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))

    def ratio(num: float, den: float) -> float:
        return float(num / den) if den > 0 else float("nan")

    icc1 = ratio(msr - msw, msr + (k - 1) * msw)
    icc2 = ratio(msr - mse, msr + (k - 1) * mse + k * (msc - mse) / n)
    icc3 = ratio(msr - mse, msr + (k - 1) * mse)
    q = 1 - alpha / 2
    df_r, df_e = n - 1, (n - 1) * (k - 1)
    # ICC(3,1): exact F interval (McGraw & Wong 1996, case 3)
    icc3_ci = (float("nan"), float("nan"))
    if mse > 0 and msr > 0:
        f_obs = msr / mse
        f_l = f_obs / _f_ppf(q, df_r, df_e)
        f_u = f_obs * _f_ppf(q, df_e, df_r)
        icc3_ci = ((f_l - 1) / (f_l + k - 1), (f_u - 1) / (f_u + k - 1))
    # ICC(2,1): Satterthwaite approximation (McGraw & Wong 1996, case 2A)
    icc2_ci = (float("nan"), float("nan"))
    if mse > 0 and np.isfinite(icc2) and icc2 < 1:
        a = k * icc2 / (n * (1 - icc2))
        b = 1 + k * icc2 * (n - 1) / (n * (1 - icc2))
        num = (a * msc + b * mse) ** 2
        den = (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / df_e
        v = num / den if den > 0 else float("inf")
        f_s = _f_ppf(q, df_r, v)
        f_t = _f_ppf(q, v, df_r)
        c = k * msc + (k * n - k - n) * mse
        icc2_ci = (n * (msr - f_s * mse) / (f_s * c + n * msr), n * (f_t * msr - mse) / (c + n * f_t * msr))
    var_rater = max(0.0, (msc - mse) / n)
    sem_a = math.sqrt(var_rater + mse)
    sem_c = math.sqrt(mse)
    return {
        "n": int(n), "k": int(k), "mean": float(grand),
        "icc1": icc1, "icc2": icc2, "icc3": icc3,
        "icc2_ci": tuple(float(x) for x in icc2_ci), "icc3_ci": tuple(float(x) for x in icc3_ci),
        "msr": msr, "msc": msc, "mse": mse, "msw": msw,
        "sem_agreement": sem_a, "sem_consistency": sem_c,
        "sdc_agreement": sdc(sem_a), "sdc_consistency": sdc(sem_c),
    }


def sdc(sem: float) -> float:
    """Smallest detectable change 1.96·√2·SEM (de Vet et al. 2006).

    >>> round(sdc(1.0), 4)
    2.7719
    """
    return float(Z95 * math.sqrt(2.0) * float(sem))


def bland_altman(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05) -> dict:
    """Bland–Altman agreement of paired measurements ``a`` and ``b`` (difference a − b).

    Returns ``n``, ``bias``, ``sd``, ``loa`` (lower, upper), ``bias_ci``, ``loa_lower_ci``,
    ``loa_upper_ci``, and ``mean`` / ``diff`` (the points of the plot). With one pair the
    SD and the intervals are NaN.

    >>> r = bland_altman([3, 5, 7, 9], [2, 5, 5, 9])
    >>> r["bias"], round(r["sd"], 4), [round(x, 3) for x in r["loa"]]
    (0.75, 0.9574, [-1.127, 2.627])
    """
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ParameterError(f"Bland–Altman needs paired values; got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n == 0:
        raise ParameterError("Bland–Altman needs at least one pair of finite values")
    d = x - y
    bias = float(d.mean())
    nan = float("nan")
    sd = float(d.std(ddof=1)) if n > 1 else nan
    loa = (bias - Z95 * sd, bias + Z95 * sd)
    if n > 1:
        from scipy import stats

        t = float(stats.t.ppf(1 - alpha / 2, n - 1))
        h_bias, h_loa = t * sd / math.sqrt(n), t * sd * math.sqrt(3.0 / n)
    else:
        h_bias = h_loa = nan
    return {
        "n": n, "bias": bias, "sd": sd, "loa": loa,
        "bias_ci": (bias - h_bias, bias + h_bias),
        "loa_lower_ci": (loa[0] - h_loa, loa[0] + h_loa),
        "loa_upper_ci": (loa[1] - h_loa, loa[1] + h_loa),
        "mean": ((x + y) / 2).tolist(), "diff": d.tolist(),
    }


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation SD(n−1)/mean; NaN for fewer than 2 values or a zero mean.

    >>> round(cv([9.0, 10.0, 11.0]), 3)
    0.1
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2 or v.mean() == 0:
        return float("nan")
    return float(v.std(ddof=1) / v.mean())


def pairwise(items: Sequence[Any], fn) -> list[float]:
    """``fn(a, b)`` for every unordered pair of ``items`` (e.g. Dice between users).

    >>> pairwise([1, 2, 4], lambda a, b: b - a)
    [1, 3, 2]
    """
    return [fn(a, b) for a, b in itertools.combinations(items, 2)]
