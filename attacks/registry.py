"""Attack kinds by name, `KIND[:MODE][:STRENGTH]` parsing, and the one dispatch used by every caller.

`wm attack` and `wm eval` both go through `apply_attack(spec, texts, context)`, so an attack
means the same thing in both. Every kind maps a list of texts to a list of attacked texts;
`apply_attack` then re-tokenises the results as a detector will see them (canonical text, see
`watermark.normalize`), removes nothing else, and measures `fraction_changed` (token edit
distance / original length, `attacks.metrics`).

Adding a kind: build an `AttackKind` and call `register_attack(kind)` at import time of your
module, and list the module in `PLUGIN_MODULES` (imported on first lookup, skipped when absent).

Randomness: text i gets `numpy.random.default_rng([seed, i, kind id])`, so results do not depend
on batching or on which other texts are attacked in the same call.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wm_toolkit.watermark.errors import ConfigError, InputError
from wm_toolkit.watermark.text.encoding import encode_text
from wm_toolkit.watermark.text.normalize import canonical_text

from .metrics import fraction_changed
from .unicode import MODES as UNICODE_MODES

LONG_TEXT_CHARS = 100_000  # texts longer than this report progress inside themselves

# modules that register further kinds (e.g. scrub, spoof); missing ones are skipped
PLUGIN_MODULES: list[str] = [
    "wm_toolkit.attacks.scrub",
    "wm_toolkit.attacks.spoof",
    "wm_toolkit.attacks.text_kinds",  # MarkMyWords / WaterPark text attacks (typo, swap, emoji, ...)
]


@dataclass(frozen=True)
class AttackSpec:
    """One attack as asked for: its kind, an optional mode word and an optional strength."""

    kind: str
    strength: float | None = None
    mode: str | None = None

    @property
    def label(self) -> str:
        parts = [self.kind]
        if self.mode:
            parts.append(self.mode)
        if self.strength is not None:
            parts.append(f"{self.strength:g}")
        return ":".join(parts)


@dataclass
class AttackContext:
    """What attacks may need besides the texts. Only `tokenizer` is always required.

    - `model_loader`: returns (model, tokenizer); called at most once, and only by kinds that
      need a model (paraphrase, neighbour).
    - `donors`: unwatermarked texts for dilution; text i is diluted with donors[i % len(donors)].
    - `first_index`: the global index of the first text, when a long list is attacked in chunks
      (seeds and donors follow the global index, so chunking does not change results).
    - `options`: kind-specific settings (paraphrase: prompt, temperature, batch_size; neighbour:
      k; dilute: spans).
    - `on_item(n)`: progress callback, n texts finished.
    - `normalize`: measure results on canonical text (`watermark.normalize`), as detectors see it.
    - `on_progress(stage, done, total)`: progress inside one long text (over `LONG_TEXT_CHARS`
      characters), e.g. ("text 1: measuring changes", tokens measured, tokens).
    """

    tokenizer: Any
    seed: int = 0
    first_index: int = 0
    model_loader: Callable[[], tuple[Any, Any]] | None = None
    donors: Sequence[str] | None = None
    prompts: Sequence[str | None] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    on_item: Callable[[int], None] | None = None
    normalize: bool = True
    on_progress: Callable[[str, int, int], None] | None = None
    _model: tuple[Any, Any] | None = field(default=None, repr=False)
    _ids: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def rng(self, index: int, kind: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.first_index + index, zlib.crc32(kind.encode())])

    def model(self) -> tuple[Any, Any]:
        if self._model is None:
            if self.model_loader is None:
                raise ConfigError("this attack needs a model, and none was given")
            self._model = self.model_loader()
        return self._model

    def encode(self, text: str) -> list[int]:
        return encode_text(self.tokenizer, text)  # chunked on long texts: same ids, bounded memory

    def detector_ids(self, text: str) -> list[int]:
        """Token ids as a detector scores them: the canonical text's, unless `normalize` is off."""
        return self.encode(canonical_text(text, self.normalize))

    def encode_ids(self, text: str) -> np.ndarray:
        """`encode` as an int64 array, remembered for the last few texts: a long original is
        tokenised once for the attack and once for measuring the change otherwise."""
        if text not in self._ids:
            if len(self._ids) >= 4:
                self._ids.pop(next(iter(self._ids)))
            ids = np.asarray(self.encode(text), dtype=np.int64)
            ids.flags.writeable = False  # shared: attacks edit copies
            self._ids[text] = ids
        return self._ids[text]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def advance(self, n: int = 1) -> None:
        if self.on_item:
            self.on_item(n)

    def stage(self, index: int, text: str, name: str, done: int = 0, total: int = 1) -> None:
        """Report progress inside text `index` when it is long (short texts report per item only)."""
        if self.on_progress and len(text) > LONG_TEXT_CHARS:
            self.on_progress(f"text {self.first_index + index + 1}: {name}", done, total)


