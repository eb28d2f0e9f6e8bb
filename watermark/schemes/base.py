"""The contract every watermark scheme meets: one object owns embedding and detection."""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np
from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.generation.configuration_utils import BaseWatermarkingConfig

from ..config import SchemeConfig
from ..errors import ConfigError, InputError
from ..keying.keys import Key
from ..statistics.pvalues import log10_p

if TYPE_CHECKING:
    from ..keying.hfkeys import HashingKey, SynthIDKeys
    from ..keying.vllmkey import VllmKey


class TextTooShortError(InputError):
    """Too few scorable tokens for a meaningful test."""


VERDICTS = ("watermarked", "not watermarked", "inconclusive")


@dataclass(frozen=True)
class Detection:
    """Result of a watermark test. `p_value` is valid under H0: the text is independent of the key.

    `log10_p_value` is computed in log space, so very strong evidence stays finite where the
    float p-value underflows to 0. `p_value_floor` is the smallest p-value the test could give
    this text (0.0 when unbounded): when it exceeds alpha the text cannot be called watermarked
    at that level whatever it holds, and the verdict is "inconclusive" rather than "not watermarked".
    """

    scheme: str
    p_value: float
    num_tokens_scored: int
    statistic: float
    log10_p_value: float | None = field(default=None, kw_only=True)
    p_value_floor: float = field(default=0.0, kw_only=True)

    def __post_init__(self) -> None:
        if self.log10_p_value is None:
            object.__setattr__(self, "log10_p_value", log10_p(self.p_value))

    def watermarked(self, alpha: float) -> bool:
        """Reject H0 at level alpha: p <= alpha (valid for any super-uniform p-value)."""
        if self.p_value > 0.0:
            return self.p_value <= alpha
        return cast(float, self.log10_p_value) <= math.log10(alpha)  # set by __post_init__

    def verdict(self, alpha: float) -> str:
        if self.watermarked(alpha):
            return "watermarked"
        return "inconclusive" if self.p_value_floor > alpha else "not watermarked"

    def inconclusive_reason(self, alpha: float) -> str | None:
        if self.verdict(alpha) != "inconclusive":
            return None
        return (
            f"the smallest p-value this test can give this text is {self.p_value_floor:.3g}, above "
            f"alpha = {alpha:g} ({self.num_tokens_scored} tokens scored): longer text is needed"
        )

    def to_dict(self, alpha: float | None = None) -> dict[str, Any]:
        """JSON-ready fields (per-token arrays are left out; see `token_mask`); with alpha, the
        verdict fields too."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "token_mask":
                continue
            v = getattr(self, f.name)
            if isinstance(v, np.generic):
                v = v.item()
            out[f.name] = v
        if alpha is not None:
            out["alpha"] = alpha
            out["watermarked"] = self.watermarked(alpha)
            out["verdict"] = self.verdict(alpha)
            reason = self.inconclusive_reason(alpha)
            if reason:
                out["inconclusive_reason"] = reason
        return out


class WatermarkScheme(ABC):
    """Built from a config and a key; `processor()` embeds, `detect()` tests."""

    config_cls: ClassVar[type[SchemeConfig]]
    # transformers' and vLLM's integer keys (keying/hfkeys.py, keying/vllmkey.py) as well as wm keys
    accepts_integer_keys: ClassVar[bool] = False

    def __init__(self, config: SchemeConfig, key: Key | HashingKey | SynthIDKeys | VllmKey):
        if not isinstance(config, self.config_cls):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_cls.__name__}, got {type(config).__name__}"
            )
        if config.key_fingerprint is not None and config.key_fingerprint != key.fingerprint:
            raise ConfigError(
                f"wrong key: the config was made with key {config.key_fingerprint}, this key is {key.fingerprint}"
            )
        self.config = config.replace(key_fingerprint=key.fingerprint)
        self.key = key

    @property
    def name(self) -> str:
        return self.config.scheme

    def vocab_size_for(self, scores_width: int) -> int:
        """Tokens the watermark acts on: the config's vocabulary, clipped to the logits' width."""
        v = self.config.vocab_size or scores_width
        return min(v, scores_width)

    @abstractmethod
    def processor(self) -> LogitsProcessor:
        """A fresh `transformers` logits processor embedding this watermark."""

    def watermarking_config(self) -> SchemeWatermarkingConfig:
        """For `model.generate(..., watermarking_config=...)`: transformers then builds a fresh
        processor per generate() call and runs it after all of its own processors and warpers,
        so the decoder sees the final distribution whatever the sampling settings."""
        return SchemeWatermarkingConfig(self)

    def detect_text(self, text: str, tokenizer: Any, alpha: float | None = None) -> Detection:
        """Tokenise `text` exactly as `wm detect` does (no special tokens) and test it."""
        from ..text.encoding import encode_texts

        if not isinstance(text, str):
            raise InputError(f"detect_text needs a str, got {type(text).__name__}")
        return self.detect(encode_texts(tokenizer, [text])[0], alpha=alpha)

    @abstractmethod
    def detect(self, token_ids: Sequence[int] | np.ndarray, alpha: float | None = None) -> Detection:
        """Test one text (its token ids, without the prompt). `alpha`, when given, is the level
        the caller will decide at: Monte Carlo tests resample until their answer at that level is
        resolved; analytic tests ignore it."""

    def detect_many(
        self, texts: Sequence[Sequence[int] | np.ndarray], alpha: float | None = None
    ) -> Sequence[Detection]:
        return [self.detect(ids, alpha=alpha) for ids in texts]


class SchemeWatermarkingConfig(BaseWatermarkingConfig):
    """transformers' hook for watermarks: `generate()` calls `construct_processor` each time and
    appends the result after every warper. Serialises to the scheme's public config (no key)."""

    def __init__(self, scheme: WatermarkScheme):
        self.scheme = scheme

    def validate(self) -> None:
        """Nothing to check: the scheme validated its config when it was built."""

    def construct_processor(self, vocab_size: int | None = None, device: Any = None) -> LogitsProcessor:
        return self.scheme.processor()

    def to_dict(self) -> dict[str, Any]:
        return self.scheme.config.to_dict()

    def __deepcopy__(self, memo: dict) -> SchemeWatermarkingConfig:
        return self  # generate() deep-copies its config; the scheme (and its key) stay shared

    def __repr__(self) -> str:
        return f"SchemeWatermarkingConfig({self.scheme.name}, key {self.scheme.key.fingerprint})"


