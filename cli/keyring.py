"""`wm keyring add/list/remove`: the private file of keys and configs `wm detect --keyring` tests."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from wm_toolkit.watermark.runtime.keyring import (
    add_entry,
    load_keyring,
    make_entry,
    parse_labels,
    remove_entry,
)

from .common import console, err_console, json_option, print_json
from .terminal import visible


@click.group()
def keyring() -> None:
    """Keep a keyring: many keys and configs for `wm detect --keyring` and `wm serve --keyring`."""


@keyring.command("add")
@click.argument("ring", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The entry's name (a tenant, a model): what detection reports.")
@click.option(
    "--key", "key_path", required=True, type=click.Path(dir_okay=False), help="Key file (wm or integer key)."
)
@click.option(
    "--config", "config_path", required=True, type=click.Path(dir_okay=False), help="Scheme config file."
)
@click.option(
    "--tokenizer", default=None, help="Tokenizer name or folder (default: the config's, else smollm2-135m)."
)
@click.option(
    "--calibration", type=click.Path(dir_okay=False), default=None, help="Calibration from `wm calibrate`."
)
@click.option(
    "--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label hints can name (e.g. tenant=acme)."
)
@click.option(
    "--inline", is_flag=True, help="Copy the key into the ring (default: store the key file's path)."
)
@click.option("--replace", is_flag=True, help="Replace an entry of the same name.")
def add(ring, name, key_path, config_path, tokenizer, calibration, labels, inline, replace):
    """Add an entry (the ring file is created with mode 0600 if missing)."""
    entry = make_entry(name, key_path, config_path, tokenizer, calibration, inline, parse_labels(labels))
    ring_obj = add_entry(ring, entry, replace)
    info = entry.describe()
    err_console.print(
        f"added {escape(visible(name, one_line=True))} ({info['scheme']}, key {info['key_fingerprint']}): "
        f"{len(ring_obj.entries)} entries",
        highlight=False,
    )


@keyring.command("list")
@click.argument("ring", type=click.Path(dir_okay=False))
@json_option
def list_command(ring, as_json):
    """List the entries: names, schemes, tokenizers and key fingerprints (never keys)."""
    rows = [e.describe() for e in load_keyring(ring).entries]
    if as_json:
        for row in rows:
            print_json(row)
        return
    table = Table(title=f"keyring {escape(visible(ring, one_line=True))}")
    for col in ("name", "scheme", "tokenizer", "key fingerprint", "key", "labels"):
        table.add_column(col, overflow="fold")
    for r in rows:
        labels = ", ".join(f"{k}={v}" for k, v in r.get("labels", {}).items())
        cells = (
            r["name"],
            r["scheme"],
            r["tokenizer"] or "-",
            r["key_fingerprint"],
            r["key_storage"],
            labels,
        )
        table.add_row(*(escape(visible(str(c), one_line=True)) for c in cells))
    console.print(table)


@keyring.command("remove")
@click.argument("ring", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="The entry to remove.")
def remove(ring, name):
    """Remove an entry by name."""
    left = remove_entry(ring, name)
    err_console.print(
        f"removed {escape(visible(name, one_line=True))}: {len(left.entries)} entries left", highlight=False
    )
