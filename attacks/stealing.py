"""Green-list stealing (Zhang et al. 2024): recover a green list from labelled texts.

`steal()` builds the corpus, solves the mixed integer program (`stealing_mip`) for a threat
model and returns a `StolenList`; `frequency_baseline()` is the paper's cheap comparison;
`score_list()` gives precision/recall/F1 against the true list when the evaluator knows it.

For h = 0 (Unigram) the items are tokens. For h >= 1 the same program runs over
(context, token) pairs: each pair is its own unknown, seen only a few times, so the program can
only label the pairs that occur in the corpus and says nothing about unseen contexts. This is
why a context-dependent list is far harder to steal (see benchmarks/results/stealing.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from watermark.atomic import write_text
from watermark.errors import InputError
from watermark.textio import decode_text, read_bytes

from .stealing_data import (
    StealingConfigError,
    StealingCorpus,
    StealingInputError,
    build_corpus,
    check_gamma,
)
from .stealing_mip import THREATS, WEIGHTS, ProgramOptions, SolverStats, solve_program

__all__ = [
    "STOP_WORDS",
    "THREATS",
    "WEIGHTS",
    "ListScore",
    "ProgramOptions",
    "StealingConfigError",
    "StealingInputError",
    "StolenList",
    "build_corpus",
    "frequency_baseline",
    "lexical_token_weights",
    "score_list",
    "steal",
]


@dataclass
class StolenList:
    """A stolen green list: token ids (h = 0) or (context..., token) pairs (h >= 1)."""

    green_token_ids: list[int]
    threat: str  # vanilla / oracle / pro / blind / frequency
    context_width: int = 0
    green_pairs: list[tuple[int, ...]] = field(default_factory=list)  # h >= 1 only
    tokenizer: str | None = None
    vocab_size: int | None = None
    gamma: float | None = None
    num_watermarked: int = 0
    num_natural: int = 0
    num_candidates: int = 0  # items that occurred (the program's columns)
    solver: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = frozenset(int(i) for i in self.green_token_ids)
        self._by_context: dict[tuple[int, ...], set[int]] = {}
        for p in self.green_pairs:
            self._by_context.setdefault(tuple(int(x) for x in p[:-1]), set()).add(int(p[-1]))

    def __len__(self) -> int:
        return len(self.green_pairs) if self.context_width else len(self.green_token_ids)

    def is_green(self, token: int, context: Sequence[int] = ()) -> bool:
        """Believed green: `context` is the previous h token ids (ignored for h = 0)."""
        if self.context_width == 0:
            return int(token) in self._ids
        ctx = tuple(int(x) for x in context[-self.context_width :])
        return int(token) in self._by_context.get(ctx, ())

    def green_after(self, context: Sequence[int] = ()) -> list[int]:
        """Token ids believed green after `context` (the whole list for h = 0)."""
        if self.context_width == 0:
            return sorted(self._ids)
        ctx = tuple(int(x) for x in context[-self.context_width :])
        return sorted(self._by_context.get(ctx, ()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "green_token_ids": sorted(int(i) for i in self.green_token_ids),
            "green_pairs": [list(map(int, p)) for p in self.green_pairs],
            "threat": self.threat,
            "context_width": self.context_width,
            "tokenizer": self.tokenizer,
            "vocab_size": self.vocab_size,
            "gamma": self.gamma,
            "num_watermarked": self.num_watermarked,
            "num_natural": self.num_natural,
            "num_candidates": self.num_candidates,
            "solver": self.solver,
        }

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
            )
        except (TypeError, ValueError) as exc:
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


def _make_list(
    corpus: StealingCorpus, mask: np.ndarray, threat: str, gamma: float | None, stats: dict[str, Any]
) -> StolenList:
    chosen = corpus.items[mask]
    h = corpus.context_width
    return StolenList(
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
    mask, _, stats = solve_program(corpus, opts)
    out = _make_list(corpus, mask, threat, gamma, stats.to_dict())
    out.vocab_size = vocab_size
    return out


def _n_items(ids: Sequence[int], h: int, count_repeats: bool) -> int:
    a = np.asarray(ids, dtype=np.int64).reshape(-1)
    if a.size <= h:
        return 0
    if count_repeats:
        return a.size - h
    return len(np.unique(np.lib.stride_tricks.sliding_window_view(a, h + 1), axis=0))


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
    out = _make_list(corpus, mask, "frequency", gamma, stats)
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
