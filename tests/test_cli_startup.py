"""`wm --help` and `wm --version` answer without importing torch or transformers (issue 15)."""

from __future__ import annotations

import subprocess
import sys

import click

from wm_toolkit.cli.main import COMMANDS, load_command, wm


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_the_help_imports_neither_torch_nor_transformers():
    mods = _imported_after(
        "import sys\nfrom wm_toolkit.cli.main import wm\n"
        "try:\n    wm.main(['--help'], prog_name='wm')\nexcept SystemExit:\n    pass"
    )
    assert "torch" not in mods and "transformers" not in mods and "numpy" not in mods


def test_the_package_root_loads_its_names_on_first_use():
    mods = _imported_after("import wm_toolkit.watermark")
    assert "torch" not in mods
    from wm_toolkit import watermark

    assert watermark.build_scheme.__name__ == "build_scheme" and "Key" in dir(watermark)
    assert sorted(watermark.__all__) == sorted(watermark._EXPORTS)  # the two lists name the same exports


def test_the_listed_one_liners_are_each_commands_own_short_help():
    for name, (_, _, line) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        assert command.get_short_help_str(limit=1000) == line, name


def test_every_command_runs_through_the_lazy_group():
    ctx = click.Context(wm)
    assert wm.list_commands(ctx) == sorted(COMMANDS)
    assert all(wm.get_command(ctx, n) is not None for n in COMMANDS)
    assert wm.get_command(ctx, "no-such-command") is None


def test_attack_kinds_defined_elsewhere_are_reachable_from_a_fresh_interpreter():
    # `wm attack scrub` / `spoof` live in cli/steal.py; they must not depend on some other import
    # having registered them first (they did, and a fresh `wm attack scrub` was "No such command").
    for kind in ("scrub", "spoof"):
        out = subprocess.run(
            [sys.executable, "-m", "wm_toolkit.cli.main", "attack", kind, "--help"],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0 and f"wm attack {kind}" in out.stdout, out.stdout + out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "wm_toolkit.cli.main", "attack", "--help"], capture_output=True, text=True
    )
    assert "scrub" in out.stdout and "spoof" in out.stdout
