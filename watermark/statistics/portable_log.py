"""log(1 - u) that rounds the same on every CPU, in numpy and in numba alike.

The EXP costs are log(1 - u). numpy's `log1p` is vectorised (on AVX-512 CPUs it takes a SIMD
path) and numba's calls the scalar libm: the two differ in the last place for about 7 % of u,
so a null cost computed by the numba kernel and by the numpy fallback could differ, and with it,
at a tie, a p-value. Here the logarithm is fdlibm's algorithm written out in IEEE basic
operations (+, -, *, / are correctly rounded everywhere; `frexp` is exact): the numpy function
and the scalar one (compiled by numba, which never fuses a multiply and an add unless told to)
perform the same operations in the same order, so they agree bit for bit on any CPU. Accuracy is
within 2 ulp of the true value (tested against `np.log1p`); what the statistics need is that
every path computes the same function, which this guarantees.

`null_kernels` compiles `reduced_log` itself with numba and repeats `log1m_scalar`'s four lines of
range reduction around it (numba cannot call a plain Python function);
`tests/test_portable_log.py` holds the three versions equal bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

SQRT_HALF = 0.70710678118654752440
LN2_HI = 6.93147180369123816490e-01  # trailing zeros: k * LN2_HI is exact for |k| < 2^11
LN2_LO = 1.90821492927058770002e-10
LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01


def reduced_log(f, k):  # noqa: ANN001, ANN201 - one body for numpy arrays and scalars (and numba)
    """log((1 + f) * 2^k) for 1 + f in [sqrt(1/2), sqrt(2)), k a float holding an integer: the
    polynomial of fdlibm's `__ieee754_log`, in the same operations for arrays and scalars."""
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (LG2 + w * (LG4 + w * LG6))
    t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)))
    r = t2 + t1
    hfsq = 0.5 * f * f
    return k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)


def log_scalar(y: float) -> float:
    """log(y) for a finite y > 0, the scalar twin of `log_array`."""
    m, e = math.frexp(y)
    if m < SQRT_HALF:
        m = m * 2.0
        e = e - 1
    return reduced_log(m - 1.0, float(e))


def log1m_scalar(u: float) -> float:
    """log(1 - u) for u in [0, 1): log of the rounded 1 - u plus the rounding error's share
    (1 - u = y + c exactly, c representable, log(y + c) = log(y) + c / y to within an ulp)."""
    y = 1.0 - u
    if y <= 0.0:  # u = 1 (the PRF's top 53 bits all set round to 1.0): log(0)
        return -math.inf
    c = ((1.0 - y) - u) / y
    return log_scalar(y) + c


def log_array(y: np.ndarray) -> np.ndarray:
    """log(y) elementwise, bit-identical to `log_scalar` on each entry."""
    m, e = np.frexp(np.asarray(y, dtype=np.float64))
    low = m < SQRT_HALF
    m = np.where(low, m * 2.0, m)
    k = (e - low).astype(np.float64)
    return reduced_log(m - 1.0, k)


def log1m(u: np.ndarray) -> np.ndarray:
    """log(1 - u) elementwise for u in [0, 1), bit-identical to `log1m_scalar` on each entry."""
    u = np.asarray(u, dtype=np.float64)
    y = 1.0 - u
    zero = y <= 0.0  # u = 1, as in `log1m_scalar`
    if zero.any():
        y = np.where(zero, 1.0, y)
    c = ((1.0 - y) - u) / y
    out = log_array(y) + c
    if zero.any():
        out = np.where(zero, -np.inf, out)
    return out


def jit_log(njit):  # noqa: ANN001, ANN201 - numba's njit in, an inline numba function out
    """`log_scalar` compiled by numba (inline): for kernels that must round as the numpy path does."""
    reduced = njit(inline="always")(reduced_log)
    sqrt_half = SQRT_HALF

    @njit(inline="always")
    def log(y):  # pragma: no cover - compiled
        m, e = math.frexp(y)
        if m < sqrt_half:
            m = m * 2.0
            e = e - 1
        return reduced(m - 1.0, float(e))

    return log
