"""Whether wm may download models: off unless the user asks (`--allow-download`, WM_ALLOW_DOWNLOAD=1).

Kept apart from `models` so the CLI can set the policy before anything imports torch or
transformers (`wm --help` stays fast), and so there is one switch every loader reads.
"""

from __future__ import annotations

import contextlib
import os

_TRUE = ("1", "true", "yes", "on")
_DOWNLOADS = os.environ.get("WM_ALLOW_DOWNLOAD", "").strip().lower() in _TRUE


def allow_download(allowed: bool, process_wide: bool = False) -> None:
    """Let model/tokenizer names that are not local be downloaded from the Hugging Face hub.

    Only the user switches this on (a CLI flag or WM_ALLOW_DOWNLOAD=1), never an input file.
    `process_wide` (the CLI) also puts every other hub access of this process (similarity and
    NLI models, side files) offline while downloads are off."""
    global _DOWNLOADS
    _DOWNLOADS = bool(allowed)
    if process_wide:
        with contextlib.suppress(ImportError):
            import huggingface_hub.constants as hub_constants  # light: no torch, no transformers

            user_offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
            hub_constants.HF_HUB_OFFLINE = user_offline or not _DOWNLOADS


def downloads_allowed() -> bool:
    return _DOWNLOADS
