"""`wm detect --entropy-model M`: entropy-aware detection (SWEET, EWD) for kgw, unigram and gumbel.

The model is loaded once, on the first text, and only when the flag is given (it is never
needed for plain detection). It reads each text alone: the prompt is not needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

ENTROPY_FLAGS = ("entropy_model", "entropy_method", "entropy_threshold")


def entropy_options(func: Callable) -> Callable:
    options = [
        click.option(
            "--entropy-model",
            default=None,
            metavar="MODEL",
            help="Entropy-aware detection (kgw, unigram, gumbel): weight each token by the entropy "
            "of MODEL's next-token distribution given the text before it (one forward pass of the "
            "text; the prompt is not needed). MODEL must use the texts' tokenizer, e.g. smollm2-135m.",
        ),
        click.option(
            "--entropy-method",
            type=click.Choice(["sweet", "ewd"]),
            default=None,
            help="With --entropy-model: ewd (default; Lu et al. 2024: weight = entropy minus the "
            "text's smallest) or sweet (Lee et al. 2023: score only tokens at or above --entropy-threshold).",
        ),
        click.option(
            "--entropy-threshold",
            type=click.FloatRange(0.0, 100.0),
            default=None,
            help="SWEET's entropy threshold in nats (default 0.9; 0 scores every token, the plain test). Implies sweet.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def pop_entropy_options(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The entropy flags as one request, None without --entropy-model (other flags then refused)."""
    opts = {k: kwargs.pop(k) for k in ENTROPY_FLAGS}
    if opts["entropy_model"] is None:
        for flag in ("entropy_method", "entropy_threshold"):
            if opts[flag] is not None:
                raise click.UsageError(f"--{flag.replace('_', '-')} needs --entropy-model")
        return None
    if opts["entropy_method"] == "ewd" and opts["entropy_threshold"] is not None:
        raise click.UsageError("--entropy-threshold is SWEET's: not with --entropy-method ewd")
    if opts["entropy_method"] is None:
        opts["entropy_method"] = "sweet" if opts["entropy_threshold"] is not None else "ewd"
    return opts


def check_entropy_flags(opts: dict[str, Any] | None, others: dict[str, Any]) -> None:
    """Entropy weighting is for whole texts in memory: not with corpus mode, spans, calibration."""
    if opts is None:
        return
    for flag, given in others.items():
        if given:
            raise click.UsageError(f"--entropy-model is not available with {flag}")


class EntropyWeigher:
    """Loads the entropy model on first use and tests texts with the weighted statistic."""

    def __init__(self, opts: dict[str, Any]):
        self.name: str = opts["entropy_model"]
        self.method: str = opts["entropy_method"]
        self.threshold: float | None = opts["entropy_threshold"]
        self._model: Any = None
        self._start = 0
        self._checked: set[int] = set()

    def _load(self, tok: Any) -> None:
        from wm_toolkit.watermark.modeling.entropy import start_token
        from wm_toolkit.watermark.modeling.models import canonical_name, load_model

        from .common import with_status

        if self._model is None:
            self.name = canonical_name(self.name)
            with with_status(f"Loading entropy model {self.name}"):
                self._model, self._tok = load_model(self.name)
            self._start = start_token(self._tok)
        if id(tok) not in self._checked:
            self._check_tokenizer(tok)
            self._checked.add(id(tok))

    def _check_tokenizer(self, tok: Any) -> None:
        from wm_toolkit.watermark.errors import ConfigError

        if len(tok) != len(self._tok) or tok.get_vocab() != self._tok.get_vocab():
            raise ConfigError(
                f"the entropy model {self.name} uses another tokenizer than the texts' "
                f"({len(self._tok)} vs {len(tok)} tokens): its entropies need the same token ids"
            )

    def detect(self, scheme: Any, tok: Any, ids: Any) -> Any:
        """The weighted detection of one text (ids from `encode_array`, as plain detection)."""
        from wm_toolkit.watermark.modeling.entropy import position_entropies
        from wm_toolkit.watermark.schemes.entropy_aware import (
            SWEET_THRESHOLD,
            detect_weighted,
            entropy_weights,
            ewd_modulus,
            scored_prefix,
        )

        scored_prefix(scheme)  # refuses other schemes before any model is loaded
        self._load(tok)
        (ent,) = position_entropies(self._model, [ids], self._start, modulus=ewd_modulus(scheme))
        weights = entropy_weights(scheme, ent, self.method, self.threshold)
        info: dict[str, Any] = {"method": self.method, "model": self.name}
        if self.method == "sweet":
            info["threshold"] = SWEET_THRESHOLD if self.threshold is None else self.threshold
        plain = scheme.detect(ids)
        info["plain_log10_p_value"] = plain.log10_p_value
        info["plain_num_tokens_scored"] = plain.num_tokens_scored
        return detect_weighted(scheme, ids, weights, info=info)
