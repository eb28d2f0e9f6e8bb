"""Scrub a watermark with a stolen list: replace believed-green tokens by believed-red ones.

Left to right with the model's KV cache, a token the stolen list calls green (given its own,
already edited prefix) is replaced by a red candidate: the model's top-k next tokens at that
position, or the k nearest input-embedding neighbours of the original token, ranked by the
model's log-probability minus `penalty` x the candidate's boost (the stolen score, so a
candidate the list is unsure about is avoided too). `beam=1` is greedy; a small beam keeps the
`beam` most likely rewritten texts, so the perplexity stays low. At most `max_edit_rate` of the
tokens are edited. (Zhang et al. 2024 use word2vec synonyms and a beam of 3 x 3; papers.md §4.4.)

Without `target_z` every believed-green token is edited (up to the budget). With it the edits
are planned first, guided by the scores (what Jovanovic et al.'s scrubber does with a negative
boost inside a paraphraser): one forward pass gives each position's cheapest believed-red
replacement and its cost in log-probability; the attacker estimates each distinct scored item's
chance of being green as gamma + (1 - gamma) x boost (their z-estimate) and edits the units with
the best estimated-green-removed per nat of log-likelihood lost (for h = 0 a unit is every
occurrence of one token, since the detector counts each distinct token once) until the estimated
z falls to `target_z`. Fewer, cheaper edits keep the perplexity down.
Success is judged by the real detector on the re-tokenised output (`ScrubResult.token_ids`).

Copied items (h >= 1). A rewrite keeps many (context, token) pairs of the watermarked original
that the attacker's data never showed, and an unseen pair would count at gamma. But a pair the
watermarked text chose is green about as often as the watermarked text's pairs are (about half
of them at gamma 0.25, delta 2, where a 200-token text has z near 8), so with the original's
items given as `copied` the estimate counts each copied item at least at `copied_rate`
(`default_copied_rate`: 0.5 for h >= 1; off for h = 0, where the list scores nearly every
token itself and its score is the better estimate), and the planner edits copied items too.

Following items (h >= 1). Replacing the token at i also changes the context of the next h items,
so an edit removes those items as well (each that occurs only there becomes an item with the new
token in its context, believed green at its own boost). The planner counts that gain (for h = 1
one edit can remove two copied items) and never counts one item twice when neighbouring edits
overlap. With `lookahead` it prices candidate edits by what the whole text loses (`_edit_costs`).

Sentence mix (`rewrite_scrub(mix=True)`). Rewrites made with different settings succeed on
different sentences: one copies a sentence nearly word for word, another mangles it at a high
perplexity. `mix_sentences` takes each sentence from the version (the original or a rewrite) that
removes the most believed-green items for the log-likelihood it costs, so that the whole text stays
within the perplexity budget: an exact multiple-choice knapsack over the sentences. A sentence of
a paraphrase replaces some 20 tokens at once, so per nat of budget it removes far more items than
token replacements do (about 5 nats for one or two items, measured on KGW h = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wm_toolkit.watermark.errors import ConfigError, InputError
from wm_toolkit.watermark.measure.evaluation import perplexities, prompt_prefix
from wm_toolkit.watermark.modeling.models import cache_keyword, returned_cache

from .neighbour import NeighbourIndex
from .stealing import StolenList, estimated_z

CANDIDATES = ("model", "embedding")


@dataclass(frozen=True)
class ScrubResult:
    original_ids: tuple[int, ...]
    edited_ids: tuple[int, ...]  # the model's token ids after editing (before decoding)
    edits: int
    believed_green_before: int
    believed_green_after: int
    ppl_before: float
    ppl_after: float

    @property
    def edit_rate(self) -> float:
        return self.edits / max(len(self.original_ids), 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edits": self.edits,
            "edit_rate": round(self.edit_rate, 4),
            "believed_green_before": self.believed_green_before,
            "believed_green_after": self.believed_green_after,
            "ppl_before": self.ppl_before,
            "ppl_after": self.ppl_after,
        }


def _last(tokens: Sequence[int], h: int) -> Sequence[int]:
    """The context the stolen list reads: the last h tokens (none for h = 0; `x[-0:]` is all of x)."""
    return tokens[len(tokens) - h :] if h else ()


def count_believed_green(ids: Sequence[int], stolen: StolenList, prefix: Sequence[int] = ()) -> int:
    full = list(prefix) + list(ids)
    off, h = len(prefix), stolen.context_width
    return sum(
        stolen.is_green(full[off + i], _last(full[max(0, off + i - h) : off + i], h)) for i in range(len(ids))
    )


def perplexity(model: Any, ids: Sequence[int], prefix: Sequence[int]) -> float:
    """exp(mean negative log-likelihood) of `ids` given `prefix` (which must be non-empty)."""
    if not prefix:
        raise InputError("perplexity needs a non-empty prefix (a BOS token or the prompt)")
    return float(perplexities(model, [list(ids)], [list(prefix)])[0])


class WordFilter:
    """Whole-word editing: a position is editable only when its token is a whole word with a
    leading space (" river") and the next token does not continue it; replacements are whole
    words with the same capitalisation. Replacing one piece of a multi-token word ("Nik|olaus")
    leaves a fragment the model finds very unlikely, which is most of a token scrubber's
    perplexity cost."""

    def __init__(self, tokenizer: Any, vocab_size: int | None = None):
        from .neighbour import word_token_masks

        v = vocab_size or len(tokenizer)
        self.is_word, self.has_space, self.is_capital, _ = word_token_masks(tokenizer, v)
        self.whole = self.is_word & self.has_space
        self.glue = self.is_word & ~self.has_space  # an alphabetic piece that continues a word

    def _get(self, arr: np.ndarray, t: int) -> bool:
        return bool(arr[t]) if 0 <= t < len(arr) else False

    def editable(self, ids: Sequence[int], i: int) -> bool:
        nxt = ids[i + 1] if i + 1 < len(ids) else None
        return self._get(self.whole, ids[i]) and (nxt is None or not self._get(self.glue, nxt))

    def allows(self, original: int, candidate: int) -> bool:
        return self._get(self.whole, candidate) and self._get(self.is_capital, candidate) == self._get(
            self.is_capital, original
        )


def _units(ids: list[int], prefix: list[int], h: int) -> dict[tuple[int, ...], list[int]]:
    """Distinct scored items (context..., token) -> the text positions where they occur."""
    full = prefix + ids
    off = len(prefix)
    units: dict[tuple[int, ...], list[int]] = {}
    for i in range(h, len(ids)) if h else range(len(ids)):
        key = tuple(full[off + i - h : off + i + 1])
        units.setdefault(key, []).append(i)
    return units


def default_copied_rate(stolen: StolenList, given: float | None = None) -> float:
    """The green share the attacker assumes for an item copied from the watermarked original (see
    the module docstring): `given` when set, else 0.5 for h >= 1 and 0 (off) for h = 0."""
    if given is not None:
        return float(given)
    return 0.5 if stolen.context_width >= 1 else 0.0


def copied_items(ids: Sequence[int], stolen: StolenList, prefix_ids: Sequence[int] = ()) -> frozenset:
    """The scored items (context..., token) of a watermarked text, to pass as `copied`."""
    return frozenset(_units([int(t) for t in ids], [int(t) for t in prefix_ids], stolen.context_width))


def _unit_probs(
    units: dict[tuple[int, ...], list[int]],
    boost: dict[tuple[int, ...], float],
    gamma: float,
    copied: frozenset | set | None,
    copied_rate: float,
) -> dict[tuple[int, ...], float]:
    """Each item's believed chance of being green: gamma + (1 - gamma) x boost, and at least
    `copied_rate` for an item copied from the watermarked original."""
    prob = {key: gamma + (1 - gamma) * b for key, b in boost.items()}
    if copied and copied_rate > 0:
        for key in units:
            if key in copied:
                prob[key] = max(prob[key], copied_rate)
    return prob


def _unit_boosts(
    units: dict[tuple[int, ...], list[int]], full: list[int], off: int, stolen: StolenList
) -> dict[tuple[int, ...], float]:
    """Each distinct item's stolen boost, read in the context of its first occurrence."""
    return {key: stolen.boost(full[: off + pos[0]], key[-1]) for key, pos in units.items()}


