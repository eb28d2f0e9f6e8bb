"""vLLM's native watermarks on the command line: `--vllm-config` for detection, `wm vllm-config`.

vLLM takes its watermark secret only inside `--watermark-config` (`WatermarkConfig.key`, no
default, no file or environment variable), so the config an operator gives vLLM holds the key.
`wm vllm-config` therefore writes it only into a new 0600 file (JSON for `--watermark-config`,
or YAML for `vllm serve MODEL --config FILE.yaml`, which keeps it out of the process list), and
prints it to stdout only when asked (`--stdout`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from wm_toolkit.watermark.config import config_from_dict
from wm_toolkit.watermark.errors import ConfigError, InputError
from wm_toolkit.watermark.keying.keys import write_private_file
from wm_toolkit.watermark.keying.vllmkey import as_vllm_key
from wm_toolkit.watermark.schemes.vllm_gumbel import ALGORITHMS, from_vllm_dict, to_vllm_dict
from wm_toolkit.watermark.text.textio import read_bytes

from .common import SCHEME_FLAGS, check_outputs, err_console, force_option, key_option, load_key

MAX_VLLM_CONFIG_BYTES = 1 << 16


def vllm_options(func: Callable) -> Callable:
    """--vllm-config: vLLM's own `--watermark-config` JSON (scheme and parameters; its key, if
    it carries one, is used but never stored)."""
    return click.option(
        "--vllm-config",
        type=click.Path(dir_okay=False),
        default=None,
        help="vLLM's --watermark-config JSON (algorithm, context width, de-duplication, alpha); "
        "keep its key in a key file (--key).",
    )(func)


def read_vllm_config(path: str) -> tuple[dict[str, Any], Any]:
    """(wm config fields, key or None) from a vLLM watermark config file (capped read)."""
    raw = read_bytes(path, limit=MAX_VLLM_CONFIG_BYTES)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path} is not a JSON vLLM watermark config") from None
    return from_vllm_dict(obj)


def pop_vllm_options(
    kwargs: dict[str, Any], scheme: str | None, flags: dict[str, Any], key_path: str | None
) -> tuple[str | None, dict[str, Any], Any]:
    """Remove --vllm-config from kwargs; return (scheme, flags with the file's fields under
    explicit flags, the file's key or None). A key in the file is accepted with a warning."""
    path = kwargs.pop("vllm_config", None)
    if not path:
        return scheme, flags, None
    fields, secret = read_vllm_config(path)
    if scheme and scheme != fields["scheme"]:
        raise ConfigError(f"{path} is a vLLM config for {fields['scheme']!r}, not {scheme!r}")
    derived = {f: fields[c] for f, c in SCHEME_FLAGS.items() if c in fields}  # null history: whole scope
    if secret is not None:
        err_console.print(
            f"warning: {path} holds the watermark key: move it into a key file with mode 0600 "
            "(`wm keygen --vllm-key N -o FILE`), give --key FILE, and remove it from the JSON",
            markup=False,
            highlight=False,
        )
        if key_path:
            if as_vllm_key(load_key(key_path)) != secret:
                raise ConfigError(f"{path} and --key {key_path} hold different keys; give the key once")
            secret = None
    return fields["scheme"], {**derived, **flags}, secret


@click.command("vllm-config")
@key_option
@click.option("--algorithm", type=click.Choice(sorted(ALGORITHMS)), default="gumbel", show_default=True)
@click.option("--alpha", type=float, default=0.1, show_default=True, help="dual_key_gumbel: P(key B).")
@click.option("--context-width", type=int, default=4, show_default=True)
@click.option(
    "--deduplicate-contexts", type=click.Choice(["none", "single_turn", "all"]), default="single_turn"
)
@click.option("--max-history", type=int, default=8192, show_default=True, help="0: the whole scope.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="New 0600 file (.json or .yaml)."
)
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the config (it holds the key) to stdout.")
@force_option
def vllm_config(
    key_path, algorithm, alpha, context_width, deduplicate_contexts, max_history, output, to_stdout
):
    """Write vLLM's --watermark-config for a key (0600 file; it holds the key)."""
    if bool(output) == bool(to_stdout):
        raise click.UsageError("give -o FILE (written with mode 0600) or --stdout, one of them")
    check_outputs([output], [], key_path)
    fields = {
        "scheme": ALGORITHMS[algorithm],
        "dual_alpha": alpha,
        "context_width": context_width,
        "deduplicate_contexts": deduplicate_contexts,
        "deduplicate_contexts_max_history": max_history or None,
    }
    key = as_vllm_key(load_key(key_path))
    config = config_from_dict(fields)
    text = json.dumps(to_vllm_dict(config, key))
    if to_stdout:
        click.echo(text)
        return
    yaml = output.lower().endswith((".yaml", ".yml"))
    body = f"watermark-config: {text}\n" if yaml else text + "\n"  # JSON is a YAML flow mapping
    write_private_file(
        output, body.encode(), overwrite=click.get_current_context().meta.get("wm_force", False)
    )
    use = (
        f"vllm serve MODEL --config {output}"
        if yaml
        else "LLM(..., watermark_config=json.load(open(FILE))) in Python, or write a .yaml for `vllm serve --config`"
        " (a --watermark-config argument shows the key in the process list)"
    )
    err_console.print(
        f"wrote vLLM's watermark config to {output} (mode 0600, key fingerprint {key.fingerprint}); use: {use}",
        markup=False,
        highlight=False,
    )
