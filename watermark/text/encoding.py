"""Token ids for detection, in bounded memory: long texts are tokenised in chunks.

A fast tokenizer holds several hundred bytes per token while it encodes (ids, offsets, token
strings, masks), so one call on a 1,000,000-token text costs about 0.5 GB and on a 50 MB line
several GB. `encode_text` cuts a long text into chunks of about `CHUNK_CHARS` characters and
joins their ids. A cut is placed only where tokenisation is local:

* at whitespace (before a single space between two non-space characters, or after a newline),
  where a byte-level BPE pre-tokenizer (GPT-2 style regex) always starts a new piece, and
* only when the tokenizer confirms it: a window of text around the cut encodes to exactly the
  ids of its two halves.

So the ids equal those of one whole-text call. A text with no confirmed cut within
`CHUNK_CHARS` characters (no whitespace at all, say) is cut where it has to be; the ids may
then differ at that seam (`EncodingStats.forced_cuts` counts these), but memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .normalize import NormalizationReport, canonical_text, canonicalize

CHUNK_CHARS = 100_000
_WINDOW = 256  # characters on each side of a cut that the tokenizer checks
_MAX_TRIES = 16  # cut candidates checked per chunk before a forced cut


@dataclass
class EncodingStats:
    """What the last chunked encoding did (for benchmarks and tests)."""

    chunks: int = 0
    forced_cuts: int = 0


last_stats = EncodingStats()


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _is_candidate(text: str, cut: int) -> bool:
    """Before ' ' in 'x y', or after '\n' in 'x\ny' (x, y not whitespace)."""
    if not 1 < cut < len(text) - 1:
        return False
    if text[cut] == " ":
        return not text[cut - 1].isspace() and not text[cut + 1].isspace()
    return text[cut - 1] == "\n" and not text[cut - 2].isspace() and not text[cut].isspace()


def _candidates(text: str, lo: int, hi: int, backward: bool) -> Iterator[int]:
    """Cut positions in [lo, hi]: nearest to hi first (backward) or nearest to lo first."""
    if backward:
        pos = hi + 1
        while pos > lo:
            sp = text.rfind(" ", lo, pos)
            nl = text.rfind("\n", max(lo - 1, 0), pos - 1)
            pos = max(sp, nl + 1 if nl >= 0 else -1)
            if pos < lo:
                return
            if _is_candidate(text, pos):
                yield pos
    else:
        pos = lo - 1
        while pos < hi:
            found = [c for c in (text.find(" ", pos + 1, hi + 1), text.find("\n", pos, hi)) if c >= 0]
            if not found:
                return
            sp_or_nl = min(found)
            pos = sp_or_nl + 1 if text[sp_or_nl] == "\n" else sp_or_nl
            if _is_candidate(text, pos):
                yield pos


def _local(tokenizer: Any, text: str, cut: int) -> bool:
    left = text[max(0, cut - _WINDOW) : cut]
    right = text[cut : cut + _WINDOW]
    return _ids(tokenizer, left + right) == _ids(tokenizer, left) + _ids(tokenizer, right)


def _next_cut(tokenizer: Any, text: str, start: int, chunk: int) -> tuple[int, bool]:
    """(end of the chunk that begins at `start`, whether the cut was confirmed exact)."""
    hi = start + chunk
    searches = (
        _candidates(text, start + chunk // 2, hi, backward=True),
        _candidates(text, hi + 1, min(start + 2 * chunk, len(text) - 1), backward=False),
    )
    for found in searches:
        for tries, cut in enumerate(found):
            if tries >= _MAX_TRIES:
                break
            if _local(tokenizer, text, cut):
                return cut, True
    return hi, False


def encode_array(tokenizer: Any, text: str, chunk_chars: int | None = None) -> np.ndarray:
    """Token ids of `text` (no special tokens added) as int64, tokenised chunk by chunk."""
    chunk = chunk_chars or CHUNK_CHARS
    stats = EncodingStats()
    parts: list[np.ndarray] = []
    start = 0
    while start < len(text):
        if len(text) - start <= chunk:
            end, exact = len(text), True
        else:
            end, exact = _next_cut(tokenizer, text, start, chunk)
        parts.append(np.asarray(_ids(tokenizer, text[start:end]), dtype=np.int64))
        stats.chunks += 1
        stats.forced_cuts += not exact
        start = end
    global last_stats
    last_stats = stats
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def encode_text(tokenizer: Any, text: str, chunk_chars: int | None = None) -> list[int]:
    """Token ids of `text` as a list; equal to one `tokenizer(text)` call, in bounded memory."""
    if len(text) <= (chunk_chars or CHUNK_CHARS):
        return _ids(tokenizer, text)
    return encode_array(tokenizer, text, chunk_chars).tolist()


def encode_texts(tokenizer: Any, texts: Sequence[str], normalize: bool = True) -> list[list[int]]:
    """Token ids for detection: of the canonical text (`watermark.normalize`; the raw text when
    `normalize` is off), no special tokens added, exactly what the detector scores."""
    return [encode_text(tokenizer, canonical_text(t, normalize)) for t in texts]


def encode_for_detection(
    tokenizer: Any, text: str, normalize: bool = True
) -> tuple[np.ndarray, NormalizationReport]:
    """One text's ids (bounded memory, as `encode_array`) and the report of what canonicalisation changed."""
    canon, report = canonicalize(text, offsets=False) if normalize else (text, NormalizationReport())
    return encode_array(tokenizer, canon), report


def token_offsets(tokenizer: Any, text: str, ids: Sequence[int] | np.ndarray) -> tuple[list[int], list[int]]:
    """(start, end) character offsets in `text` of each of its token ids (`encode_array(tok, text)`).

    A fast tokenizer reports them (chunk by chunk for long texts, at the same cuts `encode_array`
    makes, so they line up with its ids); otherwise, or where its ids differ, pieces are decoded one by
    one and located in order. A token sharing a character with its neighbour (an emoji split over two
    byte-level tokens) keeps the tokenizer's offsets.
    """
    ids = [int(t) for t in ids]
    starts: list[int] = []
    ends: list[int] = []
    if getattr(tokenizer, "is_fast", False):
        seen: list[int] = []
        start = 0
        while start < len(text):
            if len(text) - start <= CHUNK_CHARS:
                end = len(text)
            else:
                end, _ = _next_cut(tokenizer, text, start, CHUNK_CHARS)
            enc = tokenizer(text[start:end], add_special_tokens=False, return_offsets_mapping=True)
            seen.extend(enc["input_ids"])
            starts.extend(start + int(s) for s, _ in enc["offset_mapping"])
            ends.extend(start + int(e) for _, e in enc["offset_mapping"])
            start = end
        if seen == ids:
            return starts, ends
        starts, ends = [], []
    pos = 0
    for t in ids:
        piece = tokenizer.decode([t])
        at = text.find(piece, pos) if piece else -1
        s, e = (at, at + len(piece)) if at >= 0 else (pos, pos)
        starts.append(s)
        ends.append(e)
        pos = max(pos, e)
    return starts, ends
