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

from .errors import ConfigError

_REGISTRY: dict[str, type[SchemeConfig]] = {}

# Version 2: selfhash is the paper's self-salted min-hash (the candidate's own term included).
# A config without a version that carries a key fingerprint was written by wm before that.
CONFIG_VERSION = 2


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
        if self.names and self.scheme not in self.names:
            raise ConfigError(f"config class {type(self).__name__} does not serve scheme {self.scheme!r}")
        if self.version != CONFIG_VERSION:
            self.check_version()
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ConfigError("vocab_size must be at least 2")
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
    if "version" not in data and data.get("key_fingerprint"):
        data = {**data, "version": 1}  # written by wm before configs carried a version
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"bad config for scheme {name!r}: {exc}") from None


def load_config_file(path: str | Path) -> SchemeConfig:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError, IsADirectoryError) as exc:
        raise ConfigError(f"config file {p} is not valid JSON ({type(exc).__name__})") from None
    return config_from_dict(data)


def save_config_file(config: SchemeConfig, path: str | Path) -> None:
    Path(path).write_text(config.to_json() + "\n", encoding="utf-8")
