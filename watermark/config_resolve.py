"""The one way every command turns its config sources into a scheme config.

Sources, earliest first: the config a record carries (`wm generate` JSONL), a `--config` file, then
the scheme flags. A later source overrides an earlier one field by field. Where two sources give a
field different values, the later value is used and the disagreement is returned as a
`ConfigConflict` (commands print it as a warning and put it in their JSON), never silently.

Switching scheme (say the record is `exp` and `--scheme exp-edit`) keeps the earlier fields the new
scheme also has, where they were set away from the old scheme's default (a non-default key_length
carries over, kgw's default h = 1 does not become unigram's h). Unset (null) fields never override.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import SchemeConfig, config_class, config_from_dict, default_config, read_config_json
from .errors import ConfigError


@dataclass(frozen=True)
class ConfigSource:
    """One source of config fields. `label` names it in messages ("the record's config",
    "--config cfg.json"); `names` spells single fields the way the user gave them ("--gamma")."""

    label: str
    fields: Mapping[str, Any]
    names: Mapping[str, str] = field(default_factory=dict)

    def name_of(self, field_name: str) -> str:
        return self.names.get(field_name, self.label)

    @classmethod
    def complete(cls, data: Any, label: str, where: str | None = None) -> ConfigSource:
        """A whole config (a record's, a file's): checked on its own; errors name `where` (e.g.
        the record's file and line), else the label."""
        from . import schemes  # noqa: F401 - each scheme module registers its config when imported

        try:
            config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{where or label}: {exc}") from None
        return cls(label, dict(data))

    @classmethod
    def from_file(cls, path: str | Path) -> ConfigSource:
        """A `--config` file; only the fields written in it count as given."""
        p = Path(path)
        data = read_config_json(p)
        return cls.complete(data, f"--config {p}")


@dataclass(frozen=True)
class ConfigConflict:
    """Two sources disagree on one field; `used` (from `used_from`) won over `overridden`."""

    field: str
    overridden: Any
    overridden_from: str
    used: Any
    used_from: str

    def message(self) -> str:
        return (
            f"config conflict: {self.field} is {_short(self.overridden)} in {self.overridden_from} "
            f"but {_short(self.used)} in {self.used_from}; using {_short(self.used)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "used": self.used,
            "used_from": self.used_from,
            "overridden": self.overridden,
            "overridden_from": self.overridden_from,
        }


@dataclass(frozen=True)
class ResolvedConfig:
    config: SchemeConfig
    conflicts: tuple[ConfigConflict, ...] = ()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _carry(values: dict[str, tuple[Any, ConfigSource]], old: str, new: str) -> dict:
    """The given fields that survive a switch from scheme `old` to `new`."""
    old_default = default_config(old).to_dict()
    new_fields = set(config_class(new).__dataclass_fields__)
    return {
        k: (v, src)
        for k, (v, src) in values.items()
        if k in new_fields and (k not in old_default or v != old_default[k])
    }


def resolve_config(*sources: ConfigSource | None, default_scheme: str = "kgw") -> ResolvedConfig:
    """Merge the sources (earliest first; None entries are skipped) into one validated config."""
    scheme: str | None = None
    scheme_from: ConfigSource | None = None
    values: dict[str, tuple[Any, ConfigSource]] = {}
    conflicts: list[ConfigConflict] = []
    for src in sources:
        if src is None:
            continue
        given = {k: v for k, v in src.fields.items() if v is not None}
        new_scheme = given.pop("scheme", None)
        if new_scheme is not None:
            config_class(new_scheme)  # a known scheme name, or ConfigError
            if scheme is not None and scheme_from is not None and new_scheme != scheme:  # set together
                conflicts.append(
                    ConfigConflict(
                        "scheme", scheme, scheme_from.name_of("scheme"), new_scheme, src.name_of("scheme")
                    )
                )
                values = _carry(values, scheme, new_scheme)
            scheme, scheme_from = new_scheme, src
        for k, v in given.items():
            if k in values and values[k][0] != v:
                old, old_src = values[k]
                conflicts.append(ConfigConflict(k, old, old_src.name_of(k), v, src.name_of(k)))
            values[k] = (v, src)
    scheme = scheme or default_scheme
    known = set(config_class(scheme).__dataclass_fields__)
    for k, (_, src) in values.items():
        if k not in known:
            raise ConfigError(f"{src.name_of(k)} does not apply to scheme {scheme!r}")
    config = default_config(scheme, **{k: v for k, (v, _) in values.items()})
    return ResolvedConfig(config, tuple(conflicts))


def resolve_record(
    record_config: Mapping[str, Any] | None,
    where: str | None,
    *sources: ConfigSource | None,
    default_scheme: str = "kgw",
    warned: set[str] | None = None,
    warn: Callable[[str], None] | None = None,
) -> ResolvedConfig:
    """One record's config (a `wm generate` record's `config`, named by its place `where`,
    file:line, in errors) resolved before `sources`; each distinct conflict message is passed to
    `warn` once per `warned` set, which the caller keeps for its whole run."""
    record = (
        ConfigSource.complete(record_config, "the record's config", f"{where} config" if where else None)
        if record_config
        else None
    )
    resolved = resolve_config(record, *sources, default_scheme=default_scheme)
    if warn is not None:
        for conflict in resolved.conflicts:
            message = conflict.message()
            if warned is None or message not in warned:
                if warned is not None:
                    warned.add(message)
                warn(message)
    return resolved


def refuse_other_scheme(
    record_config: Mapping[str, Any] | None, where: str | None, file: ConfigSource | None
) -> None:
    """A --config for another scheme than the record's own config is an error, not a warning:
    scoring a kgw text under exp answers "not watermarked" with exit 0, which a script reads as a
    verdict. Commands skip this check when the user asks for the switch (--override-config)."""
    if not record_config or file is None:
        return
    own, given = record_config.get("scheme"), file.fields.get("scheme")
    if isinstance(own, str) and isinstance(given, str) and own != given:
        raise ConfigError(
            f"{where or 'a record'}: the record's config is for scheme {own!r} but {file.label} is "
            f"for scheme {given!r}; pass --override-config to score it under {given!r} anyway"
        )


def bind_tokenizer(config: SchemeConfig, vocab_size: int, tokenizer_name: str) -> SchemeConfig:
    """The config with the tokenizer's vocabulary size (an error when the config was made for
    another size) and, where the config names none, the tokenizer's name."""
    if config.vocab_size is not None and config.vocab_size != vocab_size:
        raise ConfigError(
            f"tokenizer {tokenizer_name!r} has {vocab_size} tokens but the config was made for "
            f"{config.vocab_size}: pass --model with the generating model's tokenizer"
        )
    return config.replace(vocab_size=vocab_size, tokenizer=config.tokenizer or tokenizer_name)
