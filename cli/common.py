"""Pieces every command shares: consoles, key and config resolution, scheme flags, progress."""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
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

from wm_toolkit.watermark.config import SchemeConfig
from wm_toolkit.watermark.config_resolve import ConfigSource, refuse_other_scheme, resolve_record
from wm_toolkit.watermark.errors import ConfigError, InputError, KeyFileError, OutputError
from wm_toolkit.watermark.keying.hfkeys import (
    AnyKey,
    HashingKey,
    load_any_key_file,
    parse_int,
    parse_synthid_keys,
)
from wm_toolkit.watermark.keying.keys import default_key_path, write_key_file
from wm_toolkit.watermark.modeling.interop import read_transformers_config
from wm_toolkit.watermark.modeling.models import model_vocab_size
from wm_toolkit.watermark.runtime.atomic import check_output
from wm_toolkit.watermark.runtime.report import format_p
from wm_toolkit.watermark.schemes import available_schemes
from wm_toolkit.watermark.text.textio import read_prompts

console = Console()
err_console = Console(stderr=True)

# seeds: non-negative (numpy's generators refuse negative ones) and small enough that seed + offset
# still fits torch's signed 64-bit seed
SEED_RANGE = click.IntRange(0, 2**62)

# flag name -> config field; a flag given for a scheme without that field is an error
SCHEME_FLAGS: dict[str, str] = {
    "gamma": "gamma",
    "delta": "delta",
    "context_width": "context_width",
    "key_length": "key_length",
    "block_length": "block_length",
    "edit_gamma": "edit_gamma",
    "edit_free_end": "edit_free_end",
    "edit_statistic": "edit_statistic",
    "edit_insert_rate": "edit_insert_rate",
    "edit_skip_rate": "edit_skip_rate",
    "resamples": "resamples",
    "max_resamples": "max_resamples",
    "count_repeats": "count_repeats",
    "seeding": "seeding",
    # synthid / hf-synthid / hf-kgw (transformers' names where transformers has one)
    "ngram_len": "ngram_len",
    "num_layers": "num_layers",
    "synthid_score": "score",
    "synthid_candidates": "num_candidates",
    "synthid_distortionary": "distortionary",
    "context_history_size": "context_history_size",
    "sampling_table_seed": "sampling_table_seed",
    "sampling_table_size": "sampling_table_size",
    "skip_first_ngram_calls": "skip_first_ngram_calls",
    "model_vocab_size": "model_vocab_size",
    # vllm-gumbel / vllm-dual-key-gumbel (set through --vllm-config: cli/vllm.py)
    "deduplicate_contexts": "deduplicate_contexts",
    "deduplicate_contexts_max_history": "deduplicate_contexts_max_history",
    "dual_alpha": "dual_alpha",
    "dual_statistic": "dual_statistic",
    # mpac (the payload itself is `wm generate --payload`)
    "payload": "payload",
    "payload_bits": "payload_bits",
}


def scheme_options(func: Callable) -> Callable:
    """--scheme, --config and every scheme parameter, all optional (None = not given)."""
    opts = [
        *_config_source_options(),
        *_green_list_options(),
        *_key_sequence_options(),
        *_seeding_options(),
        *_synthid_options(),
        *_transformers_options(),
        *_payload_options(),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _config_source_options() -> list[Callable]:
    """Which scheme: by name, or a saved config."""
    return [
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
    ]


def _green_list_options() -> list[Callable]:
    """The green list of kgw/unigram (and its context width, shared with gumbel)."""
    return [
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
    ]


def _key_sequence_options() -> list[Callable]:
    """The key sequence of exp/its: its length, blocks, the edit alignment and the permutation test."""
    return [
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
            "--edit-free-end/--edit-square-window",
            default=None,
            help="exp-edit/its-edit: key rows after the last matched one are free (default), or the paper's square window.",
        ),
        click.option(
            "--edit-statistic",
            type=click.Choice(["forward", "min"]),
            default=None,
            help="its-edit: sum the likelihood ratio over alignments (forward, the default) or take the "
            "paper's minimum-cost alignment (min).",
        ),
        click.option(
            "--edit-insert-rate",
            type=float,
            default=None,
            help="its-edit forward statistic: weight of an inserted token (default 0.2).",
        ),
        click.option(
            "--edit-skip-rate",
            type=float,
            default=None,
            help="its-edit forward statistic: weight of a skipped key row, a deleted token (default 0.02).",
        ),
        click.option(
            "--resamples",
            type=int,
            default=None,
            help="Permutation-test resamples T (exp/its, default 999; at an --alpha, the least drawn).",
        ),
        click.option(
            "--max-resamples",
            type=int,
            default=None,
            help="Most null keys a permutation test at --alpha may draw (exp/its, default 200000).",
        ),
    ]


