"""The README's Python blocks run as written (docs that run), on the embedded default model.

They run with a fixed key, torch seed and EXP key shift so the outcome is deterministic; each
example must detect its own output at p < 1e-3.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_library_examples():
    assert len(python_blocks()) >= 2


def test_readme_python_blocks_run_and_detect_their_own_output(monkeypatch):
    from wm_toolkit.watermark import Key
    from wm_toolkit.watermark.schemes.distortion_free import DistortionFreeLogitsProcessor

    monkeypatch.setattr(DistortionFreeLogitsProcessor, "shift_seed", 0)  # EXP/ITS key shifts too
    seeds = iter(range(100))
    monkeypatch.setattr(Key, "generate", classmethod(lambda cls: Key.from_seed(f"readme-{next(seeds)}")))
    torch.manual_seed(0)
    namespace: dict = {}
    for block in python_blocks():
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
        det = namespace["det"]
        assert det.p_value < 1e-3, block
        assert det.verdict(1e-3) == "watermarked"


@pytest.mark.parametrize("block", python_blocks())
def test_readme_blocks_are_valid_python(block):
    compile(block, str(README), "exec")
