"""Hostile inputs and outputs: each gets one `error:` line and exit 2, in bounded time and memory,
and no output is ever lost or half-written (issue 16, the input/output/safety half).

Every case drives the CLI in-process with click's CliRunner, except where a real file descriptor
matters (stdin closed, process substitution, three processes racing on a cache): those run in
subprocesses and are marked slow.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.cli.terminal import visible
from wm_toolkit.watermark.errors import InputError, KeyFileError, ModelNotFoundError, OutputError
from wm_toolkit.watermark.keying.keys import Key, load_key_file, write_key_file
from wm_toolkit.watermark.modeling import models, offline
from wm_toolkit.watermark.runtime import atomic
from wm_toolkit.watermark.text import encoding, textio

ROOT = Path(__file__).resolve().parent.parent
TEXT = (
    "The river ran past the old mill, and the miller's daughter counted the boats that went by. "
    "Each one carried grain or timber down to the harbour, where the ships waited for the tide. "
) * 4


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "cfg" / "key"))
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "cfg" / "key", Key.from_seed("hardening"))
    return tmp_path


def run(*args, input=None):
    return CliRunner().invoke(wm, [str(a) for a in args], input=input, catch_exceptions=False)


def one_error(res, *fragments: str) -> str:
    """Exit 2, exactly one line on stderr, starting `error:`; no traceback, no usage block."""
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output and "Usage:" not in res.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---- 1. non-regular inputs, read with a bound --------------------------------------------------


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(textio, "MAX_INPUT_BYTES", 200_000)
    return 200_000


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_endless_devices_stop_at_the_first_chunk(env, device):
    line = one_error(run("detect", device))
    assert device in line and ("binary" in line or "not UTF-8" in line)


def _feed_forever(path: str, stop: threading.Event) -> None:
    try:
        with open(path, "wb") as fh:
            while not stop.is_set():
                fh.write(b"hello world " * 4096)
    except (BrokenPipeError, OSError):
        pass


def test_named_fifo_with_an_endless_writer_stops_at_the_cap(env, small_cap):
    fifo = env / "fifo"
    os.mkfifo(fifo)
    stop = threading.Event()
    writer = threading.Thread(target=_feed_forever, args=(str(fifo), stop), daemon=True)
    writer.start()
    try:
        one_error(run("detect", fifo), "too large", str(small_cap))
    finally:
        stop.set()


def test_named_fifo_nobody_writes_to_fails_after_a_bounded_wait(env, monkeypatch):
    monkeypatch.setattr(textio, "FIFO_WAIT_SECONDS", 0.2)
    os.mkfifo(env / "fifo")
    t0 = time.monotonic()
    one_error(run("detect", env / "fifo"), "nobody wrote")
    assert time.monotonic() - t0 < 10


def test_process_substitution_pipe_is_read_with_the_cap(env, small_cap):
    """`wm detect <(yes hello)`: the shell hands over /dev/fd/N, a pipe with a live writer."""
    r, w = os.pipe()
    stop = threading.Event()

    def feed() -> None:
        try:
            while not stop.is_set():
                os.write(w, b"hello world " * 4096)
        except OSError:
            pass
        finally:
            os.close(w)

    threading.Thread(target=feed, daemon=True).start()
    try:
        one_error(run("detect", f"/dev/fd/{r}"), "too large")
    finally:
        stop.set()
        os.close(r)


def test_a_pipe_with_a_short_text_is_read_whole(tmp_path):
    r, w = os.pipe()
    os.write(w, TEXT.encode())
    os.close(w)
    try:
        assert textio.read_records(f"/dev/fd/{r}")[0].text == TEXT
    finally:
        os.close(r)


def test_stdin_closed_is_an_input_error(env, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)  # what Python sets when started with `<&-`
    with pytest.raises(InputError, match="stdin is closed"):
        textio.read_bytes("-")


def test_stdin_over_the_cap_is_refused(env, small_cap):
    one_error(run("detect", "-", input=b"word " * 50_000), "stdin", "too large")


def test_directory_nul_bytes_and_non_utf8(env):
    one_error(run("detect", env), "is a directory")
    (env / "nul.txt").write_bytes(b"text\x00more text")
    one_error(run("detect", env / "nul.txt"), "binary")
    (env / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    one_error(run("detect", env / "latin1.txt"), "not UTF-8")


def test_the_cap_is_applied_while_reading_not_after(monkeypatch, small_cap):
    """An endless source is read in chunks up to cap + 1 bytes, never beyond."""
    served = []

    def endless(n: int) -> bytes:
        served.append(n)
        return b"a" * n

    with pytest.raises(InputError, match="too large"):
        textio._read_limited(endless, "src", small_cap)
    assert sum(served) == small_cap + 1


def test_every_reader_of_a_user_file_is_capped():
    """Configs, stolen lists, QA sets, prompts and keys: /dev/zero is one clean error each."""
    from wm_toolkit.attacks.stealing import StolenList
    from wm_toolkit.watermark.config import load_config_file
    from wm_toolkit.watermark.errors import WmError
    from wm_toolkit.watermark.uncertainty.evaluate import load_qa

    for read in (load_config_file, StolenList.load, load_qa, textio.read_prompts, load_key_file):
        with pytest.raises(WmError):
            read("/dev/zero")


# ---- 2. JSON limits and what counts as JSONL ------------------------------------------------------


def test_jsonl_nested_100k_deep(env):
    (env / "deep.jsonl").write_text('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    one_error(run("detect", env / "deep.jsonl"), "nested too deeply")


def test_jsonl_with_a_5000_digit_integer(env):
    (env / "big.jsonl").write_text('{"text": "hi", "n": ' + "9" * 5000 + "}\n")
    one_error(run("detect", env / "big.jsonl"), "out of range")


@pytest.mark.parametrize("field", ["text", "prompt"])
def test_lone_surrogate_in_a_record_is_refused_at_read_time(env, field):
    rec = {"text": TEXT, "prompt": "p"}
    line = json.dumps(rec).replace(f'"{field}": "', f'"{field}": "\\ud800', 1)
    (env / "s.jsonl").write_text(line + "\n")
    one_error(run("detect", env / "s.jsonl"), "lone surrogate")
    one_error(run("attack", "delete", env / "s.jsonl", "-o", env / "out.jsonl"), "lone surrogate")
    assert not (env / "out.jsonl").exists() and leftovers(env) == []


def test_a_surrogate_pair_escape_is_an_ordinary_character(tmp_path):
    (tmp_path / "ok.jsonl").write_text('{"text": "smile \\ud83d\\ude00"}\n')
    assert textio.read_records(str(tmp_path / "ok.jsonl"))[0].text == "smile \U0001f600"


def test_undecodable_command_line_text_is_refused(env):
    """A non-UTF-8 byte on the command line arrives as a lone surrogate (U+DCxx)."""
    one_error(run("generate", "caf\udce9", "--max-new-tokens", 1), "not valid UTF-8")
    one_error(run("uncertainty", "ask", "caf\udce9?"), "not valid UTF-8")


@pytest.mark.parametrize("line", ["[1, 2]", '"a string"', "42", "null", "true"])
def test_wrong_top_level_types_in_jsonl(env, line):
    (env / "w.jsonl").write_text(line + "\n")
    one_error(run("detect", env / "w.jsonl"), "expected a JSON object")


def test_plain_txt_starting_with_a_brace_is_plain_text(tmp_path):
    text = "{braces} are how set literals start.\nNot JSON at all.\n"
    (tmp_path / "notes.txt").write_text(text)
    records = textio.read_records(str(tmp_path / "notes.txt"))
    assert len(records) == 1 and records[0].text == text and records[0].record == {}


def test_a_file_of_json_objects_is_jsonl_whatever_its_name(tmp_path):
    (tmp_path / "out.txt").write_text('{"text": "one"}\n\n{"text": "two", "prompt": "p"}\n')
    records = textio.read_records(str(tmp_path / "out.txt"))
    assert [r.text for r in records] == ["one", "two"] and records[1].prompt == "p"


def test_jsonl_suffix_is_strict(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "one"}\nnot json\n')
    with pytest.raises(InputError, match=r"x.jsonl:2: not valid JSON"):
        textio.read_records(str(tmp_path / "x.jsonl"))


def test_non_string_prompt_is_refused(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "one", "prompt": 5}\n')
    with pytest.raises(InputError, match="'prompt' must be a string"):
        textio.read_records(str(tmp_path / "x.jsonl"))


def test_millions_of_tiny_records_are_refused_before_parsing(env, monkeypatch):
    monkeypatch.setattr(textio, "MAX_RECORDS", 1000)
    (env / "many.jsonl").write_text('{"text": "a"}\n' * 1001)
    one_error(run("detect", env / "many.jsonl"), "more than 1,000 records")
    (env / "lines.txt").write_text("a line\n\n" * 1001)
    with pytest.raises(InputError, match="records"):
        textio.read_prompts(str(env / "lines.txt"))
    (env / "ok.jsonl").write_text('{"text": "a"}\n\n\n' * 1000)  # blank lines do not count
    assert len(textio.read_records(str(env / "ok.jsonl"))) == 1000


# ---- 3. chunked tokenisation: same ids, bounded memory -----------------------------------------


def _real_text() -> str:
    parts = [
        ROOT / "README.md",
        ROOT / "docs" / "CONTRIBUTING.md",
        *sorted((ROOT / "watermark").glob("*.py")),
    ]
    return "\n".join(p.read_text(encoding="utf-8") for p in parts)


def test_chunked_tokenisation_equals_whole_text_tokenisation(tokenizer):
    text = _real_text() + " Unicode: café, naïve, 東京, emoji 🙂, tabs\tand  double  spaces.\n\n"
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    for chunk in (300, 1000, 7919):
        ids = encoding.encode_array(tokenizer, text, chunk_chars=chunk)
        assert encoding.last_stats.chunks > len(text) // chunk // 2
        assert encoding.last_stats.forced_cuts == 0
        assert ids.dtype == np.int64 and ids.tolist() == whole
    assert encoding.encode_text(tokenizer, text, chunk_chars=1000) == whole


def test_text_without_whitespace_is_cut_where_it_must_be(tokenizer):
    """No exact cut exists: chunks are forced, the ids stay close (only the seams differ)."""
    text = "abcdefghij" * 3000
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = encoding.encode_array(tokenizer, text, chunk_chars=5000)
    assert encoding.last_stats.forced_cuts == encoding.last_stats.chunks - 1 == 5
    assert abs(len(ids) - len(whole)) <= 2 * encoding.last_stats.forced_cuts
    assert tokenizer.decode(ids.tolist()) == text


# ---- 4. devices and output paths -------------------------------------------------------------------


@pytest.mark.parametrize("device", ["tpu9", "cuda:99", "", "cpu:x"])
def test_invalid_device_is_one_error_line(env, device):
    if device == "cuda:99" and models.torch.cuda.device_count() > 99:  # pragma: no cover
        pytest.skip("a machine with 100 GPUs")
    one_error(run("generate", "hi", "--device", device, "--max-new-tokens", 1), "device")


def test_output_under_a_file_is_refused_before_any_work(env):
    (env / "afile").write_text("x")
    one_error(run("generate", "hi", "-o", env / "afile" / "out.jsonl"), "not a folder")
    (env / "in.txt").write_text(TEXT)
    one_error(run("attack", "delete", env / "in.txt", "-o", env / "afile" / "x" / "out.txt"), "not a folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_output_in_an_unwritable_folder_is_refused(env):
    ro = env / "ro"
    ro.mkdir(mode=0o500)
    (env / "in.txt").write_text(TEXT)
    one_error(run("attack", "delete", env / "in.txt", "-o", ro / "out.txt"), "not writable")


# ---- 5. model names resolve offline ------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    import socket

    def refuse(*a, **k):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_unknown_model_name_fails_offline_in_one_line(env, no_network):
    (env / "t.txt").write_text(TEXT)
    t0 = time.monotonic()
    line = one_error(run("detect", env / "t.txt", "--model", "nobody/no-such-model-xyz"), "offline")
    assert "--allow-download" in line and time.monotonic() - t0 < 5


def test_unknown_tokenizer_named_by_a_record_fails_offline(env, no_network):
    cfg = {"scheme": "kgw", "tokenizer": "nobody/no-such-tokenizer-xyz"}
    (env / "r.jsonl").write_text(json.dumps({"text": TEXT, "config": cfg}) + "\n")
    one_error(run("detect", env / "r.jsonl"), "no-such-tokenizer-xyz", "offline")


def test_a_record_cannot_switch_downloads_on(env, no_network):
    """Even a record that asks for downloads, by every name it could use, stays offline."""
    cfg = {"scheme": "kgw", "tokenizer": "nobody/x", "allow_download": True}
    (env / "r.jsonl").write_text(json.dumps({"text": TEXT, "config": cfg, "allow_download": True}) + "\n")
    res = run("detect", env / "r.jsonl")
    assert res.exit_code == 2 and not models.downloads_allowed()


def test_downloads_only_when_the_user_switches_them_on(monkeypatch):
    monkeypatch.setattr(offline, "_DOWNLOADS", False)
    with pytest.raises(ModelNotFoundError, match="offline"):
        models.resolve_name("nobody/no-such-model-xyz")
    models.allow_download(True)
    try:
        assert models.resolve_name("nobody/no-such-model-xyz") == "nobody/no-such-model-xyz"
    finally:
        models.allow_download(False)


def test_allow_download_flag_and_env(env, monkeypatch):
    seen = []
    monkeypatch.setattr(offline, "allow_download", lambda on, process_wide=False: seen.append(on))
    run("--allow-download", "keygen", "-o", env / "k1")
    monkeypatch.setenv("WM_ALLOW_DOWNLOAD", "1")
    run("keygen", "-o", env / "k2")
    monkeypatch.delenv("WM_ALLOW_DOWNLOAD")
    run("keygen", "-o", env / "k3")
    assert seen == [True, True, False]


def test_model_name_of_the_wrong_type(env):
    cfg = {"scheme": "kgw", "tokenizer": 5}
    (env / "r.jsonl").write_text(json.dumps({"text": TEXT, "config": cfg}) + "\n")
    res = run("detect", env / "r.jsonl")
    assert res.exit_code == 2 and "Traceback" not in res.output


# ---- 6. keys -------------------------------------------------------------------------------------------


def test_keygen_under_umask_000_creates_private_folders(env):
    old = os.umask(0)
    try:
        res = run("keygen", "-o", env / "a" / "b" / "key")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    for d in (env / "a", env / "a" / "b"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(env / "a" / "b" / "key").st_mode) == 0o600
    secret = (env / "a" / "b" / "key").read_text().strip()
    assert secret not in res.output


@pytest.mark.parametrize("force", [False, True])
def test_a_symlink_at_the_key_path_is_never_written_through(env, force):
    victim = env / "victim.txt"
    victim.write_text("keep me")
    (env / "link").symlink_to(victim)
    res = run("keygen", "-o", env / "link", *(["--force"] if force else []))
    one_error(res, "symbolic link")
    assert victim.read_text() == "keep me" and (env / "link").is_symlink()
    (env / "dangling").symlink_to(env / "nowhere")
    one_error(run("keygen", "-o", env / "dangling"), "symbolic link")
    assert not (env / "nowhere").exists()


def test_keygen_force_replaces_a_key_file_atomically(env):
    first = write_key_file(env / "k")
    res = run("keygen", "-o", env / "k", "--force")
    assert res.exit_code == 0 and load_key_file(env / "k") != first
    assert stat.S_IMODE(os.stat(env / "k").st_mode) == 0o600 and leftovers(env) == []


@pytest.mark.parametrize(
    "content",
    ["00" * 32 + "\ngarbage\n", "00" * 32 + " 00", "00 " * 32, "00" * 32 + "\x00", " ", "0x" + "00" * 31],
)
def test_key_files_are_parsed_strictly(tmp_path, content):
    p = tmp_path / "k"
    p.write_text(content)
    os.chmod(p, 0o600)
    with pytest.raises(KeyFileError, match="not a key"):
        load_key_file(p)


def test_key_file_with_surrounding_whitespace_is_fine(tmp_path):
    p = tmp_path / "k"
    p.write_text("\n" + "ab" * 32 + "\r\n")
    os.chmod(p, 0o600)
    assert load_key_file(p) == Key(bytes.fromhex("ab" * 32))


def test_a_200_mb_key_file_is_refused_without_being_read(tmp_path, monkeypatch):
    p = tmp_path / "huge"
    with open(p, "wb") as fh:
        fh.truncate(200 * 1024 * 1024)  # sparse: no disk used
    os.chmod(p, 0o600)
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    with pytest.raises(KeyFileError, match="bytes"):
        load_key_file(p)
    assert reads == []


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_a_key_that_is_not_a_regular_file_is_refused(tmp_path, special):
    path = special
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError):
        load_key_file(path)


def test_key_errors_never_print_the_key(env):
    secret = "ab" * 32
    (env / "k").write_text(secret + "\ntrailing")
    os.chmod(env / "k", 0o600)
    (env / "t.txt").write_text(TEXT)
    res = run("detect", "--key", env / "k", env / "t.txt")
    assert secret not in res.output and "ab" * 8 not in res.output
    one_error(res, "not a key")


# ---- 7. usage errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["detect", "--no-such-option", "x"], "No such option"),
        (["detect"], "Missing argument"),
        (["detect", "--scheme", "nope", "x"], "'nope' is not one of"),
        (["generate", "hi", "--max-new-tokens", "zero"], "is not a valid integer"),
        (["attack", "delete", "x"], "Missing option"),
        (["no-such-command"], "No such command"),
        (["attack", "no-such-kind"], "No such command"),
    ],
)
def test_usage_errors_are_one_error_line(env, args, fragment):
    line = one_error(run(*args), fragment)
    assert line.count("--help") == 1  # where to look next, on the same line


def test_help_still_works(env):
    for args in (["--help"], ["detect", "--help"], ["attack", "delete", "-h"]):
        res = run(*args)
        assert res.exit_code == 0 and "Usage:" in res.output


# ---- 8. outputs: checked first, written atomically, never over an input ---------------------------


@pytest.fixture
def attacked(env):
    """A JSONL input and an existing output from an earlier run."""
    (env / "in.jsonl").write_text(json.dumps({"text": TEXT, "prompt": "p"}) + "\n")
    (env / "out.jsonl").write_text("old output\n")
    return env


def test_existing_output_is_replaced_only_with_force(attacked):
    one_error(run("attack", "delete", attacked / "in.jsonl", "-o", attacked / "out.jsonl"), "--force")
    assert (attacked / "out.jsonl").read_text() == "old output\n"
    res = run("attack", "delete", attacked / "in.jsonl", "-o", attacked / "out.jsonl", "--force")
    assert res.exit_code == 0, res.output
    assert json.loads((attacked / "out.jsonl").read_text())["attack"]["kind"] == "delete"
    assert leftovers(attacked) == []


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_output_never_replaces_an_input(attacked, force):
    before = (attacked / "in.jsonl").read_text()
    for out in (attacked / "in.jsonl", "./in.jsonl", attacked / "sub" / ".." / "in.jsonl"):
        one_error(run("attack", "delete", attacked / "in.jsonl", "-o", out, *force), "is also an input")
    os.link(attacked / "in.jsonl", attacked / "hardlink.jsonl")
    one_error(
        run("attack", "delete", attacked / "in.jsonl", "-o", attacked / "hardlink.jsonl", *force), "input"
    )
    assert (attacked / "in.jsonl").read_text() == before


def test_output_never_replaces_the_key(env):
    one_error(run("generate", "hi", "-o", env / "cfg" / "key", "--force"), "is also an input")
    one_error(run("generate", "hi", "--config-out", env / "x.json", "-o", env / "x.json"), "two outputs")


def test_generate_refuses_existing_outputs_before_loading_a_model(env, monkeypatch):
    monkeypatch.setattr("wm_toolkit.cli.generate.load_model", lambda *a, **k: pytest.fail("model loaded"))
    (env / "out.jsonl").write_text("keep")
    (env / "cfg.json").write_text("keep")
    one_error(run("generate", "hi", "-o", env / "out.jsonl"), "already exists")
    one_error(
        run("generate", "hi", "-o", env / "new.jsonl", "--config-out", env / "cfg.json"), "already exists"
    )
    assert (env / "out.jsonl").read_text() == "keep" and (env / "cfg.json").read_text() == "keep"


def test_plain_text_attack_output_is_atomic_and_forced(env):
    (env / "in.txt").write_text(TEXT)
    (env / "out.txt").write_text("old")
    one_error(run("attack", "delete", env / "in.txt", "-o", env / "out.txt"), "--force")
    res = run("attack", "delete", env / "in.txt", "-o", env / "out.txt", "--force")
    assert res.exit_code == 0 and (env / "out.txt").read_text() != "old" and leftovers(env) == []


class _DiskFull:
    """os.write that accepts `room` bytes, then fails with ENOSPC (a disk filling up mid-write)."""

    def __init__(self, room: int):
        self.room = room
        self.real = os.write

    def __call__(self, fd: int, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(data), self.room)
        self.room -= n
        return self.real(fd, bytes(data[:n]))


def test_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    out.write_text("precious old results\n")
    monkeypatch.setattr(atomic.os, "write", _DiskFull(room=3000))
    records = ({"text": "x" * 1000, "i": i} for i in range(5000))
    with pytest.raises(OutputError, match="no space left"):
        textio.write_jsonl(out, records)
    assert out.read_text() == "precious old results\n"
    assert leftovers(tmp_path) == []


def test_full_disk_through_the_cli(attacked, monkeypatch):
    monkeypatch.setattr(atomic.os, "write", _DiskFull(room=10))
    one_error(
        run("attack", "delete", attacked / "in.jsonl", "-o", attacked / "out.jsonl", "--force"),
        "no space left",
    )
    assert (attacked / "out.jsonl").read_text() == "old output\n" and leftovers(attacked) == []


def test_every_writer_goes_through_the_atomic_helper(tmp_path, monkeypatch):
    """--config-out, `wm steal -o`, eval's results.json: a full disk loses none of them."""
    from wm_toolkit.attacks.stealing import StolenList
    from wm_toolkit.watermark.config import default_config, save_config_file
    from wm_toolkit.watermark.measure.evaluation import write_json

    writers = {
        "config.json": lambda p: save_config_file(default_config("kgw"), p),
        "stolen.json": lambda p: StolenList([1, 2, 3], "vanilla").save(p),
        "results.json": lambda p: write_json(p, [{"row": i} for i in range(100)]),
        "plain.txt": lambda p: atomic.write_text(p, "new text " * 100),
    }
    monkeypatch.setattr(atomic.os, "write", _DiskFull(room=20))
    for name, write in writers.items():
        (tmp_path / name).write_text("old")
        with pytest.raises(OutputError, match="no space left"):
            write(tmp_path / name)
        assert (tmp_path / name).read_text() == "old", name
    assert leftovers(tmp_path) == []


