"""Where the watermark is in a long text: a multi-scale scan over windows of tokens.

A scheme reduces a text to per-token evidence, scored once per position the way its whole-text
detector scores it (`Evidence`):
- green lists: a green indicator on the scored positions, where a position is scored only at the
  first occurrence of its (context, token) pair in the text, as `detect` does. The scored positions
  of any window are then distinct pairs, so a window's green count is exactly Binomial(t, gamma)
  (Hypergeometric for Unigram's one list; a sum of per-seed hypergeometrics for transformers' KGW)
  under H0, whatever the text repeats;
- Gumbel: -log(1 - r) on the scored positions, i.i.d. Exp(1) under H0: a window sums to Gamma(t, 1);
- EXP (exp, exp-edit): a window of L <= key_length tokens on one key shift sums L distinct key
  entries, -log(1 - xi) ~ Exp(1) each, so Gamma(L, 1) per shift, with a union bound over the
  n shifts (Kuditipudi et al.'s block statistic with the Gamma tail of their EXP test; windows
  longer than the key are not scanned, where rows wrap and entries repeat).

Windows (`windows`): a dyadic family, lengths L = min_window * 2^j below the text length with
stride L / 2 (the last window flush with the end), plus the whole text. Every window gets its
exact p-value p_w. The document p-value is the weighted Bonferroni minimum: each of the S scales
gets an equal share of the level, split evenly over its M_s windows, so

    p_doc = min_w  S * M_s(w) * p_w

is valid whatever the windows' overlaps (no independence needed). Compared with WinMax (the
maximum z over all windows, which the Reliability paper's code calibrates on human text), it needs
no calibration, and the whole-text window costs only a factor S, so fully watermarked texts lose
little power against the whole-text test.

Spans (`find_spans`): among the windows whose adjusted p-value S * M_s * p_w is at most alpha,
those that contain no shorter significant window (where the evidence is, not every longer window
covering it, such as the whole text) are merged where they overlap; each merged region, widened
by its shortest window on both sides, is cut to the maximum-likelihood segment: the maximal-sum
run of per-token log-likelihood ratios (watermarked at the rate of the region's best window
against H0); spans closer than the shortest window are joined. A span's `p_value` is the smallest adjusted p-value of the significant windows
that overlap it more than any other span: family-wise valid (in a text independent of the key, any span is
reported with probability at most alpha); it is not a p-value of the refined ends, which are
chosen after looking at the data.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .pvalues import log10_binomial_tails, log10_gamma_tails, log10_hypergeom_tails, log10_lattice_tail

DEFAULT_MIN_WINDOW = 32
MAX_MIN_WINDOW = 1 << 20


@dataclass(frozen=True)
class Windows:
    """The scanned windows [starts, ends) with their scale index and Bonferroni weight."""

    starts: np.ndarray
    ends: np.ndarray
    scale: np.ndarray
    log10_weight: np.ndarray  # log10(S * M_s): the factor each window's p-value is multiplied by
    lengths: tuple[int, ...]

    def __len__(self) -> int:
        return int(self.starts.size)


def windows(n: int, min_window: int = DEFAULT_MIN_WINDOW, max_length: int | None = None) -> Windows:
    """The dyadic family over n positions: lengths min_window * 2^j < top, stride L / 2, plus top
    = min(n, max_length) (the whole text when no cap applies)."""
    if not 1 <= min_window <= MAX_MIN_WINDOW:
        raise ConfigError(f"min_window must be between 1 and {MAX_MIN_WINDOW}, got {min_window}")
    top = n if max_length is None else min(n, max_length)
    if top < 1:
        raise ConfigError("no window to scan: the text is empty")
    lengths = []
    length = min_window
    while length < top:
        lengths.append(length)
        length *= 2
    lengths.append(top)
    starts, ends, scale, counts = [], [], [], []
    for j, length in enumerate(lengths):
        stride = max(1, length // 2)
        s = np.arange(0, n - length + 1, stride, dtype=np.int64)
        if s[-1] != n - length:
            s = np.append(s, n - length)
        starts.append(s)
        ends.append(s + length)
        scale.append(np.full(s.size, j, dtype=np.int64))
        counts.append(s.size)
    scale_arr = np.concatenate(scale)
    weight = math.log10(len(lengths)) + np.log10(np.asarray(counts, dtype=np.float64))[scale_arr]
    return Windows(np.concatenate(starts), np.concatenate(ends), scale_arr, weight, tuple(lengths))


class Evidence(ABC):
    """Per-token evidence of one text: exact per-window p-values and per-token likelihood ratios."""

    n: int  # positions (tokens of the text)
    max_length: int | None = None  # longest window with an exact null (None: any)
    description: str = ""

    @abstractmethod
    def log10_p(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """log10 of an exact (or conservative) p-value of each window [start, end)."""

    def log10_floor(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """log10 of the smallest p-value each window could give (-inf: unbounded)."""
        return np.full(starts.size, -math.inf)

    @abstractmethod
    def llr(self, lo: int, hi: int, best: tuple[int, int]) -> np.ndarray:
        """Per-token log-likelihood ratios over [lo, hi): watermarked at the rate seen in the
        window `best` against H0 (0 where a token carries no evidence)."""


def _prefix(x: np.ndarray) -> np.ndarray:
    out = np.zeros(x.size + 1, dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    np.cumsum(x, out=out[1:])
    return out


class CountEvidence(Evidence):
    """Counts on scored positions: `trials[i]` coin flips at position i (1 for a green-list token,
    m for SynthID's m layers, 0 where unscored), `hits[i]` of them successes. A window's count is
    Binomial(its trials, prob), or Hypergeometric(population, marked, t) for one fixed list of
    distinct tokens (one flip per position)."""

    def __init__(
        self,
        trials: np.ndarray,
        hits: np.ndarray,
        prob: float,
        hypergeom: tuple[int, int] | None = None,
        description: str = "",
    ):
        self.trials = np.asarray(trials).astype(np.int64)
        self.n = self.trials.size
        self.scored = self.trials > 0
        self.hits = np.minimum(np.asarray(hits).astype(np.int64), self.trials)
        self.green = self.hits > 0  # for one flip per position: the green indicator
        self.prob = float(prob)
        self.hypergeom = hypergeom
        self._t, self._g = _prefix(self.trials), _prefix(self.hits)
        self.description = description

    def counts(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._g[ends] - self._g[starts], self._t[ends] - self._t[starts]

    def _tail(self, g: np.ndarray, t: np.ndarray) -> np.ndarray:
        if self.hypergeom is None:
            return log10_binomial_tails(g, t, self.prob)
        population, marked = self.hypergeom
        return log10_hypergeom_tails(g, population, marked, t)

    def log10_p(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return self._tail(*self.counts(starts, ends))

    def log10_floor(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        _, t = self.counts(starts, ends)
        return self._tail(t, t)

    def llr(self, lo: int, hi: int, best: tuple[int, int]) -> np.ndarray:
        g, t = self.counts(np.array([best[0]]), np.array([best[1]]))
        q = self.prob
        p1 = min(max(float(g[0]) / max(int(t[0]), 1), q + 1e-3), 1.0 - 1e-6)
        up, down = math.log(p1 / q), math.log((1.0 - p1) / (1.0 - q))
        h, t = self.hits[lo:hi], self.trials[lo:hi]
        return h * up + (t - h) * down


class SeedGroupedCountEvidence(CountEvidence):
    """transformers' KGW: each seed draws its green list as a K-subset of V, so the green count of
    a seed's n_s distinct tokens is Hypergeometric(V, K, n_s) and a window's count is the exact
    convolution of its seeds' (`stats.log10_lattice_tail`). Windows at or below their mean get
    p = 1 (conservative, and they are never significant)."""

    def __init__(self, scored, green, seeds: np.ndarray, population: int, marked: int, description=""):
        super().__init__(scored, green, marked / population, description=description)
        self.seeds = np.asarray(seeds, dtype=np.int64)
        self.population, self.marked = int(population), int(marked)

    def _window_tail(self, a: int, b: int, count_all: bool = False) -> float:
        from scipy import stats as sps

        sel = self.scored[a:b]
        g = int(sel.sum()) if count_all else int(self.green[a:b].sum())
        if g <= 0:
            return 0.0
        _, per_seed = np.unique(self.seeds[a:b][sel], return_counts=True)
        sizes, groups = np.unique(per_seed, return_counts=True)
        comps = [
            (sps.hypergeom.pmf(np.arange(s + 1), self.population, self.marked, s), int(c))
            for s, c in zip(sizes, groups, strict=True)
        ]
        return log10_lattice_tail(comps, g)

    def log10_p(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Exact where it can matter; elsewhere (long texts: windows whose Chernoff bound is above
        0.1) the bound itself, a valid conservative p-value that keeps the scan fast."""
        g, t = self.counts(starts, ends)
        out = np.zeros(starts.size)
        above = g > self.prob * t
        q, rate = self.prob, np.where(above, g / np.maximum(t, 1), self.prob)
        with np.errstate(divide="ignore", invalid="ignore"):  # KL(rate || q), 0 log 0 = 0
            kl = np.nan_to_num(rate * np.log(rate / q)) + np.nan_to_num(
                (1 - rate) * np.log((1 - rate) / (1 - q))
            )
        # the MGF of a hypergeometric is at most the binomial's (Hoeffding 1963): P <= exp(-t KL)
        out[above] = -t[above] * kl[above] / math.log(10.0)
        exact = above & ((out < -1.0) | (starts.size <= 256))
        for i in np.flatnonzero(exact):
            out[i] = self._window_tail(int(starts[i]), int(ends[i]))
        return out

    def log10_floor(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Exact for short texts; for long ones gamma^t, which is at least the exact floor (each
        factor (K - j) / (V - j) <= K / V) and far below any alpha there."""
        if starts.size > 256:
            return super().log10_floor(starts, ends)
        return np.array([self._window_tail(int(a), int(b), True) for a, b in zip(starts, ends, strict=True)])


def _exp_llr(x: np.ndarray, mean1: float) -> np.ndarray:
    """log-likelihood ratio of Exp(mean mean1) against Exp(1) for scores x (mean1 > 1)."""
    mu = max(mean1, 1.0 + 1e-3)
    return x * (1.0 - 1.0 / mu) - math.log(mu)


class GammaEvidence(Evidence):
    """Gumbel scores -log(1 - r) on scored positions; a window sums to Gamma(t, 1) under H0."""

    def __init__(self, scored: np.ndarray, scores: np.ndarray, description: str = ""):
        self.scored = np.asarray(scored, dtype=bool)
        self.n = self.scored.size
        self.scores = np.where(self.scored, np.asarray(scores, dtype=np.float64), 0.0)
        self._t, self._s = _prefix(self.scored.astype(np.int64)), _prefix(self.scores)
        self.description = description

    def sums(self, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._s[ends] - self._s[starts], self._t[ends] - self._t[starts]

    def log10_p(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return log10_gamma_tails(*self.sums(starts, ends))

    def llr(self, lo: int, hi: int, best: tuple[int, int]) -> np.ndarray:
        s, t = self.sums(np.array([best[0]]), np.array([best[1]]))
        out = _exp_llr(self.scores[lo:hi], float(s[0]) / max(int(t[0]), 1))
        return np.where(self.scored[lo:hi], out, 0.0)


class ShiftedGammaEvidence(Evidence):
    """EXP: `scores[s, l]` = -log(1 - xi[(s + l) mod n][token l]) for each of the n key shifts; a
    window of L <= n tokens on one shift sums L distinct key entries, Gamma(L, 1) under H0, and
    its p-value is n times the tail of the best shift (union bound over shifts)."""

    def __init__(self, scores: np.ndarray, description: str = ""):
        self.scores = np.asarray(scores, dtype=np.float64)  # (n shifts, m tokens)
        self.shifts, self.n = self.scores.shape
        self.max_length = self.shifts
        self._s = np.zeros((self.shifts, self.n + 1))
        np.cumsum(self.scores, axis=1, out=self._s[:, 1:])
        self.description = description

    def best(self, starts: np.ndarray, ends: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """(best shift, its window sum) of each window, in chunks of windows (bounded memory)."""
        shift = np.empty(starts.size, dtype=np.int64)
        total = np.empty(starts.size)
        for c in range(0, starts.size, chunk):
            sums = self._s[:, ends[c : c + chunk]] - self._s[:, starts[c : c + chunk]]
            shift[c : c + chunk] = sums.argmax(axis=0)
            total[c : c + chunk] = sums.max(axis=0)
        return shift, total

    def log10_p(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        _, total = self.best(starts, ends)
        return np.minimum(0.0, log10_gamma_tails(total, ends - starts) + math.log10(self.shifts))

    def llr(self, lo: int, hi: int, best: tuple[int, int]) -> np.ndarray:
        shift, total = self.best(np.array([best[0]]), np.array([best[1]]))
        return _exp_llr(self.scores[int(shift[0]), lo:hi], float(total[0]) / (best[1] - best[0]))


@dataclass(frozen=True)
class TokenSpan:
    """A region [start, end) of token positions and its family-wise p-value."""

    start: int
    end: int
    log10_p_value: float


@dataclass(frozen=True)
class Scan:
    """What `scan` found: the document's log10 p-value over every window, the best window's raw
    log10 p (the scan statistic), the floor, and the spans at the given level."""

    log10_p_value: float
    log10_best_window: float
    log10_floor: float
    spans: tuple[TokenSpan, ...]
    num_windows: int
    window_lengths: tuple[int, ...]


def _max_segment(x: np.ndarray) -> tuple[int, int, float]:
    """[a, b) maximising sum(x[a:b]) (b > a): the maximal-sum run, O(len) with prefix sums
    (ties go to the shorter run)."""
    c = _prefix(x)
    run_min = np.minimum.accumulate(c[:-1])
    at = np.maximum.accumulate(np.where(c[:-1] == run_min, np.arange(x.size), 0))
    gain = c[1:] - run_min
    b = int(np.argmax(gain)) + 1
    return int(at[b - 1]), b, float(gain[b - 1])


def _minimal(wins: Windows, sig: np.ndarray) -> np.ndarray:
    """The significant windows that contain no shorter significant window: where the evidence
    is, rather than every longer window that also covers it (the whole text, say)."""
    keep = np.ones(sig.size, dtype=bool)
    scales = wins.scale[sig]
    for j in np.unique(scales):
        inner = np.sort(wins.starts[sig[scales == j]])
        length = wins.lengths[j]
        outer = np.flatnonzero(scales > j)
        if outer.size == 0 or inner.size == 0:
            continue
        s, e = wins.starts[sig[outer]], wins.ends[sig[outer]]
        first = np.searchsorted(inner, s)  # the first inner window starting at or after s
        has = first < inner.size
        has[has] = inner[first[has]] <= e[has] - length
        keep[outer[has]] = False
    return sig[keep]


def find_spans(
    evidence: Evidence, wins: Windows, adjusted: np.ndarray, log10_alpha: float
) -> tuple[TokenSpan, ...]:
    """Merge the minimal significant windows into regions and cut each to its maximum-likelihood
    segment; a span's p-value is the smallest adjusted one of the significant windows that
    overlap it more than any other span."""
    sig = np.flatnonzero(adjusted <= log10_alpha)
    if sig.size == 0:
        return ()
    minimal = _minimal(wins, sig)
    order = minimal[np.argsort(wins.starts[minimal], kind="stable")]
    regions: list[list[int]] = []
    end = -1
    for w in order:
        if regions and wins.starts[w] <= end:
            regions[-1].append(int(w))
            end = max(end, int(wins.ends[w]))
        else:
            regions.append([int(w)])
            end = int(wins.ends[w])
    found: list[TokenSpan] = []
    for members in regions:
        idx = np.asarray(members)
        best = int(idx[np.argmin(adjusted[idx])])
        widen = int((wins.ends[idx] - wins.starts[idx]).min())
        lo = max(0, int(wins.starts[idx].min()) - widen)
        hi = min(evidence.n, int(wins.ends[idx].max()) + widen)
        x = evidence.llr(lo, hi, (int(wins.starts[best]), int(wins.ends[best])))
        a, b, gain = _max_segment(x)
        if gain <= 0.0:  # cannot happen for a significant window; keep the best window then
            a, b = int(wins.starts[best]) - lo, int(wins.ends[best]) - lo
        span = TokenSpan(lo + a, lo + b, float(adjusted[best]))
        # widened regions can meet, and spans closer than the shortest window cannot be told apart
        # by the scan: one span
        if found and span.start - found[-1].end < wins.lengths[0]:
            prev = found.pop()
            span = TokenSpan(prev.start, max(prev.end, span.end), min(prev.log10_p_value, span.log10_p_value))
        found.append(span)
    # each significant window speaks for the span it overlaps most: a span's p-value is the
    # smallest adjusted one among its windows (a longer window may hold more evidence than the
    # minimal ones, e.g. the 256 tokens around a 200-token passage)
    span_starts = np.array([f.start for f in found])
    span_ends = np.array([f.end for f in found])
    overlap = np.minimum(wins.ends[sig, None], span_ends[None]) - np.maximum(
        wins.starts[sig, None], span_starts[None]
    )
    owner = np.argmax(overlap, axis=1)
    out = []
    for k, f in enumerate(found):
        mine = sig[(owner == k) & (overlap[np.arange(sig.size), owner] > 0)]
        out.append(TokenSpan(f.start, f.end, min(f.log10_p_value, float(adjusted[mine].min(initial=0.0)))))
    return tuple(out)


def scan(
    evidence: Evidence,
    alpha: float = 1e-3,
    min_window: int = DEFAULT_MIN_WINDOW,
    on_windows: Callable[[Windows, np.ndarray], None] | None = None,
) -> Scan:
    """Scan every window of the dyadic family; the document p-value and the spans at alpha."""
    if not 0.0 < alpha <= 1.0:
        raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
    wins = windows(evidence.n, min_window, evidence.max_length)
    raw = evidence.log10_p(wins.starts, wins.ends)
    adjusted = np.minimum(0.0, raw + wins.log10_weight)
    if on_windows is not None:
        on_windows(wins, raw)
    floor = float(np.min(evidence.log10_floor(wins.starts, wins.ends) + wins.log10_weight))
    return Scan(
        log10_p_value=float(adjusted.min()),
        log10_best_window=float(raw.min()),
        log10_floor=min(0.0, floor),
        spans=find_spans(evidence, wins, adjusted, math.log10(alpha)),
        num_windows=len(wins),
        window_lengths=wins.lengths,
    )