def _seeding_options() -> list[Callable]:
    """How kgw seeds its lists and whether repeated items count."""
    return [
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


def _synthid_options() -> list[Callable]:
    """SynthID's tournament and the score that decides."""
    return [
        click.option(
            "--ngram-len", type=int, default=None, help="SynthID n-gram length (context + token, default 5)."
        ),
        click.option(
            "--num-layers", type=int, default=None, help="SynthID tournament layers (synthid, default 30)."
        ),
        click.option(
            "--synthid-score",
            type=click.Choice(["weighted", "mean"]),
            default=None,
            help="SynthID score deciding the verdict (default weighted; both are reported).",
        ),
        click.option(
            "--synthid-candidates",
            type=int,
            default=None,
            help="synthid: candidates K per tournament match (default 2; K > 2 needs --synthid-distortionary).",
        ),
        click.option(
            "--synthid-distortionary",
            is_flag=True,
            default=None,
            help="synthid: the distortionary K-candidate tournament (DeepMind's num_leaves > 2).",
        ),
    ]


def _payload_options() -> list[Callable]:
    """mpac's payload width (`wm generate --payload HEX` sets it from the digits)."""
    return [
        click.option(
            "--payload-bits",
            type=int,
            default=None,
            help="mpac: payload width in bits, 8-64 (default 32; wm generate --payload: 4 per hex digit).",
        ),
    ]


def _transformers_options() -> list[Callable]:
    """What the transformers-compatible schemes (hf-synthid, hf-kgw) need to match transformers."""
    return [
        click.option(
            "--context-history-size",
            type=int,
            default=None,
            help="hf-synthid context FIFO size (default 1024).",
        ),
        click.option(
            "--sampling-table-seed", type=int, default=None, help="hf-synthid table seed (default 0)."
        ),
        click.option(
            "--sampling-table-size", type=int, default=None, help="hf-synthid table size (default 65536)."
        ),
        click.option(
            "--skip-first-ngram-calls",
            is_flag=True,
            default=None,
            help="hf-synthid: leave the first ngram_len - 1 generated tokens unwatermarked.",
        ),
        click.option(
            "--model-vocab-size",
            type=int,
            default=None,
            help="hf-kgw: the model config's vocab_size transformers permutes (default: read from --model).",
        ),
    ]


def pop_scheme_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove scheme flags from a command's kwargs; keep the ones the user gave."""
    flags = {name: kwargs.pop(name) for name in list(SCHEME_FLAGS) if name in kwargs}
    return {k: v for k, v in flags.items() if v is not None}


class ConfigResolver:
    """One command's config sources, resolved per record by `watermark.config_resolve` (the same
    rule for every command): the record's config, then --config, then the scheme flags. Each
    distinct conflict is printed once as a warning on stderr; callers put them in their JSON."""

    def __init__(
        self, scheme: str | None, config_path: str | None, flags: dict[str, Any], default_scheme="kgw"
    ):
        self.file = ConfigSource.from_file(config_path) if config_path else None
        if self.file and scheme and scheme != self.file.fields["scheme"]:
            raise ConfigError(
                f"{config_path} is a config for scheme {self.file.fields['scheme']!r}, not {scheme!r}"
            )
        names = {SCHEME_FLAGS[f]: "--" + f.replace("_", "-") for f in flags}
        fields = {SCHEME_FLAGS[f]: v for f, v in flags.items()}
        if scheme:
            fields["scheme"], names["scheme"] = scheme, "--scheme"
        self.flags = ConfigSource("flags", fields, names) if fields else None
        self.default_scheme = default_scheme
        self.override = override_config_given()
        self._warned: set[str] = set()

    def __call__(self, record_config: dict[str, Any] | None = None, where: str | None = None):
        """`where`: the record's place (file:line), named in errors about its config."""
        if not self.override:
            refuse_other_scheme(record_config, where, self.file)
        return resolve_record(
            record_config,
            where,
            self.file,
            self.flags,
            default_scheme=self.default_scheme,
            warned=self._warned,
            warn=lambda message: err_console.print(f"warning: {message}", markup=False, highlight=False),
        )


def resolve_config(
    scheme: str | None,
    config_path: str | None,
    flags: dict[str, Any],
    record_config: dict[str, Any] | None = None,
) -> SchemeConfig:
    """The config of one record (see `ConfigResolver`); conflicts are warned about on stderr."""
    return ConfigResolver(scheme, config_path, flags)(record_config).config


def conflicts_json(resolved) -> list[dict[str, Any]]:
    return [c.to_dict() for c in resolved.conflicts]


def hf_key_options(func: Callable) -> Callable:
    """Secrets and configs of transformers' watermarks (the key is never printed or stored)."""
    opts = [
        click.option(
            "--hashing-key",
            default=None,
            metavar="INT",
            help="transformers' KGW hashing_key (implies --scheme hf-kgw). Prefer a key file: "
            "`wm keygen --hf-hashing-key N -o F`, then --key F.",
        ),
        click.option(
            "--synthid-keys",
            default=None,
            metavar="K1,K2,...",
            help="transformers' SynthID-Text keys, comma-separated (implies --scheme hf-synthid).",
        ),
        click.option(
            "--hf-config",
            type=click.Path(dir_okay=False),
            default=None,
            help="transformers' watermarking config as JSON (WatermarkingConfig or "
            "SynthIDTextWatermarkingConfig .to_dict()); its key is used, never stored.",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def pop_hf_key_options(
    kwargs: dict[str, Any], scheme: str | None, flags: dict[str, Any]
) -> tuple[str | None, dict[str, Any], Any]:
    """Remove the hf_key_options from kwargs; return (scheme, flags, secret key or None).

    --hf-config gives the scheme, its parameters (explicit flags win) and the key; --hashing-key
    and --synthid-keys give the key and imply their scheme.
    """
    hashing_key = kwargs.pop("hashing_key", None)
    synthid_keys = kwargs.pop("synthid_keys", None)
    hf_config = kwargs.pop("hf_config", None)
    secret = None
    if hf_config:
        cfg, secret = read_transformers_config(hf_config)
        if scheme and scheme != cfg.scheme:
            raise ConfigError(f"{hf_config} is a transformers config for {cfg.scheme!r}, not {scheme!r}")
        scheme = cfg.scheme
        fields = cfg.to_dict()
        derived = {f: fields[c] for f, c in SCHEME_FLAGS.items() if fields.get(c) is not None}
        flags = {**derived, **flags}
    if hashing_key is not None and synthid_keys is not None:
        raise ConfigError("give --hashing-key (hf-kgw) or --synthid-keys (hf-synthid), not both")
    given = None
    if hashing_key is not None:
        given, implied = HashingKey(parse_int(hashing_key, "--hashing-key")), "hf-kgw"
    elif synthid_keys is not None:
        given, implied = parse_synthid_keys(synthid_keys), "hf-synthid"
    if given is not None:
        if secret is not None and secret != given:
            raise ConfigError("the key flag and the --hf-config file hold different keys; give the key once")
        scheme, secret = scheme or implied, given
        if scheme != implied:
            raise ConfigError(
                f"--{'hashing-key' if implied == 'hf-kgw' else 'synthid-keys'} is for scheme {implied!r}"
            )
    return scheme, flags, secret


_cached_model_vocab_size = functools.lru_cache(maxsize=8)(model_vocab_size)


def resolve_key(key_path: str | None, secret: Any, create_default: bool = False) -> AnyKey:
    """The key from a key flag (--hashing-key, --synthid-keys, --hf-config), else --key / the default."""
    if secret is None:
        return load_key(key_path, create_default=create_default)
    if key_path:
        raise ConfigError("give the key once: --key FILE, or --hashing-key / --synthid-keys / --hf-config")
    return secret


def with_model_vocab_size(config: SchemeConfig, model_name: str | None, model: Any = None) -> SchemeConfig:
    """Fill hf-kgw's model_vocab_size (the model config's vocab_size) when the config lacks it."""
    if "model_vocab_size" not in config.to_dict() or config.model_vocab_size is not None:
        return config
    if model is not None:
        size = model.config.get_text_config().vocab_size
    else:
        size = _cached_model_vocab_size(model_name)
    return config.replace(model_vocab_size=int(size))


def key_option(func: Callable) -> Callable:
    return click.option(
        "--key",
        "key_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Key file (default $WM_KEY_FILE, else ~/.config/wm/key).",
    )(func)


def load_key(key_path: str | None, create_default: bool = False) -> AnyKey:
    """Load --key or the default key; optionally create the default key when it is missing."""
    if key_path:
        return load_any_key_file(key_path)
    path = default_key_path()
    if not path.exists():
        if create_default:
            key = write_key_file(path)
            err_console.print(f"created a new key at {path} (fingerprint {key.fingerprint})")
            return key
        raise KeyFileError(f"no key: pass --key FILE or set WM_KEY_FILE (default {path} does not exist)")
    return load_any_key_file(path)


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


class LineProgress:
    """Progress for a stderr that is not a terminal (a log, CI): instead of a bar, one plain line
    per unfinished task every `interval` seconds, so a long run (one huge record included) shows
    it is alive without flooding the log. Implements the part of rich's Progress the commands use."""

    def __init__(self, interval: float | None = None) -> None:
        self.interval = float(os.environ.get("WM_PROGRESS_INTERVAL", "10")) if interval is None else interval
        self._tasks: dict[int, list] = {}  # id -> [description, completed, total]
        self._start = self._last = time.monotonic()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        self._tasks[len(self._tasks)] = [description, 0, total]
        return len(self._tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self._tasks[task][1] += advance
        self._tick()

    def update(self, task: int, *, description=None, completed=None, total=None, advance=None, **_) -> None:
        t = self._tasks[task]
        if description is not None:
            t[0] = description
        if total is not None:
            t[2] = total
        if completed is not None:
            t[1] = completed
        if advance is not None:
            t[1] += advance
        self._tick()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        for description, done, total in self._tasks.values():
            if total is not None and done >= total:
                continue
            of = f"/{total:,.0f} ({100 * done / total:.0f}%)" if total else ""
            err_console.print(
                f"{description}: {done:,.0f}{of}, {now - self._start:.0f} s", markup=False, highlight=False
            )


def progress(transient: bool = True) -> Progress | LineProgress:
    """A progress bar on stderr, so stdout stays clean for --json and pipes; periodic plain lines
    when stderr is not a terminal."""
    if not err_console.is_terminal:
        return LineProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
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


class AliasedOption(click.Option):
    """An option whose old spellings still parse but are not shown in --help.

    One spelling per idea across commands (`--limit`, `-o/--output`, `--no-plots`); the names
    commands used before stay accepted so scripts written against them keep working."""

    def __init__(self, *args: Any, hidden_aliases: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)
        unknown = set(self.hidden_aliases) - set(self.opts)
        if unknown:
            raise TypeError(f"hidden aliases {sorted(unknown)} are not names of this option")

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        saved = self.opts
        self.opts = [o for o in saved if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


def force_option(func: Callable) -> Callable:
    """--force: let this command replace existing output files (read back by `check_outputs`)."""

    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        ctx.meta["wm_force"] = bool(value)
        return value

    return click.option(
        "--force",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Replace output files that already exist.",
    )(func)


def override_config_option(func: Callable) -> Callable:
    """--override-config: score records under a --config for another scheme than their own
    (otherwise exit 2); read back by `ConfigResolver` through `override_config_given`."""

    def remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        ctx.meta["wm_override_config"] = bool(value)
        return value

    return click.option(
        "--override-config",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Use --config even where it is for another scheme than a record's own config "
        "(a warning, not exit 2).",
    )(func)


def override_config_given() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.meta.get("wm_override_config"))


def check_outputs(
    outputs: Iterable[str | None], inputs: Iterable[str | None], key_path: str | None = ""
) -> None:
    """Before any work: every output can be written, is not an input (nor the key), and replaces an
    existing file only with --force. `key_path=None` means the default key is read."""
    ctx = click.get_current_context(silent=True)
    force = bool(ctx and ctx.meta.get("wm_force"))
    guarded = [*inputs]
    if key_path is not None:
        guarded.append(key_path or None)
    else:
        guarded.append(str(default_key_path()))
    seen: list[str] = []
    for out in outputs:
        if not out:
            continue
        for other in seen:
            if os.path.realpath(other) == os.path.realpath(out):
                raise OutputError(f"{out} is given as two outputs; write them to different files")
        check_output(out, guarded, force)
        seen.append(out)


def cycled_prompts(prompt_file: str | None, default: Path, n: int, flag: str) -> tuple[str, list[str]]:
    """(where they came from, the first `n` prompts of `prompt_file`, else of the bundled `default`,
    cycled when the file holds fewer); `flag` is the option the error names (wm eval, wm bench)."""
    source = prompt_file or str(default)
    if prompt_file is None and not default.exists():
        raise InputError(f"no default prompts at {default}: pass {flag}")
    pool = read_prompts(source)
    if not pool:
        raise InputError(f"{source}: no prompts")
    return source, (pool * math.ceil(n / len(pool)))[:n]
