"""The attacks' word lists and texts in data/: found in this checkout, else where a wheel puts them.

`data/misspellings.tsv` (correct -> misspelled pairs) and `data/human_text.txt` (plain prose for
copy-paste) are written by the project itself; a wheel installs them under
`sys.prefix/share/wm-toolkit/` (pyproject.toml's data-files), as it does `data/prompts.jsonl`.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from wm_toolkit.watermark.errors import InputError
from wm_toolkit.watermark.text.textio import decode_text, read_bytes


def data_path(name: str) -> Path:
    """data/NAME of this checkout, else the installed copy."""
    here = Path(__file__).resolve().parent.parent / "data" / name
    installed = Path(sys.prefix) / "share" / "wm-toolkit" / name
    return here if here.exists() or not installed.exists() else installed


@lru_cache(maxsize=8)
def data_text(name: str) -> str:
    """The text of data/NAME (read once, capped like every input)."""
    path = data_path(name)
    if not path.exists():
        raise InputError(f"data file {name} is missing (looked for {path})")
    return decode_text(str(path), read_bytes(str(path)))