def test_a_failed_encode_leaves_no_temp_and_no_output(tmp_path):
    with pytest.raises(OutputError, match="lone surrogate"):
        textio.write_jsonl(tmp_path / "o.jsonl", [{"text": "ok"}, {"prompt": "bad \udcff"}])
    assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_write_removes_the_temp(tmp_path):
    def records():
        yield {"text": "one"}
        raise KeyboardInterrupt

    (tmp_path / "o.jsonl").write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        textio.write_jsonl(tmp_path / "o.jsonl", records())
    assert (tmp_path / "o.jsonl").read_text() == "old\n" and leftovers(tmp_path) == []


def test_two_writers_of_one_output_use_separate_temp_files(tmp_path):
    target = tmp_path / "o.txt"
    with atomic.atomic_writer(target) as a, atomic.atomic_writer(target) as b:
        a.write("from a")
        b.write("from b")
        assert len(leftovers(tmp_path)) == 2
    assert target.read_text() == "from a" and leftovers(tmp_path) == []


def test_new_outputs_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "o.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "o.txt").st_mode) == 0o644


def test_eval_output_folder_that_is_a_file(env):
    (env / "res").write_text("x")
    one_error(run("eval", "-o", env / "res", "--n", 1), "is a file")
    one_error(run("eval", "-o", env / "res" / "sub", "--n", 1), "is a file, not a folder")


