"""Score one question's samples with every method: the glue between models and `scores`.

All similarity work for a question is gathered first and sent in single batched calls: one
`pairs` call for every token of every sample (TokenSAR), one `matrix` call over the samples
(SentSAR, SAR and threshold-clustered semantic entropy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import scores
from .sampling import Answer, QuestionSamples
from .similarity import NLIModel, Similarity

METHODS: tuple[str, ...] = ("sar", "token-sar", "sent-sar", "pe", "ln-pe", "lexical", "semantic")
METHOD_LABELS = {
    "sar": "SAR",
    "token-sar": "TokenSAR",
    "sent-sar": "SentSAR",
    "pe": "PE",
    "ln-pe": "LN-PE",
    "lexical": "Lexical sim. (neg.)",
    "semantic": "Semantic entropy",
}
DEFAULT_CLUSTER_THRESHOLD = 0.95  # on bi-encoder cosine of question + answer; see benchmarks/results


def parse_methods(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """`"sar,pe"` or a list -> validated method names in the canonical order; None/"all" = every method."""
    from ..errors import ConfigError

    if spec is None or spec == "all":
        return METHODS
    names = [m.strip().lower() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ConfigError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}"
        )
    return tuple(m for m in METHODS if m in names)


def with_question(question: str, text: str) -> str:
    """The paper's similarity input: question and answer as one text."""
    return f"{question.strip()} {text.strip()}"


def texts_without_each_token(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The answer decoded once per position with exactly that token left out.

    Removal is by position, so a repeated token stays everywhere else (the reference code's
    `str.replace` removed every occurrence, even inside other words).
    """
    ids = list(ids)
    return [tokenizer.decode(ids[:i] + ids[i + 1 :], skip_special_tokens=True) for i in range(len(ids))]


@dataclass
class QuestionScores:
    scores: dict[str, float]
    token_relevance: list[list[float]] = field(default_factory=list)  # per sample, per token
    token_sar: list[float] = field(default_factory=list)  # per sample
    clusters: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scores": self.scores,
            "token_relevance": self.token_relevance,
            "token_sar": self.token_sar,
            "clusters": self.clusters,
        }


def rouge_l_matrix(texts: Sequence[str]) -> np.ndarray:
    """Pairwise Rouge-L F1 between texts (rouge-score's tokeniser: lower case, alphanumerics)."""
    scorer = rouge_scorer()
    n = len(texts)
    m = np.eye(n)
    for a in range(n):
        for b in range(a + 1, n):
            m[a, b] = m[b, a] = scorer.score(texts[a], texts[b])["rougeL"].fmeasure
    return m


def rouge_scorer() -> Any:
    from ..errors import ConfigError

    try:
        from rouge_score import rouge_scorer as rs
    except ImportError:
        raise ConfigError("Rouge-L needs the rouge-score package: pip install rouge-score") from None
    return rs.RougeScorer(["rougeL"], use_stemmer=False)


class Estimator:
    """Turns a question's samples into every requested uncertainty score (higher = more uncertain)."""

    def __init__(
        self,
        tokenizer: Any,
        similarity: Similarity | None,
        methods: Sequence[str] = METHODS,
        nli: NLIModel | None = None,
        t: float = scores.SENTENCE_TEMPERATURE,
        cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD,
    ):
        self.tokenizer = tokenizer
        self.similarity = similarity
        self.methods = tuple(methods)
        self.nli = nli
        self.t = t
        self.cluster_threshold = cluster_threshold
        needs_sim = {"sar", "token-sar", "sent-sar"} | ({"semantic"} if nli is None else set())
        if similarity is None and needs_sim & set(self.methods):
            raise ValueError("these methods need a similarity model")

    def _similarity(self) -> Similarity:
        """The similarity model (the constructor made sure the methods that read it have one)."""
        if self.similarity is None:
            raise ValueError("these methods need a similarity model")
        return self.similarity

    def token_relevance(self, question: str, answers: Sequence[Answer]) -> list[np.ndarray]:
        """Normalised relevance of every token of every answer, from ONE batched similarity call."""
        left: list[str] = []
        right: list[str] = []
        spans = []
        for a in answers:
            full = with_question(question, a.text)
            removed = [
                with_question(question, t) for t in texts_without_each_token(self.tokenizer, a.token_ids)
            ]
            spans.append((len(left), len(left) + len(removed)))
            left += [full] * len(removed)
            right += removed
        g = self._similarity().pairs(left, right) if left else np.zeros(0)
        return [scores.token_relevance(g[s:e]) for s, e in spans]

    def score(self, qs: QuestionSamples) -> QuestionScores:
        want = set(self.methods)
        samples = list(qs.samples)
        if len(samples) < 2:
            raise ValueError("uncertainty scoring needs at least two samples")
        nlls = [np.asarray(a.token_nlls, dtype=float) for a in samples]
        out = QuestionScores(scores={})
        if want & {"sar", "token-sar"}:
            rel = self.token_relevance(qs.question, samples)
            out.token_relevance = [r.tolist() for r in rel]
            out.token_sar = [scores.token_sar(n, r) for n, r in zip(nlls, rel, strict=True)]
        sim = None
        if want & {"sar", "sent-sar"} or ("semantic" in want and self.nli is None):
            sim = self._similarity().matrix([with_question(qs.question, a.text) for a in samples])
        if "sar" in want:
            assert sim is not None  # computed above for sar
            out.scores["sar"] = scores.sar(out.token_sar, sim, self.t)
        if "token-sar" in want:
            out.scores["token-sar"] = float(np.mean(out.token_sar))
        if "sent-sar" in want:
            assert sim is not None  # computed above for sent-sar
            out.scores["sent-sar"] = scores.sent_sar(nlls, sim, self.t)
        if "pe" in want:
            out.scores["pe"] = scores.predictive_entropy(nlls)
        if "ln-pe" in want:
            out.scores["ln-pe"] = scores.ln_predictive_entropy(nlls)
        if "lexical" in want:
            out.scores["lexical"] = scores.lexical_uncertainty(rouge_l_matrix([a.text for a in samples]))
        if "semantic" in want:
            if self.nli is not None:
                contra, _ = self.nli.verdicts([with_question(qs.question, a.text) for a in samples])
                out.clusters = scores.clusters_from_nli(contra)
            else:
                assert sim is not None  # computed above for semantic without an NLI model
                out.clusters = scores.clusters_from_similarity(sim, self.cluster_threshold)
            out.scores["semantic"] = scores.semantic_entropy(nlls, out.clusters)
        out.scores = {m: out.scores[m] for m in self.methods}
        return out
