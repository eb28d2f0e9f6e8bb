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

from wm_toolkit.watermark.errors import WmError

from .lazy import LazyGroup, import_command
from .terminal import visible


def _error(message: str) -> None:
    """The one line a failed command prints: control characters escaped, never two lines."""
    click.echo(f"error: {visible(message, one_line=True)}", err=True)


def _usage_error(exc: click.UsageError) -> None:
    command = exc.ctx.command_path if exc.ctx is not None else "wm"
    _error(f"{command}: {exc.format_message()} (see '{command} --help')")


# name -> (module, attribute, the one line `wm --help` shows). Commands are imported only when
# used, so `wm --help` and `wm --version` do not pay for torch and transformers; a test checks
# these lines equal each command's own short help.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "attack": (".attack", "attack", "Attack watermarked texts: random edits, word edits, neighbours, paraphrase, dilution, unicode."),
    "bench": (".bench", "bench_command", "Benchmark schemes side by side: MarkMyWords size, tamper resistance, quality, distinguishability."),
    "calibrate": (".calibrate", "calibrate_command", "Measure this key's null on unwatermarked FILES (JSONL with `text`, or plain text)."),
    "detect": (".detect", "detect", "Test FILES (plain text, `wm generate` JSONL, or - for stdin) for the watermark."),
    "eval": (".evaluate", "eval_command", "Evaluate a watermark: TPR at fixed FPR, AUROC and perplexity under each attack."),
    "generate": (".generate", "generate", "Generate text for PROMPT (or every prompt in --prompt-file) with a watermark."),
    "keygen": (".keygen", "keygen", "Write 32 random bytes (hex) to a new key file with mode 0600 (or a transformers key)."),
    "keyring": (".keyring", "keyring", "Keep a keyring: many keys and configs for `wm detect --keyring` and `wm serve --keyring`."),
    "serve": (".serve", "serve", "Serve detection over HTTP: POST /v1/detect, GET /healthz, and a page at /."),
    "steal": (".steal", "steal", "Steal a green list from texts labelled watermarked and natural."),
    "uncertainty": (".uncertainty", "uncertainty", "How sure is the model of its answer? SAR and baselines; `eval` measures them on a QA set."),
    "vllm-config": (".vllm", "vllm_config", "Write vLLM's --watermark-config for a key (0600 file; it holds the key)."),
}  # fmt: skip


def load_command(name: str) -> click.Command:
    """Import one command's module (the only place the CLI pays for its dependencies)."""
    module_name, attr, _ = COMMANDS[name]
    return import_command(module_name, attr)


class WmGroup(LazyGroup):
    lazy = {name: (module_name, attr) for name, (module_name, attr, _) in COMMANDS.items()}
    early = {"detect": (".precheck", "detect_precheck")}  # bad input answered before torch loads

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from COMMANDS' one-liners: listing does not import the commands."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                placeholder = click.Command(name, help=COMMANDS[name][2])  # not imported yet
                rows.append((name, placeholder.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
    from wm_toolkit.watermark.modeling import offline

    offline.allow_download(allow_download, process_wide=True)


def main() -> None:
    try:
        wm.main(prog_name="wm")
    except KeyboardInterrupt:
        _error("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
