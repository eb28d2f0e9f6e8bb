"""Distortion-free watermarks of Kuditipudi, Thickstun, Hashimoto & Liang (2023): EXP and ITS.

A key sequence xi of n rows is read at positions (tau + i) mod n, where tau is a fresh random
shift per generated text. Each decoder is distortion-free: over a random key, the token it picks
from a distribution mu is distributed exactly as mu.

- EXP: row i is a vector of V uniforms (`prf.vocab_uniforms` of the row's seed, made on demand,
  one row per text at a step). Token = argmax_v xi[v] ** (1 / mu(v)), computed as
  argmin_v log(-log xi[v]) - log mu(v) in float64.
- ITS: one keyed permutation pi of the vocabulary (the argsort of V keyed uniforms w) and one
  uniform u_i per row. Token = the first token in pi order whose cumulative probability reaches
  u_i (times the total, so float rounding can never select a zero-probability token).

Detection aligns the text with the key (block length k, every cyclic shift), using a per-token
cost c(y, row): EXP log(1 - xi_row[y]); ITS |eta(y) - u_row|. The basic statistic sums c along
one alignment; the edit statistic is the paper's soft Levenshtein cost with gap cost gamma
(`watermark.alignment`), by default with a free end (`edit_free_end`): the key rows after the last
matched one cost nothing, so a text with insertions pays gamma once per inserted token instead of
twice (the paper's square window also charges the rows it leaves over). For ITS-edit on 120-token
texts after 20 % insertions this takes detection at alpha = 1e-3 from about 1 to 11 of 16
(benchmarks/results/distortion_free.md); for EXP-edit (gamma = 0) the two statistics are equal.

ITS-edit configs of version 4 on score with the forward statistic instead (`edit_statistic`):
the likelihood ratio of the text under "written with this key, then edited" against "unrelated
to this key", summed over the key shift and every alignment with inserted tokens and skipped key
rows (`alignment.its_forward`), each matched token weighted by what its (eta, u) pair says under
ITS decoding (`watermark.its_likelihood`). The minimum over alignments lets every null key pick
its own best alignment as well; the sum weighs alignments by how likely they are, which is the
most powerful test against that edit model (Neyman-Pearson), and it costs n * m cells per key.
On 32 ITS texts of 120 tokens after 20 % insertions it calls 29 watermarked at alpha = 1e-3,
the minimum 26 (benchmarks/results/distortion_free.md).
p-values come from a permutation test against independent null keys
(`watermark.permutation`, Besag-Clifford early stopping). Given the level alpha the caller will
decide at, `detect(ids, alpha)` draws as many null keys as deciding p <= alpha needs (about
stop_after / alpha, at most `max_resamples`) and stops once the verdict at alpha is settled; the
null statistics come from the numba kernels of `watermark.null_kernels` when numba is installed
(bit-identical to the numpy kernels used otherwise). For the EXP family, the Gamma tail of
the basic statistic with a union bound over the n * (m - k + 1) alignments is a second valid
p-value that needs no resampling; the two are combined by a weighted Bonferroni rule,
p = min(p_bound / w, p_perm / (1 - w)), and the permutation test is skipped when the first term
already decides (below alpha, or below the smallest value the second can take).

Deviation from the reference code, on purpose: ITS scores eta(y) = w_y (the keyed uniform whose
argsort defines pi) instead of rank_pi(y) / V. The two differ by O(V^-1/2); the decoder is
unchanged, and null keys become exact and cheap (i.i.d. uniforms for the text's distinct tokens
instead of a fresh permutation of the whole vocabulary per resample).
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from transformers import LogitsProcessor

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError, InputError
from ..keying import prf
from ..statistics import alignment, its_likelihood, portable_log
from ..statistics.permutation import draws_for_level, sequential_p_value, smallest_p
from ..statistics.pvalues import clopper_pearson, log10_gamma_tail
from ..statistics.spans import ShiftedGammaEvidence
from .base import Detection, TextTooShortError, WatermarkScheme, as_token_array, sampling_warpers
from .registry import register_scheme
from .spans import SpanMixin

FAMILY = {"exp": "exp", "exp-edit": "exp", "its": "its", "its-edit": "its"}
# configs of version 3 on align with a free end by default; older ones were made (and are read)
# with the paper's square window
FREE_END_SINCE_VERSION = 3
# configs of version 4 on score its-edit with the forward statistic by default; older ones (and
# exp-edit, and any config with a block length) keep the minimum over alignments
FORWARD_SINCE_VERSION = 4
EDIT_STATISTICS = ("min", "forward")
DEFAULT_EDIT_GAMMA = {"exp": 0.0, "its": 0.4}
# bounds: detection holds (key_length x tokens) cost matrices, so the key length caps their rows
MAX_KEY_LENGTH = 65_536
MAX_BLOCK_LENGTH = 2**24
MAX_EDIT_GAMMA = 1e6
MAX_RESAMPLES = 1_000_000
# a text is scored against every key row: (key_length x tokens) cells per cost matrix, float64.
# One matrix may hold 2^24 cells (128 MB) and a batch of null keys as many in total, so detection
# stays near 1 GB whatever the config; longer texts are refused with a message, never an OOM kill.
MAX_COST_CELLS = 2**24
DEFAULT_INSERT_RATE = 0.2
DEFAULT_SKIP_RATE = 0.02
_LAMBDAS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)  # Lagrange multipliers tried for the screening bound


@register_config("exp", "exp-edit", "its", "its-edit")
@dataclass(frozen=True)
class DistortionFreeConfig(SchemeConfig):
    """key_length n; block_length k (None: the whole text); edit_gamma: Levenshtein gap cost
    (None: 0.0 for exp-edit, 0.4 for its-edit); edit_free_end: key rows after the last matched
    one are free in the edit statistic (None: true, false in configs older than version 3, which
    used the paper's square window); edit_statistic: "min" (the paper's minimum over
    alignments) or "forward" (its-edit only: the likelihood ratio summed over alignments and
    shifts, `alignment.its_forward`; None: forward for its-edit configs of version 4 on without a
    block length, else min); edit_insert_rate / edit_skip_rate: the forward statistic's weights
    of an inserted token and of a skipped key row; resamples T of the permutation test when no level
    is given (and the least drawn when one is); stop_after: Besag-Clifford early stop after this
    many null statistics <= the observed one (0: never, and the plain test of T keys whatever the
    level); max_resamples: the most null keys a test at a given level may draw; bound_weight w:
    the share of the level given to the Gamma union bound (EXP family, k <= n)."""

    detection_only = (
        "block_length",
        "edit_gamma",
        "edit_free_end",
        "edit_statistic",
        "edit_insert_rate",
        "edit_skip_rate",
        "resamples",
        "stop_after",
        "max_resamples",
        "bound_weight",
    )

    scheme: str = "exp"
    key_length: int = 256
    block_length: int | None = None
    edit_gamma: float | None = None
    edit_free_end: bool | None = None
    edit_statistic: str | None = None
    edit_insert_rate: float = DEFAULT_INSERT_RATE
    edit_skip_rate: float = DEFAULT_SKIP_RATE
    resamples: int = 999
    stop_after: int = 10
    max_resamples: int = 200_000
    bound_weight: float = 0.05

    def __post_init__(self) -> None:
        if self.edit_gamma is None and isinstance(self.scheme, str) and self.scheme in FAMILY:
            object.__setattr__(self, "edit_gamma", DEFAULT_EDIT_GAMMA[FAMILY[self.scheme]])
        if self.edit_free_end is None:
            object.__setattr__(self, "edit_free_end", not self._older_than(FREE_END_SINCE_VERSION))
        if self.edit_statistic is None and isinstance(self.scheme, str) and self.scheme in FAMILY:
            new = not self._older_than(FORWARD_SINCE_VERSION)
            forward = new and self.scheme == "its-edit" and self.block_length is None
            object.__setattr__(self, "edit_statistic", "forward" if forward else "min")
        super().__post_init__()

    def _older_than(self, version: int) -> bool:
        """Written before `version` (a malformed version is refused later, by the base class)."""
        return isinstance(self.version, int) and self.version < version

    @property
    def family(self) -> str:
        return FAMILY[self.scheme]

    def generation_dict(self) -> dict:
        """exp and exp-edit (its and its-edit) generate the same way; only detection differs."""
        return {**super().generation_dict(), "scheme": self.family}

    @property
    def edit(self) -> bool:
        return self.scheme.endswith("-edit")

    @property
    def edit_costs(self) -> tuple[float, bool]:
        """(edit_gamma, edit_free_end): never None once built (`__post_init__` sets the defaults)."""
        return cast(float, self.edit_gamma), cast(bool, self.edit_free_end)

    @property
    def forward(self) -> bool:
        return self.edit_statistic == "forward"

    def validate(self) -> None:
        check_range("key_length", self.key_length, 1, MAX_KEY_LENGTH)
        if self.block_length is not None and self.block_length < 1:
            raise ConfigError(
                f"block_length must be >= 1 (or null for the whole text), got {self.block_length}"
            )
        if self.block_length is not None:
            check_range("block_length", self.block_length, 1, MAX_BLOCK_LENGTH)
        check_range("edit_gamma", self.edit_costs[0], 0.0, MAX_EDIT_GAMMA)
        if self.edit_statistic not in EDIT_STATISTICS:
            raise ConfigError(
                f"edit_statistic must be one of {', '.join(EDIT_STATISTICS)}, got {self.edit_statistic!r}"
            )
        if self.forward and self.scheme != "its-edit":
            raise ConfigError("edit_statistic 'forward' is for its-edit only")
        if self.forward and self.block_length is not None:
            raise ConfigError("edit_statistic 'forward' scores the whole text: leave block_length unset")
        if not 0.0 < self.edit_insert_rate < 1.0:
            raise ConfigError(f"edit_insert_rate must be in (0, 1), got {self.edit_insert_rate}")
        if not 0.0 <= self.edit_skip_rate < 1.0:
            raise ConfigError(f"edit_skip_rate must be in [0, 1), got {self.edit_skip_rate}")
        if self.resamples < 1:
            raise ConfigError(f"resamples must be >= 1, got {self.resamples}")
        check_range("resamples", self.resamples, 1, MAX_RESAMPLES)
        check_range("stop_after", self.stop_after, 0, MAX_RESAMPLES)
        check_range("max_resamples", self.max_resamples, 1, MAX_RESAMPLES)
        if not 0.0 <= self.bound_weight < 1.0:
            raise ConfigError(f"bound_weight must be in [0, 1), got {self.bound_weight}")


@dataclass(frozen=True)
class DistortionFreeDetection(Detection):
    """`statistic`: the minimised alignment cost (lower = more watermark). `resamples`: null keys
    drawn (0 when the bound decided); `resamples_cap`: the most this test could draw;
    `resamples_needed`: what deciding at the alpha given needs (None without alpha);
    `p_value_floor`: the smallest p the permutation part can give with that cap;
    `bound_p_value`: the Gamma union bound (EXP family), None where it does not apply.

    A Monte-Carlo verdict bounds the false-positive rate (the reported p-value is valid itself),
    not the chance of disagreeing with the exact p-value near alpha: a text whose exact p-value is
    0.8 alpha is still missed about 28% of the time (an outside review's measurement). When the cap keeps
    the floor above alpha, a text whose null keys already show p clearly above alpha (a 99.9%
    Clopper-Pearson lower bound on the exact p-value above alpha) is "not watermarked", not
    "inconclusive": more null keys could not change that verdict."""

    resamples: int
    method: str
    bound_p_value: float | None
    null_at_most: int
    block_length: int
    resamples_cap: int = 0
    resamples_needed: int | None = None

    def verdict(self, alpha: float) -> str:
        out = super().verdict(alpha)
        if out == "inconclusive" and self.resamples > 0:
            lower, _ = clopper_pearson(min(self.null_at_most, self.resamples), self.resamples, 0.998)
            if lower > alpha:  # the exact p-value is clearly above alpha
                return "not watermarked"
        return out

    def inconclusive_reason(self, alpha: float) -> str | None:
        if self.verdict(alpha) != "inconclusive":
            return None
        why = (
            f"with at most {self.resamples_cap} null keys the permutation test cannot give a p-value "
            f"below {self.p_value_floor:.3g}, above alpha = {alpha:g}"
        )
        if self.resamples_needed is not None and self.resamples_needed > self.resamples_cap:
            return f"{why}: allow {self.resamples_needed} (--max-resamples)"
        return f"{why}: detect at this alpha (or raise --resamples)"


def permutation_floor(resamples: int, bound_weight: float = 0.0) -> float:
    """Smallest p-value the permutation branch can report: 1/(T + 1), divided by 1 - w when a
    share w of the level goes to the Gamma union bound (EXP family)."""
    return 1.0 / ((1.0 - bound_weight) * (resamples + 1))


def exponential_scores(uniforms: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """log(-log u_v) - log p_v elementwise, float64 in numpy: THE score the CPU decoder minimises."""
    score = np.log(uniforms)
    np.negative(score, out=score)
    with np.errstate(divide="ignore"):  # u = 1.0 (the PRF's top value rounds to it): -inf, it wins
        np.log(score, out=score)
    score -= log_probs
    return score


# the screen's slack in the exponent: float32 rounding of the bound (|z| < 40: < 3e-6) and of
# 1 - u, float32 exp, and numpy's float64 logs (~1e-13 here) all fit in it many times over
SCREEN_MARGIN = 1e-4


def _screened_argmin(u: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """`exponential_scores(u, lp).argmin(axis=-1)`, the same index, computing the float64 scores
    only where a token can reach the row's minimum.

    With T the score of the row's most likely token, the minimiser v has score <= T, so (up to
    float rounding, far inside SCREEN_MARGIN) log(-log u_v) <= T + lp_v; and -log u >= 1 - u, so
    1 - u_v <= exp(T + lp_v). That test needs one float32 exp and no logarithm; the tokens passing
    it (a handful) get the exact scores, with argmin's first-index rule on ties (every tied
    minimiser passes, in index order)."""
    rows = np.arange(u.shape[0])
    ref = lp.argmax(axis=-1)
    t = exponential_scores(u[rows, ref], lp[rows, ref])
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        bound = (lp + (t + SCREEN_MARGIN)[:, None]).astype(np.float32)
        np.exp(bound, out=bound)
        passing = (1.0 - u).astype(np.float32) <= bound
    out = ref.astype(np.int64)
    for b in range(u.shape[0]):
        idx = np.flatnonzero(passing[b])
        if idx.size:  # the reference token always passes; kept in case of NaN input
            out[b] = idx[exponential_scores(u[b, idx], lp[b, idx]).argmin()]
    return out


def exponential_argmin(uniforms: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    """The EXP decoder: argmax_v u_v ** (1 / p_v) = argmin_v log(-log u_v) - log p_v, per row.

    On CPU the float64 logarithms run in numpy (faster than torch's float64 log here), and only
    for the tokens that can win (`_screened_argmin`: the same argmin as scoring every token,
    tested against it); the result is the same argmin either way.
    """
    if uniforms.device.type == "cpu":
        return torch.from_numpy(_screened_argmin(uniforms.numpy(), log_probs.numpy()))
    return torch.log(torch.log(uniforms).neg_()).sub_(log_probs).argmin(dim=-1)


FORWARD_TIE = 1e-9  # relative; the numba and numpy forward statistics agree to about 1e-12


def forward_tie(observed: float) -> float:
    """How close to the observed forward statistic a null key's value counts as reaching it.

    The forward statistic sums logs of sums, and numpy (pairwise sums, vectorised log) and numba
    (sequential sums, scalar log) round differently, by about 1e-12. Counting every null value within
    1e-9 of the observed one as a hit resolves ties conservatively (the p-value can only grow), and
    the two paths then count the same keys unless a null value falls within 1e-12 of the band's
    edge, an event of probability about 1e-12 per key (`tests/test_null_kernels.py`)."""
    return FORWARD_TIE * (1.0 + abs(observed))


@register_scheme("exp", "exp-edit", "its", "its-edit")
class DistortionFreeScheme(SpanMixin, WatermarkScheme):
    """EXP / ITS key, decoder and detectors for one key (see the module docstring)."""

    config_cls = DistortionFreeConfig
    config: DistortionFreeConfig
    acts_on_final_distribution = True

    def __init__(self, config: DistortionFreeConfig, key):
        super().__init__(config, key)
        self.family = config.family
        n = config.key_length
        if self.family == "exp":
            self._row_seeds = torch.from_numpy(prf.position_seeds(key.derive("exp/key-sequence"), range(n)))
        else:
            self._perm_seed = torch.from_numpy(prf.position_seeds(key.derive("its/permutation"), [0]))
            u_seed = torch.from_numpy(prf.position_seeds(key.derive("its/uniforms"), [0]))
            self._row_u = prf.uniforms(u_seed, torch.arange(n, dtype=torch.int64))
            self._perms: dict[tuple[int, str], torch.Tensor] = {}
        self._null_salt = key.derive(f"{self.family}/null-salt")

    # ---- the key, shared by both halves ----------------------------------------------------------
    def permutation(self, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """ITS: the keyed order of the vocabulary (argsort of the keyed uniforms w)."""
        k = (vocab_size, str(device))
        if k not in self._perms:
            w = prf.vocab_uniforms(self._perm_seed.to(device), vocab_size)[0]
            self._perms[k] = torch.argsort(w, stable=True)
        return self._perms[k]

    def choose(self, rows: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
        """Decode one token per batch row from key rows `rows` (already reduced mod n)."""
        v = log_probs.shape[-1]
        if self.family == "exp":
            xi = prf.vocab_uniforms(self._row_seeds.to(log_probs.device)[rows], v)
            return exponential_argmin(xi, log_probs)
        pi = self.permutation(v, log_probs.device)
        u = self._row_u.to(log_probs.device)[rows]
        if log_probs.device.type == "cpu":  # numpy's gather and cumsum are much faster here
            cdf_np = np.cumsum(np.take(np.exp(log_probs.numpy()), pi.numpy(), axis=1), axis=1)
            below = cdf_np < (u.numpy() * cdf_np[:, -1])[:, None]  # first rank whose cdf reaches u * total
            idx = np.minimum(below.sum(axis=1), v - 1)
            return pi[torch.from_numpy(idx)]
        cdf = torch.cumsum(log_probs.exp()[:, pi], dim=-1)
        idx = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).clamp_(max=v - 1)
        return pi[idx.squeeze(1)]

    def cost_matrix(self, ids: np.ndarray) -> np.ndarray:
        """(n, m) costs c(y_l, row j) under the real key, from per-token PRF gathers."""
        tok = torch.from_numpy(ids).reshape(1, -1)
        if self.family == "exp":
            u = prf.uniforms(self._row_seeds.reshape(-1, 1), tok)
            return portable_log.log1m(u.numpy())  # the null keys' function, bit for bit
        eta = torch.from_numpy(self.token_etas(ids)).reshape(1, -1)
        return (eta - self._row_u.reshape(-1, 1)).abs_().numpy()

    def null_costs(self, seeds: np.ndarray, labels: np.ndarray, distinct: int) -> np.ndarray:
        """(B, n, m) costs under independent null keys; only the text's distinct tokens matter,
        so tokens are relabelled 0..U-1 and each null key draws U entries per row (EXP) or U
        values eta plus n uniforms u (ITS), all i.i.d. uniform like the real key's entries."""
        n = self.config.key_length
        s = torch.from_numpy(seeds)
        if self.family == "exp":
            counters = torch.arange(n * distinct, dtype=torch.int64).reshape(1, n, distinct)
            u = prf.uniforms(s.reshape(-1, 1, 1), counters).numpy()
            return np.take(portable_log.log1m(u), labels, axis=2)  # same bits as the numba kernel
        eta, u = self.null_rows(seeds, distinct)
        return np.abs(np.take(eta, labels, axis=1)[:, None, :] - u[:, :, None])

    def null_rows(self, seeds: np.ndarray, distinct: int) -> tuple[np.ndarray, np.ndarray]:
        """ITS null keys: (B, distinct) eta of the text's distinct tokens, (B, n) row uniforms u."""
        s = torch.from_numpy(seeds).reshape(-1, 1)
        eta = prf.uniforms(s, torch.arange(distinct, dtype=torch.int64).reshape(1, -1)).numpy()
        n = self.config.key_length
        u = prf.uniforms(s, distinct + torch.arange(n, dtype=torch.int64).reshape(1, -1)).numpy()
        return eta, u

    def token_etas(self, ids: np.ndarray) -> np.ndarray:
        """ITS: eta(y) = the keyed uniform of each token (its place in the permutation)."""
        tok = torch.from_numpy(ids).reshape(1, -1)
        return prf.uniforms(self._perm_seed.reshape(1, 1), tok).numpy().reshape(-1)

    def forward_statistic(self, ids: np.ndarray, fast: bool | None = None) -> float:
        """The forward statistic of the text under the real key (`alignment.its_forward`), with
        the numba kernel when `fast` (default: numba installed), else numpy; the null side of the
        test uses the same implementation."""
        from ..statistics import null_kernels

        cfg = self.config
        fast = null_kernels.AVAILABLE if fast is None else fast
        eta, u = self.token_etas(ids), self._row_u.numpy()
        if fast:
            return null_kernels.forward_statistic(eta, u, its_likelihood.DEFAULT_RATIOS,
                                                  cfg.edit_insert_rate, cfg.edit_skip_rate)  # fmt: skip
        ratios = its_likelihood.cell_ratios(eta[None], u[None])
        return float(alignment.its_forward(ratios, cfg.edit_insert_rate, cfg.edit_skip_rate)[0])

    # ---- embedding -----------------------------------------------------------------------------
    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0
    ) -> DistortionFreeLogitsProcessor:
        """The decoder; give it the sampling settings unless it runs after transformers' warpers
        (see `FinalDistributionProcessor`)."""
        return DistortionFreeLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k)

    # ---- detection -----------------------------------------------------------------------------
    @property
    def has_spans(self) -> bool:
        """Spans need a per-window null: the EXP family's Gamma tail (ITS has none here)."""
        return self.family == "exp"

    def span_evidence(self, ids: np.ndarray) -> ShiftedGammaEvidence:
        """EXP: -log(1 - xi) of each token on each key shift, for `detect_spans` (exp and exp-edit
        alike: the basic block statistic, whose windows have an exact Gamma null per shift)."""
        cfg = self.config
        if not self.has_spans:
            raise ConfigError(
                f"span detection is not available for the {cfg.scheme} scheme (EXP family only)"
            )
        if ids.size * cfg.key_length > MAX_COST_CELLS:
            raise InputError(
                f"text has {ids.size} tokens: with key_length {cfg.key_length} the span scan would hold "
                f"{ids.size * cfg.key_length:,} (token, key row) scores, over its limit of {MAX_COST_CELLS:,}; "
                "scan a shorter text"
            )
        uniq, inverse = np.unique(ids, return_inverse=True)  # the PRF runs once per distinct token
        scores = -alignment.diagonal_costs(self.cost_matrix(uniq)[:, inverse.reshape(-1)])[0]
        return ShiftedGammaEvidence(
            scores, description="Gamma tail per window and key shift, union over shifts"
        )

    def block_for(self, m: int) -> int:
        k = self.config.block_length
        return m if k is None else min(k, m)

    def statistic(self, costs: np.ndarray, k: int) -> np.ndarray:
        """The minimum-cost alignment statistic of cost matrices (B, n, m) (basic or edit); the
        forward statistic reads the key, not costs (`forward_statistic`)."""
        if self.config.forward:
            raise ValueError("this config scores with the forward statistic: use forward_statistic(ids)")
        if self.config.edit:
            return alignment.levenshtein_min(costs, k, *self.config.edit_costs)
        return alignment.basic_min(costs, k)

    def null_seeds(self, ids: np.ndarray, k: int, count: int, start: int = 0) -> np.ndarray:
        """Seeds of null keys start .. start + count - 1: fixed by the text and the test's
        parameters (reproducible), salted with a key-derived value independent of the key
        sequence (so nobody without the key can search for texts whose null sample happens to be
        favourable)."""
        cfg = self.config
        h = hashlib.blake2b(key=self._null_salt, person=b"wm-null-keys", digest_size=32)
        h.update(f"{cfg.scheme}|n={cfg.key_length}|k={k}|gamma={cfg.edit_gamma!r}|".encode())
        if cfg.forward:
            h.update(f"forward|rho={cfg.edit_insert_rate!r}|delta={cfg.edit_skip_rate!r}|".encode())
        h.update(ids.astype("<i8").tobytes())
        return prf.position_seeds(h.digest(), range(start, start + count))

    def _null_indicators(
        self, ids: np.ndarray, k: int, observed: float, total: int, fast: bool | None = None
    ) -> Iterator[np.ndarray]:
        """Batches of `null statistic <= observed` for null keys 0, 1, ... (at most `total`).

        For the edit statistics (and the EXP basic one) a cheap lower bound rules out most null
        keys; only those it cannot rule out get the exact statistic. A null key is never counted
        on the bound. `fast`: the numba kernels (default: when numba is installed); both paths
        give the same indicators (the exact statistics are bit-identical, the bounds are valid).
        """
        from ..statistics import null_kernels  # numba costs ~100 MB of RSS: loaded only when a null test runs

        cfg = self.config
        fast = null_kernels.AVAILABLE if fast is None else fast
        uniq, labels = np.unique(ids, return_inverse=True)
        labels = labels.reshape(-1)
        if cfg.forward:
            yield from self._forward_indicators(ids, labels, len(uniq), observed, total, fast)
            return
        margin = 1e-3 * (abs(observed) + k)  # covers float32 rounding of the bound, with room
        lam: float | None = None
        hits = 0
        most = max(1, min(128, MAX_COST_CELLS // (cfg.key_length * ids.size)))  # numpy: bounded (B, n, m)
        start, size = 0, (32 if fast else min(16, most))
        while start < total:
            seeds = self.null_seeds(ids, k, min(size, total - start), start)
            if fast:
                lams = _LAMBDAS if (lam is None and cfg.edit) else ((lam or 0.0),)
                stop = max(cfg.stop_after - hits, 0) if cfg.stop_after else 0
                out, bounds, _ = null_kernels.null_indicators(
                    self.family, cfg.edit, seeds, labels, len(uniq), cfg.key_length, k,
                    cfg.edit_costs[0], lams, observed, margin, stop, cfg.edit_costs[1],
                )  # fmt: skip
                hits += int(out.sum())
                if lam is None and cfg.edit:  # keep the multiplier with the best bounds (any is valid)
                    lam = lams[int(np.argmax(bounds.mean(axis=0)))]
                yield out
                if len(out) < len(seeds):  # stopped at the stop_after-th null at most the observed
                    return
            else:
                out, lam = self._numpy_indicators(seeds, labels, len(uniq), k, observed, margin, lam)
                yield out
            start += len(seeds)
            size = min(2 * size, 1024 if fast else most)

    def _forward_indicators(
        self, ids: np.ndarray, labels: np.ndarray, distinct: int, observed: float, total: int, fast: bool
    ) -> Iterator[np.ndarray]:
        """Batches of `forward statistic <= observed` for null keys 0, 1, ...: every key gets the
        exact statistic (n * m cells, no screen needed), in parallel over keys with numba."""
        from ..statistics import null_kernels

        cfg = self.config
        rho, delta = cfg.edit_insert_rate, cfg.edit_skip_rate
        # numba keeps O(n) per key; numpy holds (B, n, m) ratios, bounded like the cost batches
        cap = 2048 if fast else max(1, min(128, MAX_COST_CELLS // (cfg.key_length * ids.size)))
        start, size = 0, min(64, cap)
        while start < total:
            seeds = self.null_seeds(ids, ids.size, min(size, total - start), start)
            if fast:
                stats = null_kernels.forward_nulls(seeds, labels, distinct, cfg.key_length,
                                                   its_likelihood.DEFAULT_RATIOS, rho, delta)  # fmt: skip
            else:
                eta, u = self.null_rows(seeds, distinct)
                ratios = its_likelihood.cell_ratios(np.take(eta, labels, axis=1), u)
                stats = alignment.its_forward(ratios, rho, delta)
            yield stats <= observed + forward_tie(observed)
            start += len(seeds)
            size = min(2 * size, cap)

    def _numpy_indicators(
        self, seeds: np.ndarray, labels: np.ndarray, distinct: int, k: int, observed: float,
        margin: float, lam: float | None,
    ) -> tuple[np.ndarray, float | None]:  # fmt: skip
        """The numpy path of `_null_indicators` for one batch, and the multiplier it used."""
        cfg = self.config
        costs = self.null_costs(seeds, labels, distinct)
        if not cfg.edit:
            return alignment.basic_min(costs, k) <= observed, None
        gamma, free = cfg.edit_costs
        if lam is None:  # pick the multiplier on the first batch (any lam >= 0 is valid)
            bounds = np.stack(
                [alignment.levenshtein_lower_bound(costs, k, gamma, x, np.float32, free) for x in _LAMBDAS]
            )
            lam = _LAMBDAS[int(np.argmax(bounds.mean(axis=1)))]
            bound = bounds.max(axis=0)
        else:
            bound = alignment.levenshtein_lower_bound(costs, k, gamma, lam, np.float32, free)
        out = np.zeros(len(seeds), dtype=bool)
        open_ = np.flatnonzero(bound <= observed + margin)
        if open_.size:
            out[open_] = alignment.levenshtein_min(costs[open_], k, gamma, free) <= observed
        return out, lam

    def log10_gamma_bound(self, costs: np.ndarray, k: int, m: int) -> float | None:
        """EXP: log10 min(1, n (m - k + 1) P[Gamma(k, 1) >= -phi_basic]), computed in log space
        (finite where the tail underflows); None where the bound is not valid (k > n) or unused."""
        n = self.config.key_length
        if self.family != "exp" or k > n or self.config.bound_weight <= 0.0:
            return None
        phi = float(alignment.basic_min(costs, k)[0])
        return min(0.0, log10_gamma_tail(-phi, k) + math.log10(n * (m - k + 1)))

    def gamma_bound(self, costs: np.ndarray, k: int, m: int) -> float | None:
        """EXP: min(1, n (m - k + 1) P[Gamma(k, 1) >= -phi_basic]); None where it is not valid."""
        lg = self.log10_gamma_bound(costs, k, m)
        return None if lg is None else 10.0**lg

    def detect(
        self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None
    ) -> DistortionFreeDetection:
        """Test one text. Without `alpha`: the Besag-Clifford test of `resamples` null keys. With
        it: the same test with as many null keys as p <= alpha needs (`permutation.draws_for_level`
        at the permutation branch's share of alpha, at least `resamples`, at most
        `max_resamples`), curtailed once the verdict at alpha is settled; the p-value stays valid
        at every level (`watermark.permutation`)."""
        cfg = self.config
        ids = as_token_array(token_ids, cfg.vocab_size)
        m = ids.size
        if m < 2:
            raise TextTooShortError(f"text has {m} tokens; the {cfg.scheme} detector needs at least 2")
        if alpha is not None and not alpha > 0.0:
            raise ConfigError(f"alpha must be > 0, got {alpha}")
        if m * cfg.key_length > MAX_COST_CELLS:
            raise InputError(
                f"text has {m} tokens: with key_length {cfg.key_length} the {cfg.scheme} detector would "
                f"score {m * cfg.key_length:,} (token, key row) pairs, over its limit of {MAX_COST_CELLS:,}; "
                "detect a shorter text (or windows of it)"
            )
        k = self.block_for(m)
        if cfg.forward:
            observed, log10_bound = self.forward_statistic(ids), None
        else:
            costs = self.cost_matrix(ids)[None]
            observed = float(self.statistic(costs, k)[0])
            log10_bound = self.log10_gamma_bound(costs, k, m)
        w = cfg.bound_weight if log10_bound is not None else 0.0
        h = cfg.stop_after
        level, needed, total = None, None, cfg.resamples
        if alpha is not None and alpha < 1.0 and h > 0:
            level = alpha * (1.0 - w)  # the permutation branch's share of the level
            needed = draws_for_level(level, h)
            total = min(max(cfg.resamples, needed), cfg.max_resamples)
        floor = min(1.0, smallest_p(total, h, level) / (1.0 - w))
        lg_bound_w = None if log10_bound is None else log10_bound - math.log10(w)
        if lg_bound_w is not None and 10.0**lg_bound_w <= max(floor, alpha or 0.0):
            lg_p, used, at_most, method = min(0.0, lg_bound_w), 0, 0, "gamma union bound"
        else:
            mc = sequential_p_value(self._null_indicators(ids, k, observed, total), total, h, level)
            lg_p = math.log10(min(1.0, mc.p_value / (1.0 - w)))
            if lg_bound_w is not None:
                lg_p = min(lg_p, lg_bound_w)
            used, at_most = mc.resamples, mc.null_at_most
            method = (
                "sequential permutation (curtailed at alpha)"
                if mc.curtailed
                else "sequential permutation (stopped early)"
                if mc.stopped_early
                else "permutation"
            )
        return DistortionFreeDetection(
            scheme=cfg.scheme,
            p_value=float(10.0**lg_p),
            num_tokens_scored=int(m),
            statistic=observed,
            log10_p_value=float(lg_p),
            p_value_floor=float(floor),
            resamples=int(used),
            method=method,
            bound_p_value=None if log10_bound is None else float(10.0**log10_bound),
            null_at_most=int(at_most),
            block_length=int(k),
            resamples_cap=int(total),
            resamples_needed=needed,
        )


class FinalDistributionProcessor(LogitsProcessor, ABC):
    """Base of the EXP / ITS / Gumbel processors: decode from the final distribution, force it.

    The decoder must see the distribution the text is sampled from, after temperature / top-k /
    top-p. It returns -inf everywhere except the chosen token, so whatever runs after it (greedy,
    sampling, transformers' own warpers) emits that token. Two ways to get the order right with
    `model.generate`, neither of which looks at the caller's frames:

    - `watermarking_config=scheme.watermarking_config()`: transformers runs watermark processors
      after all of its warpers (its own rule for watermarks), so this sees the final distribution;
    - `logits_processor=[scheme.processor(temperature=..., top_k=..., top_p=...)]`: transformers
      runs user processors BEFORE its warpers, so the sampling settings are given to the processor,
      which applies them to its own copy; generate() should then be called with neutral settings
      (its warpers are no-ops on the one-token output anyway). Never put warpers before it as well.

    A call that does not continue the previous one (other rows, or a prefix that is not the last
    input plus one token) starts a new generation: `start(batch)` runs and the step count resets.
    Beam search is not supported (`watermark.generation.generate` refuses it).
    """

    def __init__(self, scheme: WatermarkScheme, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0):
        self.scheme = scheme
        self.warpers = sampling_warpers(temperature, top_p, top_k)
        self._last: torch.Tensor | None = None
        self._step = 0

    # subclasses ---------------------------------------------------------------------------------
    def start(self, batch: int) -> None:
        """A new generation over `batch` rows begins."""

    @abstractmethod
    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        """The token each row emits at `step`, from the final log-probabilities."""

    # machinery ----------------------------------------------------------------------------------
    def final_log_probs(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """The distribution the decoder sees: the sampling warpers, then float64 log-softmax over
        the scheme's vocabulary (row by row, so any batch of rows with these settings can share it)."""
        final = scores
        for warper in self.warpers:
            final = warper(input_ids, final)
        v = self.scheme.vocab_size_for(scores.shape[-1])
        return torch.log_softmax(final[:, :v].to(torch.float64), dim=-1)

    def _continues(self, input_ids: torch.LongTensor) -> bool:
        last = self._last
        return (
            last is not None
            and input_ids.shape[0] == last.shape[0]
            and input_ids.shape[1] == last.shape[1] + 1
            and torch.equal(input_ids[:, :-1], last)
        )

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self._continues(input_ids):
            self._step += 1
        else:
            self._step = 0
            self.start(input_ids.shape[0])
        self._last = input_ids.detach().clone()
        tokens = self.pick(input_ids, self._step, self.final_log_probs(input_ids, scores))
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, tokens.reshape(-1, 1).to(out.device), 0.0)
        return out


class DistortionFreeLogitsProcessor(FinalDistributionProcessor):
    """EXP / ITS embedding: row (tau_b + step) mod n for batch row b, tau_b fresh per generate().

    Example:
        >>> scheme = build_scheme({"scheme": "exp", "vocab_size": len(tok)}, Key.generate())
        >>> gens = watermark.generation.generate(model, tok, ["Tell me a story."], scheme=scheme)
        >>> scheme.detect(gens[0].token_ids).p_value
    """

    scheme: DistortionFreeScheme
    # None: fresh OS randomness per generation (the distortion-free guarantee needs tau independent
    # of everything else); an int makes the shifts reproducible, for tests and documentation runs only
    shift_seed: int | None = None

    def __init__(self, scheme: DistortionFreeScheme, **sampling):
        super().__init__(scheme, **sampling)
        self.shifts: torch.Tensor | None = None
        self._warned = False

    def start(self, batch: int) -> None:
        n = self.scheme.config.key_length
        seed = self.shift_seed if self.shift_seed is not None else int.from_bytes(os.urandom(16), "little")
        rng = np.random.default_rng(seed)
        self.shifts = torch.from_numpy(rng.integers(0, n, size=batch, dtype=np.int64))
        self._warned = False

    def _warn_if_wrapping(self, step: int) -> None:
        """Said by the processor itself at the first step past the key, whatever the arguments
        of generate() (max_new_tokens, max_length, a stopping criterion) were."""
        n = self.scheme.config.key_length
        if step >= n and not self._warned:
            self._warned = True
            warnings.warn(
                f"generated more than key_length={n} tokens: the key wraps around and the text is no "
                "longer distortion-free (use a longer key_length)",
                stacklevel=3,
            )

    def pick(self, input_ids: torch.LongTensor, step: int, log_probs: torch.Tensor) -> torch.Tensor:
        self._warn_if_wrapping(step)
        assert self.shifts is not None  # start() ran first (__call__)
        rows = (self.shifts.to(log_probs.device) + step) % self.scheme.config.key_length
        return self.scheme.choose(rows, log_probs)
