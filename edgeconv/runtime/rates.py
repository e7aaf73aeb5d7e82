"""Confidence intervals of a rate from k successes in n trials (numpy/math only: no scipy on
the device side). Used for the unlock trial's false-accept rate."""

from __future__ import annotations

import math

import numpy as np


def wilson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval."""
    if n <= 0:
        return 0.0, 1.0
    z = _z(conf)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _z(conf: float) -> float:
    """Two-sided normal quantile by bisection on erf (no scipy)."""
    target = 1 - (1 - conf) / 2
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p), summed in log space."""
    if k <= 0:
        return 1.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    i = np.arange(k, n + 1)
    lg = (math.lgamma(n + 1) - np.array([math.lgamma(v + 1) for v in i])
          - np.array([math.lgamma(n - v + 1) for v in i])
          + i * math.log(p) + (n - i) * math.log1p(-p))
    m = lg.max()
    return float(min(1.0, math.exp(m) * np.exp(lg - m).sum()))


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval: bisection on the binomial tails."""
    if n <= 0:
        return 0.0, 1.0
    a = (1 - conf) / 2

    def solve(f):
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if f(mid) else (lo, mid)
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: _binom_sf(k, n, p) < a)
    upper = 1.0 if k == n else solve(lambda p: 1 - _binom_sf(k + 1, n, p) > a)
    return lower, upper
