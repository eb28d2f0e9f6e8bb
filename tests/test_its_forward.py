"""The forward statistic of its-edit: the likelihood ratio summed over shifts and alignments.

Specification: Lambda = (1/n) sum over start rows and alignments of the product, per token, of
skip weights (delta^k for k <= MAX_SKIP skipped rows), then an insertion (rho, ratio 1, row stays)
or a match (1 - rho, the cell's ratio, row advances); statistic = -log Lambda. The recursion over
(token, row) must equal that sum enumerated path by path; numba must equal numpy; the ratio table
must be the likelihood ratio of ITS decoding; the test built on it must stay valid.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from wm_toolkit.watermark.config import config_from_dict
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.distortion_free import DistortionFreeConfig
from wm_toolkit.watermark.statistics import alignment, its_likelihood, null_kernels


def brute_force(lr: np.ndarray, rho: float, delta: float) -> float:
    """-log of the path sum, every path written out (tiny n and m only)."""
    n, m = lr.shape
    skips = range(0, min(alignment.MAX_SKIP, n - 1) + 1) if delta > 0 else range(1)
    total = 0.0
    for start in range(n):
        for steps in itertools.product(itertools.product(skips, (False, True)), repeat=m):
            r, w = start, 1.0
            for t, (k, match) in enumerate(steps):
                r, w = (r + k) % n, w * delta**k
                if match:
                    w *= (1 - rho) * lr[r, t]
                    r = (r + 1) % n
                else:
                    w *= rho
            total += w
    return -math.log(total / n)


@pytest.mark.parametrize(
    ("n", "m", "rho", "delta"), [(3, 2, 0.2, 0.0), (4, 3, 0.3, 0.1), (2, 4, 0.1, 0.2), (5, 2, 0.5, 0.02)]
)
def test_the_recursion_equals_the_sum_over_every_path(n, m, rho, delta):
    lr = np.random.default_rng(n * 10 + m).exponential(size=(n, m))
    want = brute_force(lr, rho, delta)
    assert alignment.its_forward(lr, rho, delta)[0] == pytest.approx(want, rel=1e-12)


@pytest.mark.skipif(not null_kernels.AVAILABLE, reason="numba is off (WM_NUMBA=0) or not installed")
def test_numba_equals_numpy_for_the_text_and_for_null_keys():
    rng = np.random.default_rng(3)
    ratios = its_likelihood.DEFAULT_RATIOS
    for n, m, delta in [(16, 40, 0.02), (64, 30, 0.0), (7, 25, 0.1)]:
        eta, u = rng.random(m), rng.random(n)
        want = alignment.its_forward(its_likelihood.cell_ratios(eta[None], u[None]), 0.2, delta)[0]
        assert null_kernels.forward_statistic(eta, u, ratios, 0.2, delta) == pytest.approx(want, rel=1e-12)
    s = build_scheme({"scheme": "its-edit", "vocab_size": 500, "key_length": 32}, Key.from_seed("fwd"))
    ids = rng.integers(0, 500, 50)
    uniq, labels = np.unique(ids, return_inverse=True)
    seeds = np.arange(5, dtype=np.int64) * 7919
    fast = null_kernels.forward_nulls(seeds, labels, len(uniq), 32, ratios, 0.2, 0.02)
    eta, u = s.null_rows(seeds, len(uniq))
    slow = alignment.its_forward(its_likelihood.cell_ratios(np.take(eta, labels, axis=1), u), 0.2, 0.02)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    assert s.forward_statistic(ids, fast=True) == pytest.approx(
        s.forward_statistic(ids, fast=False), rel=1e-12
    )
    observed = s.forward_statistic(ids)
    a = np.concatenate(list(s._null_indicators(ids, ids.size, observed, 200, fast=True)))
    b = np.concatenate(list(s._null_indicators(ids, ids.size, observed, 200, fast=False)))
    assert a.size == b.size == 200 and np.array_equal(a, b)


def test_the_table_is_the_likelihood_ratio_of_its_decoding():
    """Draws by `simulate` follow the decoder: a flat distribution puts u at eta (1 - mu(y)) to
    within mu(y); the table's expected ratio under unrelated keys is 1 (a proper density ratio),
    and a watermarked token scores above 0 on average."""
    gen = torch.Generator().manual_seed(0)
    probs = torch.full((4, 1000), 1e-3)
    eta, u = its_likelihood.simulate(probs, 2000, gen)
    assert np.all(np.abs(u - eta * (1 - 1e-3)) <= 1e-3 + 5 * math.sqrt(1e-3 * 0.25))
    mass = its_likelihood.null_cell_mass()
    assert mass.sum() == pytest.approx(1.0, abs=1e-9)
    ratios = its_likelihood.DEFAULT_RATIOS
    assert float((mass * ratios).sum()) == pytest.approx(1.0, abs=0.02)
    peaked = torch.softmax(torch.randn(8, 5000, generator=gen) * 3, dim=-1)
    e, v = its_likelihood.simulate(peaked, 500, gen)
    i, j = its_likelihood.cell_of(e, v)
    assert float(np.log(ratios[i, j]).mean()) > 0.05


def test_its_edit_configs_choose_the_statistic_by_version():
    """New its-edit configs score with the forward statistic; a version-3 config keeps the
    minimum it was written with; exp-edit and block lengths keep the minimum."""
    new = DistortionFreeConfig(scheme="its-edit")
    assert new.edit_statistic == "forward"
    old = {k: v for k, v in new.to_dict().items() if k != "edit_statistic"}
    assert config_from_dict({**old, "version": 3}).edit_statistic == "min"
    assert DistortionFreeConfig(scheme="exp-edit").edit_statistic == "min"
    assert DistortionFreeConfig(scheme="its-edit", block_length=20).edit_statistic == "min"
    for bad in ({"scheme": "exp-edit", "edit_statistic": "forward"}, {"scheme": "its-edit", "edit_statistic": "max"},
                {"scheme": "its-edit", "edit_insert_rate": 1.0}, {"scheme": "its-edit", "edit_skip_rate": -0.1},
                {"scheme": "its-edit", "edit_statistic": "forward", "block_length": 10}):  # fmt: skip
        with pytest.raises(ConfigError):
            DistortionFreeConfig(**bad)


def test_forward_detection_is_valid_under_unrelated_keys():
    """Texts scored under keys that did not write them: p-values spread over (0, 1], and at
    alpha = 0.1 the share called watermarked stays near 0.1 (binomial bound over 60 keys)."""
    rng = np.random.default_rng(11)
    ids = rng.integers(0, 2000, 40)
    ps = []
    for i in range(60):
        s = build_scheme({"scheme": "its-edit", "vocab_size": 2000, "key_length": 32, "resamples": 99},
                         Key.from_seed(f"null-{i}"))  # fmt: skip
        ps.append(s.detect(ids).p_value)
    ps = np.array(ps)
    assert (ps <= 0.1).sum() <= 13  # P[Bin(60, 0.1) > 13] < 0.01
    assert ps.max() > 0.5
