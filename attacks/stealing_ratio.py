"""Watermark stealing by frequency ratios (Jovanovic, Staab, Vechev, ICML 2024; papers.md Part 2 §2).

The attacker counts every (context, token) occurrence in watermarked text and in base-model text.
Context is the h previous tokens; each occurrence is counted once for every subset of them (2^h
subsets, kept *unordered*: sorted token ids, down to the empty context), so evidence about the
token D after "A B C" also feeds {A, B}, {C} and {} (the authors' `CountStore`, unordered half).

Score of token t in context c (their `get_boosts`): mass_w(t) = cnt_w(c, t) / sum_t cnt_w(c, .),
mass_b likewise; t is usable only with cnt_w(c, t) >= 2 (non-empty c) or >= round(7e-5 * sum
cnt_b(c, .)) (empty c). r = mass_w / mass_b; where the base count is 0, r = max(1, max r) + 1e-3;
r < 1 -> 0; clip at 2 and divide by 2 (so 0 or 0.5..1); add 1e-4 * cnt_w / max cnt_w as a tie
break; rescale so the context's top score is 1.

Aggregation at a step with previous tokens ctx (their `SpoofedProcessor`): boost =
[w_full * S({ctx}) + w_partials * S({s}) + w_empty * S({})] / (sum of the weights used), where s is
the unique context token whose solo score vector is closer (cosine) to every pair-context vector
than its partner's; the partial term is dropped when there is no unique such token. Defaults (the
authors' configs): h = 0 uses the empty context alone; LeftHash (h >= 1) w_full = 2 only; SelfHash
2 / 1 / 0.5 (the min-hash anchors each token's list on one context token, which `s` targets).

The fitted model keeps, per context, only the tokens with a positive score: that is all spoofing
(logits + strength * boost) and scrubbing (penalise / replace high-boost tokens) need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

import numpy as np

from wm_toolkit.watermark.errors import InputError

from .stealing_data import StealingConfigError, StealingInputError


@dataclass(frozen=True)
class RatioParams:
    """The authors' defaults (configs/spoofing/*.yaml, AttackerGenerationConfig)."""

    min_count_nonempty: int = 2  # min_wm_count_nonempty
    min_mass_empty: float = 7e-5  # min_wm_mass_empty: a fraction of the empty context's base count
    clip_at: float = 2.0
    w_full: float = 1.0  # w_abcd: the whole (unordered) context
    w_partials: float = 0.0  # the single strongest context token (SelfHash)
    w_empty: float = 0.0  # the empty context (context-free evidence)

    def validate(self) -> None:
        if self.min_count_nonempty < 1:
            raise StealingConfigError("min_count_nonempty must be >= 1")
        if not 0.0 <= self.min_mass_empty < 1.0:
            raise StealingConfigError("min_mass_empty must be in [0, 1)")
        if not self.clip_at > 1.0:
            raise StealingConfigError(f"clip_at must be > 1, got {self.clip_at}")
        ws = (self.w_full, self.w_partials, self.w_empty)
        if min(ws) < 0 or sum(ws) <= 0:
            raise StealingConfigError(f"context weights must be >= 0 with a positive sum, got {ws}")


def default_params(context_width: int, seeding: str = "lefthash") -> RatioParams:
    """Aggregation weights per scheme, as in the authors' spoofing configs."""
    if context_width == 0:
        return RatioParams(w_full=0.0, w_partials=0.0, w_empty=1.0)  # gptwm (Unigram)
    if seeding == "selfhash":
        return RatioParams(w_full=2.0, w_partials=1.0, w_empty=0.5)
    return RatioParams(w_full=2.0, w_partials=0.0, w_empty=0.0)  # lefthash


def _windows(texts: Sequence[Sequence[int]], h: int) -> np.ndarray:
    rows = []
    for ids in texts:
        a = np.asarray(ids, dtype=np.int64).reshape(-1)
        if a.size > h:
            rows.append(np.lib.stride_tricks.sliding_window_view(a, h + 1))
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, h + 1), dtype=np.int64)


