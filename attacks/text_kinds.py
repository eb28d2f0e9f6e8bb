"""MarkMyWords' and WaterPark's text attacks as registry kinds (`wm attack KIND`, `wm eval --attacks`).

typo, misspelling, contraction, expansion, lowercase, swap, copy-paste, scramble and emoji (the
text-side strip). Each kind's strength is the fraction of its sites affected (words, letters,
sentences, emoji runs; for copy-paste the watermarked fraction of the words); text i draws from
`context.rng(i, kind)` as every kind does. The operations live in typos.py, spelling.py,
reorder.py, copy_paste.py and emoji.py; this module only binds them to the registry, which
imports it on first lookup (`registry.PLUGIN_MODULES`).

copy-paste takes its human text from `context.donors` (text i: donors[i mod n]; `wm eval` passes
its unwatermarked generations, `wm attack copy-paste --donor FILE` the file), else from
`data/human_text.txt`, read from a seeded word offset and cycled as long as needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .copy_paste import copy_paste, sizes, words
from .emoji import strip_emojis
from .registry import AttackContext, AttackKind, AttackSpec, register_attack
from .reorder import scramble, swap_words
from .resources import data_text
from .spelling import contract, expand, lowercase, misspell
from .typos import typo_chars, typo_words

HUMAN_TEXT_FILE = "human_text.txt"
DEFAULT_SPANS = 3

Edit = Callable[[str, float, np.random.Generator], str]


def _per_text(name: str, edit: Callable[[str, AttackSpec, np.random.Generator], str]):
    def run(texts: Sequence[str], spec: AttackSpec, ctx: AttackContext) -> tuple[list[str], dict[str, Any]]:
        out = []
        for i, text in enumerate(texts):
            out.append(edit(text, spec, ctx.rng(i, name)))
            ctx.advance()
        return out, {}

    return run


def _rated(edit: Edit) -> Callable[[str, AttackSpec, np.random.Generator], str]:
    def run(text: str, spec: AttackSpec, rng: np.random.Generator) -> str:
        return edit(text, 1.0 if spec.strength is None else spec.strength, rng)

    return run


def _typo(text: str, spec: AttackSpec, rng: np.random.Generator) -> str:
    rate = 0.1 if spec.strength is None else spec.strength
    return typo_chars(text, rate, rng) if spec.mode == "char" else typo_words(text, rate, rng)


def human_text(need: int, rng: np.random.Generator) -> str:
    """`need` words of data/human_text.txt from a seeded word offset, cycled when it is too short."""
    units = words(data_text(HUMAN_TEXT_FILE))
    start = int(rng.integers(len(units)))
    rotated = units[start:] + units[:start]
    reps = -(-max(need, 1) // len(rotated))
    return "".join((rotated * reps)[: max(need, 1)])


def _copy_paste(texts: Sequence[str], spec: AttackSpec, ctx: AttackContext):
    spans = int(ctx.options.get("copy_paste_spans", DEFAULT_SPANS))
    fraction = 0.25 if spec.strength is None else spec.strength
    donors = list(ctx.donors or [])
    out = []
    for i, text in enumerate(texts):
        rng = ctx.rng(i, "copy-paste")
        if donors:
            human = donors[(ctx.first_index + i) % len(donors)]
        else:
            human = human_text(sizes(len(words(text)), 10**9, fraction)[1], rng)
        out.append(copy_paste(text, human, fraction, rng, spans=spans).text)
        ctx.advance()
    source = "donors" if donors else f"data/{HUMAN_TEXT_FILE}"
    return out, {"spans": spans, "human_text": source}


def _emoji(text: str, spec: AttackSpec, rng: np.random.Generator) -> str:
    return strip_emojis(text, 1.0 if spec.strength is None else spec.strength, rng)


_RATED: tuple[tuple[str, Edit, str, float], ...] = (
    ("misspelling", misspell, "misspell a fraction of the words a list of common misspellings knows", 0.5),
    ("contraction", contract, "contract a fraction of the expanded forms (do not -> don't)", 1.0),
    ("expansion", expand, "expand a fraction of the contractions (don't -> do not)", 1.0),
    ("lowercase", lowercase, "lowercase the text (1.0) or a fraction of its capitalised words", 1.0),
    ("swap", swap_words, "swap adjacent words; the rate is the fraction of words moved", 0.1),
    ("scramble", scramble, "shuffle the order of a fraction of the sentences (all: 1.0)", 1.0),
)
for _name, _edit, _help, _default in _RATED:
    register_attack(AttackKind(_name, _per_text(_name, _rated(_edit)), _help, _default))
register_attack(
    AttackKind(
        "typo",
        _per_text("typo", _typo),
        "keyboard slips: one in a fraction of the words (word) or QWERTY neighbours for letters (char)",
        0.1,
        modes=("word", "char"),
    )
)
register_attack(
    AttackKind(
        "copy-paste",
        _copy_paste,
        "paste watermarked spans into human text so they are a fraction of the words",
        0.25,
        strength_name="fraction",
        strength_range=(0.01, 1.0),
        takes_donors=True,
    )
)
register_attack(
    AttackKind("emoji", _per_text("emoji", _emoji), "strip emojis inserted between words (emoji attack)", 1.0)
)
