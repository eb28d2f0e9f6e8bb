"""The README's and docs/*.md's code blocks run as written (docs that run).

- ```python blocks run, page by page, as one script per page (in a fresh folder, on the embedded
  default model, with a fixed key, torch seed and EXP key shift so the outcome is deterministic);
  after each block, `det` must be the detection of that block's own output at p < 1e-3.
- ```python-norun blocks (they need a cluster, a server or a download) are compile-checked only.
- every `wm ...` line of a shell block names a real (sub)command, and each flag it passes is in
  that command's `--help` (or its group's, for a group option).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", flags=re.S | re.M)
SHELL = {"", "sh", "bash", "shell", "console"}


def blocks(page: Path, *languages: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text(encoding="utf-8")) if lang in languages]


def python_blocks(page: Path = README) -> list[str]:
    return blocks(page, "python")


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


RUN_PAGES = [p for p in PAGES if python_blocks(p)]
ALL_PYTHON = [(name(p), b) for p in PAGES for b in blocks(p, "python", "python-norun")]


def test_the_readme_has_library_examples():
    assert len(python_blocks()) >= 2


def test_the_readme_is_read_in_five_minutes():
    assert len(README.read_text(encoding="utf-8")) < 12_000


def test_the_readme_links_every_docs_page_that_exists():
    text = README.read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in text, page.name
    for link in re.findall(r"\]\((docs/[\w.-]+\.md)", text):
        assert (ROOT / link).exists() or link == "docs/engines.md", link


def test_the_first_library_snippet_keeps_its_key_and_config():
    """A newcomer copies the first snippet: the text it prints must stay detectable afterwards."""
    first = python_blocks()[0]
    assert "write_key_file(" in first and "save_config_file(" in first and "save_scheme(" in first
    assert any("logits_processor=[" in b and ".processor(" in b for b in python_blocks())


@pytest.mark.parametrize("page", RUN_PAGES, ids=name)
def test_python_blocks_run_and_detect_their_own_output(page, monkeypatch, tmp_path):
    from wm_toolkit.watermark import Key
    from wm_toolkit.watermark.schemes.distortion_free import DistortionFreeLogitsProcessor

    monkeypatch.setattr(DistortionFreeLogitsProcessor, "shift_seed", 0)  # EXP/ITS key shifts too
    seeds = iter(range(100))
    monkeypatch.setattr(Key, "generate", classmethod(lambda cls: Key.from_seed(f"readme-{next(seeds)}")))
    monkeypatch.chdir(tmp_path)  # the snippets write their key and config files where they run
    torch.manual_seed(0)
    namespace: dict = {}
    for block in python_blocks(page):
        namespace.pop("det", None)
        exec(compile(block, name(page), "exec"), namespace)  # noqa: S102 - our own docs
        det = namespace.get("det")
        assert det is not None, f"this block defines no `det`:\n{block}"
        assert det.p_value < 1e-3, block
        assert det.verdict(1e-3) == "watermarked"


@pytest.mark.parametrize(("page", "block"), ALL_PYTHON)
def test_python_blocks_are_valid_python(page, block):
    compile(block, page, "exec")


# ---- shell blocks: the wm commands they show exist, with the flags they pass ----------------------


def wm_lines(page: Path) -> list[str]:
    """Each `wm ...` command line of the page's shell blocks, without its comment."""
    out = []
    for body in blocks(page, *SHELL):
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip().removeprefix("$ "))
            if line.startswith("wm "):
                out.append(line)
    return out


WM_LINES = [(name(p), line) for p in PAGES for line in wm_lines(p)]


def command_path(args: list[str]) -> list[tuple[list[str], click.Command]]:
    """[(path, command)] from `wm` down to the command `args` runs, as click resolves it."""
    from wm_toolkit.cli.main import wm

    chain = [(["wm"], wm)]
    ctx = None
    command: click.Command = wm
    path = ["wm"]
    while isinstance(command, click.Group):
        ctx = command.make_context(path[-1], list(args), parent=ctx, resilient_parsing=True)
        rest = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        if not rest:
            break
        sub_name, sub, args = command.resolve_command(ctx, rest)
        assert sub is not None, f"{' '.join(path)} has no command {rest[0]!r}"
        path = [*path, sub_name]
        command = sub
        chain.append((path, sub))
    return chain


def help_text(path: list[str]) -> str:
    from wm_toolkit.cli.main import wm

    result = CliRunner().invoke(wm, [*path[1:], "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_docs_show_wm_commands():
    assert len(WM_LINES) >= 30


@pytest.mark.parametrize(("page", "line"), WM_LINES)
def test_wm_lines_use_real_commands_and_flags(page, line):
    args = shlex.split(line)[1:]
    chain = command_path(args)
    helps = "\n".join(help_text(path) for path, _ in chain)
    for arg in args:
        flag = arg.split("=", 1)[0]
        if re.fullmatch(r"--?[A-Za-z][\w-]*", flag):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps), (
                f"{page}: `{line}`: {flag} is not in `{' '.join(chain[-1][0])} --help`"
            )
