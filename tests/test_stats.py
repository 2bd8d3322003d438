"""pr1.stats against hand-worked intervals and scipy's paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from pr1.stats import mean_ci, paired_diff_ci


def test_mean_ci_hand_worked():
    # values 1, 2, 3: mean 2, sample std 1, sem 1/sqrt(3); t_{0.975, 2} = 4.302652729911275
    ci = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)
    assert ci.n == 3
    assert ci.mean == pytest.approx(2.0)
    assert ci.lo == pytest.approx(2.0 - half)
    assert ci.hi == pytest.approx(2.0 + half)
    assert not ci.excludes_zero  # [-0.48, 4.48]
    assert mean_ci([10.0, 11.0, 12.0]).excludes_zero


def test_mean_ci_ignores_nan_and_handles_small_n():
    assert mean_ci([math.nan, 5.0]).n == 1
    assert math.isnan(mean_ci([5.0]).lo)
    assert math.isnan(mean_ci([]).mean)
    assert mean_ci([2.0, 2.0, 2.0]).lo == 2.0  # no spread: a degenerate interval, not NaN
    assert not mean_ci([5.0]).excludes_zero


def test_paired_diff_matches_scipy_ttest_rel():
    rng = np.random.default_rng(0)
    a = rng.normal(0.5, 0.2, 40)
    b = a - rng.normal(0.05, 0.1, 40)
    ci = paired_diff_ci(a, b)
    ref = sps.ttest_rel(a, b).confidence_interval(0.95)
    assert ci.mean == pytest.approx(float(np.mean(a - b)))
    assert (ci.lo, ci.hi) == pytest.approx((ref.low, ref.high))


def test_paired_diff_drops_incomplete_pairs_and_checks_length():
    ci = paired_diff_ci([1.0, math.nan, 3.0], [0.0, 1.0, 1.0])
    assert ci.n == 2 and ci.mean == pytest.approx(1.5)
    with pytest.raises(ValueError, match="same length"):
        paired_diff_ci([1.0], [1.0, 2.0])


def test_fmt():
    assert mean_ci([1.0, 2.0, 3.0]).fmt(2) == "2.00 [-0.48, 4.48]"
    assert mean_ci([0.5]).fmt(2) == "0.50"
    assert mean_ci([]).fmt() == "—"