def plan_edits(
    model: Any,
    ids: Sequence[int],
    stolen: StolenList,
    prefix_ids: Sequence[int],
    target_z: float,
    **options: Any,
) -> set[int]:
    """Positions to edit so that the estimated z falls to `target_z` at the least log-likelihood
    cost (see the module docstring); empty when the text already estimates below it. `options`
    (those of `_plan`, which also returns the replacement for each position): `top_k`, `penalty`,
    `max_edit_rate`, `banned_ids`, `gamma`, `words`; `copied`: the watermarked original's items
    (`copied_items`), counted at least at `copied_rate`; `max_cost`: the most log-likelihood
    (nats) the edits may lose in all, the best units that fit being edited even if z stays
    above target; `lookahead` > 0: the `lookahead` replacements that cost least by their own
    token are priced on the whole text (`_edit_costs`, one forward pass each, batched) and only
    those are planned."""
    return set(_plan(model, ids, stolen, prefix_ids, target_z, **options))


LOOKAHEAD = 48  # `rewrite_scrub`'s planner prices this many candidate edits on the whole text
LOOKAHEAD_BATCH = 16  # edited texts per forward pass when pricing them


@torch.inference_mode()
def _edit_costs(model: Any, full: list[int], edits: list[tuple[int, int]], start: int) -> list[float]:
    """Log-likelihood of `full[start:]` lost by each single edit (index into `full` -> new
    token), every edited text scored whole. A replacement that fits its slot can still clash with
    the words after it, a few or a hundred tokens on (a noun the text repeats, a verb its object
    no longer fits): measured on KGW h = 1 rewrites, edits priced by their own token at 0.7 nats
    each lost 3.6 each in the real perplexity, and a 4-token look-ahead over 16 tokens of context
    still priced half of them at 0 that cost 4-9 nats. Only the whole text prices them right."""
    device = next(model.parameters()).device
    base_x = torch.tensor(full, device=device)
    out: list[float] = []

    def score(x: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(model(input_ids=x).logits[:, start - 1 : -1].float(), dim=-1)
        return logp.gather(-1, x[:, start:, None])[..., 0].sum(-1)

    base = float(score(base_x[None])[0])
    for b in range(0, len(edits), LOOKAHEAD_BATCH):
        chunk = edits[b : b + LOOKAHEAD_BATCH]
        x = base_x.repeat(len(chunk), 1)
        for r, (i, c) in enumerate(chunk):
            x[r, i] = c
        out += [max(base - float(v), 0.0) for v in score(x)]
    return out


@dataclass
class _PlanText:
    """One text as the planner sees it: its tokens after the prefix, the model's log-probabilities
    at each position, and its distinct scored items (units) with their believed chance of green."""

    ids: list[int]
    full: list[int]  # prefix + ids
    off: int  # len(prefix)
    logp: torch.Tensor
    units: dict[tuple[int, ...], list[int]]
    prob: dict[tuple[int, ...], float]
    gamma: float
    rate: float  # the copied rate
    copied: frozenset | set | None


def _plan_choices(
    text: _PlanText,
    stolen: StolenList,
    top_k: int,
    penalty: float,
    banned: set[int],
    words: WordFilter | None,
) -> dict[int, list[int]]:
    """The believed-red replacements worth pricing at each position, best first by the model."""
    ids, full, off, logp, gam = text.ids, text.full, text.off, text.logp, text.gamma
    h = stolen.context_width
    choices: dict[int, list[int]] = {}
    for key, pos in text.units.items():
        if text.prob[key] <= gam and h == 0:  # for h >= 1 an edit may still pay by the items after it
            continue
        if words is not None and not all(words.editable(ids, i) for i in pos):
            continue
        for i in pos:
            c_ctx = full[: off + i]
            boosts = stolen.boosts(c_ctx)
            lp = logp[i]
            red = []
            for c in torch.topk(lp, top_k).indices.tolist():
                if c == ids[i] or c in banned or stolen.is_green(c, c_ctx):
                    continue
                if words is not None and not words.allows(ids[i], c):
                    continue
                red.append((float(lp[c]) - penalty * boosts.get(c, 0.0), c))
            red.sort(reverse=True)
            choices[i] = [c for _, c in red[:1]]
    return choices


def _plan_prices(
    model: Any, text: _PlanText, choices: dict[int, list[int]], lookahead: int
) -> dict[int, float]:
    """Position -> cost of its replacement: by its own token, or (`lookahead`) on the whole text."""
    logp, ids = text.logp, text.ids
    price = {i: max(float(logp[i, ids[i]]) - float(logp[i, cs[0]]), 0.0) for i, cs in choices.items() if cs}
    if lookahead:
        first = sorted(price, key=lambda i: price[i])[:lookahead]  # the cheapest by their own token
        costs = _edit_costs(model, text.full, [(text.off + i, choices[i][0]) for i in first], text.off)
        price = dict(zip(first, costs, strict=True))
    return price


_Gain = tuple[float, tuple[int, ...], float, float, dict, dict]


def _plan_gains(
    text: _PlanText,
    stolen: StolenList,
    choices: dict[int, list[int]],
    price: dict[int, float],
    lookahead: int,
) -> list[_Gain]:
    """(gain per nat, unit, nats, its new chance, items after it -> new chance, replacements) of
    each unit whose edit would lower the estimated green count."""
    ids, full, off, gam, prob = text.ids, text.full, text.off, text.gamma, text.prob
    gains: list[_Gain] = []
    for key, pos in text.units.items():
        if any(not choices.get(i) for i in pos):
            continue
        cost, gain_new = 0.0, 0.0
        after: dict[tuple[int, ...], float] = {}  # following items whose context the edit changes -> new prob
        reps: dict[int, int] = {}
        for i in pos:
            best = choices[i][0]
            if lookahead and i not in price:
                cost = math.inf  # not among the edits priced on the whole text
                break
            cost += price[i]
            reps[i] = best
            gain_new = max(gain_new, gam + (1 - gam) * stolen.boost(full[: off + i], best))
            after.update(
                _following_items(
                    ids, full, off, i, best, text.units, prob, stolen, gam, text.copied, text.rate
                )
            )
        gain = prob[key] - gain_new + sum(prob[k] - q for k, q in after.items() if k != key)
        if gain > 0 and math.isfinite(cost):
            gains.append((gain / max(cost, 0.05), key, cost, gain_new, after, reps))
    return gains


def _plan_pick(
    text: _PlanText, gains: list[_Gain], target_z: float, budget: int, max_cost: float | None
) -> dict[int, int]:
    """The best units by gain per nat until the estimated z reaches `target_z`, within the edit
    budget and `max_cost`: {position: new token}."""
    prob, gam, units = text.prob, text.gamma, text.units
    z = estimated_z(list(prob.values()), gam)
    chosen: dict[int, int] = {}
    total = sum(prob.values())
    t = len(prob)
    spent = 0.0
    now = dict(prob)  # each item's believed chance as the chosen edits leave it
    edited: set[tuple[int, ...]] = set()
    for _, key, cost, new_prob, after, reps in sorted(gains, key=lambda g: -g[0]):
        if z <= target_z:
            break
        pos = units[key]
        if len(chosen) + len(pos) > budget or (max_cost is not None and spent + cost > max_cost):
            continue
        # an item an earlier edit already removed or moved to a new context is not removed twice
        drops = {k: now[k] - q for k, q in after.items() if k not in edited and now[k] > q}
        drops[key] = now[key] - new_prob
        gain = sum(d for d in drops.values() if d > 0)
        if gain <= 0:
            continue
        chosen.update(reps)
        spent += cost
        edited.add(key)
        for k, d in drops.items():
            now[k] -= max(d, 0.0)
        total -= gain
        z = (total - gam * t) / math.sqrt(gam * (1 - gam) * t)
    return chosen


@torch.inference_mode()
def _plan(
    model: Any,
    ids: Sequence[int],
    stolen: StolenList,
    prefix_ids: Sequence[int],
    target_z: float,
    top_k: int = 10,
    penalty: float = 0.0,
    max_edit_rate: float = 0.5,
    banned_ids: Sequence[int] = (),
    gamma: float | None = None,
    words: WordFilter | None = None,
    copied: frozenset | set | None = None,
    copied_rate: float | None = None,
    max_cost: float | None = None,
    lookahead: int = 0,
) -> dict[int, int]:
    """`plan_edits` with the replacement chosen for each position: {position: new token}."""
    ids = [int(t) for t in ids]
    prefix = [int(t) for t in prefix_ids]
    if not ids:
        return {}
    gam = float(gamma or stolen.gamma or 0.25)
    off = len(prefix)
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([prefix + ids], device=device)).logits[0]
    logp = torch.log_softmax(logits[off - 1 : off - 1 + len(ids)].float(), dim=-1)
    full = prefix + ids
    units = _units(ids, prefix, stolen.context_width)
    boost = _unit_boosts(units, full, off, stolen)
    rate = default_copied_rate(stolen, copied_rate)
    prob = _unit_probs(units, boost, gam, copied, rate)
    text = _PlanText(ids, full, off, logp, units, prob, gam, rate, copied)
    choices = _plan_choices(text, stolen, top_k, penalty, {int(t) for t in banned_ids}, words)
    price = _plan_prices(model, text, choices, lookahead)
    gains = _plan_gains(text, stolen, choices, price, lookahead)
    budget = int(math.floor(max_edit_rate * len(ids)))
    return _plan_pick(text, gains, target_z, budget, max_cost)


