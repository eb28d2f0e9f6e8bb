"""The detection work of one service request, run on worker threads.

Each worker thread gets its own copy of the scheme and the tokenizer: scheme caches (seed tables,
permutations) and a fast tokenizer's internal state are not safe to share between threads, and
copies cost a few megabytes. The key stays in this process's memory, as it does for `wm detect`.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from ...errors import InputError
from ...modeling.generation import encode_texts
from ...schemes import build_scheme
from ...schemes.base import WatermarkScheme
from ...schemes.spans import spans_in_text
from ...text.normalize import canonicalize
from ..report import detection_row, mask_legend, result_html, span_fields, token_pieces

TOKENS_HIDDEN = (
    "per-token colours are hidden: they reveal the key's green lists, and this server shows them only "
    'to clients the operator allows (a token with "show_tokens": true, or loopback with --allow-token-display)'
)


@dataclass
class DetectOutcome:
    rows: list[dict[str, Any]]
    html: str | None = None
    tokens_scored: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)


class Detector:
    """Tests texts with one scheme and tokenizer; thread-safe through per-thread copies."""

    def __init__(self, scheme: WatermarkScheme, tokenizer: Any, alpha: float):
        self._scheme = scheme
        self._tokenizer = tokenizer
        self.alpha = alpha
        self._local = threading.local()

    @property
    def config(self):
        return self._scheme.config

    def _copies(self) -> tuple[WatermarkScheme, Any]:
        local = self._local
        if not hasattr(local, "scheme"):
            local.scheme = build_scheme(self._scheme.config, self._scheme.key)
            local.tokenizer = copy.deepcopy(self._tokenizer)
        return local.scheme, local.tokenizer

    def run(
        self,
        texts: Sequence[str],
        sources: Sequence[str],
        *,
        tokens: bool = False,
        show_tokens: bool = False,
        spans: bool = False,
        html: bool = False,
    ) -> DetectOutcome:
        """Rows as `wm detect --json` writes them (errors per text), plus the page's HTML.

        `tokens` asks for the per-token view; it is given only when `show_tokens` (the caller is
        allowed to see it), else the row says why it is hidden.
        """
        scheme, tok = self._copies()
        out = DetectOutcome(rows=[])
        sections = []
        for text, source in zip(texts, sources, strict=True):
            pieces = legend = shown = None
            try:
                # canonical text, as `wm detect` scores it (invisible characters, look-alikes)
                text, norm = canonicalize(text, offsets=spans)
                ids = encode_texts(tok, [text], normalize=False)[0]
                det = scheme.detect(ids, alpha=self.alpha)
                if tokens and show_tokens:
                    pieces = token_pieces(tok, text, ids, getattr(det, "token_mask", ()))
                    legend = mask_legend(det)
                row = detection_row(
                    source, det, self.alpha, pieces, config=scheme.config.to_dict(), config_conflicts=[]
                )
                row.update(norm.to_dict())
                if spans:  # JSON offsets index the text as sent; the page shows the canonical text
                    found = spans_in_text(scheme, tok, text, ids, self.alpha)
                    row.update(span_fields(found and found.mapped_to(norm.offsets), self.alpha, scheme.name))
                    # with_char_offsets gave every span its characters
                    shown = (
                        [cast(tuple[int, int], (x.start_char, x.end_char)) for x in found.spans]
                        if found
                        else []
                    )
            except InputError as exc:
                row = {"source": source, "error": str(exc)}
            else:
                out.tokens_scored += int(row.get("num_tokens_scored", 0))
                out.verdicts[row["verdict"]] = out.verdicts.get(row["verdict"], 0) + 1
            if tokens and not show_tokens:
                row["tokens_hidden"] = TOKENS_HIDDEN
            out.rows.append(row)
            if html:
                note = TOKENS_HIDDEN if tokens and not show_tokens else None
                if pieces is not None and legend is None:
                    note = row.get("tokens_note")
                sections.append(result_html(row, text, pieces, legend, note, spans=shown))
        if html:
            out.html = "".join(sections)
        return out
