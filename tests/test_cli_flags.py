"""One spelling per idea across commands; the old spellings still parse, hidden from --help."""

from __future__ import annotations

import click
import pytest

from wm_toolkit.cli.common import AliasedOption
from wm_toolkit.cli.main import COMMANDS, load_command

# idea -> (the spelling every command shows, spellings that must not be shown anywhere)
SPELLINGS = {
    "how many inputs": ("--limit", ("--n",)),
    "output": ("--output", ("--output-dir",)),
    "no plots": ("--no-plots", ("--no-plot",)),
}


def _leaf_commands():
    def walk(cmd: click.Command, path: str):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, cmd

    for name in COMMANDS:
        yield from walk(load_command(name), name)


def _shown_names(cmd: click.Command) -> set[str]:
    ctx = click.Context(cmd)
    names: set[str] = set()
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record:
            names |= {part.strip().split(" ")[0] for part in record[0].split(",")}
    return names


def test_no_command_shows_an_old_spelling():
    for path, cmd in _leaf_commands():
        shown = _shown_names(cmd)
        for _, (_, old) in SPELLINGS.items():
            assert not (shown & set(old)), (path, shown)


@pytest.mark.parametrize(
    ("command", "old", "new", "dest", "value"),
    [
        ("eval", "--n", "--limit", "n", "7"),
        ("eval", "--output-dir", "--output", "output_dir", "somewhere"),
    ],
)
def test_old_spellings_still_parse_to_the_same_value(command, old, new, dest, value):
    cmd = load_command(command)
    with cmd.make_context(command, [old, value], resilient_parsing=True) as ctx_old:
        old_value = ctx_old.params[dest]
    with cmd.make_context(command, [new, value], resilient_parsing=True) as ctx_new:
        new_value = ctx_new.params[dest]
    assert old_value == new_value == (int(value) if dest == "n" else value)


def test_uncertainty_eval_takes_both_plot_flags():
    cmd = load_command("uncertainty").commands["eval"]
    for flag in ("--no-plots", "--no-plot"):
        with cmd.make_context("eval", ["qa.jsonl", flag], resilient_parsing=True) as ctx:
            assert ctx.params["no_plot"] is True


def test_an_alias_must_be_one_of_the_option_names():
    with pytest.raises(TypeError, match="not names"):
        AliasedOption(["--limit", "n"], hidden_aliases=("--count",))


def test_every_command_that_writes_a_file_takes_force():
    """An existing output file is replaced only with --force, so every file-writing command has it."""
    for path, cmd in _leaf_commands():
        names = {o for p in cmd.params for o in getattr(p, "opts", [])}
        writes_file = any(
            "--output" in p.opts and isinstance(p.type, click.Path) and not p.type.dir_okay
            for p in cmd.params
            if isinstance(p, click.Option)
        )
        if writes_file:
            assert "--force" in names, path
