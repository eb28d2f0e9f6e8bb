"""The distribution installs one import namespace, `wm_toolkit`, so it lives next to PyPI's `watermark`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_in_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"wm_toolkit"} | {
        "wm_toolkit." + ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("watermark", "attacks", "cli")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Our wheel and a stand-in for PyPI's `watermark` (a top-level `watermark` package) in one folder."""
    tmp = tmp_path_factory.mktemp("pkg")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # built from a copy of the sources: setuptools leaves build/ behind, and a stale build/ in the
    # checkout would put modules that no longer exist into the wheel
    src = tmp / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in ("wm_toolkit", "watermark", "attacks", "cli"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in (
        "pyproject.toml",
        "README.md",
        "data/prompts.jsonl",
        "data/bench_prompts.jsonl",
        "data/misspellings.tsv",
        "data/human_text.txt",
    ):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist")], check=True
    )
    (wheel,) = (tmp / "dist").glob("wm_toolkit-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True)
    other = tmp / "site" / "watermark"
    assert not other.exists(), "the wheel installed a top-level `watermark`"
    other.mkdir()
    (other / "__init__.py").write_text("WHO = 'the other watermark package'\n")
    return tmp / "site"


def _run(site: Path, code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=site.parent, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_wheel_holds_only_the_wm_toolkit_namespace(site):
    packages = {p.name for p in site.iterdir() if (p / "__init__.py").is_file() or p.suffix == ".py"}
    assert packages == {"wm_toolkit", "watermark"}  # ours, and the stand-in put there by the fixture


def test_both_packages_import_side_by_side(site):
    out = _run(
        site,
        "import watermark, wm_toolkit.watermark.keying.keys as k, wm_toolkit\n"
        "print(watermark.WHO); print(k.__file__); print(wm_toolkit.Key.__module__)",
    )
    who, keys_file, key_module = out.splitlines()
    assert who == "the other watermark package"
    assert keys_file.startswith(str(site / "wm_toolkit" / "watermark"))
    assert key_module == "wm_toolkit.watermark.keying.keys"


def test_the_installed_cli_runs_from_the_namespace(site):
    out = _run(site, "import sys; sys.argv = ['wm', '--help']\nfrom wm_toolkit.cli.main import main\nmain()")
    assert "detect" in out and "generate" in out