def _following_items(
    ids: list[int],
    full: list[int],
    off: int,
    i: int,
    new: int,
    units: dict[tuple[int, ...], list[int]],
    prob: dict[tuple[int, ...], float],
    stolen: StolenList,
    gamma: float,
    copied: frozenset | set | None,
    copied_rate: float,
) -> dict[tuple[int, ...], float]:
    """For h >= 1, replacing the token at `i` by `new` also changes the context of the next h
    items: each of them that occurs only there is replaced by an item with `new` in its context,
    believed green at its own stolen boost (or `copied_rate` if the original had it). ->
    {old item: its believed chance after the edit}, for items whose chance would fall."""
    h = stolen.context_width
    out: dict[tuple[int, ...], float] = {}
    for j in range(i + 1, min(i + h + 1, len(ids))):
        key = tuple(full[off + j - h : off + j + 1])
        if len(units.get(key, ())) != 1:
            continue  # another occurrence keeps the item in the text
        ctx = list(full[off + j - h : off + j])
        ctx[i - (j - h)] = new
        q = gamma + (1 - gamma) * stolen.boost(ctx, ids[j])
        if copied and copied_rate > 0 and (*ctx, ids[j]) in copied:
            q = max(q, copied_rate)
        if q < prob[key]:
            out[key] = q
    return out


