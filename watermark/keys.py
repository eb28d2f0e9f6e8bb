"""Secret keys: 32 random bytes in a 0600 file, a public fingerprint, per-purpose sub-keys.

The key itself is never printed or serialised by this module; `repr(key)` shows only the
fingerprint, so a key that ends up in a log or an exception message leaks nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .errors import KeyFileError

KEY_BYTES = 32
DEFAULT_KEY_ENV = "WM_KEY_FILE"


def default_key_path() -> Path:
    """`$WM_KEY_FILE`, else `~/.config/wm/key` (XDG_CONFIG_HOME respected)."""
    env = os.environ.get(DEFAULT_KEY_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "wm" / "key"


@dataclass(frozen=True)
class Key:
    """A watermarking secret. Derive sub-keys with `derive(purpose)`; never use `secret` raw."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes | bytearray) or len(self.secret) != KEY_BYTES:
            raise KeyFileError(f"a key must be exactly {KEY_BYTES} bytes")

    @classmethod
    def generate(cls) -> Key:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_seed(cls, seed: int | str) -> Key:
        """A deterministic key for tests and null samples; never for real secrets."""
        return cls(hashlib.blake2b(str(seed).encode(), person=b"wm-test-key", digest_size=KEY_BYTES).digest())

    @property
    def fingerprint(self) -> str:
        """A short public identifier: safe to store in configs and outputs."""
        return hashlib.blake2b(self.secret, person=b"wm-fingerprint", digest_size=8).hexdigest()

    def derive(self, purpose: str) -> bytes:
        """An independent 32-byte sub-key per purpose, so schemes never share randomness."""
        return hashlib.blake2b(
            purpose.encode(), key=self.secret, person=b"wm-subkey", digest_size=32
        ).digest()

    def __repr__(self) -> str:
        return f"Key(fingerprint={self.fingerprint})"

    __str__ = __repr__


def write_key_file(path: str | os.PathLike[str], key: Key | None = None, overwrite: bool = False) -> Key:
    """Write a key as hex with mode 0600 (created that way, never chmod'ed after writing)."""
    key = key or Key.generate()
    p = Path(path).expanduser()
    if p.exists() and not overwrite:
        raise KeyFileError(f"{p} already exists; refusing to overwrite a key (use --force)")
    p.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(p, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key.secret.hex() + "\n").encode())
    finally:
        os.close(fd)
    return key


def load_key_file(path: str | os.PathLike[str]) -> Key:
    """Read a hex key file; refuse files that others can read, or that are not a 32-byte key."""
    p = Path(path).expanduser()
    if not p.exists():
        raise KeyFileError(f"key file {p} does not exist (create one with `wm keygen -o {p}`)")
    if not p.is_file():
        raise KeyFileError(f"key file {p} is not a regular file")
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(f"key file {p} is readable by others (mode {mode:o}); run `chmod 600 {p}`")
    try:
        raw = p.read_bytes()[: 4 * KEY_BYTES + 16].decode("ascii").strip()
        secret = bytes.fromhex(raw)
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"key file {p} is not a hex-encoded key") from None
    if len(secret) != KEY_BYTES:
        raise KeyFileError(
            f"key file {p} holds {len(secret)} bytes; a key is {KEY_BYTES} bytes (64 hex digits)"
        )
    return Key(secret)
