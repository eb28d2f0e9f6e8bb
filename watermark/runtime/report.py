"""Showing a detection to people: per-token views, text markers and one HTML rendering.

`wm detect --show-tokens / --html / --json --tokens` and the `wm serve` page all go through this
module, so a report file and the page draw exactly the same thing. Everything taken from the
input text is HTML-escaped here, in one place. Per-token colours say what the key decides about
each token (green or red): they are key material in small change, which is why the service
shows them only where the operator allows it.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..schemes.base import Detection
from ..schemes.spans import SpanDetection
from ..text.encoding import token_offsets


@dataclass(frozen=True)
class TokenPiece:
    """One scored token: its characters in the original text and its mask value."""

    text: str
    start: int
    end: int
    mask: int


@dataclass(frozen=True)
class LegendEntry:
    mask: int
    css: str  # class suffix on the page and in reports
    marker: str  # prefix in plain-text output ("" = left unmarked)
    style: str  # rich style on a terminal
    meaning: str


GREEN_LIST_LEGEND = (
    LegendEntry(
        1, "green", "+", "bold green", "green: in the green list of its context (evidence for the key)"
    ),
    LegendEntry(0, "red", "-", "red", "red: outside the green list"),
    LegendEntry(-1, "unscored", "", "dim", "not scored (the first tokens only serve as context)"),
)
GUMBEL_LEGEND = (
    LegendEntry(1, "scored", "+", "bold cyan", "scored: first occurrence of its (context, token) pair"),
    LegendEntry(0, "repeat", "=", "yellow", "repeat of a scored pair: not counted again"),
    LegendEntry(-1, "unscored", "", "dim", "not scored (the first tokens only serve as context)"),
)
SPAN_MEANING = "underlined: a region the span test found watermarked"
SPAN_MARKERS = ("{{", "}}")  # around spans in plain-text views (pipes, files)
SPAN_MARKED_MEANING = "{{ ... }}: a region the span test found watermarked"
NO_MASK_NOTE = "this scheme scores the whole text against the key sequence: it has no per-token colours"


def mask_legend(det: Detection) -> tuple[LegendEntry, ...] | None:
    """What the values of `det.token_mask` mean, or None when the scheme has no per-token view."""
    if not getattr(det, "token_mask", ()):
        return None
    if hasattr(det, "green_count"):
        return GREEN_LIST_LEGEND
    if det.scheme == "gumbel":
        return GUMBEL_LEGEND
    return (
        LegendEntry(1, "green", "+", "bold green", "scored for the watermark"),
        LegendEntry(0, "red", "-", "red", "scored against the watermark"),
        LegendEntry(-1, "unscored", "", "dim", "not scored"),
    )


def token_pieces(tokenizer: Any, text: str, ids: Sequence[int], mask: Sequence[int]) -> list[TokenPiece]:
    """The characters of `text` behind each token id, with its mask value.

    A fast tokenizer reports offsets; a token that shares a character with its neighbour (one
    emoji split over two byte-level tokens) keeps the tokenizer's offsets, and renderers draw
    each character once. Without offsets, pieces are decoded one by one and located in order.
    """
    mask = list(mask) if len(mask) == len(ids) else [-1] * len(ids)
    starts, ends = token_offsets(tokenizer, text, ids)
    return [TokenPiece(text[s:e], int(s), int(e), int(m)) for s, e, m in zip(starts, ends, mask, strict=True)]


def tokens_json(pieces: Iterable[TokenPiece]) -> list[dict[str, Any]]:
    return [{"text": p.text, "start": p.start, "end": p.end, "mask": p.mask} for p in pieces]


def segments(
    text: str, pieces: Sequence[TokenPiece] | None, spans: Sequence[tuple[int, int]] = ()
) -> list[tuple[str, int | None, bool]]:
    """Cut `text` into (characters, mask value or None, inside a span) runs that cover every
    character exactly once, in order: gaps between tokens and overlapping offsets included."""
    cuts = {0, len(text)}
    owner: list[int | None] = [None] * len(text)
    for p in pieces or ():
        s, e = max(0, p.start), min(len(text), p.end)
        for i in range(s, e):
            if owner[i] is None:
                owner[i] = p.mask
        cuts.update((s, e))
    inside = [False] * len(text)
    for s, e in spans:
        s, e = max(0, int(s)), min(len(text), int(e))
        for i in range(s, e):
            inside[i] = True
        cuts.update((s, e))
    bounds = sorted(c for c in cuts if 0 <= c <= len(text))
    out: list[tuple[str, int | None, bool]] = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        if a < b:
            out.append((text[a:b], owner[a], inside[a]))
    return out


def marked_text(
    pieces: Sequence[TokenPiece], legend: Sequence[LegendEntry], spans: Sequence[tuple[int, int]] = ()
) -> str:
    """Plain-text view for pipes and files: `[+tok]` / `[-tok]` around marked tokens, `{{` and
    `}}` around spans (character ranges of the text, on token boundaries)."""
    marker = {e.mask: e.marker for e in legend}
    out = []
    open_until = None
    for p in pieces:
        if open_until is None:
            for s, e in spans:
                if s <= p.start < e:
                    out.append(SPAN_MARKERS[0])
                    open_until = e
                    break
        m = marker.get(p.mask, "")
        out.append(f"[{m}{p.text}]" if m and p.text else p.text)
        if open_until is not None and p.end >= open_until:
            out.append(SPAN_MARKERS[1])
            open_until = None
    if open_until is not None:
        out.append(SPAN_MARKERS[1])
    return "".join(out)


def marked_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """Plain text with `{{` and `}}` around spans (for schemes without per-token colours)."""
    out, pos = [], 0
    for s, e in sorted(spans):
        s, e = max(pos, s), max(pos, e)
        out += [text[pos:s], SPAN_MARKERS[0], text[s:e], SPAN_MARKERS[1]]
        pos = e
    out.append(text[pos:])
    return "".join(out)


def span_fields(det: SpanDetection | None, alpha: float, scheme: str = "") -> dict[str, Any]:
    """The `wm detect --spans` JSON fields of one text: `spans` (start_char, end_char,
    start_token, end_token: ends exclusive; p_value: family-wise) and the document-level span test
    (`span_p_value`, valid over every window scanned, its verdict at alpha, the windows). `det`
    None: the scheme has no span test, and `spans_note` says so."""
    if det is None:
        return {"spans": [], "spans_note": f"span detection is not available for the {scheme} scheme"}
    return {
        "spans": [s.to_dict() for s in det.spans],
        "span_p_value": det.p_value,
        "span_log10_p_value": det.log10_p_value,
        "span_verdict": det.verdict(alpha),
        "span_watermarked": det.watermarked(alpha),
        "span_windows": det.num_windows,
        "span_window_lengths": list(det.window_lengths),
        "span_method": det.method,
    }


def legend_lines(legend: Sequence[LegendEntry]) -> list[str]:
    return [f"[{e.marker}tok] {e.meaning}" if e.marker else f"tok    {e.meaning}" for e in legend]


def format_p(p: float | None, log10_p: float | None = None) -> str:
    """A p-value for people; below the float range it is shown from its log10 (never as 0)."""
    if p is None:
        return "-"
    if p < 1e-300 and log10_p is not None and math.isfinite(log10_p):
        exponent = math.floor(log10_p)
        return f"{10 ** (log10_p - exponent):.2f}e{exponent}"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.2e}"


# ---- HTML ----------------------------------------------------------------------------------------

CSS = """
:root { --green: #0a7d32; --green-bg: #d9f5e1; --red: #b3261e; --red-bg: #fde0dd; --muted: #6b6b6b;
  --scored: #075985; --scored-bg: #dbeefe; --repeat: #8a5a00; --repeat-bg: #fdf0cf; }
body { font: 15px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; margin: 0.2rem 0 0.8rem; }
.wm-result { border: 1px solid #ccc; border-radius: 6px; padding: 0.8rem 1rem; margin: 1rem 0; }
.wm-head { display: flex; gap: 0.8rem; align-items: baseline; flex-wrap: wrap; }
.wm-source { color: var(--muted); font-family: ui-monospace, monospace; font-size: 0.9rem; }
.wm-verdict { font-weight: 700; padding: 0.1rem 0.5rem; border-radius: 4px; }
.wm-v-watermarked { background: var(--green-bg); color: var(--green); }
.wm-v-not-watermarked { background: #eee; color: #333; }
.wm-v-inconclusive, .wm-v-error { background: #fff3cd; color: #7a5b00; }
.wm-stats { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 1rem; margin: 0.6rem 0; }
.wm-stats dt { color: var(--muted); } .wm-stats dd { margin: 0; font-family: ui-monospace, monospace; }
.wm-note { color: #7a5b00; }
.wm-legend { display: flex; gap: 1rem; flex-wrap: wrap; font-size: 0.9rem; margin: 0.4rem 0; }
.wm-text { white-space: pre-wrap; word-wrap: break-word; font-family: ui-monospace, monospace;
  font-size: 0.95rem; background: #fafafa; border: 1px solid #eee; padding: 0.6rem; border-radius: 4px; }
.t-green { color: var(--green); background: var(--green-bg); }
.t-red { color: var(--red); background: var(--red-bg); }
.t-scored { color: var(--scored); background: var(--scored-bg); }
.t-repeat { color: var(--repeat); background: var(--repeat-bg); }
.t-unscored { color: var(--muted); }
.t-span { text-decoration: underline 3px #7b3fe4; text-underline-offset: 3px; }
.wm-meta { color: var(--muted); font-size: 0.85rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _css_class(verdict: str) -> str:
    return "wm-v-" + verdict.replace(" ", "-")


def _stats(row: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("p-value", format_p(row.get("p_value"), row.get("log10_p_value")))]
    if row.get("log10_p_value") is not None:
        out.append(("log10 p", f"{row['log10_p_value']:.2f}"))
    out.append(("alpha", f"{row['alpha']:g}" if "alpha" in row else "-"))
    out.append(("scheme", str(row.get("scheme", "-"))))
    out.append(("tokens scored", str(row.get("num_tokens_scored", "-"))))
    if row.get("green_fraction") is not None:
        out.append(("green fraction", f"{row['green_fraction']:.3f}"))
    if row.get("z_score") is not None:
        out.append(("z", f"{row['z_score']:.2f}"))
    if row.get("span_p_value") is not None:
        out.append(("span test p", format_p(row["span_p_value"], row.get("span_log10_p_value"))))
        out.append(("spans", str(len(row.get("spans") or ()))))
    if row.get("p_value_floor", 0.0) >= 1e-6:  # a practical limit (permutation tests, short texts)
        out.append(("smallest reachable p", format_p(row["p_value_floor"])))
    return out


def legend_html(legend: Sequence[LegendEntry] | None, with_spans: bool = False) -> str:
    if not legend:
        return ""
    items = [f'<span class="t-{e.css}">{_e(e.marker or "tok")}</span> {_e(e.meaning)}' for e in legend]
    if with_spans:
        items.append(f'<span class="t-span">text</span> {_e(SPAN_MEANING)}')
    return '<div class="wm-legend">' + "".join(f"<span>{i}</span>" for i in items) + "</div>"


def result_html(
    row: dict[str, Any],
    text: str | None = None,
    pieces: Sequence[TokenPiece] | None = None,
    legend: Sequence[LegendEntry] | None = None,
    note: str | None = None,
    spans: Sequence[tuple[int, int]] | None = None,
) -> str:
    """One result: verdict, p-value and statistics, legend, and the text with tokens coloured.

    `pieces` None shows the text uncoloured (with `note` saying why); `spans`: character ranges of
    `text` to underline (default: `row["spans"]`' `start_char`/`end_char`).
    """
    source = _e(row.get("source", ""))
    if "error" in row:
        return (
            f'<section class="wm-result"><div class="wm-head"><span class="wm-verdict wm-v-error">error'
            f'</span><span class="wm-source">{source}</span></div><p class="wm-note">{_e(row["error"])}</p>'
            + (f'<div class="wm-text">{_e(text)}</div>' if text else "")
            + "</section>"
        )
    verdict = str(row.get("verdict", "not watermarked"))
    parts = [
        '<section class="wm-result">',
        f'<div class="wm-head"><span class="wm-verdict {_css_class(verdict)}" data-verdict="{_e(verdict)}">'
        f'{_e(verdict)}</span><span class="wm-source">{source}</span></div>',
        '<dl class="wm-stats">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _stats(row))
        + "</dl>",
    ]
    if row.get("inconclusive_reason"):
        parts.append(f'<p class="wm-note">{_e(row["inconclusive_reason"])}</p>')
    if spans is None:
        spans = [
            (s["start_char"], s["end_char"])
            for s in row.get("spans") or ()
            if isinstance(s, dict) and s.get("start_char") is not None and s.get("end_char") is not None
        ]
    if row.get("spans_note"):
        parts.append(f'<p class="wm-meta">{_e(row["spans_note"])}</p>')
    if text is not None:
        if pieces is not None and legend:
            parts.append(legend_html(legend, with_spans=bool(spans)))
        elif note:
            parts.append(f'<p class="wm-note wm-hidden">{_e(note)}</p>')
        css = {e.mask: e.css for e in legend or ()}
        runs = []
        for chunk, mask, in_span in segments(text, pieces if legend else None, spans):
            classes = [f"t-{css[mask]}"] if mask is not None and mask in css else []
            if in_span:
                classes.append("t-span")
            runs.append(f'<span class="{" ".join(classes)}">{_e(chunk)}</span>' if classes else _e(chunk))
        parts.append('<div class="wm-text">' + "".join(runs) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def report_html(sections: Sequence[str], title: str = "wm detection report", meta: str = "") -> str:
    """A self-contained page (inline CSS, no scripts, no external assets) around result sections."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
        + (f'<p class="wm-meta">{_e(meta)}</p>' if meta else "")
        + "".join(sections)
        + "</body></html>\n"
    )


def detection_row(
    source: str,
    det: Detection,
    alpha: float,
    pieces: Sequence[TokenPiece] | None = None,
    config: dict[str, Any] | None = None,
    config_conflicts: list[Any] | None = None,
) -> dict[str, Any]:
    """The JSON row of `wm detect --json` (and of the service); with `pieces`, the per-token
    view too: `token_mask` (None for schemes without one) and `tokens` (text, offsets, mask).
    `config` is the public scheme config the text was tested with (a key fingerprint, never a key)."""
    row: dict[str, Any] = {"source": source, **det.to_dict(alpha)}
    if config is not None:
        row["config"], row["config_conflicts"] = config, list(config_conflicts or [])
    if pieces is not None:
        mask = getattr(det, "token_mask", ())
        row["token_mask"] = list(mask) if mask else None
        row["tokens"] = tokens_json(pieces)
        if not mask:
            row["tokens_note"] = NO_MASK_NOTE
    return row