# ---- 9. the model cache: built once, under a lock, published atomically --------------------------


def _race(target: str, log: str, barrier) -> None:
    def build(d: Path) -> None:
        with open(log, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)
        (d / "a.json").write_text("{}")
        (d / "b.bin").write_bytes(b"x" * 1000)

    barrier.wait()
    models.build_once(Path(target), build, ("a.json", "b.bin"))
    assert (Path(target) / "b.bin").read_bytes() == b"x" * 1000


def test_cache_is_built_once_by_racing_processes(tmp_path):
    target, log = tmp_path / "cache" / "m-1", tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=_race, args=(str(target), str(log), barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert log.read_text() == "built\n"
    assert sorted(os.listdir(target.parent)) == [".m-1.lock", "m-1"]


def test_an_incomplete_cache_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "a.json").write_text("stale, from an older version")
    models.build_once(
        target, lambda d: [(d / f).write_text("new") for f in ("a.json", "b.bin")], ("a.json", "b.bin")
    )
    assert (target / "a.json").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == [".m.lock", "m"]


def test_a_failed_build_publishes_nothing(tmp_path):
    def broken(d: Path) -> None:
        (d / "a.json").write_text("{}")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        models.build_once(tmp_path / "m", broken, ("a.json",))
    assert os.listdir(tmp_path) == [".m.lock"]


