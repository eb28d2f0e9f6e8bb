"""Anytime-valid verdicts on text that is still arriving: test martingales over per-token scores.

A fixed-length test is valid only at the length chosen in advance: recomputing its p-value after
every token and stopping at the first p <= alpha rejects far more often than alpha. A test
martingale E_t (E_0 = 1, E[E_t | past] = E_{t-1} under H0, E_t >= 0) is valid under any stopping
rule: by Ville's inequality P(sup_t E_t >= 1/alpha) <= alpha, so a user may watch a stream, stop
when they like (at the first E_t >= 1/alpha, at EOF, on Ctrl-C) and the false-positive rate still
holds. `p = min(1, 1 / max_s E_s)` is an anytime-valid p-value.

The per-token scores are the scheme's `span_evidence` (`statistics.spans`), scored exactly as
`detect` scores them (repeated (context, token) pairs carry no evidence):
- counts (green lists, SynthID's g-values): each scored token adds `hits` of `trials` coin flips,
  Bernoulli(q) under H0. E_t is a mixture over a grid of watermarked rates p > q of the likelihood
  ratios prod (p/q)^h ((1-p)/(1-q))^(m-h), each a martingale, so their average is one too. Unigram's
  one list (hypergeometric: distinct tokens drawn from a K-of-V list) and transformers' KGW (one
  such list per seed) use the exact conditional null rate q_t = (K - greens so far) / (V - tokens so
  far), per list, which keeps each factor's null mean at 1;
- Gumbel scores -log(1 - r): i.i.d. Exp(1) under H0; E_t mixes Exp(mean mu) / Exp(1) ratios over a
  grid of mu > 1 (each factor has null mean 1);
- EXP scores on each of the n key shifts: per shift, the entries along the tokens are distinct key
  entries (Exp(1) under H0) until the key wraps; each shift gets its own mixture martingale and the
  test rejects when the best shift reaches n / alpha (a union bound over shifts); past key_length
  tokens the process stops (entries would repeat).

The grids are fixed in advance (never tuned on the data); they cost a little power against the
best single alternative (a log(grid size) in log E) and buy robustness to the watermark strength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .spans import CountEvidence, Evidence, GammaEvidence, SeedGroupedCountEvidence, ShiftedGammaEvidence

RATE_FRACTIONS = (0.03, 0.07, 0.15, 0.3, 0.5, 0.75)  # p = q + f (1 - q)
MEANS = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0)  # Exp means under the alternative


def _logmeanexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(x - top), axis=axis))


@dataclass
class Verdict:
    """The stream's state after the tokens seen so far."""

    tokens: int
    log_e: float  # log of the current e-value (EXP: log(best shift's e-value / shifts))
    max_log_e: float  # the running maximum: what the anytime-valid p-value uses
    alpha: float
    stopped_at: int | None  # tokens seen when the e-value first reached 1/alpha

    @property
    def e_value(self) -> float:
        return math.exp(min(self.log_e, 700.0))

    @property
    def p_value(self) -> float:
        """Anytime-valid p-value: min(1, 1 / sup_s E_s)."""
        return min(1.0, math.exp(-self.max_log_e))

    @property
    def watermarked(self) -> bool:
        return self.stopped_at is not None

    @property
    def verdict(self) -> str:
        return "watermarked" if self.watermarked else "undecided"

    def to_dict(self) -> dict:
        return {
            "tokens": self.tokens,
            "e_value": self.e_value,
            "log10_e_value": self.log_e / math.log(10),
            "anytime_p_value": self.p_value,
            "verdict": self.verdict,
            "tokens_to_detect": self.stopped_at,
            "alpha": self.alpha,
        }