# runner(texts, spec, context) -> (attacked texts, the parameters it used)
Runner = Callable[[Sequence[str], AttackSpec, AttackContext], tuple[list[str], dict[str, Any]]]


@dataclass(frozen=True)
class AttackKind:
    name: str
    run: Runner
    help: str
    default_strength: float | None = None
    strength_name: str = "rate"  # what the number means, for parameters and plots
    strength_range: tuple[float, float] = (0.0, 1.0)
    modes: tuple[str, ...] = ()
    needs_model: bool = False
    needs_donors: bool = False
    takes_donors: bool = False  # uses context.donors when given (copy-paste), without needing them


@dataclass(frozen=True)
class AttackedText:
    text: str
    token_ids: list[int]  # the attacked text re-tokenised, as a detector sees it
    fraction_changed: float
    params: dict[str, Any]


_KINDS: dict[str, AttackKind] = {}
_plugins_loaded = False


def register_attack(kind: AttackKind) -> None:
    _KINDS[kind.name] = kind


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for name in PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


def available_attacks() -> list[str]:
    _load_plugins()
    return sorted(_KINDS)


def get_attack(name: str) -> AttackKind:
    if name not in _KINDS:
        _load_plugins()
    if name not in _KINDS:
        raise ConfigError(f"unknown attack {name!r}; known: {', '.join(available_attacks())}")
    return _KINDS[name]


def parse_attack(text: str) -> AttackSpec:
    """`KIND`, `KIND:STRENGTH`, `KIND:MODE` or `KIND:MODE:STRENGTH` (e.g. `paraphrase:whole:1.0`)."""
    parts = [p.strip() for p in text.strip().split(":")]
    kind = get_attack(parts[0])
    strength: float | None = None
    mode: str | None = None
    for arg in parts[1:]:
        try:
            value = float(arg)
        except ValueError:
            if arg not in kind.modes or mode is not None:
                known = f"; modes: {', '.join(kind.modes)}" if kind.modes else ""
                raise ConfigError(f"attack {text!r}: {arg!r} is not a number{known}") from None
            mode = arg
            continue
        if strength is not None:
            raise ConfigError(f"attack {text!r}: more than one strength")
        strength = value
    if strength is not None:
        check_strength(kind, strength)
    elif kind.default_strength is not None:
        strength = kind.default_strength
    if mode is None and kind.modes:
        mode = kind.modes[0]
    return AttackSpec(kind.name, strength, mode)


def parse_attacks(text: str) -> list[AttackSpec]:
    """A comma-separated list of attacks; duplicates are dropped, order kept."""
    specs: list[AttackSpec] = []
    for item in text.split(","):
        if item.strip():
            spec = parse_attack(item)
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise ConfigError("no attacks given")
    return specs


def check_strength(kind: AttackKind, value: float) -> None:
    lo, hi = kind.strength_range
    if not lo <= value <= hi:
        raise ConfigError(f"{kind.name}: {kind.strength_name} must be in [{lo:g}, {hi:g}], got {value:g}")


def apply_attack(spec: AttackSpec, texts: Sequence[str], context: AttackContext) -> list[AttackedText]:
    """Attack every text; each result carries its re-tokenised ids, fraction changed and parameters."""
    kind = get_attack(spec.kind)
    if kind.needs_donors and not context.donors:
        raise InputError(f"attack {kind.name!r} needs unwatermarked donor texts")
    attacked, params = kind.run(list(texts), spec, context)
    base = {"kind": kind.name}
    if spec.mode is not None:
        base["mode"] = spec.mode
    if spec.strength is not None:
        base[kind.strength_name] = spec.strength
    base["seed"] = context.seed
    base.update(params)
    out = []
    for i, (original, new) in enumerate(zip(texts, attacked, strict=True)):
        context.stage(i, original, "re-tokenising")
        ids = context.detector_ids(new)
        before = context.detector_ids(original)

        def measured(done: int, total: int, i=i, original=original) -> None:
            context.stage(i, original, "measuring changes (tokens)", done, total)

        out.append(AttackedText(new, ids, fraction_changed(before, ids, measured), dict(base)))
    return out


# ---------------------------------------------------------------------------------------------
# built-in kinds


def _none(texts, spec, ctx):
    ctx.advance(len(texts))
    return list(texts), {}


def _token_edit(name: str) -> Runner:
    def run(texts, spec, ctx):
        from . import edits  # token-level edits (uniform positions and replacement tokens)

        vocab_size = len(ctx.tokenizer)
        out = []
        for i, text in enumerate(texts):
            ctx.stage(i, text, "tokenising")
            ids = ctx.encode_ids(text)
            ctx.stage(i, text, "editing")
            rng = ctx.rng(i, name)
            if name == "substitute":
                new = edits.substitute_tokens(ids, spec.strength, vocab_size, rng)
            elif name == "insert":
                new = edits.insert_tokens(ids, spec.strength, vocab_size, rng)
            else:
                new = edits.delete_tokens(ids, spec.strength, rng)
            out.append(ctx.decode([int(t) for t in new]))  # special tokens drawn are dropped here
            ctx.advance()
        return out, {}

    return run


