"""The emoji attack (MarkMyWords, Piet et al. 2023; after Kirchenbauer et al. 2023 and Goodside).

The attacker asks the watermarked model to put an emoji after every word, then deletes the
emojis. Every token the watermark's context hashing saw next to an emoji is now next to another
word, so context-keyed schemes lose most of their evidence while the words are the model's own.
Two halves:

- generation time: `emoji_prompt(prompt)` wraps a prompt with `EMOJI_INSTRUCTION`; generate
  with the wrapped prompts (e.g. `wm generate --prompt-file wrapped.jsonl`, made by
  `wm attack emoji-prompts`);
- text time: `strip_emojis(text)` (the `emoji` attack kind) removes each run of emojis and the
  one space it added, so words separated by "word 😀 word" come back as "word word".

`insert_emojis` does what the instructed model does (an emoji after a fraction of the words),
for tests and for trying the attack without a model: `strip_emojis(insert_emojis(t))` is t for
any text without emojis of its own. Emojis are default-emoji-presentation characters (not ©, ™
or digits), text-style pictographs with U+FE0F, flags, keycaps, skin tones and ZWJ sequences.
"""

from __future__ import annotations

import re

import numpy as np
import regex

from .typos import choose

EMOJI_INSTRUCTION = "Write your answer with an emoji after every word."

_ONE = (
    r"(?:\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F|[0-9#*]\uFE0F?\u20E3)"
    r"[\p{Emoji_Modifier}\uFE0F\U000E0020-\U000E007F]*"
)
EMOJI = regex.compile(_ONE + r"(?:\u200D\p{Extended_Pictographic}[\p{Emoji_Modifier}\uFE0F]*)*")
_RUN = regex.compile(
    r"(?P<pre>[ \t]*)(?P<run>" + EMOJI.pattern + r"(?:[ \t]*" + EMOJI.pattern + r")*)(?P<post>[ \t]*)"
)
# what the simulated model inserts (plain single-code-point emojis)
DEFAULT_EMOJIS = tuple("😀😂😊😍🤔😎🙌👍🔥✨🎉🌟💡📚🌍🚀🍀🐱🐶🌈")


def emoji_prompt(prompt: str, instruction: str = EMOJI_INSTRUCTION) -> str:
    """The attacker's prompt: the request followed by the emoji instruction."""
    return f"{prompt.rstrip()}\n\n{instruction}"


def _kept_space(text: str, m: regex.Match) -> str:
    """The whitespace left where an emoji run was: one side's, none at a line's start or end."""
    at_start = m.start() == 0 or text[m.start() - 1] == "\n"
    at_end = m.end() == len(text) or text[m.end()] in "\r\n"
    if at_start and at_end:
        return ""
    if at_start:
        return m.group("pre")
    if at_end:
        return m.group("post")
    return m.group("pre") or m.group("post")


def emoji_runs(text: str) -> list[regex.Match]:
    """The runs of emojis (with the spaces around them), in order."""
    return list(_RUN.finditer(text))


def strip_emojis(text: str, rate: float = 1.0, rng: np.random.Generator | None = None) -> str:
    """Remove the emoji runs (a uniformly chosen fraction `rate` of them) and the space each added."""
    runs = emoji_runs(text)
    if rate < 1.0:
        runs = [runs[j] for j in choose(len(runs), rate, rng or np.random.default_rng(0))]
    out, prev = [], 0
    for m in runs:
        out += [text[prev : m.start()], _kept_space(text, m)]
        prev = m.end()
    return "".join(out) + text[prev:]


def insert_emojis(
    text: str, rng: np.random.Generator, rate: float = 1.0, emojis: tuple[str, ...] = DEFAULT_EMOJIS
) -> str:
    """What the instructed model writes: " <emoji>" after a uniformly chosen fraction of the words."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    out, prev = [], 0
    for j in choose(len(ends), rate, rng):
        out += [text[prev : ends[j]], " ", emojis[int(rng.integers(len(emojis)))]]
        prev = ends[j]
    return "".join(out) + text[prev:]
