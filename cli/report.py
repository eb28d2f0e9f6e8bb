"""Token views for `wm detect`: coloured on a terminal, `[+tok]` markers in pipes, HTML reports."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from wm_toolkit.watermark import __version__
from wm_toolkit.watermark.runtime.atomic import write_text
from wm_toolkit.watermark.runtime.report import (
    NO_MASK_NOTE,
    SPAN_MARKED_MEANING,
    SPAN_MEANING,
    LegendEntry,
    TokenPiece,
    legend_lines,
    marked_spans,
    marked_text,
    mask_legend,
    report_html,
    result_html,
    segments,
    token_pieces,
)
from wm_toolkit.watermark.schemes.base import Detection
from wm_toolkit.watermark.schemes.spans import SpanDetection

from .terminal import visible


class TokenViews:
    """Collects what `--show-tokens` prints and what `--html` writes, one text at a time."""

    def __init__(self, console: Console, show: bool, html_path: str | None):
        self.console = console
        self.show = show
        self.html_path = html_path
        self.sections: list[str] = []
        self.schemes: dict[str, str] = {}  # scheme -> key fingerprint, for the report's header
        self._legend_shown: tuple[LegendEntry, ...] | None = None

    def pieces(self, tok: Any, text: str, ids: list[int], det: Detection) -> list[TokenPiece]:
        return token_pieces(tok, text, ids, getattr(det, "token_mask", ()))

    def add(
        self,
        row: dict,
        text: str,
        pieces: list[TokenPiece] | None = None,
        det: Detection | None = None,
        fingerprint: str | None = None,
        spans: list[tuple[int, int]] | None = None,
    ) -> None:
        """One text: printed now (`--show-tokens`), kept for the report (`--html`). `spans`:
        character ranges of `text` the span test found (None: spans were not asked for)."""
        legend = mask_legend(det) if det is not None else None
        if det is not None:
            self.schemes[det.scheme] = fingerprint or ""
        if self.show and det is not None:
            self._print(row["source"], text, pieces or [], legend, spans)
        if self.html_path:
            note = NO_MASK_NOTE if det is not None and legend is None else None
            self.sections.append(result_html(row, text, pieces, legend, note, spans=spans))

    def _print(
        self, source: str, text: str, pieces: list[TokenPiece], legend, spans: list[tuple[int, int]] | None
    ) -> None:
        """Every piece of input text goes through `visible`: its control sequences are shown,
        never obeyed by the terminal. Spans are underlined on a terminal, `{{ }}` in pipes."""
        terminal = self.console.is_terminal
        source = visible(source, one_line=True)
        key = (legend, spans is not None)
        if (legend or spans is not None) and key != self._legend_shown:
            self._legend_shown = key
            if terminal:
                for e in legend or ():
                    self.console.print(Text(f"[{e.marker or ' '}tok]", style=e.style), Text(e.meaning))
                if spans is not None:
                    self.console.print(Text("text", style="underline"), Text(SPAN_MEANING))
            else:
                lines = legend_lines(legend or ()) + ([SPAN_MARKED_MEANING] if spans is not None else [])
                sys.stdout.write("legend: " + "; ".join(lines) + "\n")
        if terminal:
            self.console.rule(escape(source))
        else:
            sys.stdout.write(f"== {source}\n")
        if spans is not None:
            where = ", ".join(f"characters {s}-{e}" for s, e in spans) or "none"
            if terminal:
                self.console.print(f"spans: {where}", markup=False, highlight=False)
            else:
                sys.stdout.write(f"spans: {where}\n")
        if legend is None:
            if terminal:
                self.console.print(f"({NO_MASK_NOTE})", style="dim")
                view = Text()
                for chunk, _, in_span in segments(text, None, spans or ()):
                    view.append(visible(chunk), style="underline" if in_span else "")
                self.console.print(view)
            else:
                sys.stdout.write(f"({NO_MASK_NOTE})\n{visible(marked_spans(text, spans or ()))}\n")
            return
        if terminal:
            style = {e.mask: e.style for e in legend}
            view = Text()
            for chunk, mask, in_span in segments(text, pieces, spans or ()):
                s = style.get(mask, "") if mask is not None else ""
                view.append(visible(chunk), style=f"{s} underline".strip() if in_span else s)
            self.console.print(view)
        else:
            sys.stdout.write(visible(marked_text(pieces, legend, spans or ())) + "\n")
        sys.stdout.flush()

    def write(self, alpha: float) -> Path | None:
        if not self.html_path:
            return None
        schemes = ", ".join(f"{s} (key {fp})" if fp else s for s, fp in self.schemes.items()) or "-"
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        meta = f"{len(self.sections)} text(s); {schemes}; alpha {alpha:g}; wm {__version__}, {when}"
        path = Path(self.html_path)
        write_text(path, report_html(self.sections, meta=meta))  # atomic: a unique temp, then rename
        return path


def span_ranges(found: SpanDetection | None) -> list[tuple[int, int]] | None:
    """Character ranges of the spans found, for the views (None: no span test ran)."""
    if found is None:
        return None
    return [(int(s.start_char), int(s.end_char)) for s in found.spans if s.start_char is not None]
