"""A click group whose commands are imported on first use: listing or naming one loads its module,
so start-up pays only for the command that runs."""

from __future__ import annotations

import difflib
import importlib

import click


def import_command(module: str, attr: str) -> click.Command:
    """`attr` of `module`, a module path relative to this package (e.g. ".steal")."""
    return getattr(importlib.import_module(module, __package__), attr)


class LazyGroup(click.Group):
    """Subclasses set `lazy`: command name -> (module relative to `cli`, attribute), and `early`:
    command name -> (module, function of the command's arguments) that answers trivial bad input
    before the command's module (and its model stack) is imported (see cli/precheck.py)."""

    lazy: dict[str, tuple[str, str]] = {}
    early: dict[str, tuple[str, str]] = {}

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name in self.early and name not in self.commands and not ctx.resilient_parsing:
            getattr(importlib.import_module(self.early[name][0], __package__), self.early[name][1])(args[1:])
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            near = self._near(ctx, name)
            if near is None:
                raise
            raise click.UsageError(f"No such command {name!r}. Did you mean {near!r}?", ctx) from None

    def _near(self, ctx: click.Context, name: str) -> str | None:
        """The command a mistyped name most likely meant (`wm dettect` -> detect), as git does."""
        if not name or name.startswith("-") or name in self.list_commands(ctx):
            return None
        close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.6)
        return close[0] if close else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            command = import_command(*self.lazy[cmd_name])
            self.add_command(command, cmd_name)
        return command