@dataclass
class _Table:
    """Unordered contexts of one size k with their positive-score tokens (CSR by context)."""

    contexts: np.ndarray  # (n_ctx, k) sorted rows, lexicographic order
    ptr: np.ndarray  # (n_ctx + 1,)
    tokens: np.ndarray  # token ids per entry
    scores: np.ndarray  # float per entry, in (0, 1]
    _index: dict[tuple[int, ...], int] | None = None

    def lookup(self, ctx: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            self._index = {tuple(int(x) for x in row): i for i, row in enumerate(self.contexts)}
        i = self._index.get(ctx)
        if i is None:
            return _EMPTY_I, _EMPTY_F
        lo, hi = int(self.ptr[i]), int(self.ptr[i + 1])
        return self.tokens[lo:hi], self.scores[lo:hi]


_EMPTY_I = np.zeros(0, dtype=np.int64)
_EMPTY_F = np.zeros(0, dtype=np.float64)


def _group_counts(ctx: np.ndarray, tok: np.ndarray, is_w: np.ndarray):
    """Count (context, token) rows per class: unique contexts, their CSR pointers, tokens,
    watermarked and base counts, and per-context class totals."""
    k = ctx.shape[1]
    rows = np.concatenate([ctx, tok.reshape(-1, 1)], axis=1)
    uniq, inv = np.unique(rows, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    cw = np.bincount(inv, weights=is_w.astype(np.float64), minlength=len(uniq))
    cb = np.bincount(inv, weights=(~is_w).astype(np.float64), minlength=len(uniq))
    # uniq is sorted lexicographically, so rows of one context are contiguous
    if len(uniq) == 0:
        return (
            np.zeros((0, k), np.int64),
            np.zeros(1, np.int64),
            _EMPTY_I,
            _EMPTY_F,
            _EMPTY_F,
            _EMPTY_F,
            _EMPTY_F,
        )
    if k:
        new = np.ones(len(uniq), dtype=bool)
        new[1:] = (uniq[1:, :k] != uniq[:-1, :k]).any(axis=1)
        starts = np.flatnonzero(new)
    else:
        starts = np.array([0])
    ptr = np.append(starts, len(uniq))
    tot_w = np.add.reduceat(cw, starts)
    tot_b = np.add.reduceat(cb, starts)
    return uniq[starts, :k], ptr, uniq[:, k], cw, cb, tot_w, tot_b


def context_scores(
    ptr: np.ndarray,
    cw: np.ndarray,
    cb: np.ndarray,
    tot_w: np.ndarray,
    tot_b: np.ndarray,
    empty: bool,
    params: RatioParams,
) -> np.ndarray:
    """The authors' per-context score for every (context, token) entry, vectorised over contexts."""
    n_ctx = len(ptr) - 1
    sizes = np.diff(ptr)
    ctx_of = np.repeat(np.arange(n_ctx), sizes)
    mass_w = cw / (tot_w[ctx_of] + 1e-6)
    mass_b = cb / (tot_b[ctx_of] + 1e-6)
    if empty:
        thresh = np.round(params.min_mass_empty * tot_b)[ctx_of]
    else:
        thresh = np.full(len(cw), float(params.min_count_nonempty))
    enough = cw >= thresh
    base_zero = cb == 0
    r = np.zeros(len(cw))
    core = enough & ~base_zero
    r[core] = mass_w[core] / mass_b[core]
    starts = ptr[:-1]
    if len(cw) == 0:
        return r
    rmax = np.maximum.reduceat(r, starts) if n_ctx else np.zeros(0)
    fill = np.maximum(1.0, rmax) + 1e-3
    nb = enough & base_zero
    r[nb] = fill[ctx_of[nb]]
    r[r < 1] = 0.0
    r = np.minimum(r, params.clip_at) / params.clip_at
    pos = r > 0
    cw_pos = np.where(pos, cw, 0.0)
    cmax = np.maximum.reduceat(cw_pos, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        r[pos] += 1e-4 * cw[pos] / cmax[ctx_of[pos]]
    smax = np.maximum.reduceat(r, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(smax[ctx_of] > 0, r / smax[ctx_of], 0.0)
    return out


class RatioModel:
    """Fitted frequency-ratio scores: one table per unordered context size k = 0..h."""

    def __init__(self, context_width: int, params: RatioParams, tables: list[_Table]):
        self.context_width = context_width
        self.params = params
        self.tables = tables
        self._cache: dict[tuple[int, ...], tuple[dict[int, float], float, np.ndarray, np.ndarray]] = {}

    # ---- fitting ---------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        watermarked: Sequence[Sequence[int]],
        base: Sequence[Sequence[int]],
        context_width: int = 0,
        params: RatioParams | None = None,
    ) -> RatioModel:
        """Count both corpora (every position i >= h, every subset of its h previous tokens)."""
        if context_width < 0:
            raise StealingConfigError(f"context width must be >= 0, got {context_width}")
        params = params or default_params(context_width)
        params.validate()
        h = context_width
        ww, wb = _windows(watermarked, h), _windows(base, h)
        if len(ww) == 0:
            raise StealingInputError(f"no watermarked text has more than {h} tokens: nothing to count")
        if len(wb) == 0:
            raise StealingInputError(f"no base text has more than {h} tokens: nothing to compare with")
        win = np.concatenate([ww, wb], axis=0)
        is_w = np.zeros(len(win), dtype=bool)
        is_w[: len(ww)] = True
        tables = []
        for k in range(h + 1):
            ctx_parts, tok_parts, w_parts = [], [], []
            for cols in combinations(range(h), k):
                c = np.sort(win[:, list(cols)], axis=1) if k else np.zeros((len(win), 0), np.int64)
                ctx_parts.append(c)
                tok_parts.append(win[:, h])
                w_parts.append(is_w)
            ctx, ptr, tok, cw, cb, tot_w, tot_b = _group_counts(
                np.concatenate(ctx_parts), np.concatenate(tok_parts), np.concatenate(w_parts)
            )
            s = context_scores(ptr, cw, cb, tot_w, tot_b, k == 0, params)
            tables.append(_compact(ctx, ptr, tok, s))
        return cls(h, params, tables)

    # ---- scores ----------------------------------------------------------------------------------
    def _entry(self, ctx: Sequence[int]) -> tuple[dict[int, float], float, np.ndarray, np.ndarray]:
        """(token -> score, L2 norm, token ids, scores) of one unordered context, cached."""
        key = tuple(sorted(int(x) for x in ctx))
        got = self._cache.get(key)
        if got is None:
            if len(key) > self.context_width:
                raise StealingConfigError(f"context {key} is wider than h = {self.context_width}")
            toks, sc = self.tables[len(key)].lookup(key)
            got = (
                dict(zip(toks.tolist(), sc.tolist(), strict=True)),
                float(np.sqrt((sc * sc).sum())),
                toks,
                sc,
            )
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = got
        return got

    def scores_in(self, ctx: Sequence[int]) -> dict[int, float]:
        """S(c): token -> score for an unordered context (any order given; sorted here)."""
        return self._entry(ctx)[0]

    def _strongest(self, ctx: tuple[int, ...]) -> int | None:
        """The unique context token whose solo scores are closer (cosine) to every pair's scores
        than its partner's, as in the authors' partials rule; None if there is no unique one."""
        n = len(ctx)
        if n < 2:
            return 0 if n == 1 else None
        solo = [self._entry((t,)) for t in ctx]
        winner = None
        for i in range(n):
            strong = True
            for j in range(n):
                if i == j:
                    continue
                pair, pn, _, _ = self._entry((ctx[i], ctx[j]))
                ci = _cos(pair, pn, solo[i][0], solo[i][1])
                cj = _cos(pair, pn, solo[j][0], solo[j][1])
                strong &= ci > cj
                if not strong:
                    break
            if strong:
                if winner is not None:
                    return None
                winner = i
        return winner

    def parts(self, prev: Sequence[int]) -> list[tuple[float, tuple[int, ...]]]:
        """The (weight, unordered context) terms of the aggregate after `prev`, weights summing
        to 1 (the authors divide by the weights *used*: the partial term may be skipped)."""
        h = self.context_width
        p = self.params
        ctx = tuple(int(x) for x in prev[len(prev) - h :]) if h else ()
        if h and len(ctx) < h:
            ctx = ()  # too short a prefix: context-free evidence only
        out: list[tuple[float, tuple[int, ...]]] = []
        if p.w_full > 0 and len(ctx) == h:
            out.append((p.w_full, ctx))
        if p.w_partials > 0 and len(ctx) >= 1:
            s = self._strongest(ctx)
            if s is not None:
                out.append((p.w_partials, (ctx[s],)))
        if p.w_empty > 0:
            out.append((p.w_empty, ()))
        total = sum(w for w, _ in out)
        return [(w / total, c) for w, c in out] if total > 0 else []

    def boosts(self, prev: Sequence[int]) -> dict[int, float]:
        """The aggregated boost (0..1) per token after the previous tokens `prev` (last h used)."""
        terms = self.parts(prev)
        if len(terms) == 1:
            w, c = terms[0]
            return {t: w * v for t, v in self._entry(c)[0].items()}
        out: dict[int, float] = {}
        for w, c in terms:
            for t, v in self._entry(c)[0].items():
                out[t] = out.get(t, 0.0) + w * v
        return out

    def boost(self, prev: Sequence[int], token: int) -> float:
        """The aggregated boost of one token (cheaper than `boosts` for a single lookup)."""
        return sum(w * self._entry(c)[0].get(int(token), 0.0) for w, c in self.parts(prev))

    def boost_vector(self, prev: Sequence[int], width: int) -> np.ndarray:
        """`boosts` as a dense float32 vector of `width` entries (ids >= width dropped)."""
        out = np.zeros(width, dtype=np.float32)
        for w, c in self.parts(prev):
            _, _, toks, sc = self._entry(c)
            keep = toks < width
            np.add.at(out, toks[keep], (w * sc[keep]).astype(np.float32))
        return out

    def score_items(self, items: np.ndarray) -> np.ndarray:
        """Aggregated boost of each (context..., token) row (h + 1 columns)."""
        h = self.context_width
        out = np.zeros(len(items))
        order = np.lexsort(items[:, :h].T[::-1]) if h else np.arange(len(items))
        last: tuple[int, ...] | None = None
        terms: list[tuple[float, dict[int, float]]] = []
        for i in order:
            ctx = tuple(int(x) for x in items[i, :h])
            if ctx != last:
                terms, last = [(w, self._entry(c)[0]) for w, c in self.parts(ctx)], ctx
            t = int(items[i, h])
            out[i] = sum(w * d.get(t, 0.0) for w, d in terms)
        return out

    # ---- (de)serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "context_width": self.context_width,
            "params": asdict(self.params),
            "tables": [
                {
                    "contexts": t.contexts.tolist(),
                    "ptr": t.ptr.tolist(),
                    "tokens": t.tokens.tolist(),
                    "scores": [round(float(x), 6) for x in t.scores],
                }
                for t in self.tables
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RatioModel:
        try:
            h = int(data["context_width"])
            params = RatioParams(**data["params"])
            tables = []
            for k, t in enumerate(data["tables"]):
                ptr = np.asarray(t["ptr"], dtype=np.int64)
                ctx = np.asarray(t["contexts"], dtype=np.int64).reshape(max(len(ptr) - 1, 0), k)
                toks = np.asarray(t["tokens"], dtype=np.int64)
                sc = np.asarray(t["scores"], dtype=np.float64)
                if len(ptr) != len(ctx) + 1 or len(toks) != len(sc) or (len(ptr) and ptr[-1] != len(toks)):
                    raise ValueError(f"table {k} is inconsistent")
                tables.append(_Table(ctx, ptr, toks, sc))
            if len(tables) != h + 1:
                raise ValueError(f"{len(tables)} tables for context width {h}")
            params.validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed ratio model in the stolen list: {exc}") from None
        return cls(h, params, tables)

    def with_weights(self, w_full: float, w_partials: float, w_empty: float) -> RatioModel:
        """The same scores aggregated with other context weights."""
        p = RatioParams(
            **{**asdict(self.params), "w_full": w_full, "w_partials": w_partials, "w_empty": w_empty}
        )
        p.validate()
        return RatioModel(self.context_width, p, self.tables)


def _compact(ctx: np.ndarray, ptr: np.ndarray, tok: np.ndarray, s: np.ndarray) -> _Table:
    """Keep only positive-score entries and the contexts that have any."""
    keep = s > 0
    sizes = np.add.reduceat(keep.astype(np.int64), ptr[:-1]) if len(tok) else np.zeros(0, np.int64)
    has = sizes > 0
    new_ptr = np.concatenate([[0], np.cumsum(sizes[has])]).astype(np.int64)
    return _Table(ctx[has], new_ptr, tok[keep], s[keep])


def _cos(a: dict[int, float], na: float, b: dict[int, float], nb: float) -> float:
    if na == 0 or nb == 0:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items()) / (max(na, 1e-8) * max(nb, 1e-8))
