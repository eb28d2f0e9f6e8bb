"""Secret keys: 32 random bytes in a 0600 file, a public fingerprint, per-purpose sub-keys.

The key itself is never printed or serialised by this module; `repr(key)` shows only the
fingerprint, so a key that ends up in a log or an exception message leaks nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KeyFileError

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


MAX_KEY_FILE_BYTES = 4096  # a key file is 65 bytes; anything far larger is not one
_HEX_KEY = re.compile(rb"[0-9a-fA-F]{%d}" % (2 * KEY_BYTES))


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parents with mode 0700, whatever the umask."""
    missing = []
    f = folder
    while not f.exists() and f != f.parent:
        missing.append(f)
        f = f.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise KeyFileError(f"cannot create folder {d} for the key ({exc.strerror})") from None
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask; 0700 is never wider than asked


def write_key_file(path: str | os.PathLike[str], key: Key | None = None, overwrite: bool = False) -> Key:
    """Write a key as hex into a new file with mode 0600 (see `write_private_file`)."""
    key = key or Key.generate()
    write_private_file(path, (key.secret.hex() + "\n").encode(), overwrite)
    return key


def write_private_file(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> None:
    """Write a secret into a new file with mode 0600 (created that way, never chmod'ed after).

    The file is created with O_EXCL|O_NOFOLLOW: a symlink (or anything else) at the path is never
    written through. With `overwrite`, a regular file is replaced by renaming a new 0600 file
    over it; a symlink is still refused."""
    p = Path(path).expanduser()
    if os.path.islink(p):
        raise KeyFileError(f"{p} is a symbolic link; refusing to write a key through it")
    if os.path.lexists(p):
        if not overwrite:
            raise KeyFileError(f"{p} already exists; refusing to overwrite a key (use --force)")
        if not p.is_file():
            raise KeyFileError(f"{p} is not a regular file; refusing to replace it with a key")
    if not p.parent.is_dir():
        if os.path.lexists(p.parent):
            raise KeyFileError(f"cannot write {p}: {p.parent} is not a folder")
        make_private_dirs(p.parent)
    target = p if not overwrite else p.with_name(f".{p.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{p} already exists; refusing to overwrite a key (use --force)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create key file {p} ({exc.strerror})") from None
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if target != p:
            os.replace(target, p)  # rename replaces a file (or link) at p, never writes through it
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(target)
        raise KeyFileError(f"cannot write key file {p} ({exc.strerror})") from None


def load_key_file(path: str | os.PathLike[str]) -> Key:
    """Read a hex key file; refuse files that others can read, or that are not exactly a key:
    the content must be 64 hex digits with at most surrounding whitespace."""
    p = Path(path).expanduser()
    raw = read_private_file(p)
    if not _HEX_KEY.fullmatch(raw.strip()):
        raise KeyFileError(
            f"key file {p} is not a key: expected exactly {2 * KEY_BYTES} hex digits (and a newline)"
        )
    return Key(bytes.fromhex(raw.strip().decode("ascii")))


def read_private_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a secret file (at most MAX_KEY_FILE_BYTES): a regular file that others cannot
    read. The size is checked before anything is read (a huge file or a device is refused unread)."""
    p = Path(path).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyFileError(f"key file {p} does not exist (create one with `wm keygen -o {p}`)") from None
    except OSError as exc:
        raise KeyFileError(f"key file {p} cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {p} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(f"key file {p} is readable by others (mode {mode:o}); run `chmod 600 {p}`")
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(
                f"key file {p} is {st.st_size} bytes; a key file is 64 hex digits (is this the right file?)"
            )
        raw = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"key file {p} cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {p} is larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
    return raw
