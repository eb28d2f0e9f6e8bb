"""A click group whose commands are imported on first use: listing or naming one loads its module,
so start-up pays only for the command that runs."""

from __future__ import annotations

import importlib

import click


def import_command(module: str, attr: str) -> click.Command:
    """`attr` of `module`, a module path relative to this package (e.g. ".steal")."""
    return getattr(importlib.import_module(module, __package__), attr)


class LazyGroup(click.Group):
    """Subclasses set `lazy`: command name -> (module relative to `cli`, attribute)."""

    lazy: dict[str, tuple[str, str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            command = import_command(*self.lazy[cmd_name])
            self.add_command(command, cmd_name)
        return command