def sampling_warpers(temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0) -> list[Any]:
    """The temperature/top-k/top-p warpers `generate()` would add, in the same order."""
    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


def as_token_array(token_ids: Sequence[int] | np.ndarray, vocab_size: int | None) -> np.ndarray:
    """Validate token ids for detection: 1-D integers inside the scheme's vocabulary.

    A string is the commonest mistake (`scheme.detect("some text")`): it gets a message that
    names `detect_text`; fractional ids are refused rather than truncated."""
    if isinstance(token_ids, str | bytes):
        raise InputError(
            "detect() takes token ids, not text: use scheme.detect_text(text, tokenizer) "
            "(it tokenises the way `wm detect` does)"
        )
    try:
        raw = np.asarray(token_ids)
    except (TypeError, ValueError) as exc:
        raise InputError(f"token ids must be a flat sequence of integers: {exc}") from None
    integral = raw.dtype.kind in "iu" or (
        raw.dtype.kind == "f" and bool(np.all(np.isfinite(raw))) and bool(np.all(raw == np.floor(raw)))
    )
    if raw.size and not integral:
        raise InputError(f"token ids must be integers, got {raw.dtype} values")
    ids = raw.astype(np.int64, copy=False).reshape(-1)
    if ids.size and (ids.min() < 0 or (vocab_size is not None and ids.max() >= vocab_size)):
        raise ConfigError(
            f"token id out of range for vocabulary size {vocab_size}: the text was tokenised with another tokenizer"
        )
    return ids


def first_occurrences(seeds: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each distinct (seed, token) pair (a stable lexsort).

    A repeated pair repeats the same pseudo-random draw, so only its first occurrence is an
    independent observation under H0; every context-seeded detector scores with this mask.
    """
    order = np.lexsort((tokens, seeds))
    s, t = seeds[order], tokens[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    mask = np.zeros(len(order), dtype=bool)
    mask[order[new]] = True
    return mask
