"""A keyring: one private file listing the keys and configs a fleet serves, for detection over all.

Each entry has a name (a tenant, a model), a key, a scheme config, a tokenizer and optionally a
calibration file. The key is stored either by path (the key file stays where it is and is read
with the key file checks) or inline, exactly as a key file holds it (64 hex digits, or an integer
key object), so a ring can be moved as one file. The file is JSON, written with mode 0600 through
`keys.write_private_file` (created that way, replaced by rename, never through a symlink), read
only when others cannot read it. Nothing here prints or returns key bytes: `Entry.describe()` is
what `wm keyring list` shows (names, schemes, tokenizers, key fingerprints).

    {"type": "wm-keyring", "version": 1, "entries": [
      {"name": "tenant-a", "key": {"path": "/keys/a"} | {"inline": "<key file text>"},
       "config": {...}, "tokenizer": "smollm2-135m", "calibration": null, "labels": {...}}]}
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import SchemeConfig, config_from_dict, load_config_file
from ..errors import ConfigError, InputError, KeyFileError
from ..keying.hfkeys import AnyKey, load_any_key_file, parse_key_bytes
from ..keying.keys import read_private_file, write_private_file

if TYPE_CHECKING:
    from ..keying.vllmkey import VllmKey

FORMAT = "wm-keyring"
VERSION = 1
MAX_RING_BYTES = 16 << 20  # 16 MB: thousands of entries; anything larger is not a keyring
MAX_ENTRIES = 10_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")


@dataclass(frozen=True)
class Entry:
    """One key and config. `key_ref` is {"path": ...} or {"inline": ...}; never shown."""

    name: str
    key_ref: dict[str, str] = field(repr=False)
    config: dict[str, Any]
    tokenizer: str | None = None
    calibration: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def load_key(self) -> AnyKey | VllmKey:
        if "inline" in self.key_ref:
            return parse_key_bytes(self.key_ref["inline"].encode(), f"keyring entry {self.name!r}'s key")
        return load_any_key_file(self.key_ref["path"])

    def scheme_config(self) -> SchemeConfig:
        return config_from_dict(dict(self.config))

    def matches(self, hint: tuple[str, str]) -> bool:
        """`name=x` matches the entry's name, `label=x` one of its labels."""
        what, value = hint
        return (self.name if what == "name" else self.labels.get(what)) == value

    def describe(self, fingerprint: bool = True) -> dict[str, Any]:
        """What may be shown to the ring's owner: no key bytes, no key path."""
        out: dict[str, Any] = {
            "name": self.name,
            "scheme": self.config.get("scheme"),
            "tokenizer": self.tokenizer or self.config.get("tokenizer"),
            "key_storage": "inline" if "inline" in self.key_ref else "path",
        }
        if fingerprint:
            out["key_fingerprint"] = self.load_key().fingerprint
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.calibration:
            out["calibration"] = self.calibration
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": dict(self.key_ref),
            "config": self.config,
            "tokenizer": self.tokenizer,
            "calibration": self.calibration,
            "labels": self.labels,
        }


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            "an entry name is 1-128 characters: letters, digits and . _ : @ / - (starting with a letter or digit)"
        )
    return name


