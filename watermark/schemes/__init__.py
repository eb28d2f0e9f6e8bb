"""Scheme registry: scheme name -> implementation class."""

from __future__ import annotations

from ..config import SchemeConfig, config_from_dict
from ..errors import ConfigError
from ..keys import Key
from .base import Detection, TextTooShortError, WatermarkScheme
from .distortion_free import (
    DistortionFreeConfig,
    DistortionFreeDetection,
    DistortionFreeLogitsProcessor,
    DistortionFreeScheme,
)
from .greenlist import GreenListConfig, GreenListDetection, GreenListLogitsProcessor, GreenListScheme
from .gumbel import GumbelConfig, GumbelDetection, GumbelLogitsProcessor, GumbelScheme

_SCHEMES: dict[str, type[WatermarkScheme]] = {"kgw": GreenListScheme, "unigram": GreenListScheme}


def register_scheme(cls: type[WatermarkScheme], *names: str) -> None:
    for name in names:
        _SCHEMES[name] = cls


register_scheme(DistortionFreeScheme, "exp", "exp-edit", "its", "its-edit")
register_scheme(GumbelScheme, "gumbel")


def available_schemes() -> list[str]:
    return sorted(_SCHEMES)


def build_scheme(config: SchemeConfig | dict, key: Key) -> WatermarkScheme:
    """The scheme object for a config (or its dict form) and a key."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    cls = _SCHEMES.get(config.scheme)
    if cls is None:
        raise ConfigError(f"unknown scheme {config.scheme!r}; known: {', '.join(available_schemes())}")
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
    "TextTooShortError",
    "WatermarkScheme",
    "available_schemes",
    "build_scheme",
    "register_scheme",
]
