"""No function or method in watermark/, attacks/ or cli/ is longer than 80 lines, unless it is a table.

A function that does not fit on a screen usually holds several jobs; splitting it into named steps is
what lets a reader follow the flow. Length is `end_lineno - lineno + 1` of the `def` (decorators not
counted, the docstring counted). A function that really is a table (a literal mapping, a dispatch
list) may carry `# lint: table` on its `def` line; the allow-list below takes the rest and stays
near-empty, each entry with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("watermark", "attacks", "cli")
MAX_LINES = 80
TABLE_MARKER = "# lint: table"

# "path/to/module.py:qualified.name" -> why it may be longer than MAX_LINES
ALLOWED: dict[str, str] = {}


def _long_functions(source: str, label: str, limit: int = MAX_LINES) -> list[str]:
    """`label:qualname (N lines)` for each function in `source` over `limit` lines, tables aside."""
    lines = source.splitlines()
    found: list[str] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    is_table = TABLE_MARKER in lines[child.lineno - 1]
                    key = f"{label}:{name}"
                    if length > limit and not is_table and key not in ALLOWED:
                        found.append(f"{key} ({length} lines)")
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_no_function_in_the_packages_is_longer_than_80_lines():
    found = [
        hit
        for path in _sources()
        for hit in _long_functions(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    ]
    assert not found, "split these into functions with one job each:\n" + "\n".join(found)


def test_the_checker_sees_every_package():
    assert {p.relative_to(ROOT).parts[0] for p in _sources()} == set(PACKAGES)


def _function(lines: int, decorators: int = 0, marker: str = "") -> str:
    body = [f"    x{i} = {i}" for i in range(lines - 2)]
    return "\n".join(["@dec"] * decorators + [f"def f():{marker}", '    """doc."""', *body]) + "\n"


def test_an_81_line_function_is_flagged_and_an_80_line_one_is_not():
    assert _long_functions(_function(81), "m.py") == ["m.py:f (81 lines)"]
    assert _long_functions(_function(80), "m.py") == []


def test_decorators_do_not_count():
    assert _long_functions(_function(80, decorators=5), "m.py") == []


def test_methods_and_nested_functions_are_named_by_their_path():
    method = "class C:\n" + "".join(f"    {line}\n" for line in _function(81).splitlines())
    assert _long_functions(method, "m.py") == ["m.py:C.f (81 lines)"]


def test_a_table_marker_on_the_def_line_exempts_the_function():
    assert _long_functions(_function(200, marker="  # lint: table"), "m.py") == []


def test_every_allow_list_entry_names_a_reason():
    assert all(reason.strip() for reason in ALLOWED.values())
