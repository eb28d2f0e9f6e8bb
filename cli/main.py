"""Entry point: the `wm` group, with errors turned into one `error:` line and an exit code.

Exit codes: 0 success (whatever a detector's verdict), 2 bad usage or bad input, 1 internal
error, 130 interrupted. Usage errors (unknown option, missing argument, bad choice) are one
`error:` line too, not click's `Usage:`/`Error:` block; `--help` is unchanged.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback

import click

from watermark import models
from watermark.errors import WmError

from .terminal import visible


def _error(message: str) -> None:
    """The one line a failed command prints: control characters escaped, never two lines."""
    click.echo(f"error: {visible(message, one_line=True)}", err=True)


def _usage_error(exc: click.UsageError) -> None:
    command = exc.ctx.command_path if exc.ctx is not None else "wm"
    _error(f"{command}: {exc.format_message()} (see '{command} --help')")


class WmGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """click's main, with its usage-error block replaced by one `error:` line."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `wm` / `wm attack`: the help
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _usage_error(exc)
            sys.exit(2)
        except click.ClickException as exc:
            _error(exc.format_message())
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt, EOFError):
            _error("interrupted")
            sys.exit(130)
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except WmError as exc:
            _error(str(exc))
            ctx.exit(2)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _error("interrupted")
            ctx.exit(130)
        except BrokenPipeError:  # the reader went away (`wm detect ... | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except MemoryError:
            _error("out of memory")
            ctx.exit(1)
        except Exception as exc:  # an internal bug: one line, the traceback only on request
            if os.environ.get("WM_DEBUG"):
                traceback.print_exc()
            _error(f"internal error: {type(exc).__name__}: {exc} (set WM_DEBUG=1 for details)")
            ctx.exit(1)


@click.group(cls=WmGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="wm-toolkit", prog_name="wm")
@click.option(
    "--allow-download",
    is_flag=True,
    envvar="WM_ALLOW_DOWNLOAD",
    help="Let model/tokenizer names that are not installed, local or cached be downloaded from the "
    "Hugging Face hub (default: offline; also WM_ALLOW_DOWNLOAD=1).",
)
def wm(allow_download: bool) -> None:
    """Watermark LLM text while it is generated, detect it with a p-value, and attack it."""
    models.allow_download(allow_download, process_wide=True)


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
        ("cli.serve", "serve"),
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
        _error("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
