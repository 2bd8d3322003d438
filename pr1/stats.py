"""Confidence intervals for ablation reports: over seeds, between paired arms, and paired by image.

Every interval is Student's t at level `level` (scipy.stats): a sweep has few seeds (3-5), where a bootstrap
interval is too narrow, and a t-interval on n paired differences is the textbook answer for "did this arm
beat that one on the same seeds / images". Fewer than two finite values give an undefined (NaN) interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its t confidence interval over `n` values (lo/hi NaN when n < 2)."""

    mean: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.lo > 0 or self.hi < 0)

    def fmt(self, digits: int = 3) -> str:
        """`0.412 [0.380, 0.445]`, or the bare mean when the interval is undefined."""
        if math.isnan(self.mean):
            return "—"
        if math.isnan(self.lo):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    return a[np.isfinite(a)]


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of the finite values and its t-interval (sample std, n - 1 degrees of freedom)."""
    a = _finite(values)
    n = len(a)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(a.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sem = float(stats.sem(a))
    if sem == 0.0:
        return Interval(mean, mean, mean, n)
    lo, hi = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return Interval(mean, float(lo), float(hi), n)


def paired_diff_ci(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean of `a - b` over pairs where both are finite, with the paired t-interval.

    Pairs are seeds of two arms (same seed, same data order) or images of one validation set before and after
    training: pairing removes the between-seed / between-image variance from the comparison.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired values must have the same length, got {len(x)} and {len(y)}")
    keep = np.isfinite(x) & np.isfinite(y)
    return mean_ci((x - y)[keep], level)
