"""Text from inputs, shown safely: no terminal control sequence from a file reaches the screen.

An input text (or a file name, or a model name from a record) can hold ESC sequences that clear
the screen, retitle the window or set the clipboard (OSC 52), C1 controls, BEL, backspace or a
carriage return that hides what was printed before it. `visible()` replaces each such character
by a printable escape (`\\x1b`, `\\x9b`, `\\u202e`, ...), so the text is shown, never obeyed.
"""

from __future__ import annotations


def _table(keep: str) -> dict[int, str]:
    table: dict[int, str] = {}
    codes = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)]
    codes += [0x2028, 0x2029]  # line/paragraph separators: a line break to some terminals
    codes += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]  # bidi overrides ("Trojan source")
    codes += range(0xD800, 0xE000)  # lone surrogates (undecodable argv bytes): not printable at all
    for c in codes:
        if chr(c) in keep:
            continue
        table[c] = f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"
    return table


_MULTILINE = _table("\n\t")
_ONE_LINE = _table("\t")


def visible(text: str, one_line: bool = False) -> str:
    """`text` with every control character escaped; newlines and tabs kept unless `one_line`."""
    return text.translate(_ONE_LINE if one_line else _MULTILINE)
