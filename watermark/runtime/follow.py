"""Verdicts on a text that is still growing (`wm detect --follow`, the service's stream endpoint).

Each update re-tokenises the whole canonical text so far (once per distinct tokenizer), scores it
with each member's `span_evidence`, and feeds only the positions not fed before into that member's
sequential test (`statistics.sequential`): the verdict is anytime-valid, so the caller may stop at
any update. The last HOLD tokens are held back until the text is final, because the next chunk may
merge with them ("wat" + "ermark"); if re-tokenising still changes a fed position, the positions
already fed stand as they were and feeding continues after them (`retokenised` counts it).

Several members (a keyring): member i rejects at its share alpha * w_i of the level (Ville's
inequality per member, a union bound over members), so the family verdict stays valid at alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..statistics.sequential import SequentialTest, feed, sequential_test_for
from ..text.encoding import encode_array
from ..text.normalize import canonicalize

HOLD = 2  # tokens held back until the text is final
MAX_FOLLOW_CHARS = 1 << 20  # a followed text is at most 1 MB of characters


@dataclass
class Member:
    name: str
    scheme: Any
    tokenizer: str
    weight: float = 1.0
    test: SequentialTest | None = None
    fed: int = 0
    prefix: np.ndarray | None = None


@dataclass
class StreamMonitor:
    """The state of one followed text."""

    members: list[Member]
    tokenizers: dict[str, Any]
    alpha: float = 1e-3
    normalize: bool = True
    retokenised: int = 0
    updates: int = 0
    _skipped: set[str] = field(default_factory=set)

    def update(self, text: str, final: bool = False) -> dict[str, Any]:
        """Feed the text so far; the verdict after it."""
        if len(text) > MAX_FOLLOW_CHARS:
            raise InputError(f"the followed text is over {MAX_FOLLOW_CHARS} characters")
        canon = canonicalize(text, offsets=False)[0] if self.normalize else text
        ids = {name: encode_array(tok, canon) for name, tok in self.tokenizers.items()}
        for m in self.members:
            if m.weight > 0:
                self._feed(m, ids[m.tokenizer], final)
        self.updates += 1
        return self.state(final)

    def _feed(self, m: Member, ids: np.ndarray, final: bool) -> None:
        stop = ids.size if final else max(0, ids.size - HOLD)
        if stop <= m.fed:
            return
        if m.prefix is not None and not np.array_equal(ids[: m.fed], m.prefix):
            self.retokenised += 1
        try:
            evidence = m.scheme.span_evidence(ids)
        except InputError:  # too short for this scheme yet
            return
        if m.test is None:
            m.test = sequential_test_for(evidence, self.alpha * m.weight)
        feed(m.test, evidence, m.fed, stop)
        m.fed, m.prefix = stop, ids[:stop].copy()

    def state(self, final: bool = False) -> dict[str, Any]:
        entries: list[dict[str, Any]] = []
        match = None
        best = -math.inf
        for m in self.members:
            v = m.test.verdict() if m.test is not None else None
            row: dict[str, Any] = {"name": m.name, "tokens": m.fed, "weight": m.weight}
            if v is not None:
                row.update(e_value=v.e_value, anytime_p_value=v.p_value, tokens_to_detect=v.stopped_at)
                score = v.max_log_e + math.log(m.weight)  # weighted: w_i E_i >= 1/alpha rejects
                if v.watermarked and score > best:
                    match, best = m.name, score
            entries.append(row)
        p = min(1.0, min((r["anytime_p_value"] / r["weight"] for r in entries if "anytime_p_value" in r),
                         default=1.0))  # fmt: skip
        verdict = "watermarked" if match else ("not watermarked" if final else "undecided")
        return {
            "tokens": max((m.fed for m in self.members), default=0),
            "verdict": verdict,
            "keyring_match": match,
            "anytime_p_value": p,
            "alpha": self.alpha,
            "final": final,
            "retokenised": self.retokenised,
            "entries": entries,
        }


def monitor_for(
    schemes: Sequence[tuple[str, Any, str]], tokenizers: dict[str, Any], alpha: float,
    weights: Sequence[float] | np.ndarray | None = None, normalize: bool = True,
) -> StreamMonitor:  # fmt: skip
    """A monitor over (name, scheme, tokenizer name) members; schemes without span evidence
    (its, its-edit) cannot stream and are refused."""
    w = list(weights) if weights is not None else [1.0 / len(schemes)] * len(schemes)
    members = []
    for (name, scheme, tok), wi in zip(schemes, w, strict=True):
        if not getattr(scheme, "has_spans", False):
            raise InputError(f"{name}: the {scheme.name} scheme has no per-token scores to stream")
        members.append(Member(name, scheme, tok, float(wi)))
    return StreamMonitor(members, {t: tokenizers[t] for t in dict.fromkeys(m.tokenizer for m in members)},
                         alpha, normalize)  # fmt: skip
