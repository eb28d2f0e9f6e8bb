"""`wm keygen`: write a fresh secret key file (mode 0600); print only its fingerprint."""

from __future__ import annotations

import click

from watermark.keys import default_key_path, load_key_file, write_key_file

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
def keygen(output: str | None, force: bool) -> None:
    """Write 32 random bytes (hex) to a new key file with mode 0600."""
    path = output or str(default_key_path())
    key = write_key_file(path, overwrite=force)
    err_console.print(f"wrote a new key to {path} (fingerprint {key.fingerprint})")


@click.command()
@click.option("--key", "key_path", type=click.Path(dir_okay=False), default=None)
def fingerprint(key_path: str | None) -> None:
    """Print the public fingerprint of a key."""
    click.echo(load_key_file(key_path or default_key_path()).fingerprint)
