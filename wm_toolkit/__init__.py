"""wm-toolkit's one import namespace: `wm_toolkit.watermark` (the core), `wm_toolkit.attacks`,
`wm_toolkit.cli` (the `wm` command).

Installing under one name that collides with no popular package keeps PyPI's `watermark` (an
IPython magic) and this toolkit importable side by side. The repository keeps its top-level
folders `watermark/`, `attacks/`, `cli/`: an installed wheel holds them inside this package
(setuptools maps them, see pyproject.toml); in a source checkout they sit next to this folder
and the package path below reaches them, so tests and benchmarks run without installing.
The core's public names (`Key`, `build_scheme`, ...) are re-exported here, loaded on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
if not (_HERE / "watermark").is_dir() and (_HERE.parent / "watermark" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # noqa: F821 - this package's path, in a source checkout

__version__ = "0.1.0"
_SUBPACKAGES = ("watermark", "attacks", "cli")


def __getattr__(name: str) -> Any:
    if not name.startswith("_") and name not in _SUBPACKAGES:
        core = importlib.import_module(f"{__name__}.watermark")
        if name in core.__all__:
            return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