def _word_edit(name: str) -> Runner:
    def run(texts, spec, ctx):
        from .word_edits import word_delete, word_substitute

        fn = word_substitute if name == "word-substitute" else word_delete
        out = []
        for i, text in enumerate(texts):
            out.append(fn(text, spec.strength, ctx.rng(i, name)))
            ctx.advance()
        return out, {}

    return run


def _neighbour(texts, spec, ctx):
    from .neighbour import NeighbourIndex, neighbour_substitute

    k = int(ctx.options.get("k", 1))
    model, _ = ctx.model()
    index = ctx.options.get("_neighbour_index")
    if index is None:
        index = NeighbourIndex.from_model(model, ctx.tokenizer)
        ctx.options["_neighbour_index"] = index  # reused by later calls with the same context
    out = []
    for i, text in enumerate(texts):
        ids = neighbour_substitute(ctx.encode(text), spec.strength, index, ctx.rng(i, "neighbour"), k=k)
        out.append(ctx.decode(ids))
        ctx.advance()
    return out, {"k": k}


def _dilute(texts, spec, ctx):
    from .dilution import dilute, word_starts

    spans = int(ctx.options.get("spans", 1))
    donors = list(ctx.donors or [])
    out = []
    for i, text in enumerate(texts):
        donor_ids = ctx.encode(donors[(ctx.first_index + i) % len(donors)])
        res = dilute(
            ctx.encode(" " + text.lstrip()),  # a leading space keeps it apart from the donor word before
            donor_ids,
            spec.strength,
            ctx.rng(i, "dilute"),
            spans=spans,
            boundaries=word_starts(ctx.tokenizer, donor_ids),
        )
        out.append(ctx.decode(res.token_ids))
        ctx.advance()
    return out, {"spans": spans}


def _paraphrase(texts, spec, ctx):
    from .paraphrase import DEFAULT_PROMPT, paraphrase

    model, tok = ctx.model()
    prompt = ctx.options.get("prompt") or DEFAULT_PROMPT
    out = paraphrase(
        texts,
        model,
        tok,
        mode=spec.mode or "sentence",
        temperature=spec.strength if spec.strength is not None else 0.7,
        prompt=prompt,
        seed=ctx.seed + ctx.first_index,
        batch_size=int(ctx.options.get("batch_size", 8)),
        on_item=ctx.advance,
    )
    params: dict[str, Any] = {}
    if prompt != DEFAULT_PROMPT:
        params["prompt"] = prompt
    if ctx.options.get("paraphrase_model"):
        params["model"] = ctx.options["paraphrase_model"]
    return out, params


def _unicode(texts, spec, ctx):
    from .unicode import unicode_attack

    out = []
    for i, text in enumerate(texts):
        out.append(
            unicode_attack(text, spec.mode or "zwsp", spec.strength, ctx.rng(i, f"unicode-{spec.mode}"))
        )
        ctx.advance()
    return out, {}


for _name, _help in (
    ("substitute", "replace a fraction of tokens by uniformly random tokens"),
    ("insert", "insert uniformly random tokens at a rate"),
    ("delete", "delete a fraction of tokens"),
):
    register_attack(AttackKind(_name, _token_edit(_name), _help, default_strength=0.1))
register_attack(AttackKind("none", _none, "no attack (the baseline)", strength_name="strength"))
register_attack(
    AttackKind(
        "word-substitute",
        _word_edit("word-substitute"),
        "replace a fraction of words by a synonym or a common word",
        0.1,
    )
)
register_attack(AttackKind("word-delete", _word_edit("word-delete"), "delete a fraction of words", 0.1))
register_attack(
    AttackKind(
        "neighbour",
        _neighbour,
        "replace a fraction of word tokens by their nearest input-embedding neighbour",
        0.2,
        needs_model=True,
    )
)
register_attack(
    AttackKind(
        "dilute",
        _dilute,
        "embed the watermarked text in unwatermarked text so it makes up a fraction",
        0.25,
        strength_name="fraction",
        strength_range=(0.01, 1.0),
        needs_donors=True,
    )
)
register_attack(
    AttackKind(
        "paraphrase",
        _paraphrase,
        "rewrite with an instruction model (no watermark), sentence by sentence or whole",
        0.7,
        strength_name="temperature",
        strength_range=(0.0, 5.0),
        modes=("sentence", "whole"),
        needs_model=True,
    )
)
register_attack(
    AttackKind(
        "unicode",
        _unicode,
        "invisible characters, look-alikes or odd spaces at a rate of their sites (text looks the same)",
        1.0,
        modes=UNICODE_MODES,
    )
)
