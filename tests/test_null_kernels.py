"""The numba kernels of the permutation test's null side equal the numpy path bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.statistics import alignment

nk = pytest.importorskip("wm_toolkit.watermark.statistics.null_kernels")
if not nk.AVAILABLE:  # pragma: no cover
    pytest.skip("numba is off (WM_NUMBA=0) or not installed", allow_module_level=True)

SCHEMES = ["exp", "exp-edit", "its", "its-edit"]


def cost_tensors(rng: np.random.Generator):
    """Random (B, n, m) costs of both kinds (EXP: log(1 - u) <= 0; normal: any sign) and a k."""
    for trial in range(12):
        n, m = int(rng.integers(2, 40)), int(rng.integers(1, 24))
        k = int(rng.integers(1, m + 1))
        c = rng.normal(size=(3, n, m)) if trial % 2 else np.log1p(-rng.random((3, n, m)))
        yield c, k


@pytest.mark.parametrize("free_end", [False, True])
@pytest.mark.parametrize("gamma", [0.0, 0.4, 1.3])
def test_exact_edit_statistic_is_bit_identical_to_the_numpy_kernel(gamma, free_end):
    for costs, k in cost_tensors(np.random.default_rng(1)):
        want = alignment.levenshtein_min(costs, k, gamma, free_end)
        got = np.array([nk.edit_min(c, k, gamma, free_end) for c in costs])
        assert np.array_equal(got, want)


def test_exact_basic_statistic_is_bit_identical_to_the_numpy_kernel():
    for costs, k in cost_tensors(np.random.default_rng(2)):
        assert np.array_equal(np.array([nk.basic_min(c, k) for c in costs]), alignment.basic_min(costs, k))


@pytest.mark.parametrize("family", ["exp", "its"])
def test_null_keys_are_generated_bit_identically(family):
    s = build_scheme({"scheme": family, "key_length": 24}, Key.from_seed("kernels"))
    ids = np.random.default_rng(3).integers(0, 50, 30)
    uniq, labels = np.unique(ids, return_inverse=True)
    seeds = s.null_seeds(ids, 30, 6)
    want = s.null_costs(seeds, labels, len(uniq))
    got = np.stack([nk.null_costs(family, int(x), labels, len(uniq), 24) for x in seeds])
    assert np.array_equal(got, want)


@pytest.mark.parametrize("free_end", [False, True])
@pytest.mark.parametrize("name", SCHEMES)
def test_indicators_equal_the_numpy_path_and_bounds_hold(name, free_end):
    """At observed values spread over the null distribution, the kernel's `null <= observed`
    equals the numpy statistics', and no key is ruled out by a bound above its statistic
    (square window and free end alike)."""
    cfg = {"scheme": name, "key_length": 40, "edit_free_end": free_end, "edit_statistic": "min"}
    s = build_scheme(cfg, Key.from_seed("kernels-" + name))
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 60, 36)
    ids[20:26] = ids[2:8]  # repeated tokens share null entries
    uniq, labels = np.unique(ids, return_inverse=True)
    for k in (36, 12):
        seeds = s.null_seeds(ids, k, 70)
        stats = s.statistic(s.null_costs(seeds, labels, len(uniq)), k)
        for observed in np.quantile(stats, [0.0, 0.1, 0.5, 0.95]):
            margin = 1e-3 * (abs(observed) + k)
            hits, bounds, exact = nk.null_indicators(
                s.family, s.config.edit, seeds, labels, len(uniq), 40, k, s.config.edit_gamma,
                (0.0, 0.5), float(observed), margin, free_end=free_end,
            )  # fmt: skip
            assert np.array_equal(hits, stats <= observed)
            if name != "its":
                assert np.all(bounds.max(axis=1) <= stats + margin)
                assert np.all(exact | (bounds.max(axis=1) > observed + margin))


@pytest.mark.parametrize("free_end", [False, True])
@pytest.mark.parametrize("name", ["exp-edit", "its-edit"])
def test_scheme_gives_the_same_indicators_with_and_without_numba(name, free_end):
    """The numba path may end a batch at the stop_after-th null <= observed (Besag-Clifford
    stops there); up to that point its indicators are the numpy path's."""
    cfg = {"scheme": name, "key_length": 32, "edit_free_end": free_end, "edit_statistic": "min"}
    s = build_scheme(cfg, Key.from_seed("paths"))
    ids = np.random.default_rng(5).integers(0, 40, 20)
    costs = s.cost_matrix(ids)[None]
    observed = float(s.statistic(costs, 20)[0])
    fast = np.concatenate(list(s._null_indicators(ids, 20, observed, 150, fast=True)))
    slow = np.concatenate(list(s._null_indicators(ids, 20, observed, 150, fast=False)))
    assert slow.size == 150 and np.array_equal(fast, slow[: fast.size])
    assert fast.size == 150 or (fast.sum() == s.config.stop_after and fast[-1])