def test_gguf_progress_bars_are_silenced():
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    with models._quiet_gguf():
        assert gguf_utils.tqdm([1, 2]).disable
    assert gguf_utils.tqdm is not None and not isinstance(gguf_utils.tqdm, type(models._quiet_gguf))


# ---- 10. no terminal control sequence from an input reaches the terminal ---------------------------

HOSTILE = "Clear \x1b[2J\x1b[H title \x1b]0;pwned\x07 clip \x1b]52;c;cm0gLXJmIH4=\x07 c1 \x9b31m bs \x08\x08 cr \r bidi \u202e."


def _no_controls(s: str) -> None:
    bad = {c for c in s if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) < 0xA0 or c == "\u202e"}
    assert not bad, sorted(map(hex, map(ord, bad)))


def test_visible_escapes_every_control_character():
    out = visible(HOSTILE)
    _no_controls(out)
    assert (
        "\\x1b[2J" in out and "\\x1b]52;c;" in out and "\\x9b" in out and "\\x0d" in out and "\\u202e" in out
    )
    assert visible("line one\nline\ttwo") == "line one\nline\ttwo"
    assert "\n" not in visible("a\nb", one_line=True)


def test_show_tokens_prints_no_control_sequences(env):
    (env / "evil.txt").write_text((TEXT + HOSTILE) * 2)
    res = run("detect", "--show-tokens", env / "evil.txt")
    assert res.exit_code == 0, res.output
    _no_controls(res.stdout)
    assert "\\x1b" in res.stdout