@dataclass
class SequentialTest:
    """Feed per-token evidence (`update`), read the verdict; valid at every stopping time.

    `kind` is "count", "gamma" or "shifted"; `prob` the null rate for counts; `hypergeom`
    (population, marked) for fixed lists (one list, or one per `group` id)."""

    kind: str
    alpha: float = 1e-3
    prob: float = 0.5
    hypergeom: tuple[int, int] | None = None
    shifts: int = 1
    tokens: int = 0
    stopped_at: int | None = None
    _log: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    _max: float = 0.0
    _seen: dict = field(default_factory=dict, repr=False)  # group -> [greens, tokens]

    def __post_init__(self) -> None:
        if self.kind not in ("count", "gamma", "shifted"):
            raise ValueError(f"unknown kind {self.kind!r}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        width = len(MEANS) if self.kind != "count" else len(RATE_FRACTIONS)
        self._log = np.zeros((self.shifts if self.kind == "shifted" else 1, width))

    def log_e(self) -> float:
        """log E_t (EXP: log of max_s E_t^s / shifts, compared with 1/alpha)."""
        per = _logmeanexp(self._log, axis=1)
        return float(per.max()) - math.log(self.shifts)

    def update_counts(self, trials, hits, groups=None) -> None:
        """New positions: coin flips and successes at each (0 trials: unscored, no evidence);
        `groups` (one list per group id) with `hypergeom`."""
        m = np.asarray(trials, dtype=np.float64)
        h = np.minimum(np.asarray(hits, dtype=np.float64), m)
        q = self._null_rates(m, h, groups)
        p = q[:, None] + np.asarray(RATE_FRACTIONS)[None, :] * (1.0 - q[:, None])
        inc = h[:, None] * np.log(p / q[:, None]) + (m - h)[:, None] * (np.log1p(-p) - np.log1p(-q)[:, None])
        self._advance(inc[:, None, :])

    def _null_rates(self, m: np.ndarray, h: np.ndarray, groups) -> np.ndarray:
        """Each position's null success rate given the past: fixed, or the exact conditional rate
        (K - greens so far) / (V - draws so far) of its group's list."""
        if self.hypergeom is None:
            return np.full(m.size, self.prob)
        population, marked = self.hypergeom
        q = np.empty(m.size)
        for i in range(m.size):
            g = 0 if groups is None else int(groups[i])
            greens, seen = self._seen.get(g, (0, 0))
            q[i] = min(max((marked - greens) / max(population - seen, 1), 1e-12), 1.0 - 1e-12)
            if m[i] > 0:
                self._seen[g] = (greens + int(h[i]), seen + int(m[i]))
        return q

    def update_scores(self, scores, scored=None) -> None:
        """New Exp(1)-under-H0 scores: a vector (gamma) or shifts x tokens (shifted)."""
        x = np.asarray(scores, dtype=np.float64)
        mu = np.asarray(MEANS)
        theta, base = 1.0 - 1.0 / mu, -np.log(mu)
        if self.kind == "gamma":
            on = np.ones(x.size, dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
            inc = np.where(on[:, None], x[:, None] * theta + base, 0.0)
            self._advance(inc[:, None, :])
            return
        live = max(0, min(x.shape[1], self.shifts - self.tokens))  # the key wraps: stop there
        inc = np.zeros((x.shape[1], self.shifts, len(MEANS)))
        inc[:live] = x[:, :live].T[:, :, None] * theta + base
        self._advance(inc)

    def _advance(self, inc: np.ndarray) -> None:
        """Add per-token log-ratio increments (tokens, shifts, grid); track the maximum and the
        first time the e-value reaches 1/alpha."""
        if inc.shape[0] == 0:
            return
        path = self._log[None] + np.cumsum(inc, axis=0)
        now = _logmeanexp(path, axis=2).max(axis=1) - math.log(self.shifts)
        crossed = np.flatnonzero(now >= math.log(1.0 / self.alpha))
        if self.stopped_at is None and crossed.size:
            self.stopped_at = self.tokens + int(crossed[0]) + 1
        self._max = max(self._max, float(now.max()))
        self._log = path[-1]
        self.tokens += inc.shape[0]

    def verdict(self) -> Verdict:
        return Verdict(self.tokens, self.log_e(), self._max, self.alpha, self.stopped_at)


def sequential_test_for(evidence: Evidence, alpha: float) -> SequentialTest:
    """The sequential test that fits one kind of span evidence."""
    if isinstance(evidence, SeedGroupedCountEvidence):
        return SequentialTest("count", alpha, evidence.prob, (evidence.population, evidence.marked))
    if isinstance(evidence, CountEvidence):
        return SequentialTest("count", alpha, evidence.prob, evidence.hypergeom)
    if isinstance(evidence, GammaEvidence):
        return SequentialTest("gamma", alpha)
    if isinstance(evidence, ShiftedGammaEvidence):
        return SequentialTest("shifted", alpha, shifts=evidence.shifts)
    raise TypeError(f"no sequential test for {type(evidence).__name__}")


def feed(test: SequentialTest, evidence: Evidence, start: int, stop: int) -> None:
    """Feed positions [start, stop) of a text's evidence into its test."""
    if isinstance(evidence, SeedGroupedCountEvidence):
        test.update_counts(evidence.trials[start:stop], evidence.hits[start:stop], evidence.seeds[start:stop])
    elif isinstance(evidence, CountEvidence):
        groups = np.zeros(stop - start, dtype=np.int64) if evidence.hypergeom else None
        test.update_counts(evidence.trials[start:stop], evidence.hits[start:stop], groups)
    elif isinstance(evidence, GammaEvidence):
        test.update_scores(evidence.scores[start:stop], evidence.scored[start:stop])
    elif isinstance(evidence, ShiftedGammaEvidence):
        test.update_scores(evidence.scores[:, start:stop])
    else:
        raise TypeError(f"no sequential test for {type(evidence).__name__}")
