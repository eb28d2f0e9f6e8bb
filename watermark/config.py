"""Scheme configurations: frozen dataclasses with validation and a JSON round-trip.

A config holds every public parameter of a scheme plus the key's fingerprint (never the key),
so a config written at generation time is all `wm detect` needs besides the key file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .errors import ConfigError, InputError
from .runtime.atomic import write_text
from .text.textio import read_bytes

_REGISTRY: dict[str, type[SchemeConfig]] = {}

# Version 2: selfhash is the paper's self-salted min-hash (the candidate's own term included).
# Version 3: exp-edit / its-edit align with a free end by default (`edit_free_end`; older configs
# keep the paper's square window they were written with).
# Version 4: its-edit scores with the forward statistic by default (`edit_statistic`; older configs
# keep the minimum-cost alignment).
# A config without a version that carries a key fingerprint was written by wm before that.
CONFIG_VERSION = 4

# bounds shared by every scheme; each keeps the memory a config can ask for bounded
MAX_VOCAB_SIZE = 2**24
MAX_NAME_CHARS = 4096  # a tokenizer name or path
MAX_INT = 2**63 - 1  # ints beyond int64 (e.g. a 5,000-digit JSON number) are refused before any bound


def register_config(*names: str):
    """Class decorator: make a config class loadable by its scheme names."""

    def wrap(cls: type[SchemeConfig]) -> type[SchemeConfig]:
        for name in names:
            _REGISTRY[name] = cls
        cls.names = tuple(names)
        return cls

    return wrap


def scheme_names() -> list[str]:
    return sorted(_REGISTRY)


@dataclass(frozen=True)
class SchemeConfig:
    """Fields every scheme shares. `scheme` names the algorithm (one class may serve several)."""

    names: ClassVar[tuple[str, ...]] = ()
    # fields that only the detector reads: changing them never changes a generated text
    detection_only: ClassVar[tuple[str, ...]] = ()

    scheme: str
    vocab_size: int | None = None
    tokenizer: str | None = None
    key_fingerprint: str | None = None
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        cls: type = type(self)  # typed `type`: mypy takes a frozen dataclass class for unhashable
        for name, (kind, nullable) in _field_kinds(cls).items():
            value = _checked(name, getattr(self, name), kind, nullable)
            if value is not getattr(self, name):
                object.__setattr__(self, name, value)  # e.g. numpy ints, JSON ints in float fields
        if self.names and self.scheme not in self.names:
            raise ConfigError(f"config class {type(self).__name__} does not serve scheme {self.scheme!r}")
        if self.version != CONFIG_VERSION:
            self.check_version()
        if self.vocab_size is not None:
            check_range("vocab_size", self.vocab_size, 2, MAX_VOCAB_SIZE)
        for name in ("tokenizer", "key_fingerprint"):
            value = getattr(self, name)
            if value is not None and not 0 < len(value) <= MAX_NAME_CHARS:
                raise ConfigError(f"config field {name!r} must be 1 to {MAX_NAME_CHARS} characters long")
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on parameters outside their domain."""

    def check_version(self) -> None:
        """Refuse a config whose meaning changed since its version (override per scheme)."""
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ConfigError(f"config version must be a positive integer, got {self.version!r}")
        if self.version > CONFIG_VERSION:
            raise ConfigError(
                f"config version {self.version} was written by a newer wm (this one reads up to {CONFIG_VERSION})"
            )

    @classmethod
    def for_scheme(cls, scheme: str, **fields: Any) -> SchemeConfig:
        """The default config of one scheme name (override where names imply other defaults)."""
        return cls(scheme=scheme, **fields)

    def replace(self, **changes: Any) -> SchemeConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def generation_dict(self) -> dict[str, Any]:
        """The fields that decide what the watermarked generator emits (caches key on these)."""
        return {k: v for k, v in self.to_dict().items() if k not in self.detection_only and k != "version"}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def check_range(name: str, value: float, lo: float, hi: float) -> None:
    """ConfigError unless lo <= value <= hi (the bounds that keep time and memory bounded)."""
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in [{_num(lo)}, {_num(hi)}], got {_num(value)}")


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


_JSON_TYPE = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}


