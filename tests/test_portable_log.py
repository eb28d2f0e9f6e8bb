"""log(1 - u) is one function on every path: numpy, plain Python and the numba kernels agree bit
for bit on every CPU (IEEE basic operations only), and stay within 1 ulp of libm's log1p."""

from __future__ import annotations

import numpy as np
import pytest

from wm_toolkit.watermark.statistics import portable_log


def _uniforms(count: int) -> np.ndarray:
    """The PRF's uniforms (top 53 bits + 1/2, over 2^53), with the edges the PRF can produce."""
    j = np.random.default_rng(7).integers(0, 1 << 53, count)
    edges = np.array([0, 1, 2, (1 << 52) - 1, 1 << 52, (1 << 53) - 2])
    return (np.concatenate([j, edges]).astype(np.float64) + 0.5) * 2.0**-53


def test_the_array_and_scalar_versions_are_bit_identical():
    u = _uniforms(50_000)
    scalar = np.array([portable_log.log1m_scalar(float(x)) for x in u])
    assert np.array_equal(portable_log.log1m(u), scalar)


def test_it_is_within_one_ulp_of_log1p():
    u = _uniforms(1_000_000)
    want = np.log1p(-u)
    ulps = np.abs(portable_log.log1m(u) - want) / np.spacing(np.abs(want))
    assert ulps.max() <= 1.0


def test_u_equal_to_one_gives_minus_infinity_on_both_paths():
    assert portable_log.log1m(np.array([1.0]))[0] == -np.inf == portable_log.log1m_scalar(1.0)


def test_the_numba_kernel_computes_the_same_bits():
    nk = pytest.importorskip("wm_toolkit.watermark.statistics.null_kernels")
    if not nk.AVAILABLE:
        pytest.skip("numba is off (WM_NUMBA=0) or not installed: the numpy path is the only one")
    u = _uniforms(200_000)
    assert np.array_equal(nk.log1m(u), portable_log.log1m(u))