def _candidates(logp: torch.Tensor, token: int, k: int, neighbours: NeighbourIndex | None) -> list[int]:
    """Replacement candidates for `token`: the model's top-k here, or its k embedding neighbours
    (none for a token the index does not count as a word, e.g. punctuation)."""
    if neighbours is None:
        return torch.topk(logp, k).indices.tolist()
    if not neighbours.is_word[token]:
        return []
    return [int(t) for t in neighbours.neighbours([token], k)[0]]


def _check_scrub_options(
    candidates: str, top_k: int, beam: int, max_edit_rate: float, prefix_ids: Sequence[int]
) -> None:
    """One ConfigError/InputError for a setting `scrub_ids` cannot run with."""
    if candidates not in CANDIDATES:
        raise ConfigError(f"unknown candidate source {candidates!r}; known: {', '.join(CANDIDATES)}")
    if top_k < 1 or beam < 1:
        raise ConfigError("top-k and beam must be at least 1")
    if not 0.0 <= max_edit_rate <= 1.0:
        raise ConfigError(f"edit budget must be a fraction in [0, 1], got {max_edit_rate}")
    if not prefix_ids:
        raise InputError("scrubbing needs a non-empty prefix (a BOS token or the prompt)")


@dataclass
class _BeamRules:
    """What the left-to-right rewrite of `scrub_ids` edits and with which replacements."""

    ids: list[int]
    prefix: list[int]
    stolen: StolenList
    planned: dict[int, int] | None  # the planner's {position: replacement}, or edit every green one
    words: WordFilter | None
    neighbours: NeighbourIndex | None
    banned: set[int]
    budget: int  # the most edits
    top_k: int
    beam: int
    penalty: float


def _red_replacements(rules: _BeamRules, i: int, y: int, lp: torch.Tensor, ctx: Sequence[int]) -> list[int]:
    """Believed-red replacements for token `y` at position `i` after `ctx`, best first: by the
    model's log-probability `lp` less `penalty` x boost, the planner's pick (if still red) first."""
    stolen, banned, words = rules.stolen, rules.banned, rules.words
    pool = _candidates(lp, y, rules.top_k, rules.neighbours)
    red = [c for c in pool if c != y and c not in banned and not stolen.is_green(c, ctx)]
    if words is not None:
        red = [c for c in red if words.allows(y, c)]
    if rules.penalty:
        boosts = stolen.boosts(ctx)
        red.sort(key=lambda c: -(float(lp[c]) - rules.penalty * boosts.get(c, 0.0)))
    else:
        red.sort(key=lambda c: -float(lp[c]))
    want = rules.planned.get(i) if rules.planned is not None else None
    if want is not None and want != y and want not in banned and not stolen.is_green(want, ctx):
        red = [want] + [c for c in red if c != want]  # the planner priced this one
    return red


_Hyp = tuple[list[int], float, int]  # (tokens, log-likelihood, edits)


def _expand(
    rules: _BeamRules, i: int, logp: torch.Tensor, hyps: list[_Hyp]
) -> list[tuple[int, int, float, int]]:
    """Every continuation of each hypothesis at position `i`: (parent, token, score, edits)."""
    y, h, prefix = rules.ids[i], rules.stolen.context_width, rules.prefix
    expanded: list[tuple[int, int, float, int]] = []
    for b, (toks, score, edits) in enumerate(hyps):
        ctx = _last(prefix[-h:] + toks[-h:], h) if h else ()  # the last h tokens, not a copy of all
        wanted = rules.stolen.is_green(y, ctx) if rules.planned is None else i in rules.planned
        if wanted and rules.planned is None and rules.words is not None:
            wanted = rules.words.editable(rules.ids, i)
        if edits < rules.budget and wanted:
            red = _red_replacements(rules, i, y, logp[b], ctx)
            for c in red[: rules.beam]:
                expanded.append((b, c, score + float(logp[b, c]), edits + 1))
            if red:
                continue
        expanded.append((b, y, score + float(logp[b, y]), edits))
    return expanded


def _beam_rewrite(model: Any, rules: _BeamRules) -> tuple[list[int], int]:
    """The most likely rewrite of `rules.ids` within the rules, with the KV cache reordered to
    follow the kept hypotheses. -> (tokens, edits)"""
    ids = rules.ids
    device = next(model.parameters()).device
    cache_kw = cache_keyword(model)
    out = model(input_ids=torch.tensor([rules.prefix], device=device), use_cache=True)
    cache, logits = returned_cache(out, cache_kw), out.logits[:, -1]
    hyps: list[_Hyp] = [([], 0.0, 0)]
    for i in range(len(ids)):
        logp = torch.log_softmax(logits.float(), dim=-1)
        expanded = _expand(rules, i, logp, hyps)
        expanded.sort(key=lambda e: -e[2])
        kept = expanded[: rules.beam]
        hyps = [(hyps[p][0] + [t], s, e) for p, t, s, e in kept]
        if i == len(ids) - 1:
            break
        parents = [p for p, *_ in kept]
        if parents != list(range(len(parents))) or len(parents) != logits.shape[0]:
            cache.reorder_cache(torch.tensor(parents, device=device))
        nxt = torch.tensor([[t] for _, t, _, _ in kept], device=device)
        out = model(input_ids=nxt, use_cache=True, **{cache_kw: cache})
        cache, logits = returned_cache(out, cache_kw), out.logits[:, -1]
    best, _, edits = max(hyps, key=lambda h: h[1]) if ids else ([], 0.0, 0)
    return best, edits


