"""p-value helpers against scipy-free brute force."""

from math import comb

import numpy as np
import pytest

from wm_toolkit.watermark.statistics import pvalues as stats


def brute_binomial_tail(g, t, p):
    return sum(comb(t, i) * p**i * (1 - p) ** (t - i) for i in range(g, t + 1))


def brute_hypergeom_tail(g, n, k, m):
    return sum(comb(k, i) * comb(n - k, m - i) for i in range(g, min(k, m) + 1)) / comb(n, m)


@pytest.mark.parametrize("g,t,p", [(0, 10, 0.25), (7, 10, 0.25), (30, 50, 0.5), (50, 50, 0.25), (1, 1, 0.3)])
def test_binomial_tail_is_exact(g, t, p):
    assert stats.binomial_tail(g, t, p) == pytest.approx(brute_binomial_tail(g, t, p), rel=1e-9)


@pytest.mark.parametrize("g,n,k,m", [(3, 40, 10, 8), (0, 40, 10, 8), (8, 40, 10, 8), (5, 100, 25, 20)])
def test_hypergeom_tail_is_exact(g, n, k, m):
    assert stats.hypergeom_tail(g, n, k, m) == pytest.approx(brute_hypergeom_tail(g, n, k, m), rel=1e-9)


def test_gamma_tail_for_one_exponential_is_exp_minus_x():
    assert stats.gamma_tail(2.0, 1) == pytest.approx(0.1353352832366127)


def test_permutation_p_value_is_never_zero():
    assert stats.permutation_p_value(0, 999) == pytest.approx(1e-3)
    assert stats.permutation_p_value(999, 999) == 1.0


def test_clopper_pearson_brackets_the_rate():
    lo, hi = stats.clopper_pearson(0, 200)
    assert lo == 0.0 and hi == pytest.approx(0.0181, abs=2e-4)
    lo, hi = stats.clopper_pearson(10, 100)
    assert lo < 0.1 < hi


def test_gamma_tail_matches_scipy_gamma_sf():
    from scipy import stats as st

    for score, shape in [(3.0, 5), (50.0, 35), (0.5, 1)]:
        assert stats.gamma_tail(score, shape) == pytest.approx(st.gamma.sf(score, shape), rel=1e-12)


def test_log_space_tails_match_high_precision_values_below_the_float_range():
    """mpmath references at 50 digits: the float tails underflow to 0, the log10 tails do not."""
    from wm_toolkit.watermark.statistics.pvalues import (
        binomial_tail,
        log10_binomial_tail,
        log10_gamma_tail,
        log10_hypergeom_tail,
    )

    assert abs(log10_binomial_tail(2501, 2501, 0.25) - 2501 * np.log10(0.25)) < 1e-9
    assert abs(log10_gamma_tail(2000, 500) - (-352.63788120526695)) < 1e-9
    assert abs(log10_hypergeom_tail(900, 49152, 12288, 900) - (-552.91772336673453)) < 1e-9
    # inside the float range they equal log10 of the float tails
    assert abs(log10_binomial_tail(60, 100, 0.25) - np.log10(binomial_tail(60, 100, 0.25))) < 1e-12


def test_a_kgw_text_whose_p_value_underflows_reports_a_finite_log10_below_minus_300():
    import torch

    from wm_toolkit.watermark import Key, build_scheme

    scheme = build_scheme({"scheme": "kgw", "vocab_size": 1000, "gamma": 0.25}, Key.from_seed(3))
    ids = [0]  # a chain of 1,500 tokens, each green in the context of the one before
    for _ in range(1500):
        seeds = torch.from_numpy(scheme.seeds_for(np.array([[ids[-1]]])))
        green = np.flatnonzero(scheme.vocab_green_mask(seeds, 1000)[0].numpy())
        ids.append(int(green[len(ids) % len(green)]))
    det = scheme.detect(ids)
    assert det.p_value == 0.0
    assert np.isfinite(det.log10_p_value) and det.log10_p_value < -300
    assert det.verdict(1e-3) == "watermarked"


# ---- sums of independent integer variables (SynthID scores, hypergeometric groups) ------------------
def _direct_tail(components, observed):
    """Brute-force convolution in exact rational-free float64: the reference for small sums."""
    dist = np.ones(1)
    for pmf, copies in components:
        for _ in range(copies):
            dist = np.convolve(dist, pmf)
    return float(dist[observed:].sum())