def parse_labels(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`tenant=acme` pairs; `name` is reserved for the entry's name."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k or not v or k == "name":
            raise InputError(f"a label is KEY=VALUE (KEY not 'name'), got {item!r}")
        out[k] = v
    return out


def parse_hint(text: str) -> tuple[str, str]:
    """`name=tenant-a` or `LABEL=value` (e.g. `tenant=acme`)."""
    k, sep, v = text.partition("=")
    if not sep or not k or not v:
        raise InputError(f"a hint is KEY=VALUE (e.g. name=tenant-a), got {text!r}")
    return k, v


def _entry_from_json(obj: Any, where: str) -> Entry:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        raise InputError(f"{where}: an entry must be an object with a name")
    ref: Any = obj.get("key")
    ok_ref = isinstance(ref, dict) and len(ref) == 1 and isinstance(next(iter(ref.values())), str)
    if not ok_ref or next(iter(ref)) not in ("path", "inline"):
        raise InputError(f"{where}: entry {obj['name']!r} needs a key {{'path': ...}} or {{'inline': ...}}")
    if not isinstance(obj.get("config"), dict):
        raise InputError(f"{where}: entry {obj['name']!r} has no config object")
    labels: Any = obj.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InputError(f"{where}: entry {obj['name']!r}: labels must map names to strings")
    for opt in ("tokenizer", "calibration"):
        if obj.get(opt) is not None and not isinstance(obj[opt], str):
            raise InputError(f"{where}: entry {obj['name']!r}: {opt} must be a string")
    return Entry(check_name(obj["name"]), dict(ref), obj["config"], obj.get("tokenizer"),
                 obj.get("calibration"), dict(labels))  # fmt: skip


@dataclass
class Keyring:
    entries: list[Entry] = field(default_factory=list)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise InputError(f"the keyring has no entry {name!r}")

    def to_bytes(self) -> bytes:
        obj = {"type": FORMAT, "version": VERSION, "entries": [e.to_json() for e in self.entries]}
        return (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode()


def read_ring_bytes(path: str | os.PathLike[str]) -> bytes:
    """The ring file's bytes: a regular file others cannot read, at most MAX_RING_BYTES."""
    p = Path(path).expanduser()
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"keyring {p} does not exist (create it with `wm keyring add {p} ...`)") from None
    except OSError as exc:
        raise KeyFileError(f"keyring {p} cannot be read ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"keyring {p} is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(f"keyring {p} is readable by others (mode {mode:o}); run `chmod 600 {p}`")
        if st.st_size > MAX_RING_BYTES:
            raise KeyFileError(f"keyring {p} is {st.st_size} bytes, over the {MAX_RING_BYTES} limit")
        chunks, size = [], 0
        while size <= MAX_RING_BYTES:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_RING_BYTES:
        raise KeyFileError(f"keyring {p} is over the {MAX_RING_BYTES} byte limit")
    return b"".join(chunks)


def load_keyring(path: str | os.PathLike[str], missing_ok: bool = False) -> Keyring:
    if missing_ok and not os.path.lexists(Path(path).expanduser()):
        return Keyring()
    raw = read_ring_bytes(path)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"keyring {path} is not valid JSON") from None
    if not isinstance(obj, dict) or obj.get("type") != FORMAT:
        raise InputError(f'{path} is not a wm keyring (no "type": "{FORMAT}")')
    if obj.get("version") != VERSION:
        raise InputError(
            f"keyring {path} has version {obj.get('version')!r}; this wm reads version {VERSION}"
        )
    items = obj.get("entries")
    if not isinstance(items, list) or len(items) > MAX_ENTRIES:
        raise InputError(f"keyring {path}: entries must be a list of at most {MAX_ENTRIES}")
    ring = Keyring([_entry_from_json(e, str(path)) for e in items])
    if len(set(ring.names())) != len(ring.entries):
        raise InputError(f"keyring {path} has two entries with one name")
    return ring


def save_keyring(path: str | os.PathLike[str], ring: Keyring) -> None:
    """Replace the ring file atomically with a new 0600 file (never written through a link)."""
    write_private_file(path, ring.to_bytes(), overwrite=True)


def make_entry(
    name: str,
    key_path: str,
    config_path: str,
    tokenizer: str | None = None,
    calibration: str | None = None,
    inline: bool = False,
    labels: dict[str, str] | None = None,
) -> Entry:
    """A checked entry: the key loads, the config loads and was made with this key (when it names
    a fingerprint), the calibration exists. With `inline` the key file's text is copied in."""
    key = load_any_key_file(key_path)  # the key file checks (private, bounded, well-formed)
    config = load_config_file(config_path)
    fp = config.key_fingerprint
    if fp is not None and fp != key.fingerprint:
        raise ConfigError(
            f"{config_path} was made with key {fp}, not with {key_path} (key {key.fingerprint})"
        )
    if calibration is not None and not Path(calibration).is_file():
        raise InputError(f"calibration {calibration}: no such file")
    if inline:
        ref = {"inline": read_private_file(key_path).decode("utf-8").strip()}
    else:
        ref = {"path": str(Path(key_path).expanduser().resolve())}
    cal = str(Path(calibration).expanduser().resolve()) if calibration else None
    return Entry(check_name(name), ref, config.to_dict(), tokenizer, cal, dict(labels or {}))


def add_entry(path: str | os.PathLike[str], entry: Entry, replace: bool = False) -> Keyring:
    ring = load_keyring(path, missing_ok=True)
    if entry.name in ring.names():
        if not replace:
            raise InputError(
                f"the keyring already has an entry {entry.name!r} (remove it first, or --replace)"
            )
        ring.entries = [entry if e.name == entry.name else e for e in ring.entries]
    else:
        if len(ring.entries) >= MAX_ENTRIES:
            raise InputError(f"a keyring holds at most {MAX_ENTRIES} entries")
        ring.entries.append(entry)
    save_keyring(path, ring)
    return ring


def remove_entry(path: str | os.PathLike[str], name: str) -> Keyring:
    ring = load_keyring(path)
    ring.get(name)
    ring.entries = [e for e in ring.entries if e.name != name]
    save_keyring(path, ring)
    return ring