@torch.inference_mode()
def scrub_ids(
    model: Any,
    ids: Sequence[int],
    stolen: StolenList,
    prefix_ids: Sequence[int],
    top_k: int = 10,
    beam: int = 1,
    candidates: str = "model",
    max_edit_rate: float = 0.5,
    banned_ids: Sequence[int] = (),
    neighbours: NeighbourIndex | None = None,
    target_z: float | None = None,
    penalty: float = 0.0,
    words: WordFilter | None = None,
    copied: frozenset | set | None = None,
    copied_rate: float | None = None,
    max_cost: float | None = None,
    lookahead: int = 0,
) -> ScrubResult:
    """Rewrite one text (its token ids, generated after `prefix_ids`) to dodge the stolen list.

    `candidates="embedding"` draws replacements from `neighbours` (default: an index over the
    model's input embeddings without word masks; `scrub_texts` passes a word-aware one).
    `target_z`: plan the edits with `plan_edits` (model candidates) and edit only those positions.
    `words`: edit whole words only, replacing them by whole words (`WordFilter`). `copied`,
    `copied_rate`, `max_cost`, `lookahead`: the watermarked original's items, their assumed rate,
    the log-likelihood budget and the look-ahead pricing, for the planner, whose replacement is
    used where it is still believed red in the edited context."""
    _check_scrub_options(candidates, top_k, beam, max_edit_rate, prefix_ids)
    ids = [int(t) for t in ids]
    prefix = [int(t) for t in prefix_ids]
    if candidates == "model":
        neighbours = None
    elif neighbours is None:
        neighbours = NeighbourIndex.from_model(model, None)
    banned = {int(t) for t in banned_ids}
    budget = int(math.floor(max_edit_rate * len(ids)))
    planned = None
    if target_z is not None:
        planned = _plan(
            model,
            ids,
            stolen,
            prefix,
            target_z,
            top_k,
            penalty,
            max_edit_rate,
            sorted(banned),
            words=words,
            copied=copied,
            copied_rate=copied_rate,
            max_cost=max_cost,
            lookahead=lookahead,
        )
    rules = _BeamRules(ids, prefix, stolen, planned, words, neighbours, banned, budget, top_k, beam, penalty)
    best, edits = _beam_rewrite(model, rules)
    return ScrubResult(
        original_ids=tuple(ids),
        edited_ids=tuple(best),
        edits=edits,
        believed_green_before=count_believed_green(ids, stolen, prefix),
        believed_green_after=count_believed_green(best, stolen, prefix),
        ppl_before=perplexity(model, ids, prefix),
        ppl_after=perplexity(model, best, prefix),
    )


def scrub_texts(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    stolen: StolenList,
    prompts: Sequence[str | None] | None = None,
    words_only: bool = False,
    **kwargs: Any,
) -> list[tuple[str, list[int], ScrubResult]]:
    """Scrub decoded texts: (new text, its re-tokenised ids as the detector sees them, result).
    `words_only`: edit whole words only (`WordFilter`)."""
    from wm_toolkit.watermark.modeling.generation import encode_texts

    banned = set(tokenizer.all_special_ids)
    if words_only and kwargs.get("words") is None:
        kwargs["words"] = WordFilter(tokenizer)
    if kwargs.get("candidates") == "embedding" and kwargs.get("neighbours") is None:
        kwargs["neighbours"] = NeighbourIndex.from_model(model, tokenizer)  # words for words
    out = []
    for j, text in enumerate(texts):
        ids = encode_texts(tokenizer, [text])[0]
        prefix = prompt_prefix(tokenizer, prompts[j] if prompts else None)
        res = scrub_ids(model, ids, stolen, prefix, banned_ids=sorted(banned), **kwargs)
        new_text = tokenizer.decode(list(res.edited_ids), skip_special_tokens=True)
        out.append((new_text, encode_texts(tokenizer, [new_text])[0], res))
    return out


# Jovanovic et al.'s scrubbing strengths (negative boosts inside DIPPER): gptwm, LeftHash, SelfHash
SCRUB_STRENGTH = {"h0": -2.0, "lefthash": -2.5, "selfhash": -10.0}


def default_scrub_strength(stolen: StolenList) -> float:
    if stolen.context_width == 0:
        return SCRUB_STRENGTH["h0"]
    partial = stolen.ratio_model is not None and stolen.ratio_model.params.w_partials > 0
    return SCRUB_STRENGTH["selfhash" if partial else "lefthash"]


def paraphrase_scrub(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    stolen: StolenList,
    strength: float | None = None,
    units: bool = False,
    **kwargs: Any,
) -> list[str] | list[list[str]]:
    """Jovanovic et al.'s scrubber: paraphrase with the stolen boosts *subtracted* from the
    rewriting model's logits (strength < 0, default the authors' per scheme), so the rewrite
    avoids believed-green continuations. `kwargs` go to `attacks.paraphrase.paraphrase`
    (mode, temperature, seed, batch_size, prompt). `units`: each text's rewritten sentences
    (`paraphrase_units`) instead of the joined text."""
    from .paraphrase import paraphrase, paraphrase_units
    from .spoof import StolenListLogitsProcessor

    s = default_scrub_strength(stolen) if strength is None else float(strength)
    if s > 0:
        raise ConfigError(f"a scrubbing strength pushes away from the list: give a value <= 0, not {s}")
    proc = StolenListLogitsProcessor(stolen, s, allow_negative=True)
    if units:
        return paraphrase_units(texts, model, tokenizer, extra_processors=[proc], **kwargs)
    return paraphrase(texts, model, tokenizer, extra_processors=[proc], **kwargs)


def text_estimated_z(
    ids: Sequence[int],
    stolen: StolenList,
    prefix_ids: Sequence[int] = (),
    gamma: float | None = None,
    copied: frozenset | set | None = None,
    copied_rate: float | None = None,
) -> float:
    """The attacker's z-estimate of a whole text (no key): every distinct (h previous tokens,
    token) item, the unit the detector counts once, is green with probability gamma + (1 -
    gamma) x its stolen boost (`estimated_z`; the same estimate `plan_edits` and the spoofer's
    EOS ban use), and an item of `copied` (the watermarked original's) at least `copied_rate`."""
    ids, prefix = [int(t) for t in ids], [int(t) for t in prefix_ids]
    gam = float(gamma or stolen.gamma or 0.25)
    units = _units(ids, prefix, stolen.context_width)
    boost = _unit_boosts(units, prefix + ids, len(prefix), stolen)
    rate = default_copied_rate(stolen, copied_rate)
    return estimated_z(list(_unit_probs(units, boost, gam, copied, rate).values()), gam)


