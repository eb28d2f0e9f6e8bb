"""Scheme registry: scheme name -> implementation class."""

from __future__ import annotations

from ..config import SchemeConfig, config_from_dict
from ..errors import ConfigError
from ..keying.hfkeys import HashingKey, SynthIDKeys
from ..keying.keys import Key
from .base import Detection, TextTooShortError, WatermarkScheme
from .distortion_free import (
    DistortionFreeConfig,
    DistortionFreeDetection,
    DistortionFreeLogitsProcessor,
    DistortionFreeScheme,
)
from .greenlist import GreenListConfig, GreenListDetection, GreenListLogitsProcessor, GreenListScheme
from .gumbel import GumbelConfig, GumbelDetection, GumbelLogitsProcessor, GumbelScheme
from .hf_kgw import HfKgwConfig, HfKgwDetection, HfKgwScheme
from .hf_synthid import HfSynthIDConfig, HfSynthIDScheme
from .synthid import SynthIDConfig, SynthIDDetection, SynthIDScheme
from .vllm_gumbel import VllmGumbelConfig, VllmGumbelScheme

_SCHEMES: dict[str, type[WatermarkScheme]] = {"kgw": GreenListScheme, "unigram": GreenListScheme}


def register_scheme(cls: type[WatermarkScheme], *names: str) -> None:
    for name in names:
        _SCHEMES[name] = cls


register_scheme(DistortionFreeScheme, "exp", "exp-edit", "its", "its-edit")
register_scheme(GumbelScheme, "gumbel")
register_scheme(HfKgwScheme, "hf-kgw")
register_scheme(SynthIDScheme, "synthid")
register_scheme(HfSynthIDScheme, "hf-synthid")
register_scheme(VllmGumbelScheme, "vllm-gumbel", "vllm-dual-key-gumbel")


def available_schemes() -> list[str]:
    return sorted(_SCHEMES)


def build_scheme(config: SchemeConfig | dict, key: Key | HashingKey | SynthIDKeys) -> WatermarkScheme:
    """The scheme object for a config (or its dict form) and a key."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    cls = _SCHEMES.get(config.scheme)
    if cls is None:
        raise ConfigError(f"unknown scheme {config.scheme!r}; known: {', '.join(available_schemes())}")
    if not isinstance(key, Key) and cls not in (HfKgwScheme, HfSynthIDScheme, VllmGumbelScheme):
        raise ConfigError(
            f"scheme {config.scheme!r} needs a wm key file (`wm keygen`), not transformers' integer keys"
        )
    return cls(config, key)


__all__ = [
    "Detection",
    "DistortionFreeConfig",
    "DistortionFreeDetection",
    "DistortionFreeLogitsProcessor",
    "DistortionFreeScheme",
    "GreenListConfig",
    "GreenListDetection",
    "GreenListLogitsProcessor",
    "GreenListScheme",
    "GumbelConfig",
    "GumbelDetection",
    "GumbelLogitsProcessor",
    "GumbelScheme",
    "HfKgwConfig",
    "HfKgwDetection",
    "HfKgwScheme",
    "HfSynthIDConfig",
    "HfSynthIDScheme",
    "SynthIDConfig",
    "SynthIDDetection",
    "SynthIDScheme",
    "TextTooShortError",
    "VllmGumbelConfig",
    "VllmGumbelScheme",
    "WatermarkScheme",
    "available_schemes",
    "build_scheme",
    "register_scheme",
]
