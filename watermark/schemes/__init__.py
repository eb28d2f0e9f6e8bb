"""The schemes: every scheme module registers its config and its class; this package imports them.

Adding a scheme: write one module here (a `SchemeConfig` subclass under `@register_config(...)`,
a `WatermarkScheme` subclass under `@register_scheme(...)`), and add its module name to
`SCHEME_MODULES`. Its public names are then importable from this package as well
(`from wm_toolkit.watermark.schemes import GreenListScheme`).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ..config import SchemeConfig, config_from_dict
from ..errors import ConfigError
from ..keying.keys import Key
from .base import Detection, TextTooShortError, WatermarkScheme  # noqa: F401 - re-exported
from .registry import register_scheme, registered_names, scheme_class  # noqa: F401 - re-exported

SCHEME_MODULES = (
    "greenlist",
    "distortion_free",
    "gumbel",
    "synthid",
    "hf_kgw",
    "hf_synthid",
    "vllm_gumbel",
    "dipmark",
    "delta_reweight",
    "pf",
    "morphmark",
    "mpac",
)

_MODULES: list[ModuleType] = [importlib.import_module(f".{name}", __name__) for name in SCHEME_MODULES]


def available_schemes() -> list[str]:
    return registered_names()


def build_scheme(config: SchemeConfig | dict, key: Any) -> WatermarkScheme:
    """The scheme object for a config (or its dict form) and a key (a wm `Key`; transformers' and
    vLLM's integer keys for the schemes that take them)."""
    if isinstance(config, dict):
        config = config_from_dict(config)
    cls = scheme_class(config.scheme)
    if cls is None:
        raise ConfigError(f"unknown scheme {config.scheme!r}; known: {', '.join(available_schemes())}")
    if not isinstance(key, Key) and not cls.accepts_integer_keys:
        raise ConfigError(
            f"scheme {config.scheme!r} needs a wm key file (`wm keygen`), not transformers' or vLLM's "
            "integer keys"
        )
    return cls(config, key)


def _public(module: ModuleType) -> dict[str, Any]:
    """The classes a scheme module defines itself (configs, schemes, detections, processors)."""
    return {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, type) and not name.startswith("_") and value.__module__ == module.__name__
    }


_EXPORTS: dict[str, Any] = {name: value for module in _MODULES for name, value in _public(module).items()}


def __getattr__(name: str) -> Any:
    try:
        return _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


__all__ = sorted(
    {
        *_EXPORTS,
        "Detection",
        "SCHEME_MODULES",
        "TextTooShortError",
        "WatermarkScheme",
        "available_schemes",
        "build_scheme",
        "register_scheme",
    }
)
