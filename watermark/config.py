"""Scheme configurations: frozen dataclasses with validation and a JSON round-trip.

A config holds every public parameter of a scheme plus the key's fingerprint (never the key),
so a config written at generation time is all `wm detect` needs besides the key file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .atomic import write_text
from .errors import ConfigError, InputError
from .textio import read_bytes

_REGISTRY: dict[str, type[SchemeConfig]] = {}


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

    def __post_init__(self) -> None:
        if self.names and self.scheme not in self.names:
            raise ConfigError(f"config class {type(self).__name__} does not serve scheme {self.scheme!r}")
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ConfigError("vocab_size must be at least 2")
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError on parameters outside their domain."""

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
        return {k: v for k, v in self.to_dict().items() if k not in self.detection_only}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def config_class(name: str) -> type[SchemeConfig]:
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown scheme {name!r}; known: {', '.join(scheme_names())}")
    return cls


def default_config(name: str, **fields: Any) -> SchemeConfig:
    """The default configuration of a scheme, with some fields set."""
    return config_class(name).for_scheme(name, **fields)


def config_from_dict(data: dict[str, Any]) -> SchemeConfig:
    """Build the right config class from a dict (as stored in JSON); unknown fields are errors."""
    if not isinstance(data, dict) or "scheme" not in data:
        raise ConfigError("a scheme config must be a JSON object with a 'scheme' field")
    name = data["scheme"]
    cls = config_class(name)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"unknown field(s) for scheme {name!r}: {', '.join(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad config for scheme {name!r}: {exc}") from None


MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | Path) -> SchemeConfig:
    """A config written by --config-out; read with a size cap (a FIFO or /dev/zero is refused)."""
    p = Path(path)
    try:
        raw = read_bytes(str(p), limit=MAX_CONFIG_BYTES)
    except InputError as exc:
        raise ConfigError(f"config file {exc}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ConfigError(f"config file {p} is not valid JSON ({type(exc).__name__})") from None
    return config_from_dict(data)


def save_config_file(config: SchemeConfig, path: str | Path) -> None:
    """Write the config (no key) atomically: a failed write leaves any old file as it was."""
    write_text(path, config.to_json() + "\n")
