"""Green-list stealing: recover a green list from watermarked and natural texts.

Two methods. `steal()` (method "mip", Zhang et al. 2024) builds the corpus, solves the mixed
integer program (`stealing_mip`) for a threat model and returns a `StolenList`;
`steal_ratio()` (method "ratio", Jovanovic et al. 2024, `stealing_ratio`) scores (context, token)
pairs by their watermarked/base frequency ratio and keeps the fitted scores for spoofing and
scrubbing. `frequency_baseline()` is Zhang et al.'s cheap comparison; `score_list()` gives
precision/recall/F1 against the true list when the evaluator knows it. Every list carries a score
per observed item (`scores`), so any list size can be cut from it.

For h = 0 (Unigram) the items are tokens. For h >= 1 the same program runs over
(context, token) pairs: each pair is its own unknown, seen only a few times, so the program can
only label the pairs that occur in the corpus and says nothing about unseen contexts. This is
why a context-dependent list is far harder to steal (see benchmarks/results/stealing.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.runtime.atomic import write_text
from wm_toolkit.watermark.text.textio import decode_text, read_bytes

from .stealing_data import (
    StealingConfigError,
    StealingCorpus,
    StealingInputError,
    build_corpus,
    check_gamma,
)
from .stealing_mip import THREATS, WEIGHTS, ProgramOptions, SolverStats, item_weights, solve_program
from .stealing_ratio import RatioModel, RatioParams, default_params

METHODS = ("mip", "ratio")
GREEN_AT = 0.75  # ratio method: an item is listed green when its boost is at least this

__all__ = [
    "STOP_WORDS",
    "GREEN_AT",
    "METHODS",
    "THREATS",
    "WEIGHTS",
    "RatioModel",
    "RatioParams",
    "ListScore",
    "ProgramOptions",
    "StealingConfigError",
    "StealingInputError",
    "StolenList",
    "build_corpus",
    "frequency_baseline",
    "lexical_token_weights",
    "ranked_items",
    "relabel",
    "score_list",
    "steal",
    "steal_ratio",
]


@dataclass
class StolenList:
    """A stolen green list: token ids (h = 0) or (context..., token) pairs (h >= 1).

    `scores` rows are (context..., token, score) for every item observed in the attacker's texts,
    best first: MIP lists score the LP value of c_v (ties broken by the frequency ratio, scaled
    into [0, 0.001)), ratio lists the aggregated boost in [0, 1]. A ratio list also keeps its
    fitted `ratio_model`, which scores any context (spoofing and scrubbing use it)."""

    green_token_ids: list[int]
    threat: str  # vanilla / oracle / pro / blind / frequency / ratio
    context_width: int = 0
    green_pairs: list[tuple[int, ...]] = field(default_factory=list)  # h >= 1 only
    tokenizer: str | None = None
    vocab_size: int | None = None
    gamma: float | None = None
    num_watermarked: int = 0
    num_natural: int = 0
    num_candidates: int = 0  # items that occurred (the program's columns)
    solver: dict[str, Any] = field(default_factory=dict)
    method: str = "mip"
    scores: list[tuple[float, ...]] = field(default_factory=list)
    ratio_model: RatioModel | None = None
    green_at: float | None = None  # ratio: the boost at which an item counts as green

    def __post_init__(self) -> None:
        self._ids = frozenset(int(i) for i in self.green_token_ids)
        self._by_context: dict[tuple[int, ...], set[int]] = {}
        for p in self.green_pairs:
            self._by_context.setdefault(tuple(int(x) for x in p[:-1]), set()).add(int(p[-1]))

    def __len__(self) -> int:
        return len(self.green_pairs) if self.context_width else len(self.green_token_ids)

    @property
    def generalises(self) -> bool:
        """True when the list scores unseen contexts too (a ratio model with h >= 1)."""
        return self.ratio_model is not None and self.context_width > 0

    def boosts(self, context: Sequence[int] = ()) -> dict[int, float]:
        """token -> believed-green strength in [0, 1] after `context` (1 on a MIP list's ids)."""
        if self.ratio_model is not None:
            return self.ratio_model.boosts(context)
        return dict.fromkeys(self.green_after(context), 1.0)

    def boost(self, context: Sequence[int], token: int) -> float:
        """`boosts(context)` of one token, without building the whole dict."""
        if self.ratio_model is not None:
            return self.ratio_model.boost(context, token)
        return self.boosts(context).get(int(token), 0.0)

    def is_green(self, token: int, context: Sequence[int] = ()) -> bool:
        """Believed green: `context` is the previous h token ids (ignored for h = 0)."""
        if self.context_width == 0:
            return int(token) in self._ids
        if self.generalises:
            return self.ratio_model.boost(context, token) >= self.green_at
        ctx = tuple(int(x) for x in context[-self.context_width :])
        return int(token) in self._by_context.get(ctx, ())

    def green_after(self, context: Sequence[int] = ()) -> list[int]:
        """Token ids believed green after `context` (the whole list for h = 0)."""
        if self.context_width == 0:
            return sorted(self._ids)
        if self.generalises:
            return sorted(t for t, v in self.ratio_model.boosts(context).items() if v >= self.green_at)
        ctx = tuple(int(x) for x in context[-self.context_width :])
        return sorted(self._by_context.get(ctx, ()))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "green_token_ids": sorted(int(i) for i in self.green_token_ids),
            "green_pairs": [list(map(int, p)) for p in self.green_pairs],
            "threat": self.threat,
            "method": self.method,
            "context_width": self.context_width,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "gamma": self.gamma,
            "num_watermarked": self.num_watermarked,
            "num_natural": self.num_natural,
            "num_candidates": self.num_candidates,
            "solver": self.solver,
            "scores": [[*map(int, r[:-1]), float(f"{r[-1]:.9g}")] for r in self.scores],
        }
        if self.green_at is not None:
            out["green_at"] = self.green_at
        if self.ratio_model is not None:
            out["ratio_model"] = self.ratio_model.to_dict()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StolenList:
        if not isinstance(data, dict) or "green_token_ids" not in data or "threat" not in data:
            raise InputError("not a stolen list: expected a JSON object with 'green_token_ids' and 'threat'")
        try:
            return cls(
                green_token_ids=[int(i) for i in data["green_token_ids"]],
                threat=str(data["threat"]),
                context_width=int(data.get("context_width", 0)),
                green_pairs=[tuple(int(x) for x in p) for p in data.get("green_pairs", [])],
                tokenizer=data.get("tokenizer"),
                vocab_size=data.get("vocab_size"),
                gamma=data.get("gamma"),
                num_watermarked=int(data.get("num_watermarked", 0)),
                num_natural=int(data.get("num_natural", 0)),
                num_candidates=int(data.get("num_candidates", 0)),
                solver=dict(data.get("solver", {})),
                method=str(data.get("method", "mip")),
                scores=[tuple(r) for r in data.get("scores", [])],
                ratio_model=RatioModel.from_dict(data["ratio_model"]) if data.get("ratio_model") else None,
                green_at=float(data["green_at"]) if data.get("green_at") is not None else None,
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"malformed stolen list: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> StolenList:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"stolen list is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number, nesting 100k deep
            raise InputError(f"stolen list is not usable JSON ({type(exc).__name__})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> StolenList:
        p = Path(path)
        try:
            text = decode_text(str(p), read_bytes(str(p)))  # capped: a FIFO or /dev/zero is refused
        except InputError as exc:
            raise InputError(f"stolen list {exc}") from None
        return cls.from_json(text)

    def save(self, path: str | Path) -> None:
        write_text(path, self.to_json() + "\n")  # atomic: a failed write keeps any old file


def _score_rows(items: np.ndarray, score: np.ndarray) -> list[tuple[float, ...]]:
    """(context..., token, score) rows, best first (ties: smaller ids first)."""
    order = np.lexsort((*items.T[::-1], -score))
    return [(*(int(x) for x in items[i]), float(score[i])) for i in order]


def _ratio_tiebreak(corpus: StealingCorpus) -> np.ndarray:
    """A value in [0, 1e-3) that orders items by freq_W/freq_H (add-half smoothed)."""
    r = 1.0 / item_weights(corpus, "ratio")
    ranks = np.argsort(np.argsort(r, kind="stable"), kind="stable")
    return 1e-3 * ranks / max(len(r), 1)


def _make_list(
    corpus: StealingCorpus,
    mask: np.ndarray,
    threat: str,
    gamma: float | None,
    stats: dict[str, Any],
    score: np.ndarray | None = None,
) -> StolenList:
    chosen = corpus.items[mask]
    h = corpus.context_width
    return StolenList(
        scores=_score_rows(corpus.items, score) if score is not None else [],
        green_token_ids=sorted(int(t) for t in chosen[:, 0]) if h == 0 else [],
        green_pairs=[tuple(int(x) for x in row) for row in chosen] if h else [],
        threat=threat,
        context_width=h,
        gamma=gamma,
        num_watermarked=int(corpus.watermarked.sum()),
        num_natural=int((~corpus.watermarked).sum()),
        num_candidates=corpus.num_items,
        solver=stats,
    )


def steal(
    watermarked: Sequence[Sequence[int]],
    natural: Sequence[Sequence[int]],
    threat: str = "vanilla",
    gamma: float | None = None,
    z: float = 4.0,
    vocab_size: int | None = None,
    exact_counts: Sequence[int] | None = None,
    context_width: int = 0,
    count_repeats: bool = False,
    min_items: int = 1,
    **program: Any,
) -> StolenList:
    """Steal a green list from token-id texts labelled watermarked / natural.

    `exact_counts` (oracle) holds g(s) for the watermarked texts followed by the natural texts,
    in input order, counted like the corpus (distinct items unless `count_repeats`). Further
    keyword arguments go to `ProgramOptions` (relax, solver, time_limit, weights, beta_w, ...).
    """
    if threat not in THREATS:
        raise StealingConfigError(f"unknown threat model {threat!r}; known: {', '.join(THREATS)}")
    check_gamma(gamma)
    if threat == "blind":
        gamma = None  # the blind attacker knows no parameters
    all_texts = [*watermarked, *natural]
    corpus = build_corpus(watermarked, natural, context_width, count_repeats, min_items)
    counts = None
    if exact_counts is not None:
        if len(exact_counts) != len(all_texts):
            raise StealingConfigError(f"{len(exact_counts)} exact green counts for {len(all_texts)} texts")
        kept = [
            i
            for i, ids in enumerate(all_texts)
            if _n_items(ids, context_width, count_repeats) >= max(min_items, 1)
        ]
        counts = np.asarray(exact_counts, dtype=np.float64)[kept]
    opts = ProgramOptions(
        threat=threat, gamma=gamma, z=z, vocab_size=vocab_size, exact_counts=counts, **program
    )
    mask, values, stats = solve_program(corpus, opts)
    score = np.clip(values, 0.0, 1.0) + _ratio_tiebreak(corpus)
    out = _make_list(corpus, mask, threat, gamma, stats.to_dict(), score)
    out.vocab_size = vocab_size
    return out


def _n_items(ids: Sequence[int], h: int, count_repeats: bool) -> int:
    a = np.asarray(ids, dtype=np.int64).reshape(-1)
    if a.size <= h:
        return 0
    if count_repeats:
        return a.size - h
    return len(np.unique(np.lib.stride_tricks.sliding_window_view(a, h + 1), axis=0))


def relabel(texts: Sequence[Sequence[int]], flagged: Any) -> tuple[list[Sequence[int]], list[Sequence[int]]]:
    """Split texts by a detector verdict (`flagged(ids) -> bool`), as the detector-access threat
    models do before solving (Zhang et al.'s `set_dataset` with `query_flag`)."""
    w, h = [], []
    for ids in texts:
        (w if flagged(ids) else h).append(ids)
    return w, h


def steal_ratio(
    watermarked: Sequence[Sequence[int]],
    natural: Sequence[Sequence[int]],
    context_width: int = 0,
    params: RatioParams | None = None,
    seeding: str = "lefthash",
    green_at: float = GREEN_AT,
    vocab_size: int | None = None,
    gamma: float | None = None,
) -> StolenList:
    """Jovanovic et al.'s frequency-ratio attacker: fit the (context, token) scores, score every
    observed item with the aggregated boost, and list the items whose boost is >= `green_at`.

    `natural` is the base model's unwatermarked text; labels are taken as given (the attacker
    needs no detector). `params` default to the authors' weights for `seeding` (papers.md)."""
    check_gamma(gamma)
    if not 0.0 < green_at <= 1.0:
        raise StealingConfigError(f"green_at must be in (0, 1], got {green_at}")
    params = params or default_params(context_width, seeding)
    model = RatioModel.fit(watermarked, natural, context_width, params)
    corpus = build_corpus(watermarked, natural, context_width)
    score = model.score_items(corpus.items)
    mask = score >= green_at
    stats = {"method": "ratio", "params": dict(params.__dict__), "green_at": green_at}
    stats.update(items=corpus.num_items, texts=corpus.num_texts)
    out = _make_list(corpus, mask, "ratio", gamma, stats, score)
    out.method, out.ratio_model, out.green_at, out.vocab_size = "ratio", model, green_at, vocab_size
    return out


def ranked_items(stolen: StolenList, size: int | None = None) -> list[Any]:
    """The `size` best-scored items (token ids for h = 0, (context..., token) tuples otherwise)."""
    rows = stolen.scores[: size if size is not None else len(stolen.scores)]
    if stolen.context_width == 0:
        return [int(r[0]) for r in rows]
    return [tuple(int(x) for x in r[:-1]) for r in rows]


# Function words for the lexical weights and the baseline filter (the authors use a short English
# stop-word list; this one is ours), lower-case, matched after stripping the space marker.
_STOP_WORD_TEXT = """
a an the and or but if then than so as of at by for from in into on onto to with
without about over under after before between through during is are was were be been
being am do does did have has had having i me my we our you your he him his she her it
its they them their this that these those there here what which who whom whose when
where why how not no nor can could will would shall should may might must just also
very too more most some any all each both
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


def lexical_token_weights(tokenizer: Any) -> np.ndarray:
    """omega per vocabulary id for the minimum-weight stage, as in Zhang et al.'s released code:
    2 for a stop word, 5 for a one-character token, 4 for a two-character token, 1 otherwise.

    Short tokens and function words are frequent in every text, so a list that explains the data
    with them is cheap but wrong; the weights make the program prefer content tokens. A token's
    text is its decoded form without surrounding white space (so " the" is the stop word "the").
    """
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    out = np.ones(len(texts))
    for i, raw in enumerate(texts):
        word = raw.strip()
        if word.lower() in STOP_WORDS:
            out[i] = 2.0
        elif len(word) <= 1:
            out[i] = 5.0
        elif len(word) == 2:
            out[i] = 4.0
    return out


def frequency_baseline(
    watermarked: Sequence[Sequence[int]],
    natural: Sequence[Sequence[int]],
    gamma: float | None = None,
    vocab_size: int | None = None,
    context_width: int = 0,
    count_repeats: bool = False,
    skip_ids: Sequence[int] = (),
    size: int | None = None,
) -> StolenList:
    """The paper's frequency-ratio estimator (`greenlist_inversion_sta.py`).

    score_v = freq_W(v) / freq_H(v), with the smallest natural frequency standing in when v never
    occurs in natural text; v is green iff score_v >= max(score at rank gamma N, 1). `skip_ids`
    plays the role of the authors' stop-word and short-token filter. `size` keeps the `size`
    best-scoring items instead (to compare with another list at equal size).
    """
    check_gamma(gamma)
    corpus = build_corpus(watermarked, natural, context_width, count_repeats)
    w, h = corpus.class_totals()
    fw = w / max(w.sum(), 1)
    fh = h / max(h.sum(), 1)
    fh_min = fh[fh > 0].min() if (fh > 0).any() else 1.0
    score = fw / np.where(fh > 0, fh, fh_min)
    eligible = w > 0
    if skip_ids:
        eligible &= ~np.isin(corpus.items[:, -1], np.asarray(list(skip_ids), dtype=np.int64))
    threshold = 1.0
    if gamma is not None and vocab_size and context_width == 0:  # the rank rule is for one list
        rank = int(gamma * vocab_size)
        ranked = np.sort(score[eligible])[::-1]
        if rank < len(ranked):
            threshold = max(float(ranked[rank]), 1.0)
    mask = eligible & (score >= threshold)
    if threshold == 1.0:
        mask = eligible & (score > 1.0)  # a ratio of exactly 1 is no evidence either way
    if size is not None:
        order = np.argsort(-np.where(eligible, score, -np.inf), kind="stable")[: max(int(size), 0)]
        mask = np.zeros_like(eligible)
        mask[order] = eligible[order]
    stats = SolverStats(solver="none", threat="frequency", relaxed=False, status="closed form").to_dict()
    stats.update(items=corpus.num_items, texts=corpus.num_texts, threshold=threshold)
    out = _make_list(corpus, mask, "frequency", gamma, stats, np.where(eligible, score, 0.0))
    out.vocab_size = vocab_size
    return out


@dataclass(frozen=True)
class ListScore:
    """A stolen list against the true one. Recall is over the whole true list (what a scrubber
    needs); `recall_observed` only over true-green items that occurred in the attacker's data."""

    predicted: int
    correct: int
    true_size: int
    precision: float
    recall: float
    f1: float
    recall_observed: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def score_list(
    stolen: Sequence[Any], true: Sequence[Any], observed: Sequence[Any] | None = None
) -> ListScore:
    """Precision = correct/predicted (the authors' `green_acc`), recall = correct/|true|, F1."""
    pred = {_key(x) for x in stolen}
    truth = {_key(x) for x in true}
    correct = len(pred & truth)
    precision = correct / len(pred) if pred else 0.0
    recall = correct / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rec_obs = None
    if observed is not None:
        obs_true = truth & {_key(x) for x in observed}
        rec_obs = len(pred & obs_true) / len(obs_true) if obs_true else 0.0
    return ListScore(len(pred), correct, len(truth), precision, recall, f1, rec_obs)


def _key(x: Any) -> Any:
    if isinstance(x, (tuple, list, np.ndarray)):
        return tuple(int(v) for v in x)
    return int(x)


def estimated_z(probs: Sequence[float], gamma: float) -> float:
    """The attacker's z-estimate from per-item green probabilities (Jovanovic et al.)."""
    t = len(probs)
    if t == 0:
        return 0.0
    return (float(sum(probs)) - gamma * t) / math.sqrt(gamma * (1 - gamma) * t)