def _json_type(value: Any) -> str:
    """How a value reads in JSON terms, for error messages (never the value itself when large)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a number"
    return type(value).__name__


@functools.cache
def _field_kinds(cls: type) -> dict[str, tuple[type, bool]]:
    """field -> (bool | int | float | str, whether null is allowed), from the annotations."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[type, bool]] = {}
    for f in dataclasses.fields(cls):
        args = typing.get_args(hints[f.name]) or (hints[f.name],)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1 or kinds[0] not in _JSON_TYPE:
            raise TypeError(f"{cls.__name__}.{f.name}: config fields are bool, int, float or str (or None)")
        out[f.name] = (kinds[0], type(None) in args)
    return out


def _checked(name: str, value: Any, kind: type, nullable: bool) -> Any:
    """The value as a plain Python `kind`, or ConfigError: `1.5` is not an int, `"no"` not a bool."""
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"config field {name!r} must be {_JSON_TYPE[kind]}, got null")
    bad = ConfigError(f"config field {name!r} must be {_JSON_TYPE[kind]}, got {_json_type(value)}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if type(value).__name__ == "bool_":  # numpy.bool_
            return bool(value)
        raise bad
    if isinstance(value, bool):  # bool is an int in Python, never in a config
        raise bad
    if kind is int:
        if not isinstance(value, numbers.Integral):
            raise bad
        if not -MAX_INT <= int(value) <= MAX_INT:
            raise ConfigError(f"config field {name!r} is out of range (beyond 64-bit integers)")
        return int(value)
    if kind is float:
        if not isinstance(value, numbers.Real):
            raise bad
        if isinstance(value, numbers.Integral) and not -MAX_INT <= int(value) <= MAX_INT:
            raise ConfigError(f"config field {name!r} is out of range")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config field {name!r} must be a finite number, got {value}")
        return value
    # str
    if not isinstance(value, str):
        raise bad
    if len(value) > MAX_NAME_CHARS:
        raise ConfigError(f"config field {name!r} is too long ({len(value)} characters)")
    if any(ord(c) < 32 or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise ConfigError(f"config field {name!r} holds control characters or lone surrogates")
    return value


def config_class(name: str) -> type[SchemeConfig]:
    if not isinstance(name, str):
        raise ConfigError(f"the config's 'scheme' must be a string, got {_json_type(name)}")
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown scheme {name!r}; known: {', '.join(scheme_names())}")
    return cls


def default_config(name: str, **fields: Any) -> SchemeConfig:
    """The default configuration of a scheme, with some fields set."""
    return config_class(name).for_scheme(name, **fields)


def config_from_dict(data: object) -> SchemeConfig:
    """Build the right config class from a dict (as stored in JSON); unknown fields are errors, and
    so is anything but a JSON object (`data` is often read from a file, unchecked)."""
    if not isinstance(data, dict) or "scheme" not in data:
        raise ConfigError("a scheme config must be a JSON object with a 'scheme' field")
    name = data["scheme"]
    cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields, key=str)
    if unknown:
        shown = ", ".join(repr(str(u))[:40] for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ConfigError(f"unknown field(s) for scheme {name!r}: {shown}")
    if "version" not in data and data.get("key_fingerprint"):
        data = {**data, "version": 1}  # written by wm before configs carried a version
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad config for scheme {name!r}: {exc}") from None


MAX_CONFIG_BYTES = 1 << 20


def read_config_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value in a config file, read with a size cap whatever the file is (a FIFO or
    /dev/zero is refused, not read without bound); every failure is a ConfigError."""
    p = Path(path)
    try:
        raw = read_bytes(str(p), limit=MAX_CONFIG_BYTES)
    except InputError as exc:
        raise ConfigError(f"config file {exc}") from None
    try:
        return json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"config file {p} is not valid JSON ({type(exc).__name__})") from None


def load_config_file(path: str | Path) -> SchemeConfig:
    return config_from_dict(read_config_json(path))


def save_config_file(config: SchemeConfig, path: str | Path) -> None:
    """Write the config (no key) atomically: a failed write leaves any old file as it was."""
    write_text(path, config.to_json() + "\n")
