"""Read transformers' watermarking configs: the dicts `WatermarkingConfig.to_dict()` and
`SynthIDTextWatermarkingConfig.to_dict()` write (or a generation config holding one under
`watermarking_config`). Each becomes a wm scheme config (no secret in it) plus the secret key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import SchemeConfig
from ..errors import ConfigError
from ..keying.hfkeys import HashingKey, SynthIDKeys
from ..schemes.hf_kgw import HfKgwConfig
from ..schemes.hf_synthid import HfSynthIDConfig

KGW_FIELDS = {
    "greenlist_ratio": "gamma",
    "bias": "delta",
    "seeding_scheme": "seeding",
    "context_width": "context_width",
}
SYNTHID_FIELDS = (
    "ngram_len",
    "context_history_size",
    "sampling_table_seed",
    "sampling_table_size",
    "skip_first_ngram_calls",
)
_IGNORED = ("debug_mode",)  # generation-only switch of transformers' tests; detection is unaffected


def from_transformers_dict(data: Any) -> tuple[SchemeConfig, HashingKey | SynthIDKeys]:
    """(hf-kgw or hf-synthid config, its key) from a transformers watermarking dict."""
    if isinstance(data, dict) and isinstance(data.get("watermarking_config"), dict):
        data = data["watermarking_config"]
    if not isinstance(data, dict):
        raise ConfigError("a transformers watermarking config must be a JSON object")
    if "keys" in data or "ngram_len" in data:
        known, kind = {"keys", *SYNTHID_FIELDS, *_IGNORED}, "SynthIDTextWatermarkingConfig"
    else:
        known, kind = {"hashing_key", *KGW_FIELDS}, "WatermarkingConfig"
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown field(s) for transformers' {kind}: {', '.join(unknown)}")
    try:
        if kind == "WatermarkingConfig":
            fields = {KGW_FIELDS[k]: v for k, v in data.items() if k in KGW_FIELDS}
            return HfKgwConfig(**fields), HashingKey(data.get("hashing_key", 15485863))
        if not isinstance(data.get("keys"), list) or "ngram_len" not in data:
            raise ConfigError("a SynthIDTextWatermarkingConfig needs 'keys' (a list) and 'ngram_len'")
        fields = {k: data[k] for k in SYNTHID_FIELDS if k in data}
        return HfSynthIDConfig(**fields), SynthIDKeys(tuple(data["keys"]))
    except TypeError as exc:
        raise ConfigError(f"bad transformers {kind}: {exc}") from None


def read_transformers_config(path: str | Path) -> tuple[SchemeConfig, HashingKey | SynthIDKeys]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"transformers config {p} does not exist") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(f"transformers config {p} is not readable text ({type(exc).__name__})") from None
    try:
        return from_transformers_dict(json.loads(text))
    except json.JSONDecodeError:
        raise ConfigError(f"transformers config {p} is not valid JSON") from None
