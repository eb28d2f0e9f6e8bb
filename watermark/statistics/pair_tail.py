"""The exact tail of a X + b Y, X, Y independent Gamma(T, 1) (integer T), many texts at once.

vLLM's two-key statistic is (1 - alpha) E_A + alpha E_B summed over T tokens, i.e. a X + b Y;
the per-token max of two Exp(1) scores gives the same law with (a, b) = (1, 1/2). With
a > b > 0, p = b / a and x = s / b (`pvalues.log10_gamma_pair_tail` derives it):

    P[a X + b Y >= s] = sum_k f_k,   f_k = NB(k; T, p) * Q(2T + k, x),

NB the negative binomial pmf C(T + k - 1, k) p^T (1 - p)^k and Q(n, x) = P[Poisson(x) <= n - 1]
the regularised upper gamma. Both factors are log-concave in k (NB for T >= 1; Q as the cdf of a
log-concave pmf), so f is: its ratios R_k = f_{k+1} / f_k only decrease. That bounds the terms
left out on either side of a window rigorously: right of k, sum_{j > k} f_j <= f_k R_k / (1 - R_k)
once R_k < 1; left of k_lo, sum_{j < k_lo} f_j <= f_{k_lo} r / (1 - r) with
r = k_lo / ((T + k_lo - 1)(1 - p)) >= f_{k_lo - 1} / f_{k_lo}. The window starts `WIDTHS`
estimated standard deviations left of an estimate of f's mode (further left if that bound is not
below `EPS` of the sum) and runs right until the right bound is; both bounds are added, and the
sum is inflated by `ROUNDING` (relative 1e-9) for float rounding, so the tail returned is never
below the true one. Inside the window each ratio comes from the previous one in basic IEEE
operations (h_k = pi(2T + k; x) / Q(2T + k, x) has its own recursion) and the logs go through
`portable_log`, so the numba kernel and the interpreted function (`WM_NUMBA=0`) give the same
bits; the window's first term is computed outside, elementwise (scipy / numpy ufuncs). Cost:
~20 basic operations a term over ~25 standard deviations of f (a few thousand terms at T = 2,000),
once per text, vectorised over texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special

from ..settings import numba_or_none
from . import portable_log

EPS = 1e-15  # each side's left-out bound is below EPS of the window's sum
ROUNDING = 1e-9  # relative slack for float rounding: the tail returned is (1 + ROUNDING) x the sum
WIDTHS = 12.0  # the window starts this many estimated standard deviations left of the mode
_LOG10E = math.log10(math.e)
_UNDERFLOW = 1e-290
_RESCALE = 1e-200  # the window's running sum is rescaled by this when it passes 1 / _RESCALE
_LOG_RESCALE = math.log(1e200)


def _build(jit: Callable, log: Callable) -> tuple[Callable, Callable]:
    """The kernels `tails(t, x, c, k_lo, log_w0, log_pi_prev, pi0, g0, out, ok)` and `starts`,
    compiled by `jit` (numba's njit, or the identity for the interpreted twin), `log` their log."""

    series = _build_series(jit)

    @jit
    def one(t, x, c, k_lo, log_w0, log_pi_prev, pi0, g0):  # pragma: no cover - compiled
        """(log P, ok): ok False when the bound left of k_lo is not yet negligible."""
        n = 2.0 * t + k_lo
        if g0 > _UNDERFLOW:
            log_g = log(g0)
            h = pi0 / g0
        else:
            s = series(n, x)
            log_g = log_pi_prev + log(s)
            h = (x / n) / s
        h0 = h
        k = k_lo
        term = 1.0
        total = 1.0
        scale = 1.0
        rest = -1.0  # the right bound, once it is small enough
        while rest < 0.0:
            r = (t + k) / (k + 1.0) * c * (1.0 + h)
            if r < 1.0 and term * r <= EPS * total * (1.0 - r):
                rest = term * r / (1.0 - r)
            else:
                term = term * r
                total = total + term
                h = h * x / ((n + 1.0) * (1.0 + h))
                k = k + 1.0
                n = n + 1.0
                if total > 1.0 / _RESCALE:
                    term = term * _RESCALE
                    total = total * _RESCALE
                    log_w0 = log_w0 + _LOG_RESCALE
                    scale = _RESCALE
        total = total + rest
        if k_lo > 0.0:  # f(k_lo - 1) / f(k_lo) = NB's ratio / (1 + h(k_lo - 1)), h run backwards
            m = 2.0 * t + k_lo
            back = x - h0 * m
            rho = 0.0 if back <= 0.0 else k_lo / ((t + k_lo - 1.0) * c) / (1.0 + h0 * m / back)
            rho = rho * (1.0 + 1e-12)  # rounding
            if rho >= 1.0:
                return 0.0, False
            left = rho / (1.0 - rho) * scale  # rescaled at least once: an upper bound
            if left > EPS * total:
                return 0.0, False
            total = total + left
        return log_w0 + log_g + log(total * (1.0 + ROUNDING)), True

    @jit
    def tails(t, x, c, k_lo, log_w0, log_pi_prev, pi0, g0, out, ok):  # pragma: no cover - compiled
        for i in range(t.size):
            out[i], ok[i] = one(t[i], x[i], c, k_lo[i], log_w0[i], log_pi_prev[i], pi0[i], g0[i])

    return tails, _build_starts(jit)


def _build_series(jit: Callable) -> Callable:
    @jit
    def series(n, x):  # pragma: no cover - compiled (run interpreted by the twin)
        """Q(n, x) / pi(n - 1; x) = sum_i prod_{l < i} (n - 1 - l) / x for x >= n - 1 (the
        Poisson cdf read down from its top term; ratios <= 1), the rest bounded geometrically."""
        total = 1.0
        term = 1.0
        i = 0.0
        rest = -1.0
        while rest < 0.0:
            r = (n - 1.0 - i) / x
            if r <= 0.0:
                rest = 0.0
            elif term * r <= 1e-17 * total * (1.0 - r):
                rest = term * r / (1.0 - r)
            else:
                term = term * r
                total = total + term
                i = i + 1.0
        return total + rest

    return series


def _build_starts(jit: Callable) -> Callable:
    @jit
    def starts(t, x, p, widths, out_k, out_width):  # pragma: no cover - compiled
        """Where each window starts: `widths` estimated standard deviations left of f's mode
        (NB's mode, or where Q's growth x / n (n < x) balances NB's decay; the width from both
        curvatures). Only the cost depends on it, never the tail."""
        c = 1.0 - p
        for i in range(t.size):
            ti, xi = t[i], x[i]
            k = max((ti - 1.0) * c / p, 0.0)
            b = 2.0 * ti + 1.0 - c * xi
            disc = b * b - 4.0 * (2.0 * ti - c * xi * ti)
            if disc > 0.0:
                k = max(k, (-b + math.sqrt(disc)) / 2.0)
            n = 2.0 * ti + k
            curvature = max(ti - 1.0, 1.0) / ((ti + k) * (k + 1.0))
            if n < xi:
                curvature = curvature + 1.0 / n
            out_width[i] = 1.0 / math.sqrt(curvature)
            out_k[i] = max(math.floor(k - widths * out_width[i]), 0.0)

    return starts


_KERNEL: list = []


def _kernel() -> tuple[Callable, Callable]:
    if not _KERNEL:
        numba = numba_or_none()
        if numba is None:
            _KERNEL.append(_build(lambda f: f, portable_log.log_scalar))
        else:
            _KERNEL.append(_build(numba.njit(cache=True), portable_log.jit_log(numba.njit)))
    return _KERNEL[0]


def _first_terms(t: np.ndarray, x: np.ndarray, p: float, k_lo: np.ndarray) -> tuple[np.ndarray, ...]:
    """log NB(k_lo), log pi(n0 - 1; x), pi(n0; x), Q(n0, x) for n0 = 2T + k_lo, elementwise."""
    n0 = 2.0 * t + k_lo
    lg = special.gammaln(np.concatenate((t + k_lo, k_lo + 1.0, t, n0))).reshape(4, -1)
    logs = np.log(np.concatenate((x, n0))).reshape(2, -1)
    log_w0 = lg[0] - lg[1] - lg[2] + t * math.log(p) + k_lo * math.log1p(-p)
    log_pi_prev = -x + (n0 - 1.0) * logs[0] - lg[3]
    with np.errstate(under="ignore"):
        pi0 = np.exp(log_pi_prev + logs[0] - logs[1])
    return log_w0, log_pi_prev, pi0, special.gammaincc(n0, x)


def log10_pair_tails(scores: np.ndarray, shapes: np.ndarray, a: float, b: float) -> np.ndarray:
    """log10 P[a X + b Y >= score] elementwise, X, Y independent Gamma(shape, 1), integer
    shapes, a, b >= 0 (see the module: never below the true tail, relative slack 1e-9)."""
    s, t = np.asarray(scores, np.float64), np.asarray(shapes, np.float64)
    if s.shape != t.shape:
        s, t = np.broadcast_arrays(s, t)
    s, t = s.reshape(-1), t.reshape(-1)
    a, b = max(a, b), min(a, b)
    every = np.minimum(s, t).min(initial=1.0) > 0.0  # every entry live (a detector's texts)
    live = slice(None) if every else np.flatnonzero((t > 0) & (s > 0))
    tl, xl = t[live], s[live]
    out = np.zeros(s.size)
    if tl.size == 0:
        return out.reshape(np.shape(scores))
    if b <= 0.0 or a == b:
        from .pvalues import log10_gamma_tails

        out[live] = log10_gamma_tails(s[live] / a, t[live] * (1 if b <= 0.0 else 2))
        return out.reshape(np.shape(scores))
    p = b / a
    xl = xl / b
    tails, starts = _kernel()
    k_lo, width = np.empty(tl.size), np.empty(tl.size)
    starts(tl, xl, p, WIDTHS, k_lo, width)
    res, ok = np.zeros(tl.size), np.zeros(tl.size, dtype=np.bool_)
    tails(tl, xl, 1.0 - p, k_lo, *_first_terms(tl, xl, p, k_lo), res, ok)
    todo = np.flatnonzero(~ok) if not ok.all() else np.zeros(0, np.int64)
    while todo.size:  # windows whose left bound was not negligible start further left
        k_lo[todo] = np.maximum(np.floor(k_lo[todo] - 2.0 * WIDTHS * width[todo]) - 16.0, 0.0)
        part_res, part_ok = np.zeros(todo.size), np.zeros(todo.size, dtype=np.bool_)
        first = _first_terms(tl[todo], xl[todo], p, k_lo[todo])
        tails(tl[todo], xl[todo], 1.0 - p, k_lo[todo], *first, part_res, part_ok)
        res[todo] = part_res
        todo = todo[~part_ok]
    out[live] = np.minimum(res * _LOG10E, 0.0)
    return out.reshape(np.shape(scores))
