"""`scheme.detect_spans(ids)`: where the watermark is, as typed results (statistics: `watermark.spans`)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError
from ..statistics import spans as scan_spans
from .base import Detection, TextTooShortError, as_token_array


@dataclass(frozen=True)
class Span:
    """A watermarked region: tokens [start_token, end_token) (end exclusive), characters
    [start_char, end_char) of the text given to `detect_spans_text` (None from ids alone).
    `p_value` is family-wise: valid over every window the scan looked at (see `watermark.spans`)."""

    start_token: int
    end_token: int
    p_value: float
    log10_p_value: float
    start_char: int | None = None
    end_char: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_char": self.start_char,
            "end_char": self.end_char,
            "start_token": self.start_token,
            "end_token": self.end_token,
            "p_value": self.p_value,
            "log10_p_value": self.log10_p_value,
        }


@dataclass(frozen=True)
class SpanDetection(Detection):
    """The span test of one text. `p_value` / `log10_p_value`: the document-level p-value, valid
    over every window scanned (weighted Bonferroni over the dyadic family); `statistic`: -log10 of
    the best window's own p-value; `spans`: the regions found at the alpha given."""

    spans: tuple[Span, ...] = ()
    alpha: float = 1e-3
    num_windows: int = 0
    window_lengths: tuple[int, ...] = ()
    method: str = ""

    def to_dict(self, alpha: float | None = None) -> dict[str, Any]:
        out = super().to_dict(alpha)
        out["spans"] = [s.to_dict() for s in self.spans]
        out["window_lengths"] = list(self.window_lengths)
        return out

    def with_char_offsets(self, starts: Sequence[int], ends: Sequence[int]) -> SpanDetection:
        """Spans with character offsets, from each token's (start, end) in the scored text."""
        out = []
        for s in self.spans:
            out.append(replace(s, start_char=int(starts[s.start_token]), end_char=int(ends[s.end_token - 1])))
        return replace(self, spans=tuple(out))

    def mapped_to(self, offsets: Sequence[int] | np.ndarray | None) -> SpanDetection:
        """Character offsets carried through a map of scored-text index -> input-text index
        (`NormalizationReport.offsets`, len + 1 entries; None = identity)."""
        if offsets is None:
            return self
        spans = tuple(
            replace(s, start_char=int(offsets[s.start_char]), end_char=int(offsets[s.end_char]))
            if s.start_char is not None and s.end_char is not None
            else s
            for s in self.spans
        )
        return replace(self, spans=spans)


class SpanMixin:
    """`detect_spans` for schemes that say how a text becomes per-token evidence (`span_evidence`).
    Only schemes that have it offer `detect_spans` (the service and the CLI check for it)."""

    min_window: ClassVar[int] = scan_spans.DEFAULT_MIN_WINDOW
    config: Any  # the scheme's config (WatermarkScheme sets it)

    @property
    def has_spans(self) -> bool:
        """Whether this scheme's config has a per-window null (`detect_spans` works)."""
        return True

    @abstractmethod
    def span_evidence(self, ids: np.ndarray) -> scan_spans.Evidence:
        """The text's per-token evidence (`watermark.spans.Evidence`)."""

    def detect_spans(
        self,
        token_ids: Sequence[int] | np.ndarray,
        alpha: float = 1e-3,
        min_window: int | None = None,
    ) -> SpanDetection:
        """Scan the text's windows (lengths min_window * 2^j and the whole text) and report the
        document-level p-value over all of them and the watermarked spans at level alpha."""
        ids = as_token_array(token_ids, self.config.vocab_size)
        evidence = self.span_evidence(ids)
        if evidence.n < 1:
            raise TextTooShortError(f"text has {ids.size} tokens: nothing to scan")
        found = scan_spans.scan(evidence, alpha, min_window or self.min_window)
        return SpanDetection(
            scheme=self.config.scheme,
            p_value=float(10.0**found.log10_p_value),
            num_tokens_scored=int(ids.size),
            statistic=-found.log10_best_window,
            log10_p_value=found.log10_p_value,
            p_value_floor=float(10.0**found.log10_floor),
            spans=tuple(
                Span(s.start, s.end, float(10.0**s.log10_p_value), s.log10_p_value) for s in found.spans
            ),
            alpha=alpha,
            num_windows=found.num_windows,
            window_lengths=found.window_lengths,
            method=f"dyadic window scan, weighted Bonferroni ({evidence.description})",
        )

    def detect_spans_text(
        self, text: str, tokenizer: Any, alpha: float = 1e-3, normalize: bool = True
    ) -> SpanDetection:
        """Tokenise `text` as `wm detect` does (canonical form unless `normalize` is off), scan it,
        and give each span its character offsets in `text` itself."""
        from ..text.encoding import encode_array, token_offsets
        from ..text.normalize import canonicalize

        if not isinstance(text, str):
            raise InputError(f"detect_spans_text needs a str, got {type(text).__name__}")
        canon, report = canonicalize(text) if normalize else (text, None)
        ids = encode_array(tokenizer, canon)
        det = self.detect_spans(ids, alpha=alpha).with_char_offsets(*token_offsets(tokenizer, canon, ids))
        return det.mapped_to(report.offsets if report is not None else None)


def spans_in_text(
    scheme: Any, tokenizer: Any, text: str, ids: Sequence[int], alpha: float
) -> SpanDetection | None:
    """The span test of a scored text (`text` is what was tokenised into `ids`), with character
    offsets into `text`; None when the scheme (or its config) has no span test."""
    from ..text.encoding import token_offsets

    if not getattr(scheme, "has_spans", False):
        return None
    return scheme.detect_spans(ids, alpha=alpha).with_char_offsets(*token_offsets(tokenizer, text, ids))
