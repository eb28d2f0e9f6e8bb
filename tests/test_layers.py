"""Layers point one way: cli -> attacks -> watermark core. The core imports nothing above it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):  # module level and inside functions (lazy imports count too)
        if isinstance(node, ast.Import):
            names |= {_layer(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(_layer(node.module))
            if node.module == "wm_toolkit":  # from wm_toolkit import attacks
                names |= {alias.name for alias in node.names}
    return names


def _layer(module: str) -> str:
    """The top folder an absolute import reaches, with or without the `wm_toolkit.` namespace."""
    parts = module.split(".")
    return parts[1] if parts[0] == "wm_toolkit" and len(parts) > 1 else parts[0]


def test_the_watermark_core_imports_neither_attacks_nor_cli():
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported_top_levels(p) & {"attacks", "cli"})
        for p in (ROOT / "watermark").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_attacks_never_import_the_cli():
    offenders = [
        str(p.relative_to(ROOT)) for p in (ROOT / "attacks").rglob("*.py") if "cli" in _imported_top_levels(p)
    ]
    assert offenders == []
