"""vLLM's watermark secret: `WatermarkConfig.key`, an integer in [0, 2^64).

A vLLM key is a wm key in both directions:
- an integer key file (`wm keygen --vllm` / `--vllm-key N`), mode 0600, one JSON object
      {"type": "vllm-watermark-key", "key": 1234567890123}
  read by `hfkeys.load_any_key_file` like transformers' integer keys;
- a wm hex key file works too: its vLLM integer is the first 8 bytes (big-endian) of the sub-key
  `Key.derive("vllm-watermark-key")`, so one wm key can also drive a vLLM server
  (`wm vllm-config --key wm.key` prints the integer into the operator's config file).
Either way the scheme sees a `VllmKey`, so configs and fingerprints do not depend on the file kind.
The fingerprint is hfkeys' slow salted hash (PBKDF2): the integer never shows in configs or outputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..errors import KeyFileError
from .keys import Key, write_private_file

VLLM_TYPE = "vllm-watermark-key"
MAX_VLLM_KEY = (1 << 64) - 1
WM_KEY_PURPOSE = "vllm-watermark-key"
_FINGERPRINT_ROUNDS = 20_000  # hfkeys' salted slow hash (this module must not import hfkeys: it reads us)


def _fingerprint(value: int) -> str:
    data = f"{VLLM_TYPE}:{value}".encode()
    return hashlib.pbkdf2_hmac("sha256", data, b"wm-hf-key-fingerprint", _FINGERPRINT_ROUNDS, dklen=8).hex()


@dataclass(frozen=True)
class VllmKey:
    """vLLM's `--watermark-config` key (the Philox key; dual-key schemes derive two from it)."""

    value: int = field(repr=False)

    def __post_init__(self) -> None:
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_VLLM_KEY:
            raise KeyFileError("a vLLM watermark key must be an integer in [0, 2^64)")

    @classmethod
    def from_wm_key(cls, key: Key) -> VllmKey:
        """The vLLM integer a wm key stands for (an independent sub-key, never the raw secret)."""
        return cls(int.from_bytes(key.derive(WM_KEY_PURPOSE)[:8], "big"))

    @functools.cached_property
    def fingerprint(self) -> str:
        return _fingerprint(self.value)

    def __repr__(self) -> str:
        return f"VllmKey(fingerprint={self.fingerprint})"

    __str__ = __repr__


def as_vllm_key(key: Any) -> VllmKey:
    """A `VllmKey` from a vLLM integer key or a wm key; transformers' keys are refused."""
    if isinstance(key, VllmKey):
        return key
    if isinstance(key, Key):
        return VllmKey.from_wm_key(key)
    raise KeyFileError(
        "the vLLM schemes take a vLLM integer key file (`wm keygen --vllm` or `--vllm-key N`) or a wm key file"
    )


def random_vllm_key() -> VllmKey:
    return VllmKey(secrets.randbelow(MAX_VLLM_KEY + 1))


def write_vllm_key_file(path: str | os.PathLike[str], key: VllmKey, overwrite: bool = False) -> None:
    """Write the integer key as JSON into a new 0600 file (`keys.write_private_file`)."""
    write_private_file(path, (json.dumps({"type": VLLM_TYPE, "key": key.value}) + "\n").encode(), overwrite)


def from_key_file_object(obj: dict) -> VllmKey | None:
    """The key of a parsed key file of type `vllm-watermark-key` (None for other types)."""
    if obj.get("type") != VLLM_TYPE:
        return None
    if "key" not in obj:
        raise KeyFileError(f"a {VLLM_TYPE} key file needs a 'key' field")
    return VllmKey(obj["key"])
