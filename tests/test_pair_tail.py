"""The two-key tail P[a X + b Y >= s] (statistics/pair_tail.py): exact, never below the truth (issue 27).

Checked against closed forms (T = 1), against direct numerical integration of the Gamma density
(scipy.integrate, relative 1e-8) deep into the tail, against the older series
(`pvalues.log10_gamma_pair_tail`), and for the same bits whether compiled or interpreted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from wm_toolkit.watermark.statistics import pair_tail, portable_log
from wm_toolkit.watermark.statistics.pair_tail import log10_pair_tails
from wm_toolkit.watermark.statistics.pvalues import log10_gamma_pair_tail


def test_one_token_closed_forms():
    """T = 1: (a e^(-s/a) - b e^(-s/b)) / (a - b); the max of two Exp(1): 2 e^(-s) - e^(-2s)."""
    s = np.array([0.5, 5.0, 40.0, 400.0])
    exact = np.log10((0.9 * np.exp(-s / 0.9) - 0.1 * np.exp(-s / 0.1)) / 0.8)
    assert log10_pair_tails(s, np.ones(4), 0.9, 0.1) == pytest.approx(exact, abs=1e-9)
    got = log10_pair_tails(s, np.ones(4), 1.0, 0.5)
    assert got == pytest.approx(np.log10(2 * np.exp(-s) - np.exp(-2 * s)), abs=1e-9)


def _log10_by_quadrature(s: float, t: int, a: float, b: float) -> float:
    """log10 of the integral over y of the Gamma(t) density at y times Q(t, (s - b y) / a)."""
    dens = stats.gamma(t)

    def f(y: float) -> float:
        return dens.pdf(y) * special.gammaincc(t, max(s - b * y, 0.0) / a)

    lo, hi = 0.0, max(s / b, 1.0)
    points = [min(x, hi) for x in (t, s / b * 0.5, s / b * 0.9)]
    val, _ = integrate.quad(f, lo, hi, points=sorted(set(points)), limit=500, epsabs=0, epsrel=1e-12)
    val += special.gammaincc(t, s / b)  # y >= s / b: the sum exceeds s whatever x is
    return math.log10(val)


@pytest.mark.parametrize("t", [3, 40, 300])
@pytest.mark.parametrize("a,b", [(0.9, 0.1), (1.0, 0.5), (0.7, 0.3)])
def test_against_quadrature_and_never_below_it(t, a, b):
    for factor in (0.5, 1.0, 1.3, 1.8):
        s = factor * t * (a + b)
        want = _log10_by_quadrature(s, t, a, b)
        got = float(log10_pair_tails(np.array([s]), np.array([t]), a, b)[0])
        assert got == pytest.approx(want, abs=1e-7 + 1e-8 * abs(want)), (s, t)
        assert got >= want - 1e-8 * max(1.0, abs(want))  # never below, up to quadrature's own error


@pytest.mark.parametrize("t", [1, 7, 200, 2000])
def test_equals_the_older_series_across_the_range(t):
    """Both sum the same series (this one in a window with rigorous bounds), so they agree to the
    rounding slack, from the bulk to p ~ 10^-900; vectorised or one at a time."""
    for a, b in ((0.9, 0.1), (1.0, 0.5), (0.99, 0.01)):
        s = t * (a + b) * np.array([0.3, 0.9, 1.0, 1.1, 1.5, 2.5, 5.0])
        got = log10_pair_tails(s, np.full(s.size, t), a, b)
        want = np.array([log10_gamma_pair_tail(float(x), t, a, b) for x in s])
        assert np.all(np.abs(got - want) <= 2e-9 + 1e-11 * np.abs(want))
        assert np.all(got >= want - 1e-12 * np.abs(want))
        one_by_one = [float(log10_pair_tails(s[i : i + 1], np.array([t]), a, b)[0]) for i in range(s.size)]
        assert one_by_one == got.tolist()


def test_degenerate_weights_and_empty_texts():
    s, t = np.array([3.0, 0.0, 5.0]), np.array([2, 2, 0])
    got = log10_pair_tails(s, t, 1.0, 0.0)  # one key only: Gamma(T) tail of s / a
    assert got[0] == pytest.approx(math.log10(special.gammaincc(2, 3.0))) and got[1] == 0.0 and got[2] == 0.0
    assert log10_pair_tails(s[:1], t[:1], 0.5, 0.5)[0] == pytest.approx(math.log10(special.gammaincc(4, 6.0)))


def test_compiled_and_interpreted_kernels_give_the_same_bits(monkeypatch):
    rng = np.random.default_rng(2)
    t = rng.integers(1, 3000, 40).astype(np.float64)
    s = t * rng.uniform(0.3, 3.0, 40)
    compiled = log10_pair_tails(s, t, 0.9, 0.1)
    monkeypatch.setattr(pair_tail, "_KERNEL", [pair_tail._build(lambda f: f, portable_log.log_scalar)])
    interpreted = log10_pair_tails(s, t, 0.9, 0.1)
    assert compiled.tobytes() == interpreted.tobytes()