@dataclass(frozen=True)
class RewriteChoice:
    """What `rewrite_scrub` kept for one text, with the attacker's own numbers (no key)."""

    text: str
    rewrite: int  # index into the settings of the rewrite kept (the cheapest when none is within
    # budget); ORIGINAL (-1) when the kept text is the watermarked original with planned edits;
    # MIXED (-2) when it is mixed sentence by sentence from the original and the rewrites
    estimated_z: float  # the attacker's estimate for the kept text
    estimated_z_before: float
    ppl_before: float  # the attacker's model, given the prompt
    ppl_after: float
    edits: int  # planned token replacements on top of the rewrite
    within_budget: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rewrite": self.rewrite,
            "estimated_z": round(self.estimated_z, 3),
            "estimated_z_before": round(self.estimated_z_before, 3),
            "ppl_before": self.ppl_before,
            "ppl_after": self.ppl_after,
            "edits": self.edits,
            "within_budget": self.within_budget,
        }


def rewrite_settings(strength: float, count: int = 4) -> tuple[tuple[float, float], ...]:
    """Default (temperature, strength) candidates: greedy and sampled rewrites at the authors'
    strength and at twice it. Greedy keeps the perplexity low but copies words; sampling and a
    stronger push leave fewer believed-green items at a higher perplexity. Beyond four: greedy at
    half and 1.5x the strength, cooler samples, then more samples (each rewrite has its own seed),
    which give the sentence mixer (`mix_sentences`) more choices per sentence between copying and
    fluency."""
    base = ((0.0, strength), (0.0, 2 * strength), (0.7, strength), (0.7, 2 * strength))
    more = ((0.0, 0.5 * strength), (0.0, 1.5 * strength), (0.4, strength), (0.4, 1.5 * strength))
    extra = tuple((0.7, (1.5, 1.0, 2.0)[k % 3] * strength) for k in range(max(count - 8, 0)))
    return (base + more + extra)[:count]


EDIT_TRIES = (0.8, 0.4)  # shares of the perplexity headroom offered to the planner, in turn
EDIT_ROUNDS = 2  # plan, apply and re-measure this many times on one candidate text
ORIGINAL = -1  # `RewriteChoice.rewrite` of a text edited from the watermarked original, no rewrite


def _edit_within_budget(
    model: Any,
    tokenizer: Any,
    stolen: StolenList,
    candidates: list[tuple[str, float, int]],
    prefix: list[int],
    prompt: str | None,
    budget: float,
    target_z: float,
    z_of: Any,
    scrub_kwargs: dict[str, Any],
) -> tuple[str, int, float, float, int] | None:
    """Replace believed-green items left in a text without leaving the perplexity budget.
    `candidates`: (text, perplexity, rewrite index) in the order to try them (the kept rewrite,
    the most fluent one; the original when no rewrite fits, as a paraphrase may use the whole
    budget by itself).
    The planner gets a share of the headroom in log-likelihood (tokens x log(budget /
    perplexity)) and keeps the edits worth most per nat within it; the real perplexity is
    checked after, with a smaller share on a miss. An accepted text is planned again from its
    real perplexity (`EDIT_ROUNDS`), which prices what the edits did to the tokens after them.
    The edited text with the lowest estimate within budget wins; None when no edit fits.
    -> (text, edits, ppl, estimate, rewrite)"""
    from wm_toolkit.watermark.measure.evaluation import text_perplexities
    from wm_toolkit.watermark.modeling.generation import encode_texts

    best = None
    for text, ppl, r in candidates:
        edits, z = 0, None
        for _ in range(EDIT_ROUNDS):
            ids = encode_texts(tokenizer, [text])[0]
            accepted = False
            for share in EDIT_TRIES:
                headroom = len(ids) * math.log(budget / ppl) * share
                res = scrub_ids(model, ids, stolen, prefix, max_cost=headroom, **scrub_kwargs)
                if not res.edits:
                    break
                edited = tokenizer.decode(list(res.edited_ids), skip_special_tokens=True)
                q = float(text_perplexities(model, tokenizer, [edited], [prompt])[0])
                if q <= budget:
                    text, ppl, edits, z, accepted = edited, q, edits + res.edits, z_of(edited), True
                    break
            if not accepted or z <= target_z:
                break
        if z is not None and (best is None or z < best[3]):
            best = (text, edits, ppl, z, r)
        if best is not None and best[3] <= target_z:
            break
    return best


MIXED = -2  # `RewriteChoice.rewrite` of a text mixed sentence by sentence from the rewrites
MIX_STEPS = 7  # bisection steps on the mixer's planning limit, each checked on the real perplexity
MIX_SPAN = 1.0  # the planning limit is searched within log(budget) +- this many nats per token


@dataclass(frozen=True)
class _Option:
    """One way to write each sentence of a text, with what each sentence costs and leaves."""

    units: list[str]
    excess: np.ndarray  # per sentence: believed-green share above gamma, summed over its items
    nll: np.ndarray  # per sentence: negative log-likelihood (nats) in this option's own context
    tokens: np.ndarray  # per sentence: token count


def _unit_ids(tokenizer: Any, units: Sequence[str]) -> list[list[int]]:
    """Token ids of each sentence as it reads inside the joined text (a space before all but the
    first), so the concatenation is the joined text's tokenisation."""
    return [
        tokenizer(u if k == 0 else " " + u, add_special_tokens=False)["input_ids"]
        for k, u in enumerate(units)
    ]


def _option(
    model: Any,
    tokenizer: Any,
    stolen: StolenList,
    units: Sequence[str],
    prefix: list[int],
    gamma: float,
    copied: frozenset | set | None,
    rate: float,
) -> _Option:
    from wm_toolkit.watermark.measure.evaluation import token_nlls

    pieces = _unit_ids(tokenizer, units)
    ids = [t for piece in pieces for t in piece]
    full, off, h = prefix + ids, len(prefix), stolen.context_width
    nll = token_nlls(model, [ids], [prefix])[0] if ids else np.zeros(0)
    excess, nlls, tokens, pos = [], [], [], 0
    for piece in pieces:
        items: dict[tuple[int, ...], list[int]] = {}  # this sentence's items, context read across it
        for i in range(max(pos, h), pos + len(piece)):  # an item needs h tokens of the text before it
            items.setdefault(tuple(full[off + i - h : off + i + 1]), []).append(i)
        prob = _unit_probs(items, _unit_boosts(items, full, off, stolen), gamma, copied, rate)
        excess.append(sum(prob.values()) - gamma * len(prob))
        nlls.append(float(nll[pos : pos + len(piece)].sum()))
        tokens.append(len(piece))
        pos += len(piece)
    return _Option(list(units), np.array(excess), np.array(nlls), np.array(tokens))