def test_a_cache_entry_written_under_another_module_name_is_rebuilt_not_raised(monkeypatch):
    # numba's on-disk cache records the module's import name; an entry written when this file was
    # imported as `watermark.null_kernels` fails to load under `wm_toolkit` with an ImportError.
    flushed = []

    class StaleCache:
        def flush(self):
            flushed.append(True)

    class Kernel:
        _cache = StaleCache()
        calls = 0

        def __call__(self, x):
            Kernel.calls += 1
            if Kernel.calls == 1:
                raise ModuleNotFoundError("No module named 'watermark'")
            return x + 1

    kernel = Kernel()
    monkeypatch.setattr(nk, "_stale_probe", kernel, raising=False)
    assert nk._call(kernel, 1) == 2
    assert flushed and Kernel.calls == 2


def test_forward_indicators_agree_between_paths_and_ties_count_as_hits():
    """The forward statistic differs between numba and numpy by ~1e-12 (summation order, log), so
    ties are resolved conservatively: a null value within `forward_tie` of the observed counts,
    and both paths count the same keys, including one placed exactly at the observed value."""
    from wm_toolkit.watermark.schemes.distortion_free import forward_tie

    s = build_scheme({"scheme": "its-edit", "key_length": 24}, Key.from_seed("forward-paths"))
    ids = np.random.default_rng(8).integers(0, 40, 30)
    fast_stats = np.concatenate([x for x in _forward_values(s, ids, fast=True)])
    slow_stats = np.concatenate([x for x in _forward_values(s, ids, fast=False)])
    assert np.allclose(fast_stats, slow_stats, rtol=0, atol=1e-10)
    for observed in (float(np.median(slow_stats)), float(fast_stats[3]), float(slow_stats[3])):
        fast = np.concatenate(list(s._null_indicators(ids, ids.size, observed, 100, fast=True)))
        slow = np.concatenate(list(s._null_indicators(ids, ids.size, observed, 100, fast=False)))
        assert np.array_equal(fast, slow) and fast[3] and slow[3]
    assert forward_tie(5.0) > 1e3 * np.abs(fast_stats - slow_stats).max()


def _forward_values(s, ids, fast):
    """The null keys' forward statistics themselves (the values `_forward_indicators` compares)."""
    from wm_toolkit.watermark.statistics import alignment, its_likelihood

    uniq, labels = np.unique(ids, return_inverse=True)
    seeds = s.null_seeds(ids, ids.size, 100, 0)
    cfg = s.config
    if fast:
        yield nk.forward_nulls(seeds, labels.reshape(-1), len(uniq), cfg.key_length,
                               its_likelihood.DEFAULT_RATIOS, cfg.edit_insert_rate, cfg.edit_skip_rate)  # fmt: skip
        return
    eta, u = s.null_rows(seeds, len(uniq))
    ratios = its_likelihood.cell_ratios(np.take(eta, labels.reshape(-1), axis=1), u)
    yield alignment.its_forward(ratios, cfg.edit_insert_rate, cfg.edit_skip_rate)


def test_wm_numba_0_turns_the_kernels_off():
    import subprocess
    import sys

    code = "from wm_toolkit.watermark.statistics import null_kernels as k; print(k.AVAILABLE)"
    env = {**__import__("os").environ, "WM_NUMBA": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
