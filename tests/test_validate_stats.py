"""Agreement statistics of bmeviz.validate against published and closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bmeviz.errors import ParameterError
from bmeviz.metrics import pairwise_dice, volume_difference
from bmeviz.validate.stats import bland_altman, cv, icc, sdc

#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]


def test_icc_shrout_fleiss_table():
    r = icc(SF)
    # published point estimates (Shrout & Fleiss 1979, Table 4): 0.17, 0.29, 0.71
    assert round(r["icc1"], 2) == 0.17
    assert round(r["icc2"], 2) == 0.29
    assert round(r["icc3"], 2) == 0.71
    # the mean squares of their ANOVA table (Table 3): BMS 11.24, JMS 32.49, EMS 1.02
    assert r["msr"] == pytest.approx(11.24, abs=0.01)
    assert r["msc"] == pytest.approx(32.49, abs=0.01)
    assert r["mse"] == pytest.approx(1.02, abs=0.01)
    # F-based 95% intervals (McGraw & Wong 1996), as R psych::ICC reports them for this table
    assert r["icc3_ci"] == pytest.approx((0.34, 0.95), abs=0.01)
    assert r["icc2_ci"] == pytest.approx((0.019, 0.76), abs=0.01)


def test_icc_closed_form_offset_between_raters():
    # rater 2 = rater 1 + c: consistency is perfect, absolute agreement is MSR / (MSR + c^2)
    x = np.array([1.0, 2.0, 3.0, 4.0])
    for c in (0.0, 1.0, 2.5):
        r = icc(np.column_stack([x, x + c]))
        msr = 2 * ((x - x.mean()) ** 2).sum() / (len(x) - 1)
        assert r["icc3"] == pytest.approx(1.0)
        assert r["icc2"] == pytest.approx(msr / (msr + c ** 2))
        # SEM (agreement) = sqrt(var_rater + MSE) = sqrt(c^2 / 2); SDC = 1.96 * sqrt(2) * SEM = 1.96 c
        assert r["sem_agreement"] == pytest.approx(c / math.sqrt(2))
        assert r["sdc_agreement"] == pytest.approx(1.96 * c)
        assert r["sdc_consistency"] == pytest.approx(0.0, abs=1e-12)


def test_sdc_of_two_raters_is_the_half_width_of_the_limits_of_agreement():
    # with k = 2, Var(a - b) = 2 MSE, so 1.96 * sqrt(2) * sqrt(MSE) = 1.96 * SD(a - b)
    rng = np.random.default_rng(3)
    a = rng.normal(10, 3, 12)
    b = a + rng.normal(0.5, 1.0, 12)
    ba, r = bland_altman(a, b), icc(np.column_stack([a, b]))
    assert r["sdc_consistency"] == pytest.approx((ba["loa"][1] - ba["loa"][0]) / 2)
    assert sdc(r["sem_consistency"]) == pytest.approx(r["sdc_consistency"])


def test_bland_altman_known_numbers():
    a = [10.0, 12.0, 14.0, 20.0, 30.0]
    b = [9.0, 13.0, 12.0, 18.0, 28.0]  # differences 1, -1, 2, 2, 2: mean 1.2, SD sqrt(1.7)
    r = bland_altman(a, b)
    sd = math.sqrt(1.7)
    assert r["bias"] == pytest.approx(1.2)
    assert r["sd"] == pytest.approx(sd)
    assert r["loa"] == pytest.approx((1.2 - 1.96 * sd, 1.2 + 1.96 * sd))
    t = 2.7764451051977987  # t(0.975, 4)
    assert r["bias_ci"] == pytest.approx((1.2 - t * sd / math.sqrt(5), 1.2 + t * sd / math.sqrt(5)))
    assert r["loa_upper_ci"][1] - r["loa_upper_ci"][0] == pytest.approx(2 * t * sd * math.sqrt(3 / 5))
    assert r["mean"] == pytest.approx([9.5, 12.5, 13.0, 19.0, 29.0])
    # a constant offset: SD 0, limits at the bias
    r = bland_altman([1, 2, 3], [0.5, 1.5, 2.5])
    assert r["bias"] == pytest.approx(0.5) and r["sd"] == pytest.approx(0.0)
    assert r["loa"] == pytest.approx((0.5, 0.5))


def test_cv_pairwise_dice_and_volume_difference():
    assert cv([9.0, 10.0, 11.0]) == pytest.approx(0.1)
    assert math.isnan(cv([5.0])) and math.isnan(cv([0.0, 0.0]))
    a = np.zeros((2, 6, 6), bool)
    a[0, :3] = True  # 18 voxels
    b = np.zeros_like(a)
    b[0, 1:4] = True  # 18 voxels, 12 shared
    e = np.zeros_like(a)
    d = pairwise_dice([a, b, a, e])
    assert d[:3] == pytest.approx([24 / 36, 1.0, 0.0])
    assert d[3:5] == pytest.approx([24 / 36, 0.0])
    assert math.isnan(pairwise_dice([e, e])[0])
    assert volume_difference(3.0, 4.0) == {"diff_ml": -1.0, "diff_pct": -25.0}


@pytest.mark.parametrize("table, what", [([[1, 2]], "at least 2 subjects"), ([[1, 2], [3, float("nan")]], "missing"),
                                         ([1, 2, 3], "2D table")])
def test_icc_refuses_bad_tables(table, what):
    with pytest.raises(ParameterError, match=what):
        icc(table)


def test_bland_altman_refuses_unpaired():
    with pytest.raises(ParameterError, match="paired"):
        bland_altman([1, 2, 3], [1, 2])
    with pytest.raises(ParameterError, match="different shapes"):
        pairwise_dice([np.zeros((2, 2)), np.zeros((3, 2))])


def test_volume_ratio_agreement_on_log_scale():
    from bmeviz.validate.summary import _agreement

    # a is twice b on every scan: ratio exactly 2 with no spread, whatever the sizes
    r = _agreement([2.0, 20.0, 200.0], [1.0, 10.0, 100.0])
    assert r["ratio"]["ratio"] == pytest.approx(2.0)
    assert r["ratio"]["loa"] == pytest.approx((2.0, 2.0))
    assert r["bland_altman"]["bias"] == pytest.approx(37.0)