def _mix_choice(options: list[_Option], limit: float) -> np.ndarray:
    """Per sentence, the option to take: the least believed-green excess in all with the
    perplexity within exp(`limit`), i.e. sum over sentences of (nll - limit x tokens) <= 0 (a
    multiple-choice knapsack), solved exactly sentence by sentence on the Pareto front of
    (cost so far, excess so far): a partial choice that costs more and leaves more is never
    completed better, as every later sentence adds the same to both, and one that cannot fit
    whatever follows is dropped. The cheapest choice when nothing fits."""
    excess = np.stack([o.excess for o in options])  # (options, sentences)
    cost = np.stack([o.nll - limit * o.tokens for o in options])
    n_opt, n_sent = cost.shape
    cheapest = cost.argmin(0)
    rest = np.concatenate([np.cumsum(cost.min(0)[::-1])[::-1][1:], [0.0]])  # least cost after sentence k
    c, e, picks = np.zeros(1), np.zeros(1), np.zeros((1, 0), dtype=np.int64)
    for k in range(n_sent):
        cc = (c[:, None] + cost[None, :, k]).ravel()
        ee = (e[:, None] + excess[None, :, k]).ravel()
        src, opt = np.repeat(np.arange(len(c)), n_opt), np.tile(np.arange(n_opt), len(c))
        order = np.lexsort((ee, cc))
        order = order[cc[order] + rest[k] <= 1e-9]
        if order.size == 0:
            return cheapest
        best_before = np.minimum.accumulate(np.concatenate([[np.inf], ee[order]]))[:-1]
        idx = order[ee[order] < best_before]
        c, e, picks = cc[idx], ee[idx], np.column_stack([picks[src[idx]], opt[idx]])
    return picks[int(np.argmin(e))]


def mix_sentences(
    model: Any,
    tokenizer: Any,
    stolen: StolenList,
    versions: Sequence[Sequence[str]],
    prompt: str | None,
    budget: float,
    copied: frozenset | set | None = None,
    copied_rate: float | None = None,
) -> tuple[str, float] | None:
    """Mix several versions of one text sentence by sentence (e.g. the original's sentences and
    each rewrite's, unit i of every version standing for the same sentence): per sentence the
    version that leaves the fewest believed-green items for the perplexity it costs, so that the
    whole text stays within `budget` (perplexity given `prompt`, the attacker's model). Rewrites
    differ sentence by sentence (one setting copies a sentence, another mangles it), so the mix
    can beat every whole rewrite. Sentence costs are read in each version's own context, which
    is not the mix's: a rewritten sentence after the original's coherent ones reads easier than
    after other rewritten ones (measured: a mix planned at 0.95x the budget came out at 0.7x). So
    the planning limit is bisected (`MIX_STEPS`) on the joined text's real perplexity, and the
    mix planned with the most room that stays within the budget wins.
    -> (mixed text, its perplexity), or None when no mix fits or the versions do not line up."""
    from wm_toolkit.watermark.measure.evaluation import text_perplexities

    versions = [list(v) for v in versions if v]
    if len(versions) < 2 or len({len(v) for v in versions}) != 1 or budget <= 0:
        return None
    gam = float(stolen.gamma or 0.25)
    rate = default_copied_rate(stolen, copied_rate)
    prefix = prompt_prefix(tokenizer, prompt)
    options = [_option(model, tokenizer, stolen, v, prefix, gam, copied, rate) for v in versions]
    measured: dict[tuple[int, ...], float] = {}
    best: tuple[str, float] | None = None
    lo, hi = math.log(budget) - MIX_SPAN, math.log(budget) + MIX_SPAN
    for step in range(MIX_STEPS):
        limit = math.log(budget) if step == 0 else (lo + hi) / 2
        pick = tuple(int(o) for o in _mix_choice(options, limit))
        text = " ".join(options[o].units[k] for k, o in enumerate(pick))
        if pick not in measured:
            measured[pick] = float(text_perplexities(model, tokenizer, [text], [prompt])[0])
        if measured[pick] <= budget:
            lo = limit
            if len(set(pick)) >= 2:  # one version whole is already a candidate of its own
                best = (text, measured[pick])  # the most room so far: the limit only grows here
        else:
            hi = limit
    return best


@dataclass
class _RewriteJob:
    """What `rewrite_scrub` holds fixed across texts: the attacker's model and its settings."""

    model: Any
    tokenizer: Any
    stolen: StolenList
    target_z: float | None
    mode: str
    mix: bool
    rate: float  # the copied rate
    edit_options: dict[str, Any]  # top_k, banned_ids, penalty, lookahead of `_edit_within_budget`


def _rewritten(
    job: _RewriteJob,
    texts: Sequence[str],
    settings: Sequence[tuple[float, float]],
    seed: int,
    batch_size: int,
) -> tuple[list[list[list[str]]], list[list[str]]]:
    """Each text rewritten once per (temperature, strength) setting: (per setting, per text, the
    rewrite's units; per setting, per text, the joined rewrite)."""
    unit_rewrites = [
        paraphrase_scrub(
            job.model,
            job.tokenizer,
            texts,
            job.stolen,
            strength=st,
            temperature=t,
            mode=job.mode,
            seed=seed + 1009 * i,
            batch_size=batch_size,
            units=True,
        )
        for i, (t, st) in enumerate(settings)
    ]
    joiner = " " if job.mode == "sentence" else ""
    return unit_rewrites, [[joiner.join(us) for us in r] for r in unit_rewrites]


def _scored_candidates(
    job: _RewriteJob,
    text: str,
    prompt: str | None,
    budget: float,
    z_of: Callable[[str], float],
    rewrites: list[str],
    unit_rewrites: list[list[str]],
    ppl_rewrites: list[float],
    copied: frozenset,
) -> tuple[dict[int, str], list[tuple[float, float, int]]]:
    """Every candidate for one text by its index (rewrites; MIXED when a sentence mix fits) and
    each one's (estimated z, perplexity, index)."""
    from .paraphrase import split_sentences

    written = dict(enumerate(rewrites))
    scored = [(z_of(written[i]), float(q), i) for i, q in enumerate(ppl_rewrites)]
    if job.mix and job.mode == "sentence":
        versions = [split_sentences(text) or [text.strip()]] + unit_rewrites
        mixed = mix_sentences(
            job.model, job.tokenizer, job.stolen, versions, prompt, budget, copied, job.rate
        )
        if mixed is not None:
            written[MIXED] = mixed[0]
            scored.append((z_of(mixed[0]), mixed[1], MIXED))
    return written, scored


