"""vLLM's native watermarks (`--watermark-config`): `gumbel` and `dual_key_gumbel`, bit for bit.

Embedding (vLLM's sampler, reproduced by `VllmGumbelLogitsProcessor`): after temperature and
top-k / top-p, token = argmax(logits + G) with G = -log(-log u), u = vLLM's Philox uniform of
(context, candidate) (`keying.philox`); the context is the last w GENERATED tokens, -1 before the
first one (the prompt is not used). dual_key_gumbel draws with key B = derive(key, "key_b") with
probability alpha, else with key A = derive(key, "key_a"). `deduplicate_contexts` decides which
steps are sampled without the watermark: "single_turn" (vLLM's default) a step whose context
occurred at one of the last H generated positions, "all" also searching the prompt and skipping
the first w steps, "none" never.

Detection scores the tokens the generator watermarked, each distinct (context, token) pair once:
a step the configured de-duplication skipped carries no watermark and is not scored, and a
repeated pair would repeat its uniform. vLLM's uniforms have 2^24 levels, so -log(1 - u) is not
quite Exp(1); wm scores -log(1 - u + c) with c = 2^-25 + 1 / (2^24 + 1), which is dominated by
Exp(1) (super-uniform), so the Gamma tail is a valid p-value (vLLM's own score and p-value are
reported too: `vllm_score`, `vllm_p_value`, computed as vLLM's detector does).
Two keys: the per-token scores E_A, E_B are independent Exp(1) under H0, and `dual_statistic`
picks the test (all exact, see `statistics.pair_tail`):
- "fusion" (default): S = (1 - alpha) E_A + alpha E_B summed, vLLM's early fusion, with its exact
  law (1 - alpha) Gamma(T) + alpha Gamma(T) instead of vLLM's moment-matched Gamma;
- "max": per-token max(E_A, E_B) ~ Exp(2) + Exp(1), the sum Gamma(T) + Gamma(T) / 2;
- "bonferroni": 2 min(p_A, p_B) of the two single-key Gamma tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import special
from transformers import LogitsProcessor

from ..config import SchemeConfig, check_range, register_config
from ..errors import ConfigError
from ..keying import philox
from ..keying.vllmkey import VllmKey, as_vllm_key
from ..statistics.pair_tail import log10_pair_tails
from ..statistics.portable_log import log1m, log_array
from ..statistics.pvalues import log10_gamma_tails
from ..statistics.spans import Evidence, GammaEvidence, _exp_llr
from . import vllm_kernel
from .base import (
    Detection,
    TextTooShortError,
    WatermarkScheme,
    as_token_array,
    sampling_warpers,
)
from .greenlist import MAX_CONTEXT_WIDTH
from .registry import register_scheme
from .spans import SpanMixin

DEDUP_MODES = ("none", "single_turn", "all")
DUAL_STATISTICS = ("fusion", "max", "bonferroni")
MAX_HISTORY = 1 << 30
VLLM_THRESHOLD = 0.01  # vLLM's detector's default p_value_threshold
SLACK = 2.0**-25 + 1.0 / (philox.UNIFORM_LEVELS + 1)  # makes 1 - u + SLACK super-uniform
_LOG10_2 = math.log10(2.0)


@register_config("vllm-gumbel", "vllm-dual-key-gumbel")
@dataclass(frozen=True)
class VllmGumbelConfig(SchemeConfig):
    """vLLM's `WatermarkConfig` without its key (`dual_alpha` is vLLM's `alpha`, the probability of
    key B); `dual_statistic`: wm's two-key test (fusion / max / bonferroni)."""

    scheme: str = "vllm-gumbel"
    context_width: int = 4
    deduplicate_contexts: str = "single_turn"
    deduplicate_contexts_max_history: int | None = 8192
    dual_alpha: float = 0.1
    dual_statistic: str = "fusion"

    def validate(self) -> None:
        check_range("context width", self.context_width, 1, MAX_CONTEXT_WIDTH)
        if self.deduplicate_contexts not in DEDUP_MODES:
            raise ConfigError(
                f"unknown deduplicate_contexts {self.deduplicate_contexts!r}; known: {', '.join(DEDUP_MODES)}"
            )
        if self.deduplicate_contexts_max_history is not None:
            check_range(
                "deduplicate_contexts_max_history", self.deduplicate_contexts_max_history, 1, MAX_HISTORY
            )
        check_range("dual_alpha", self.dual_alpha, 0.0, 1.0)
        if self.dual_statistic not in DUAL_STATISTICS:
            raise ConfigError(
                f"unknown dual_statistic {self.dual_statistic!r}; known: {', '.join(DUAL_STATISTICS)}"
            )

    @property
    def dual(self) -> bool:
        return self.scheme == "vllm-dual-key-gumbel"

    @property
    def algorithm(self) -> str:
        """vLLM's name of the algorithm."""
        return "dual_key_gumbel" if self.dual else "gumbel"


