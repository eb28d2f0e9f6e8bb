"""Paraphrase attack: rewrite a text with an instruction-following model, without a watermark.

The rewriting model is any causal LM `watermark.models.load_model` can load (the default model
or a Hugging Face id); it runs with no watermark processor. `mode="sentence"` rewrites each
sentence on its own (more of the original wording survives; closer to what a careful human
editor does), `mode="whole"` rewrites the text in one go. The prompt is a template with a
`{text}` slot and can be replaced. How much really changed is measured afterwards with
`attacks.metrics.fraction_changed`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from wm_toolkit.watermark.errors import ConfigError

DEFAULT_PROMPT = (
    "Paraphrase the following text. Keep its meaning but use different words. "
    "Reply with the paraphrase only.\n\nText: {text}"
)
MODES = ("sentence", "whole")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_PREAMBLE = re.compile(r"^\s*(sure|here|certainly|of course|okay|ok)\b[^\n:]*:\s*", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Sentences by a punctuation + capital heuristic; paragraphs break sentences too."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        out.extend(s.strip() for s in _SENTENCE_END.split(para.strip()) if s.strip())
    return out


def check_prompt(prompt: str) -> str:
    if "{text}" not in prompt:
        raise ConfigError("the paraphrase prompt must contain the placeholder {text}")
    return prompt


def clean_output(out: str, fallback: str, mode: str) -> str:
    """Drop a chatty preamble ("Here is the paraphrase:") and wrapping quotes; empty -> fallback."""
    out = _PREAMBLE.sub("", out.strip(), count=1).strip()
    if len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'":
        out = out[1:-1].strip()
    if mode == "sentence":
        out = " ".join(out.split("\n\n")[0].split())  # one sentence in, one short paragraph out
    return out or fallback


def paraphrase(
    texts: Sequence[str], model: Any, tokenizer: Any, mode: str = "sentence", **kwargs: Any
) -> list[str]:
    """Paraphrase each text; returns the rewritten texts in order (`paraphrase_units`, each
    text's rewritten units joined: sentences with a space)."""
    units = paraphrase_units(texts, model, tokenizer, mode=mode, **kwargs)
    return [" ".join(us) if mode == "sentence" else us[0] for us in units]


def paraphrase_units(
    texts: Sequence[str],
    model: Any,
    tokenizer: Any,
    mode: str = "sentence",
    temperature: float = 0.7,
    prompt: str = DEFAULT_PROMPT,
    seed: int | None = 0,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    on_item: Callable[[int], None] | None = None,
    extra_processors: Sequence[Any] = (),
) -> list[list[str]]:
    """Paraphrase each text unit by unit; returns, per text, the rewrite of each of its units
    (`split_sentences` in sentence mode, the whole text otherwise), in order. Unit i of every
    rewrite of a text stands for the same original sentence, so rewrites can be mixed sentence
    by sentence (`attacks.scrub.mix_sentences`).

    Units (sentences or texts) are batched by token length; `max_new_tokens` defaults to 1.5 x
    the longest input of a batch plus 16 tokens. `on_item` is called with the number of texts
    finished, for progress bars. `extra_processors` (stateless logits processors) steer the
    rewriting model, e.g. away from a stolen green list (`attacks.scrub.paraphrase_scrub`).
    """
    from wm_toolkit.watermark.modeling.generation import generate

    if mode not in MODES:
        raise ConfigError(f"unknown paraphrase mode {mode!r}; known: {', '.join(MODES)}")
    check_prompt(prompt)
    if mode == "whole":
        units = [[t.strip()] for t in texts]
    else:
        units = [split_sentences(t) or [t.strip()] for t in texts]
    flat = [(i, u) for i, us in enumerate(units) for u in us]
    lengths = [len(tokenizer(u, add_special_tokens=False)["input_ids"]) for _, u in flat]
    # batches of similar length: a batch runs until its longest unit is done, so this saves steps
    order = sorted(range(len(flat)), key=lambda j: lengths[j])
    rewritten: list[str] = [""] * len(flat)
    remaining = [len(us) for us in units]
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        limit = max_new_tokens or int(1.5 * max(lengths[j] for j in batch)) + 16
        gens = generate(
            model,
            tokenizer,
            [prompt.format(text=flat[j][1]) for j in batch],
            scheme=None,
            max_new_tokens=limit,
            batch_size=batch_size,
            temperature=temperature,
            seed=None if seed is None else seed + start,
            extra_processors=extra_processors,
        )
        for j, g in zip(batch, gens, strict=True):
            i, u = flat[j]
            rewritten[j] = clean_output(g.text, u, mode)
            remaining[i] -= 1
            if remaining[i] == 0 and on_item:
                on_item(1)
    out: list[list[str]] = []
    k = 0
    for us in units:
        out.append(rewritten[k : k + len(us)])
        k += len(us)
    return out