def _rewrite_one(
    job: _RewriteJob,
    text: str,
    prompt: str | None,
    ppl_before: float,
    budget: float,
    rewrites: list[str],
    unit_rewrites: list[list[str]],
    ppl_rewrites: list[float],
) -> RewriteChoice:
    """The kept candidate for one text (see `rewrite_scrub`), edited further when its estimate is
    still above the target."""
    from wm_toolkit.watermark.modeling.generation import encode_texts

    tokenizer, stolen, target_z = job.tokenizer, job.stolen, job.target_z
    prefix = prompt_prefix(tokenizer, prompt)
    copied = copied_items(encode_texts(tokenizer, [text])[0], stolen, prefix)

    def z_of(t: str) -> float:
        return text_estimated_z(encode_texts(tokenizer, [t])[0], stolen, prefix, None, copied, job.rate)

    written, scored = _scored_candidates(
        job, text, prompt, budget, z_of, rewrites, unit_rewrites, ppl_rewrites, copied
    )
    within = [c for c in scored if c[1] <= budget]
    enough = [c for c in within if target_z is not None and c[0] <= target_z]
    if enough:  # the goal is met: keep the most fluent candidate that meets it
        z, ppl, i = min(enough, key=lambda c: c[1])
    else:
        z, ppl, i = min(within) if within else min(scored, key=lambda c: c[1])
    kept, edits = written[i], 0
    if target_z is not None and (z > target_z or not within):
        fluent = [c[2] for c in sorted(within, key=lambda c: c[1]) if c[2] != i][:1]
        by_index = {c[2]: c for c in scored}
        candidates = [(written[r], by_index[r][1], r) for r in ([i] if within else []) + fluent]
        if not within:  # every rewrite is over budget: edit the original itself
            candidates.append((text, ppl_before, ORIGINAL))
        options = {**job.edit_options, "target_z": target_z, "copied": copied, "copied_rate": job.rate}
        best = _edit_within_budget(
            job.model, tokenizer, stolen, candidates, prefix, prompt, budget, target_z, z_of, options
        )
        if best is not None and (not within or best[3] < z):
            kept, edits, ppl, z, i = best
    return RewriteChoice(
        text=kept,
        rewrite=i,
        estimated_z=z,
        estimated_z_before=z_of(text),
        ppl_before=ppl_before,
        ppl_after=ppl,
        edits=edits,
        within_budget=ppl <= budget,
    )


def rewrite_scrub(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    stolen: StolenList,
    prompts: Sequence[str | None] | None = None,
    settings: Sequence[tuple[float, float]] | None = None,
    max_ppl_ratio: float = 2.0,
    target_z: float | None = None,
    mode: str = "sentence",
    seed: int = 0,
    batch_size: int = 16,
    top_k: int = 30,
    penalty: float = 1.0,
    copied_rate: float | None = None,
    lookahead: int = LOOKAHEAD,
    mix: bool = True,
    on_text: Callable[[int, RewriteChoice], None] | None = None,
) -> list[RewriteChoice]:
    """Jovanovic et al.'s scrubber as an attacker with a budget would run it: rewrite each text
    several ways away from the stolen list (`paraphrase_scrub`, one (temperature, strength)
    pair of `settings` each), score every rewrite with the attacker's own model and scores only
    (perplexity given the prompt, `text_estimated_z`). With `mix` (sentence mode) the rewrites
    and the original are also mixed sentence by sentence within the budget (`mix_sentences`;
    `rewrite` = MIXED). Among the candidates within `max_ppl_ratio` x the original's perplexity
    it keeps the most fluent one whose estimate is at most `target_z`, else the lowest estimate
    (the cheapest candidate when none is within the budget). When the kept estimate is still
    above `target_z`, believed-green items left are replaced by `plan_edits` within the
    perplexity headroom (`_edit_within_budget`: the kept candidate, then the most fluent one),
    kept only if the budget still holds. Items a rewrite copies from the original count at least
    at `copied_rate` (None: `default_copied_rate`; 0 turns it off). The attacker never sees the
    key: success is judged afterwards by the real detector. `on_text(j, choice)` is called as
    each text is done (progress; the choice loop is the slow part)."""
    from wm_toolkit.watermark.measure.evaluation import text_perplexities

    if max_ppl_ratio <= 0:
        raise ConfigError(f"the perplexity budget must be a positive ratio, got {max_ppl_ratio}")
    prompts = list(prompts) if prompts is not None else [None] * len(texts)
    if len(prompts) != len(texts):
        raise InputError("give one prompt (or None) per text")
    settings = list(settings or rewrite_settings(default_scrub_strength(stolen)))
    banned = sorted(set(tokenizer.all_special_ids))
    rate = default_copied_rate(stolen, copied_rate)
    edit_options = dict(top_k=top_k, banned_ids=banned, penalty=penalty, lookahead=lookahead)
    job = _RewriteJob(model, tokenizer, stolen, target_z, mode, mix, rate, edit_options)
    unit_rewrites, rewrites = _rewritten(job, texts, settings, seed, batch_size)
    ppl_before = text_perplexities(model, tokenizer, texts, prompts)
    ppl_rewrites = [text_perplexities(model, tokenizer, r, prompts) for r in rewrites]
    out = []
    for j, text in enumerate(texts):
        out.append(
            _rewrite_one(
                job,
                text,
                prompts[j],
                float(ppl_before[j]),
                max_ppl_ratio * float(ppl_before[j]),
                [r[j] for r in rewrites],
                [r[j] for r in unit_rewrites],
                [float(q[j]) for q in ppl_rewrites],
            )
        )
        if on_text is not None:
            on_text(j, out[-1])
    return out


def success_rate(p_values: Sequence[float], alpha: float) -> float:
    """Fraction of scrubbed texts the real detector no longer flags (p >= alpha)."""
    p = np.asarray(p_values, dtype=np.float64)
    return float((p >= alpha).mean()) if p.size else float("nan")