@dataclass(frozen=True)
class VllmGumbelDetection(Detection):
    """`statistic`: wm's test statistic (see the module); `vllm_*`: what vLLM's detector reports
    (its score, p-value and scored count, de-duplicating contexts as it does by default)."""

    mean_score: float
    vllm_score: float
    vllm_p_value: float
    vllm_num_scored: int
    key_log10_p_values: tuple[float, ...] = ()  # single-key Gamma tests (A, B) for two keys
    token_mask: tuple[int, ...] = ()  # per input token: 1 scored, -1 not (a skipped step or a repeated pair)


def contexts_of(ids: np.ndarray, w: int, history: np.ndarray | None = None) -> np.ndarray:
    """Row j: the w ids before ids[j] (-1 where the text starts), vLLM's context padding; with
    `history`, the contexts of history + ids (rows for history positions first)."""
    seq = ids if history is None else np.concatenate([history, ids])
    padded = np.concatenate([np.full(w, -1, dtype=np.int64), seq.astype(np.int64)])
    return np.lib.stride_tricks.sliding_window_view(padded, w)[: seq.size]


def _row_ids(contexts: np.ndarray) -> np.ndarray:
    return np.unique(contexts, axis=0, return_inverse=True)[1].reshape(-1)


def skipped_steps(
    ids: np.ndarray, w: int, mode: str, max_history: int | None, prompt: np.ndarray | None = None
) -> np.ndarray:
    """Which generated tokens vLLM sampled WITHOUT the watermark (its repeated-context mask):
    single_turn: the step's context equals one at the last `max_history` generated positions;
    all: the same over prompt + generated positions (prompt unknown: the text only), and the
    first w steps."""
    n = ids.size
    if mode == "none" or n == 0:
        return np.zeros(n, dtype=bool)
    hist = prompt if (mode == "all" and prompt is not None) else np.zeros(0, dtype=np.int64)
    start = hist.size  # history contexts run over prompt + generated (a step < w is skipped in "all")
    rows = _row_ids(contexts_of(ids, w, history=np.asarray(hist, dtype=np.int64)))
    order = np.lexsort((np.arange(rows.size), rows))
    prev = np.full(rows.size, -1, dtype=np.int64)
    same = rows[order[1:]] == rows[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    mine = prev[start:]
    pos = np.arange(start, start + n)
    window = pos if max_history is None else np.minimum(pos, max_history)
    skip = (mine >= 0) & (mine >= pos - window)
    if mode == "all":
        skip[:w] = True
    return skip


@dataclass(frozen=True)
class TextSums:
    """What `detect_many` needs per text: masks over the concatenated tokens (`scored`: wm's,
    `first`: vLLM's), per-key sums (keys, texts) of wm's and vLLM's scores, the statistic's sums,
    the counts, and where each text starts."""

    scored: np.ndarray
    first: np.ndarray
    sums: np.ndarray
    vsums: np.ndarray
    stat: np.ndarray
    t: np.ndarray
    vn: np.ndarray
    starts: np.ndarray


@dataclass(frozen=True)
class Batch:
    """Texts concatenated: `text` (which text), contexts (-1 padded per text), `scored` (wm's
    mask), `context_first` (first occurrence of the context in its text: vLLM's detector's mask),
    and per-key scores once computed."""

    ids: np.ndarray
    text: np.ndarray
    contexts: np.ndarray
    scored: np.ndarray
    context_first: np.ndarray
    scores: np.ndarray | None = None
    vllm_scores: np.ndarray | None = None


def _groups(cols: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(order, same): `order` sorts rows by the columns, equal rows in index order; same[i] for
    i >= 1: sorted row i equals sorted row i - 1."""
    order = np.lexsort(cols[::-1])
    same = np.ones(max(order.size - 1, 0), dtype=bool)
    for c in cols:
        sc = c[order]
        same &= sc[1:] == sc[:-1]
    return order, same


def batch_masks(texts: Sequence[np.ndarray], w: int, mode: str, max_history: int | None) -> Batch:
    """`skipped_steps` and the distinct-pair rule over many texts at once (no prompt)."""
    lens = np.array([t.size for t in texts], dtype=np.int64)
    ids = np.concatenate(texts).astype(np.int64) if texts else np.zeros(0, np.int64)
    text = np.repeat(np.arange(lens.size), lens)
    pos = np.arange(ids.size) - np.repeat(np.cumsum(lens) - lens, lens)
    ctx = np.full((ids.size, w), -1, dtype=np.int64)
    for j in range(1, w + 1):
        valid = np.flatnonzero(pos >= j)
        ctx[valid, w - j] = ids[valid - j]
    order, same = _groups([text, *ctx.T])
    prev = np.full(ids.size, -1, dtype=np.int64)
    prev[order[1:][same]] = order[:-1][same]
    skip = np.zeros(ids.size, dtype=bool)
    if mode != "none":
        here = np.arange(ids.size)
        window = ids.size + 1 if max_history is None else max_history
        skip = (prev >= 0) & (prev >= here - window)
        if mode == "all":
            skip |= pos < w
    kept = np.flatnonzero(~skip)
    scored = np.zeros(ids.size, dtype=bool)
    if kept.size:
        k_order, k_same = _groups([text[kept], *ctx[kept].T, ids[kept]])
        first = np.ones(kept.size, dtype=bool)
        first[k_order[1:][k_same]] = False
        scored[kept] = first
    return Batch(ids, text, ctx, scored, prev < 0)


@register_scheme("vllm-gumbel", "vllm-dual-key-gumbel")
class VllmGumbelScheme(SpanMixin, WatermarkScheme):
    """vLLM's gumbel / dual_key_gumbel for one integer key (a `VllmKey`, or a wm key's vLLM integer)."""

    accepts_integer_keys = True

    config_cls = VllmGumbelConfig
    config: VllmGumbelConfig
    acts_on_final_distribution = True

    def __init__(self, config: VllmGumbelConfig, key: VllmKey):
        key = as_vllm_key(key)
        super().__init__(config, key)
        base = key.value
        self.prf_keys = (
            (philox.derive_key(base, b"key_a"), philox.derive_key(base, b"key_b")) if config.dual else (base,)
        )

    @property
    def prf_keys(self) -> tuple[int, ...]:
        return self._prf_keys

    @prf_keys.setter
    def prf_keys(self, keys: tuple[int, ...]) -> None:
        self._prf_keys = tuple(keys)
        self._key_words = np.array([[k & 0xFFFFFFFF, k >> 32] for k in self._prf_keys], dtype=np.uint64)

    # ---- the uniforms --------------------------------------------------------------------------
    def uniforms(self, contexts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(keys, n) float32 uniforms of each (context row, token), vLLM's bits."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1, 1)
        return np.stack([philox.uniforms(k, contexts, tokens)[:, 0] for k in self.prf_keys])

    def batch(self, texts: Sequence[np.ndarray]) -> Batch:
        """Score many texts at once (one Philox call per key over all their tokens)."""
        cfg = self.config
        if any(t.size < 1 for t in texts):
            raise TextTooShortError("text has no tokens; the vLLM gumbel detector needs at least 1")
        b = batch_masks(
            texts, cfg.context_width, cfg.deduplicate_contexts, cfg.deduplicate_contexts_max_history
        )
        u = self.uniforms(b.contexts, b.ids).astype(np.float64)
        return dataclasses.replace(b, scores=-log_array((1.0 - u) + SLACK), vllm_scores=-log1m(u))

    def text_sums(self, texts: Sequence[np.ndarray]) -> TextSums:
        """Per-text sums over the scored tokens (wm's scores per key, the statistic, vLLM's scores
        over its own mask): the numba kernel where it is there, else `batch` and `np.bincount`
        (the same numbers bit for bit)."""
        cfg, score_texts = self.config, vllm_kernel.kernel()
        if score_texts is None or not texts:
            return self._text_sums_numpy(texts)
        if any(t.size < 1 for t in texts):
            raise TextTooShortError("text has no tokens; the vLLM gumbel detector needs at least 1")
        if len(texts) == 1:
            ids, starts = np.ascontiguousarray(texts[0]), np.array([0, texts[0].size], dtype=np.int64)
        else:
            ids, starts = np.concatenate(texts), np.zeros(len(texts) + 1, dtype=np.int64)
            np.cumsum([t.size for t in texts], out=starts[1:])
        history = cfg.deduplicate_contexts_max_history
        stat = "single" if not cfg.dual else ("max" if cfg.dual_statistic == "max" else "fusion")
        wa, wb = self.weights()
        out = score_texts(
            ids, starts, cfg.context_width, vllm_kernel.MODES[cfg.deduplicate_contexts],
            ids.size + 1 if history is None else history, self._key_words, wa, wb,
            vllm_kernel.STATISTICS[stat], SLACK,
        )  # fmt: skip
        flags, totals, counts = out
        k = len(self.prf_keys)
        return TextSums(
            flags[0], flags[1], totals[:k], totals[k : 2 * k], totals[2 * k], counts[0], counts[1], starts
        )

    def _text_sums_numpy(self, texts: Sequence[np.ndarray]) -> TextSums:
        b = self.batch(texts)
        assert b.scores is not None and b.vllm_scores is not None  # batch() sets both
        k, n_texts = len(self.prf_keys), len(texts)
        per_text = lambda x, m: np.bincount(b.text[m], weights=x[m], minlength=n_texts)  # noqa: E731
        starts = np.zeros(n_texts + 1, dtype=np.int64)
        np.cumsum([t.size for t in texts], out=starts[1:])
        return TextSums(
            scored=b.scored,
            first=b.context_first,
            sums=np.stack([per_text(b.scores[i], b.scored) for i in range(k)]).reshape(k, n_texts),
            vsums=np.stack([per_text(b.vllm_scores[i], b.context_first) for i in range(k)]).reshape(
                k, n_texts
            ),
            stat=per_text(self.statistic_of(b.scores), b.scored),
            t=np.bincount(b.text[b.scored], minlength=n_texts),
            vn=np.bincount(b.text[b.context_first], minlength=n_texts),
            starts=starts,
        )

    def token_scores(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(wm scores -log(1 - u + SLACK) per key (keys, n), vLLM's scores -log1p(-u), scored mask)."""
        b = self.batch([ids])
        assert b.scores is not None and b.vllm_scores is not None  # batch() sets both
        return b.scores, b.vllm_scores, b.scored

    # ---- the tests -----------------------------------------------------------------------------
    def weights(self) -> tuple[float, float]:
        a = self.config.dual_alpha
        return 1.0 - a, a

    def log10_p(self, sums: np.ndarray, t: int, max_sum: float = 0.0) -> tuple[float, tuple[float, ...]]:
        """(log10 p of wm's test, single-key log10 p-values) from per-key score sums over t tokens;
        `max_sum`: the sum of per-token maxima (the "max" statistic)."""
        sums = np.asarray(sums, dtype=np.float64).reshape(-1, 1)
        test, keys = self.log10_ps(sums, np.array([t]), np.array([float(max_sum)]))
        return float(test[0]), tuple(float(k[0]) for k in keys) if self.config.dual else ()

    def log10_ps(self, sums: np.ndarray, t: np.ndarray, stat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`log10_p` over texts: sums (keys, texts), t and stat (texts,) -> (test, keys x texts)."""
        keys = log10_gamma_tails(sums, np.asarray(t)[None].repeat(sums.shape[0], axis=0))
        if not self.config.dual:
            return keys[0], keys
        rule = self.config.dual_statistic
        if rule == "bonferroni":
            return np.minimum(0.0, _LOG10_2 + keys.min(axis=0)), keys
        if rule == "max":
            return log10_pair_tails(stat, t, 1.0, 0.5), keys
        wa, wb = self.weights()
        return log10_pair_tails(wa * sums[0] + wb * sums[1], t, wa, wb), keys

    def statistic_of(self, scores: np.ndarray) -> np.ndarray:
        """Per-token value of the statistic the test sums (one key: the score)."""
        if not self.config.dual:
            return scores[0]
        if self.config.dual_statistic == "max":
            return scores.max(axis=0)
        wa, wb = self.weights()
        return wa * scores[0] + wb * scores[1]

    def vllm_detection(self, ids: np.ndarray, deduplicate: bool = True) -> tuple[float, float, int]:
        """(score, p-value, scored) exactly as vLLM's (DualKey)GumbelWatermarkDetector computes them."""
        b = self.batch([np.asarray(ids, dtype=np.int64)])
        mask = b.context_first if deduplicate else np.ones(b.ids.size, dtype=bool)
        assert b.vllm_scores is not None  # batch() sets it
        return self._vllm_result(b.vllm_scores[:, mask].sum(axis=1), int(mask.sum()))

    def _vllm_result(self, sums: np.ndarray, n: int) -> tuple[float, float, int]:
        score, p = self._vllm_results(np.asarray(sums, dtype=np.float64).reshape(-1, 1), np.array([n]))
        return float(score[0]), float(p[0]), n

    def _vllm_results(self, sums: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """vLLM's (score, p-value) per text from its per-key sums (keys, texts) over n tokens."""
        if not self.config.dual:
            score = sums[0]
        else:
            wa, wb = self.weights()
            score = wa * sums[0] + wb * sums[1]
        p = _vllm_p_values(score, n, self.config.dual_alpha if self.config.dual else None)
        if _smallest(n) > 0:
            return score, p
        return np.where(n > 0, score, 0.0), np.where(n > 0, p, 1.0)

    def detect(
        self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None
    ) -> VllmGumbelDetection:
        return self.detect_many([token_ids], alpha)[0]

    def detect_many(
        self, texts: Sequence[Sequence[int] | np.ndarray], alpha: float | None = None
    ) -> list[VllmGumbelDetection]:
        """All texts scored in one batch (the same results as one by one)."""
        arrays = [as_token_array(t, self.config.vocab_size) for t in texts]
        r = self.text_sums(arrays)
        if _smallest(r.t) == 0:
            raise TextTooShortError(
                f"no token of this text was watermarked under {self.config.scheme}'s de-duplication"
            )
        test, keys = self.log10_ps(r.sums, r.t, r.stat)
        vscore, vp = self._vllm_results(r.vsums, r.vn)
        marks = (r.scored.view(np.int8) * 2 - 1).tolist()  # 1 scored, -1 not
        st, ts, stats, logs = r.starts.tolist(), r.t.tolist(), r.stat.tolist(), test.tolist()
        key_rows = list(zip(*keys.tolist(), strict=True)) if self.config.dual else [()] * len(arrays)
        scheme, vn, vscores, vps = self.config.scheme, r.vn.tolist(), vscore.tolist(), vp.tolist()
        return [
            VllmGumbelDetection(
                scheme=scheme,
                p_value=10.0 ** test[j],
                log10_p_value=logs[j],
                num_tokens_scored=ts[j],
                statistic=stats[j],
                mean_score=stats[j] / ts[j],
                vllm_score=vscores[j],
                vllm_p_value=vps[j],
                vllm_num_scored=vn[j],
                key_log10_p_values=key_rows[j],
                token_mask=tuple(marks if len(arrays) == 1 else marks[st[j] : st[j + 1]]),
            )
            for j in range(len(arrays))
        ]

    def span_evidence(self, ids: np.ndarray) -> Evidence:
        """Per-token scores for `detect_spans`, scored exactly as `detect` scores them."""
        scores, _, scored = self.token_scores(ids)
        if not self.config.dual:
            return GammaEvidence(scored, scores[0], description="Gamma tail per window")
        return PairGammaEvidence(self, scored, scores)

    # ---- embedding -----------------------------------------------------------------------------
    def choose(self, logits: torch.Tensor, contexts: np.ndarray, key_index: int = 0) -> torch.Tensor:
        """vLLM's Gumbel choice on processed logits (B, V): argmax(logits + -log(-log u)), float32."""
        v = logits.shape[-1]
        u = torch.from_numpy(philox.uniforms(self.prf_keys[key_index], contexts, np.arange(v)))
        u = u.clamp_min(torch.finfo(torch.float32).tiny).to(logits.device)
        return torch.argmax(logits + (-torch.log(-torch.log(u))), dim=-1)

    def processor(
        self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None
    ) -> VllmGumbelLogitsProcessor:
        """The decoder; give it the sampling settings (it applies them itself, as vLLM does before
        the watermark). `seed` makes the dual-key routing reproducible (tests only)."""
        return VllmGumbelLogitsProcessor(self, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed)


def _smallest(x: np.ndarray) -> float:
    """min(x.min(), 1) (1 for no entries), without ndarray.min's Python wrapper (a per-text cost)."""
    return np.minimum.reduce(x, axis=None, initial=1)


def _vllm_p_values(score: np.ndarray, n: np.ndarray, alpha: float | None) -> np.ndarray:
    """vLLM's p-values: one key, the Gamma(n) tail of the score; two keys (alpha), a Gamma matched
    to the fused score's variance (vLLM's approximation; integer shapes where vLLM rounds them)."""
    score, n = np.asarray(score, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if alpha is None:
        shape, x = n, score
    else:
        variance = (1 - alpha) ** 2 + alpha**2
        shape, x = (np.round(n / variance) if alpha in (0, 0.5, 1) else n / variance), score / variance
    if _smallest(np.minimum(shape, x)) > 0.0:  # every text live (the usual case): fewer calls
        return np.minimum(special.gammaincc(shape, x), 1.0)
    live = (shape > 0) & (x > 0)
    p = special.gammaincc(np.where(live, shape, 1.0), np.where(live, x, 0.0))
    return np.where(live, np.minimum(p, 1.0), 1.0)


class PairGammaEvidence(Evidence):
    """Two keys' scores on the scored positions; a window's p-value is the scheme's exact test."""

    def __init__(self, scheme: VllmGumbelScheme, scored: np.ndarray, scores: np.ndarray):
        self.scheme, self.scored = scheme, np.asarray(scored, dtype=bool)
        self.n = self.scored.size
        self.per_key = np.where(self.scored, scores, 0.0)
        self.stat = np.where(self.scored, scheme.statistic_of(scores), 0.0)
        self._t = np.concatenate([[0], np.cumsum(self.scored)])
        self._k = np.concatenate([np.zeros((2, 1)), np.cumsum(self.per_key, axis=1)], axis=1)
        self._s = np.concatenate([[0.0], np.cumsum(self.stat)])
        self.description = f"two keys, {scheme.config.dual_statistic} test per window"

    def log10_p(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        t = self._t[ends] - self._t[starts]
        if self.scheme.config.dual_statistic == "bonferroni":
            sums = self._k[:, ends] - self._k[:, starts]
            return np.minimum(
                0.0, _LOG10_2 + np.minimum(log10_gamma_tails(sums[0], t), log10_gamma_tails(sums[1], t))
            )
        a, b = (1.0, 0.5) if self.scheme.config.dual_statistic == "max" else self.scheme.weights()
        return log10_pair_tails(self._s[ends] - self._s[starts], t, a, b)

    def llr(self, lo: int, hi: int, best: tuple[int, int]) -> np.ndarray:
        t = max(int(self._t[best[1]] - self._t[best[0]]), 1)
        null_mean = 1.5 if self.scheme.config.dual_statistic == "max" else 1.0
        mean = float(self._s[best[1]] - self._s[best[0]]) / t / null_mean
        return np.where(self.scored[lo:hi], _exp_llr(self.stat[lo:hi] / null_mean, mean), 0.0)


class VllmGumbelLogitsProcessor(LogitsProcessor):
    """vLLM's watermarked sampling step for transformers' `generate` (CPU, same choices).

    Per step: the sampling settings (temperature, top-k, top-p), then vLLM's repeated-context
    check; a skipped step returns the processed scores (ordinary sampling follows), a watermarked
    one forces vLLM's Gumbel choice (dual key: key B with probability alpha). A call that does not
    continue the previous one starts a new generation: its input is the prompt (all rows padded to
    one length; with deduplicate_contexts "all" the padding counts as prompt).
    """

    def __init__(
        self, scheme: VllmGumbelScheme, temperature=1.0, top_p=1.0, top_k=0, seed: int | None = None
    ):
        self.scheme = scheme
        self.warpers = sampling_warpers(temperature, top_p, top_k)
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)
        self._last: torch.Tensor | None = None
        self._prompt_len = 0

    def _start_or_continue(self, input_ids: torch.Tensor) -> None:
        last = self._last
        continues = (
            last is not None
            and input_ids.shape[0] == last.shape[0]
            and input_ids.shape[1] == last.shape[1] + 1
            and torch.equal(input_ids[:, :-1], last)
        )
        if not continues:
            self._prompt_len = int(input_ids.shape[1])
        self._last = input_ids.detach().clone()

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        self._start_or_continue(input_ids)
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        cfg = self.scheme.config
        w = cfg.context_width
        ids = input_ids.detach().to("cpu", torch.int64).numpy()
        out = scores.clone()
        for b in range(ids.shape[0]):
            prompt, gen = ids[b, : self._prompt_len], ids[b, self._prompt_len :]
            step = np.append(gen, 0)  # the step being sampled, with a placeholder token
            skip = skipped_steps(
                step, w, cfg.deduplicate_contexts, cfg.deduplicate_contexts_max_history, prompt
            )
            if skip[-1]:
                continue
            ctx = contexts_of(step, w)[-1:]
            key_index = 0
            if cfg.dual and cfg.dual_alpha > 0:
                use_b = (
                    cfg.dual_alpha >= 1 or float(torch.rand((), generator=self.generator)) < cfg.dual_alpha
                )
                key_index = int(use_b)
            token = int(self.scheme.choose(scores[b : b + 1].float(), ctx, key_index)[0])
            out[b] = -math.inf
            out[b, token] = 0.0
        return out


# ---- vLLM's `--watermark-config` JSON ----------------------------------------------------------
VLLM_FIELDS = (
    "key",
    "algorithm",
    "alpha",
    "context_width",
    "deduplicate_contexts",
    "deduplicate_contexts_max_history",
    "prf",
    "allow_target_only_watermarking",
)
ALGORITHMS = {"gumbel": "vllm-gumbel", "dual_key_gumbel": "vllm-dual-key-gumbel"}


def from_vllm_dict(obj: Any) -> tuple[dict[str, Any], VllmKey | None]:
    """(wm config fields, the key if the JSON carries it) from vLLM's `WatermarkConfig` JSON.
    Missing fields take vLLM's defaults; unknown fields and other PRFs are refused."""
    if not isinstance(obj, dict):
        raise ConfigError("a vLLM watermark config is a JSON object")
    unknown = sorted(set(obj) - set(VLLM_FIELDS))
    if unknown:
        raise ConfigError(f"unknown vLLM watermark config field(s): {', '.join(map(str, unknown))}")
    algorithm = obj.get("algorithm", "gumbel")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown vLLM watermark algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if obj.get("prf", "philox") != "philox":
        raise ConfigError("only vLLM's 'philox' PRF is known")
    fields = {
        "scheme": ALGORITHMS[algorithm],
        "context_width": obj.get("context_width", 4),
        "deduplicate_contexts": obj.get("deduplicate_contexts", "single_turn"),
        # null (the whole scope) as MAX_HISTORY: the same for any text wm reads, and it survives
        # config merging, where None means "not given"
        "deduplicate_contexts_max_history": obj.get("deduplicate_contexts_max_history", 8192) or MAX_HISTORY,
        "dual_alpha": obj.get("alpha", 0.1),
    }
    return fields, (VllmKey(obj["key"]) if "key" in obj else None)


def to_vllm_dict(config: VllmGumbelConfig, key: VllmKey) -> dict[str, Any]:
    """vLLM's `--watermark-config` for this config; it must carry the key (vLLM has no other way)."""
    return {
        "key": as_vllm_key(key).value,
        "algorithm": config.algorithm,
        "alpha": config.dual_alpha,
        "context_width": config.context_width,
        "deduplicate_contexts": config.deduplicate_contexts,
        "deduplicate_contexts_max_history": (
            None
            if config.deduplicate_contexts_max_history in (None, MAX_HISTORY)
            else config.deduplicate_contexts_max_history
        ),
        "prf": "philox",
    }