@pytest.mark.parametrize("observed", [0, 1, 7, 20, 31, 39, 40])
def test_lattice_tail_equals_direct_convolution(observed):
    from scipy import stats as st

    hyper = st.hypergeom.pmf(np.arange(4), 100, 25, 3)
    skewed = np.array([0.5, 0.0, 0.2, 0.0, 0.0, 0.3])  # gaps in the support are allowed
    comps = [(hyper, 3), (skewed, 4), (np.array([0.75, 0.25]), 11)]
    want = _direct_tail(comps, observed)
    assert stats.lattice_tail(comps, observed) == pytest.approx(want, rel=1e-9, abs=1e-300)


def test_lattice_tail_of_fair_coins_is_the_binomial_tail_far_below_the_float_range():
    """1,000 copies of Bernoulli(1/2): tilting keeps every digit where the tail is 1e-200."""
    coin = [(np.array([0.5, 0.5]), 1000)]
    for k in (500, 700, 900, 999):
        assert stats.log10_lattice_tail(coin, k) == pytest.approx(
            stats.log10_binomial_tail(k, 1000, 0.5), abs=1e-8
        )
    assert stats.log10_lattice_tail(coin, 1000) == pytest.approx(-1000 * np.log10(2))
    assert stats.log10_lattice_tail(coin, 1001) == -np.inf and stats.log10_lattice_tail(coin, 0) == 0.0


def test_weighted_synthid_score_tail_matches_direct_convolution():
    """Sum of c_l * Bernoulli(1/2) over 30 layers (c_l = 290 - 9 l) and 3 positions."""
    from wm_toolkit.watermark.schemes.synthid import fair_coin_null

    pmf = fair_coin_null(30).weighted_pmf
    total = 3 * (len(pmf) - 1)
    for frac in (0.5, 0.7, 0.9):
        k = int(frac * total)
        assert stats.lattice_tail([(pmf, 3)], k) == pytest.approx(_direct_tail([(pmf, 3)], k), rel=1e-8)


def test_lattice_tail_divides_out_a_common_step_exactly():
    """Support on multiples of 3: the same tail as the direct convolution, at observed values on
    and between the lattice points."""
    pmf = np.zeros(10)
    pmf[[0, 3, 9]] = [0.5, 0.3, 0.2]
    comps = [(pmf, 6)]
    for observed in (1, 2, 3, 17, 18, 19, 40, 53, 54):
        assert stats.lattice_tail(comps, observed) == pytest.approx(_direct_tail(comps, observed), rel=1e-9)


def test_shallow_lattice_tails_from_the_cached_distribution_agree_with_the_tilted_path(monkeypatch):
    """Tails >= UNTILTED_MIN_TAIL are summed from one untilted FFT kept per components; forcing the
    tilt (no cache) must give the same value within the stated 1e-9 relative error."""
    from wm_toolkit.watermark.schemes.synthid import fair_coin_null
    from wm_toolkit.watermark.statistics import pvalues

    comps = [(fair_coin_null(10).weighted_pmf, 150)]
    top = 150 * (len(comps[0][0]) - 1)
    observed = np.linspace(0.45 * top, 0.56 * top, 40).astype(int)
    cached = [stats.log10_lattice_tail(comps, int(o)) for o in observed]
    monkeypatch.setattr(pvalues, "LATTICE_CACHE_MAX", 0)
    tilted = [stats.log10_lattice_tail(comps, int(o)) for o in observed]
    shallow = [
        (a, b) for a, b in zip(cached, tilted, strict=True) if a >= np.log10(pvalues.UNTILTED_MIN_TAIL)
    ]
    assert len(shallow) > 10
    for a, b in shallow:
        assert 10 ** (a - b) == pytest.approx(1.0, abs=1e-9)


def test_hypergeometric_tail_table_matches_scipy():
    from scipy import stats as st

    vocab, marked = 49152, 12288
    for draws in (1, 7, 200, 1500):
        for g in range(0, draws + 2, max(1, draws // 40)):
            want = st.hypergeom.sf(g - 1, vocab, marked, draws)
            if want > 1e-290:
                assert 10 ** stats.log10_hypergeom_tail(g, vocab, marked, draws) == pytest.approx(
                    want, rel=1e-9
                )
    assert stats.log10_hypergeom_tail(draws + 1, vocab, marked, draws) == -np.inf
