"""`wm keygen`: write a fresh secret key file (mode 0600); print only its fingerprint."""

from __future__ import annotations

import click

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.hfkeys import (
    HashingKey,
    load_any_key_file,
    parse_int,
    parse_synthid_keys,
    random_hashing_key,
    random_synthid_keys,
    write_hf_key_file,
)
from wm_toolkit.watermark.keying.keys import default_key_path, write_key_file
from wm_toolkit.watermark.keying.vllmkey import VllmKey, random_vllm_key, write_vllm_key_file

from .common import err_console


@click.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Key file to write (default: the default key path).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@click.option(
    "--hf-hashing-key",
    default=None,
    metavar="INT|random",
    help="Write transformers' KGW hashing_key (for --scheme hf-kgw) instead of a wm key.",
)
@click.option(
    "--synthid-keys",
    default=None,
    metavar="K1,K2,...|random",
    help="Write transformers' SynthID-Text keys (for --scheme hf-synthid); random = 30 random keys.",
)
@click.option("--vllm", "vllm_random", is_flag=True, help="Write a new random vLLM watermark key.")
@click.option("--vllm-key", default=None, metavar="INT", help="Import vLLM's integer watermark key.")
def keygen(
    output: str | None,
    force: bool,
    hf_hashing_key: str | None,
    synthid_keys: str | None,
    vllm_random: bool = False,
    vllm_key: str | None = None,
) -> None:
    """Write 32 random bytes (hex) to a new key file with mode 0600 (or a transformers key)."""
    path = output or str(default_key_path())
    given = [hf_hashing_key is not None, synthid_keys is not None, vllm_random, vllm_key is not None]
    if sum(given) > 1:
        raise ConfigError("give one of --hf-hashing-key, --synthid-keys, --vllm, --vllm-key")
    if vllm_random or vllm_key is not None:
        new = random_vllm_key() if vllm_random else VllmKey(parse_int(vllm_key, "--vllm-key"))
        write_vllm_key_file(path, new, overwrite=force)
        err_console.print(f"wrote a vLLM watermark key to {path} (fingerprint {new.fingerprint})")
        return
    if hf_hashing_key is not None:
        key = (
            random_hashing_key()
            if hf_hashing_key == "random"
            else HashingKey(parse_int(hf_hashing_key, "--hf-hashing-key"))
        )
    elif synthid_keys is not None:
        key = random_synthid_keys() if synthid_keys == "random" else parse_synthid_keys(synthid_keys)
    else:
        key = write_key_file(path, overwrite=force)
        err_console.print(f"wrote a new key to {path} (fingerprint {key.fingerprint})")
        return
    write_hf_key_file(path, key, overwrite=force)
    err_console.print(f"wrote a transformers key to {path} (fingerprint {key.fingerprint})")


@click.command()
@click.option("--key", "key_path", type=click.Path(dir_okay=False), default=None)
def fingerprint(key_path: str | None) -> None:
    """Print the public fingerprint of a key."""
    click.echo(load_any_key_file(key_path or default_key_path()).fingerprint)
