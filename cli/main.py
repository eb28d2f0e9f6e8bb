"""Entry point: the `wm` group, with errors turned into one `error:` line and an exit code.

Exit codes: 0 success (whatever a detector's verdict), 2 bad usage or bad input, 1 internal
error, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from watermark.errors import WmError


class WmGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except WmError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader went away (`wm detect ... | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except MemoryError:
            click.echo("error: out of memory", err=True)
            ctx.exit(1)
        except Exception as exc:  # an internal bug: one line, the traceback only on request
            if os.environ.get("WM_DEBUG"):
                traceback.print_exc()
            click.echo(
                f"error: internal error: {type(exc).__name__}: {exc} (set WM_DEBUG=1 for details)", err=True
            )
            ctx.exit(1)


@click.group(cls=WmGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="wm-toolkit", prog_name="wm")
def wm() -> None:
    """Watermark LLM text while it is generated, detect it with a p-value, and attack it."""


def _register() -> None:
    from . import detect, generate, keygen

    wm.add_command(keygen.keygen)
    wm.add_command(generate.generate)
    wm.add_command(detect.detect)
    # further commands register here, one line each (attack, eval, steal, uncertainty)
    for module_name, attr in (
        ("cli.attack", "attack"),
        ("cli.evaluate", "eval_command"),
        ("cli.steal", "steal"),
        ("cli.uncertainty", "uncertainty"),
        ("cli.calibrate", "calibrate_command"),
    ):
        try:
            module = __import__(module_name, fromlist=[attr])
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        wm.add_command(getattr(module, attr))


_register()


def main() -> None:
    try:
        wm.main(prog_name="wm")
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
