"""The flat import paths of 0.1 keep working for one release, with a warning; wm itself uses the new
ones (so a user's DeprecationWarning always points at the user's own code)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from wm_toolkit.watermark import _moved

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_an_old_path_is_the_new_module(old):
    new = importlib.import_module(_moved.new_path(f"wm_toolkit.watermark.{old}"))
    code = f"import warnings; warnings.simplefilter('error'); import wm_toolkit.watermark.{old}"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert (
        res.returncode != 0
        and "DeprecationWarning" in res.stderr
        and "moved to wm_toolkit.watermark." in res.stderr
    )
    with pytest.warns(DeprecationWarning, match=new.__name__.replace(".", r"\.")):
        sys.modules.pop(f"wm_toolkit.watermark.{old}", None)
        assert importlib.import_module(f"wm_toolkit.watermark.{old}") is new


def test_from_imports_of_old_names_reach_the_same_objects():
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("wm_toolkit.watermark.keys", None)
        from wm_toolkit.watermark.keys import Key as OldKey
    from wm_toolkit.watermark.keying.keys import Key

    assert OldKey is Key


def _old_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        found += [n for n in names if _moved.new_path(n)]
    return found


def test_wm_itself_imports_no_old_path():
    offenders = {}
    for folder in ("watermark", "attacks", "cli", "tests", "benchmarks", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "test_layout.py" and ".venv" not in path.parts and (old := _old_imports(path)):
                offenders[str(path.relative_to(ROOT))] = old
    assert offenders == {}
