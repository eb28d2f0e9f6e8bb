"""`wm detect --llr`: the model-using LLR score of dipmark, gamma-reweight and delta-reweight.

The model is the one `--model` names (else the config's tokenizer), loaded once, on the first text,
and only when the flag is given. A text is read after its record's prompt (`wm generate` JSONL),
formatted with the model's chat template as `wm generate` does, else alone. The p-value is valid
whatever model and prompt are used: a model other than the generating one, or a text without its
prompt, only costs power.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

LLR_FLAGS = ("llr", "llr_epsilon", "llr_temperature")


def llr_options(func: Callable) -> Callable:
    options = [
        click.option(
            "--llr",
            is_flag=True,
            help="dipmark, gamma-reweight, delta-reweight: also the LLR score of the text under "
            "--model's next-token distributions (the model is loaded; after the record's prompt where "
            "the JSONL has one), "
            "and the verdict from its p-value min(1, exp(-score)), valid whatever the model.",
        ),
        click.option(
            "--llr-epsilon",
            type=click.FloatRange(0.0, 1.0, max_open=True),
            default=None,
            help="With --llr: the LLR's mixing weight eps (default 0.1; 0 is the paper's plain LLR, "
            "which one token the model decodes otherwise drives to p = 1).",
        ),
        click.option(
            "--llr-temperature",
            type=click.FloatRange(0.0, min_open=True),
            default=None,
            help="With --llr: the temperature the texts were sampled at (default 1).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def pop_llr_options(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The LLR flags as one request, None without --llr (its other flags then refused)."""
    opts = {k: kwargs.pop(k) for k in LLR_FLAGS}
    if not opts["llr"]:
        for flag in ("llr_epsilon", "llr_temperature"):
            if opts[flag] is not None:
                raise click.UsageError(f"--{flag.replace('_', '-')} needs --llr")
        return None
    return opts


def check_llr_flags(opts: dict[str, Any] | None, others: dict[str, Any]) -> None:
    """The LLR score is for whole texts in memory, alone: not with corpus mode, spans, calibration."""
    if opts is None:
        return
    for flag, given in others.items():
        if given:
            raise click.UsageError(f"--llr is not available with {flag}")


class LLRScorer:
    """Loads the model on first use (one per model name) and scores texts with the LLR."""

    def __init__(self, opts: dict[str, Any], model: str | None):
        from wm_toolkit.watermark.schemes.reweight_llr import DEFAULT_EPSILON, LLRSettings

        eps = DEFAULT_EPSILON if opts["llr_epsilon"] is None else opts["llr_epsilon"]
        temperature = 1.0 if opts["llr_temperature"] is None else opts["llr_temperature"]
        self.settings = LLRSettings(epsilon=eps, temperature=temperature)
        self.model_name = model
        self._models: dict[str, tuple[Any, Any, int]] = {}

    def _load(self, name: str, tok: Any) -> tuple[Any, int]:
        from wm_toolkit.watermark.errors import ConfigError
        from wm_toolkit.watermark.modeling.entropy import start_token
        from wm_toolkit.watermark.modeling.models import load_model

        from .common import with_status

        if name not in self._models:
            with with_status(f"Loading model {name}"):
                lm, lm_tok = load_model(name)
            self._models[name] = (lm, lm_tok, start_token(lm_tok))
        lm, lm_tok, start = self._models[name]
        if lm_tok is not tok and (len(tok) != len(lm_tok) or tok.get_vocab() != lm_tok.get_vocab()):
            raise ConfigError(f"the LLR model {name} uses another tokenizer than the texts'")
        return lm, start

    def detect(self, scheme: Any, tok: Any, ids: Any, prompt: str | None = None) -> Any:
        """The LLR detection of one text (ids from `encode_array`, as plain detection), after
        `prompt` (formatted as `wm generate` formats it) where there is one."""
        from wm_toolkit.watermark.measure.evaluation import prompt_prefix
        from wm_toolkit.watermark.modeling.models import canonical_name
        from wm_toolkit.watermark.schemes.reweight_llr import detect_llr_many, scored_positions

        scored_positions(scheme, ids)  # refuses other schemes and short texts before any model loads
        name = canonical_name(self.model_name or scheme.config.tokenizer)
        lm, start = self._load(name, tok)
        prefix = prompt_prefix(tok, prompt) if prompt else None
        info = {"model": name, "prompt": prefix is not None}
        (det,) = detect_llr_many(scheme, lm, [ids], start, self.settings, prefixes=[prefix], info=info)
        return det
