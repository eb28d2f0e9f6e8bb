"""Integer secrets of transformers' watermarks: KGW's `hashing_key` and SynthID-Text's `keys`.

wm's own schemes take a 32-byte `Key`; the transformers-compatible schemes (hf-kgw, hf-synthid)
must use the integers transformers seeds its generators with. They are secrets all the same:
`repr` shows only a fingerprint, and the fingerprint is a slow salted hash (PBKDF2, 20,000
rounds), because these keys are often small integers that a fast hash would give away to anyone
holding a config file. (Not slower than that: whoever holds watermarked text can already test
a candidate key by running the detector, which costs about as much per try.)

Key file format (written with mode 0600, refused when others can read it), one JSON object:
    {"type": "hf-kgw-hashing-key", "hashing_key": 15485863}
    {"type": "hf-synthid-keys", "keys": [654, 400, ...]}
`load_any_key_file` reads these and wm's own hex key files alike.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import KeyFileError
from .keys import KEY_BYTES, Key, load_key_file, read_private_file, write_private_file

if TYPE_CHECKING:
    from .vllmkey import VllmKey

INT64_MAX = (1 << 63) - 1
MAX_SYNTHID_LAYERS = 64  # a position's g-values are held as the bits of one 64-bit word
_FINGERPRINT_ROUNDS = 20_000
KGW_TYPE = "hf-kgw-hashing-key"
SYNTHID_TYPE = "hf-synthid-keys"


def _fingerprint(kind: str, values: Sequence[int]) -> str:
    data = (kind + ":" + ",".join(str(v) for v in values)).encode()
    return hashlib.pbkdf2_hmac("sha256", data, b"wm-hf-key-fingerprint", _FINGERPRINT_ROUNDS, dklen=8).hex()


@dataclass(frozen=True)
class HashingKey:
    """transformers' `WatermarkingConfig.hashing_key`: an integer in [0, 2^63)."""

    value: int = field(repr=False)

    def __post_init__(self) -> None:
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, int)
            or not 0 <= self.value <= INT64_MAX
        ):
            raise KeyFileError("a hashing key must be an integer in [0, 2^63)")

    @functools.cached_property
    def fingerprint(self) -> str:
        return _fingerprint(KGW_TYPE, [self.value])

    def __repr__(self) -> str:
        return f"HashingKey(fingerprint={self.fingerprint})"

    __str__ = __repr__


@dataclass(frozen=True)
class SynthIDKeys:
    """transformers' `SynthIDTextWatermarkingConfig.keys`: one int64 per tournament layer."""

    values: tuple[int, ...] = field(repr=False)

    def __post_init__(self) -> None:
        vals = tuple(self.values)
        if not 1 <= len(vals) <= MAX_SYNTHID_LAYERS:
            raise KeyFileError(
                f"SynthID needs 1 to {MAX_SYNTHID_LAYERS} keys (one per layer), got {len(vals)}"
            )
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, int) or not -INT64_MAX - 1 <= v <= INT64_MAX:
                raise KeyFileError("SynthID keys must be 64-bit integers")
        object.__setattr__(self, "values", vals)

    @functools.cached_property
    def fingerprint(self) -> str:
        return _fingerprint(SYNTHID_TYPE, self.values)

    def __repr__(self) -> str:
        return f"SynthIDKeys(layers={len(self.values)}, fingerprint={self.fingerprint})"

    __str__ = __repr__


AnyKey = Key | HashingKey | SynthIDKeys


def parse_int(text: str, what: str) -> int:
    """An integer from a flag (decimal or 0x-hex), with a one-line error that never echoes it."""
    try:
        return int(str(text).strip(), 0)
    except ValueError:
        raise KeyFileError(f"{what} must be an integer") from None


def parse_synthid_keys(text: str) -> SynthIDKeys:
    """`654,400,836`: comma-separated integers (the SynthID layers, in order)."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    return SynthIDKeys(tuple(parse_int(p, "each SynthID key") for p in parts))


def random_hashing_key() -> HashingKey:
    return HashingKey(secrets.randbelow(INT64_MAX))


def random_synthid_keys(layers: int = 30) -> SynthIDKeys:
    return SynthIDKeys(tuple(secrets.randbelow(INT64_MAX) for _ in range(layers)))


def write_hf_key_file(
    path: str | os.PathLike[str], key: HashingKey | SynthIDKeys, overwrite: bool = False
) -> None:
    """Write an integer key as JSON, created with mode 0600 like wm's keys (`write_private_file`)."""
    if isinstance(key, HashingKey):
        obj: dict = {"type": KGW_TYPE, "hashing_key": key.value}
    else:
        obj = {"type": SYNTHID_TYPE, "keys": list(key.values)}
    write_private_file(path, (json.dumps(obj) + "\n").encode(), overwrite)


def load_any_key_file(path: str | os.PathLike[str]) -> AnyKey | VllmKey:
    """A wm hex key file, or an integer key file written by `wm keygen --hf-hashing-key/--synthid-keys`
    (both read with the same checks: a private regular file of bounded size)."""
    p = Path(path).expanduser()
    raw = read_private_file(p)
    if not raw.lstrip().startswith(b"{"):
        return load_key_file(p)
    return parse_key_bytes(raw, f"key file {p}")


def parse_key_bytes(raw: bytes, where: str = "the key") -> AnyKey | VllmKey:
    """A key from the bytes of a key file (wm hex, or an integer key object), e.g. a key stored
    inline in a keyring; `where` names it in errors (the bytes are never echoed)."""
    if not raw.lstrip().startswith(b"{"):
        text = raw.strip()
        if len(text) != 2 * KEY_BYTES or not all(c in b"0123456789abcdefABCDEF" for c in text):
            raise KeyFileError(f"{where} is not a key: expected exactly {2 * KEY_BYTES} hex digits")
        return Key(bytes.fromhex(text.decode("ascii")))
    p = where
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"{p} is not valid JSON") from None
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind == KGW_TYPE and "hashing_key" in obj:
        return HashingKey(obj["hashing_key"])
    if kind == SYNTHID_TYPE and isinstance(obj.get("keys"), list):
        return SynthIDKeys(tuple(obj["keys"]))
    if kind is not None:
        from .vllmkey import from_key_file_object  # vLLM's integer key (vllmkey imports this module)

        vllm_key = from_key_file_object(obj)
        if vllm_key is not None:
            return vllm_key
    raise KeyFileError(f"{p}: expected type {KGW_TYPE!r} with 'hashing_key' or {SYNTHID_TYPE!r} with 'keys'")
