"""Pieces every command shares: consoles, key and config resolution, scheme flags, progress."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from watermark.config import SchemeConfig, config_class, config_from_dict, default_config, load_config_file
from watermark.errors import ConfigError, KeyFileError
from watermark.keys import Key, default_key_path, load_key_file, write_key_file
from watermark.report import format_p
from watermark.schemes import available_schemes

console = Console()
err_console = Console(stderr=True)

# flag name -> config field; a flag given for a scheme without that field is an error
SCHEME_FLAGS: dict[str, str] = {
    "gamma": "gamma",
    "delta": "delta",
    "context_width": "context_width",
    "key_length": "key_length",
    "block_length": "block_length",
    "edit_gamma": "edit_gamma",
    "resamples": "resamples",
    "count_repeats": "count_repeats",
    "seeding": "seeding",
}


def scheme_options(func: Callable) -> Callable:
    """--scheme, --config and every scheme parameter, all optional (None = not given)."""
    opts = [
        click.option(
            "--scheme",
            type=click.Choice(available_schemes()),
            default=None,
            help="Watermark scheme (default kgw).",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            default=None,
            help="Scheme config JSON (from --config-out).",
        ),
        click.option(
            "--gamma", type=float, default=None, help="Green-list fraction (kgw/unigram, default 0.25)."
        ),
        click.option(
            "--delta", type=float, default=None, help="Green logit bias (kgw/unigram, default 2.0)."
        ),
        click.option(
            "--context-width",
            type=int,
            default=None,
            help="Context width h (kgw default 1, selfhash 4 counting the token itself, unigram 0, gumbel 4).",
        ),
        click.option(
            "--key-length", type=int, default=None, help="Key sequence length n (exp/its, default 256)."
        ),
        click.option(
            "--block-length",
            type=int,
            default=None,
            help="Block length k for EXP/ITS detection (default: whole text).",
        ),
        click.option(
            "--edit-gamma",
            type=float,
            default=None,
            help="Levenshtein gap cost (exp-edit 0.0, its-edit 0.4).",
        ),
        click.option(
            "--resamples", type=int, default=None, help="Permutation-test resamples T (default 999)."
        ),
        click.option(
            "--seeding",
            type=click.Choice(["lefthash", "selfhash"]),
            default=None,
            help="Green-list seeding (kgw; selfhash defaults to the paper's --context-width 4: 3 previous ids + the token).",
        ),
        click.option(
            "--count-repeats",
            is_flag=True,
            default=None,
            help="Score repeated (context, token) pairs too (not exact).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def pop_scheme_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove scheme flags from a command's kwargs; keep the ones the user gave."""
    flags = {name: kwargs.pop(name) for name in list(SCHEME_FLAGS) if name in kwargs}
    return {k: v for k, v in flags.items() if v is not None}


def resolve_config(
    scheme: str | None,
    config_path: str | None,
    flags: dict[str, Any],
    record_config: dict[str, Any] | None = None,
) -> SchemeConfig:
    """The config to use: --config, else the record's config, else the scheme's defaults; then flags.

    A --config file for another scheme than --scheme is an error; a record's stored config is
    replaced when --scheme names another scheme.
    """
    if config_path:
        base = load_config_file(config_path)
        if scheme and scheme != base.scheme:
            raise ConfigError(f"{config_path} is a config for scheme {base.scheme!r}, not {scheme!r}")
    elif record_config and (scheme is None or record_config.get("scheme") == scheme):
        base = config_from_dict(dict(record_config))
    elif record_config:
        base = carry_over(config_from_dict(dict(record_config)), scheme)
    else:
        base = default_config(scheme or "kgw")
    fields = set(config_class(base.scheme).__dataclass_fields__)
    changes = {}
    for flag, value in flags.items():
        field = SCHEME_FLAGS[flag]
        if field not in fields:
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to scheme {base.scheme!r}")
        changes[field] = value
    return base.replace(**changes) if changes else base


def carry_over(source: SchemeConfig, scheme: str) -> SchemeConfig:
    """The default config of `scheme`, keeping every field the source set away from its own
    scheme's default (e.g. exp -> exp-edit keeps a non-default key_length)."""
    source_default = default_config(source.scheme).to_dict()
    target = default_config(scheme)
    shared = set(target.to_dict()) - {"scheme"}
    kept = {k: v for k, v in source.to_dict().items() if k in shared and v != source_default.get(k)}
    return target.replace(**kept) if kept else target


def key_option(func: Callable) -> Callable:
    return click.option(
        "--key",
        "key_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Key file (default $WM_KEY_FILE, else ~/.config/wm/key).",
    )(func)


def load_key(key_path: str | None, create_default: bool = False) -> Key:
    """Load --key or the default key; optionally create the default key when it is missing."""
    if key_path:
        return load_key_file(key_path)
    path = default_key_path()
    if not path.exists():
        if create_default:
            key = write_key_file(path)
            err_console.print(f"created a new key at {path} (fingerprint {key.fingerprint})")
            return key
        raise KeyFileError(f"no key: pass --key FILE or set WM_KEY_FILE (default {path} does not exist)")
    return load_key_file(path)


def model_option(
    help_text: str = "Model name, Hugging Face id or local folder (default smollm2-135m).",
) -> Callable:
    return click.option("--model", default=None, help=help_text)


def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(func)


def print_json(obj: Any) -> None:
    """One JSON object per line on stdout (no rich markup)."""
    sys.stdout.write(json.dumps(obj, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def progress(transient: bool = True) -> Progress:
    """A progress bar on stderr, so stdout stays clean for --json and pipes."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=not err_console.is_terminal,
    )


def with_status(message: str) -> Callable:
    """Decorator-free helper: `with status("Loading model")` shows a spinner on stderr."""
    return err_console.status(message) if err_console.is_terminal else _NullContext()


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def fmt_p(p: float | None, log10_p: float | None = None) -> str:
    """A p-value for people (never shown as 0): `watermark.report.format_p`."""
    return format_p(p, log10_p)


def cached(func: Callable) -> Callable:
    return functools.lru_cache(maxsize=8)(func)
