"""wm: watermark LLM text during generation, detect it with honest p-values, attack it.

The names below load on first use (PEP 562), so `import wm_toolkit.watermark.errors` or the CLI's
`wm --help` does not pay for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import _moved

__version__ = "0.1.0"

_moved.install()  # the flat paths of 0.1 (`wm_toolkit.watermark.keys`, ...) for one release

_EXPORTS = {
    "Detection": ".schemes",
    "Key": ".keying.keys",
    "SchemeConfig": ".config",
    "WmError": ".errors",
    "available_schemes": ".schemes",
    "build_scheme": ".schemes",
    "config_from_dict": ".config",
    "detect_texts": ".runtime.corpus",
    "load_config_file": ".config",
    "load_key_file": ".keying.keys",
    "load_scheme": ".scheme_file",
    "save_scheme": ".scheme_file",
    "save_config_file": ".config",
    "write_key_file": ".keying.keys",
}

__all__ = [
    "Detection",
    "Key",
    "SchemeConfig",
    "WmError",
    "available_schemes",
    "build_scheme",
    "config_from_dict",
    "detect_texts",
    "load_config_file",
    "load_key_file",
    "load_scheme",
    "save_config_file",
    "save_scheme",
    "write_key_file",
]

if TYPE_CHECKING:
    from .config import SchemeConfig, config_from_dict, load_config_file, save_config_file
    from .errors import WmError
    from .keying.keys import Key, load_key_file, write_key_file
    from .runtime.corpus import detect_texts
    from .scheme_file import load_scheme, save_scheme
    from .schemes import Detection, available_schemes, build_scheme


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
