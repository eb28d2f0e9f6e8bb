"""Detection over a keyring: each text tested against every entry, one family-wise verdict.

A text is canonicalised once and tokenised once per distinct tokenizer; every entry with that
tokenizer scores the same ids. Entries of one scheme family (same scheme and settings, different
keys: kgw, unigram, gumbel, synthid) are scored together (`keyring_batch`: shared windows, contexts
and p-values, seeds for every key in one compiled loop; the p-values each entry's own `detect()`
gives, bit for bit); the others one by one. Each entry is tested at its share of alpha (`alpha * w_i`, the
weighted-Bonferroni level), which is what Monte-Carlo tests (exp, its) need to draw enough null
keys; the family p-value and the per-entry Holm-adjusted p-values are in `statistics.family`.
An entry with a calibration file is decided by its calibrated p-value.

Results name entries only (`KeyringResult.to_dict(reveal=False)`): no key, no fingerprint, no
config unless the caller may see them (`reveal=True`, for the ring's owner on the command line).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config_resolve import bind_tokenizer
from ..errors import InputError
from ..statistics.family import hint_weights, weighted_holm
from ..text.encoding import CHUNK_CHARS, encode_array
from ..text.normalize import NormalizationReport, canonicalize
from .keyring import Entry, Keyring

FAMILY_METHOD = (
    "weighted Bonferroni over entries (per-entry Holm-adjusted p-values); valid under any dependence"
)


@dataclass
class EntryResult:
    name: str
    log10_p_value: float
    weight: float
    num_tokens_scored: int = 0
    adjusted_log10_p: float = 0.0
    calibrated: bool = False
    calibration_mismatch: str | None = None  # calibrated entries: why the text is unlike its texts
    error: str | None = None

    def to_dict(self, public: dict[str, Any] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "p_value": 10.0**self.log10_p_value,
            "log10_p_value": self.log10_p_value,
            "adjusted_p_value": 10.0**self.adjusted_log10_p,
            "weight": self.weight,
            "num_tokens_scored": self.num_tokens_scored,
        }
        if self.calibrated:
            out["calibrated"] = True
            out["calibration_mismatch"] = self.calibration_mismatch
        if self.error:
            out["error"] = self.error
        if public:
            out.update(public)
        return out


@dataclass
class KeyringResult:
    entries: list[EntryResult]
    family_log10_p: float
    alpha: float

    @property
    def family_p_value(self) -> float:
        return 10.0**self.family_log10_p

    @property
    def match(self) -> str | None:
        """The entry with the smallest adjusted p-value, when the family test rejects at alpha."""
        if self.family_log10_p > math.log10(self.alpha):
            return None
        best = min(self.entries, key=lambda e: e.adjusted_log10_p)
        return best.name

    def matched(self) -> list[str]:
        """Every entry whose Holm-adjusted p-value is at most alpha (family-wise error controlled)."""
        lim = math.log10(self.alpha)
        return [
            e.name
            for e in sorted(self.entries, key=lambda e: e.adjusted_log10_p)
            if e.adjusted_log10_p <= lim
        ]

    def to_dict(self, publics: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """JSON fields; `publics` (entry name -> fields) only for callers who may see configs."""
        return {
            "keyring_match": self.match,
            "keyring_matches": self.matched(),
            "family_p_value": self.family_p_value,
            "family_log10_p_value": self.family_log10_p,
            "verdict": "watermarked" if self.match else "not watermarked",
            "alpha": self.alpha,
            "family_method": FAMILY_METHOD,
            "entries": [e.to_dict((publics or {}).get(e.name)) for e in self.entries],
        }


@dataclass
class _Member:
    entry: Entry
    scheme: Any
    tokenizer: str
    calibration: Any = None


@dataclass
class RingDetector:
    """Builds every entry's scheme once (keys stay in memory, never in results)."""

    ring: Keyring
    alpha: float = 1e-3
    normalize: bool = True
    load_tokenizer: Callable[[str], Any] | None = None
    tokenizers: dict[str, Any] = field(default_factory=dict)
    members: list[_Member] = field(default_factory=list)
    batched: bool = True  # False: every entry through its own detect() (the reference path)
    batches: list[tuple[list[int], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ring.entries:
            raise InputError("the keyring has no entries (add one with `wm keyring add`)")
        for entry in self.ring.entries:
            self.members.append(self._member(entry))
        if self.batched:  # calibrated entries need their Detection: one by one
            from .keyring_batch import plan_batches

            plain = [i for i, m in enumerate(self.members) if m.calibration is None]
            planned = plan_batches([(self.members[i].scheme, self.members[i].tokenizer) for i in plain])
            self.batches = [([plain[j] for j in idx], batch) for idx, batch in planned]

    def _tokenizer(self, name: str) -> Any:
        if name not in self.tokenizers:
            from ..modeling.models import load_tokenizer

            self.tokenizers[name] = (self.load_tokenizer or load_tokenizer)(name)
        return self.tokenizers[name]

    def _member(self, entry: Entry) -> _Member:
        from ..modeling.models import canonical_name, model_vocab_size
        from ..schemes import build_scheme

        config = entry.scheme_config()
        tok_name = canonical_name(entry.tokenizer or config.tokenizer)
        try:
            config = bind_tokenizer(config, len(self._tokenizer(tok_name)), tok_name)
            if "model_vocab_size" in (fields := config.to_dict()) and fields["model_vocab_size"] is None:
                config = config.replace(model_vocab_size=int(model_vocab_size(tok_name)))
            scheme = build_scheme(config, entry.load_key())
        except InputError as exc:
            raise type(exc)(f"keyring entry {entry.name!r}: {exc}") from None
        calib = None
        if entry.calibration:
            from ..statistics.calibration import Calibration

            calib = Calibration.load(entry.calibration)
            calib.check(scheme, self.normalize)
        return _Member(entry, scheme, tok_name, calib)

    def publics(self) -> dict[str, dict[str, Any]]:
        """Entry name -> scheme, tokenizer, config (with its key fingerprint): for the ring's owner."""
        return {m.entry.name: {"scheme": m.scheme.name, "tokenizer": m.tokenizer,
                               "config": m.scheme.config.to_dict()} for m in self.members}  # fmt: skip

    def weights(self, hints: Sequence[tuple[str, str]] = (), hint_weight: float = 0.5) -> np.ndarray:
        hinted = [any(m.entry.matches(h) for h in hints) for m in self.members]
        if hints and not any(hinted):
            raise InputError(
                f"no keyring entry matches the hint(s) {', '.join(f'{k}={v}' for k, v in hints)}"
            )
        return hint_weights(hinted, hint_weight)

    def encode(self, texts: Sequence[str]) -> dict[str, list[np.ndarray]]:
        """Ids of each text per distinct tokenizer: one batched call each (long texts chunked)."""
        out: dict[str, list[np.ndarray]] = {}
        for name in dict.fromkeys(m.tokenizer for m in self.members):
            tok = self._tokenizer(name)
            short = [t for t in texts if len(t) <= CHUNK_CHARS]
            batch = iter(tok(short, add_special_tokens=False)["input_ids"] if short else [])
            out[name] = [
                np.asarray(next(batch), dtype=np.int64) if len(t) <= CHUNK_CHARS else encode_array(tok, t)
                for t in texts
            ]
        return out

    def detect_ids(self, ids: dict[str, np.ndarray], weights: np.ndarray | None = None) -> KeyringResult:
        """Test token ids (one array per tokenizer name) against every entry with weight > 0."""
        w = self.weights() if weights is None else np.asarray(weights, dtype=np.float64)
        results = [EntryResult(m.entry.name, 0.0, float(wi)) for m, wi in zip(self.members, w, strict=True)]
        done = self._score_batches(ids, w, results)
        for i, (m, wi) in enumerate(zip(self.members, w, strict=True)):
            if wi > 0 and i not in done:
                self._score(m, ids[m.tokenizer], results[i])
        if all(r.error for r, wi in zip(results, w, strict=True) if wi > 0):
            raise InputError(f"no keyring entry could test this text: {results[int(np.argmax(w))].error}")
        adjusted = weighted_holm(weights=w, log10_p=[r.log10_p_value for r in results])
        for r, a in zip(results, adjusted, strict=True):
            r.adjusted_log10_p = float(a)
        return KeyringResult(results, float(adjusted.min()), self.alpha)

    def _score_batches(
        self, ids: dict[str, np.ndarray], w: np.ndarray, results: list[EntryResult]
    ) -> set[int]:
        """Score the family batches; -> the members done (a text a batch cannot take as a whole,
        too short or with ids outside the vocabulary, is left to the entries' own detect())."""
        done: set[int] = set()
        for idx, batch in self.batches:
            live = [j for j, i in enumerate(idx) if w[i] > 0]
            scores = batch.score(ids[batch.tokenizer], live) if live else None
            if scores is None:
                continue
            for j, (lp, n) in zip(live, scores, strict=True):
                res = results[idx[j]]
                res.log10_p_value, res.num_tokens_scored = min(0.0, float(lp)), int(n)
                done.add(idx[j])
        return done

    def _score(self, m: _Member, ids: np.ndarray, res: EntryResult) -> None:
        try:
            det = m.scheme.detect(ids, alpha=None if m.calibration is not None else self.alpha * res.weight)
        except InputError as exc:  # too short for this entry: it cannot contribute evidence
            res.error = str(exc)
            return
        res.num_tokens_scored = int(det.num_tokens_scored)
        if m.calibration is not None:
            res.log10_p_value, res.calibrated = math.log10(m.calibration.calibrated_p_value(det)), True
            res.calibration_mismatch = m.calibration.mismatch(ids)
        else:
            res.log10_p_value = min(0.0, float(det.log10_p_value))

    def detect_texts(
        self, texts: Sequence[str], hints: Sequence[tuple[str, str]] = (), hint_weight: float = 0.5
    ) -> list[tuple[KeyringResult | InputError, NormalizationReport]]:
        """Each text's result (or the InputError that stopped it) and its normalisation report."""
        w = self.weights(hints, hint_weight)
        canon = [
            canonicalize(t, offsets=False) if self.normalize else (t, NormalizationReport()) for t in texts
        ]
        ids = self.encode([c for c, _ in canon])
        out: list[tuple[KeyringResult | InputError, NormalizationReport]] = []
        for i, (_, norm) in enumerate(canon):
            try:
                out.append((self.detect_ids({k: v[i] for k, v in ids.items()}, w), norm))
            except InputError as exc:
                out.append((exc, norm))
        return out


def keyring_row(
    source: str, result: KeyringResult | InputError, norm: NormalizationReport,
    publics: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A `wm detect --keyring --json` row: the family verdict, the entries (names; `publics` adds
    scheme/tokenizer/config for callers who may see them), and the normalisation report."""
    if isinstance(result, InputError):
        return {"source": source, "error": str(result)}
    row = {"source": source, **result.to_dict(publics)}
    row.update(norm.to_dict())
    return row