def test_error_lines_escape_control_characters_from_inputs(env):
    name = env / "bad\x1b]0;title\x07name.jsonl"
    name.write_text("[1]\n")
    line = one_error(run("detect", name))
    _no_controls(line)
    cfg = {"scheme": "kgw", "tokenizer": "evil\x1b[2J/model"}
    (env / "r.jsonl").write_text(json.dumps({"text": TEXT, "config": cfg}) + "\n")
    _no_controls(one_error(run("detect", env / "r.jsonl")))


# ---- real file descriptors and processes (slow: each starts the CLI) --------------------------------


def _cli(cmd: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


@pytest.mark.slow
def test_shell_cases_in_real_processes(tmp_path):
    """`<&-`, `<(yes)` and /dev/zero in a real shell: exit 2, one line, bounded time and memory."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WM_KEY_FILE": str(tmp_path / "key"),
        "WM_MAX_INPUT_BYTES": "2000000",
    }
    write_key_file(tmp_path / "key")
    rss_file = tmp_path / "rss"
    wm_cmd = f"/usr/bin/time -o {rss_file} -f %M {sys.executable} -m cli.main"
    for shell, fragment in (
        (f"{wm_cmd} detect - <&-", "stdin is closed"),
        (f"{wm_cmd} detect <(yes hello world)", "too large"),
        (f"{wm_cmd} detect /dev/zero", "binary"),
        (f"{wm_cmd} detect --device x - <&-", "No such option"),
    ):
        t0 = time.monotonic()
        res = _cli(shell, env)
        lines = res.stderr.splitlines()
        assert res.returncode == 2 and len(lines) == 1 and fragment in lines[0], (shell, res.stderr)
        rss_kb = int(rss_file.read_text().split()[-1])
        assert time.monotonic() - t0 < 60 and rss_kb < 1_500_000


@pytest.mark.slow
def test_three_processes_on_an_empty_model_cache_all_succeed(tmp_path):
    """The first load dequantises once (under the lock); the others wait and load the same files."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    env.pop("WM_CACHE_DIR", None)
    code = "from wm_toolkit.watermark.modeling.models import load_model; m, t = load_model(); print(len(t))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-2000:] for o in outs]
    assert all(o[0].strip() == "49152" for o in outs)
    assert not any("de-quantizing" in o[1] or "%|" in o[1] for o in outs)  # no tqdm bars
    cache = tmp_path / "xdg" / "wm"
    published = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(published) == 1 and (published[0] / "model.safetensors").is_file()  # built once
    assert not [p for p in cache.iterdir() if p.name.endswith((".tmp", ".stale"))]
