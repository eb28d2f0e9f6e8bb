"""Property-based fuzzing of the `wm` CLI, in-process: whatever files, records, configs and flags a
user or an adversary passes, `wm` exits 0 or 2 (bad input: one `error:` line) and never 1 (an
internal error), and never prints a traceback.

Hypothesis draws the inputs (derandomised: the same cases every run, so CI is reproducible); each
test states its case count, about 3,000 in all. The real SmolLM2 tokenizer is loaded once; any
other tokenizer name (a record's config can name one) fails at once as `ModelNotFoundError`, as an
offline lookup does, so no case touches the network. Valid but expensive settings (an EXP key of
10,000 rows, a million resamples) are capped to small values so every case runs in milliseconds;
out-of-range values are kept, they must be refused.

The last three tests cover the I/O hardening (reading devices and pipes, JSON nesting and huge
integers, lone surrogates, terminal escapes, key and output paths); WM_FUZZ_IO=0 skips them.
`--hypothesis-show-statistics` shows which exits and error lines each test reached.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from wm_toolkit.cli import attack as cli_attack
from wm_toolkit.cli import detect as cli_detect
from wm_toolkit.cli import steal as cli_steal
from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import ModelNotFoundError
from wm_toolkit.watermark.keying.keys import write_key_file
from wm_toolkit.watermark.modeling import models

IO_HARDENED = os.environ.get("WM_FUZZ_IO", "1") == "1"
needs_io_hardening = pytest.mark.skipif(not IO_HARDENED, reason="WM_FUZZ_IO=0")


def fuzz(n: int):
    return settings(
        max_examples=n,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


# ---- the world every case runs in ------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory, tokenizer):
    d = tmp_path_factory.mktemp("fuzz")
    write_key_file(d / "key")
    mp = pytest.MonkeyPatch()

    def offline_tokenizer(name=None):
        if models.canonical_name(name) == models.DEFAULT_MODEL:
            return tokenizer
        raise ModelNotFoundError(f"model {str(name)[:40]!r} is not available offline")

    for module in (cli_detect, cli_attack, cli_steal):  # imported here: the lazy group imports on use
        mp.setattr(module, "load_tokenizer", offline_tokenizer)
    yield d
    mp.undo()


_names = itertools.count()


def new_path(world: Path, suffix: str = "") -> Path:
    return world / f"f{next(_names)}{suffix}"


def invoke(args, stdin: bytes | None = None):
    res = CliRunner().invoke(wm, [str(a) for a in args], input=stdin)
    out = res.output
    last = (res.stderr.strip().splitlines() or ["-"])[-1]
    event(
        f"exit {res.exit_code}: " + re.sub(r"\S*/f\d+\S*|\d+", "#", last)[:40]
    )  # --hypothesis-show-statistics
    assert res.exit_code in (0, 2), f"exit {res.exit_code} for {args!r}:\n{out[-2000:]}"
    assert "Traceback" not in out and "internal error" not in out, f"{args!r}:\n{out[-2000:]}"
    if res.exit_code == 2 and not out.lstrip().startswith(("Usage:", "Error:")):
        assert "error:" in res.stderr, f"{args!r}: exit 2 without an error line:\n{out[-2000:]}"
    return res


# ---- strategies ----------------------------------------------------------------------------------

SCHEMES = ["kgw", "unigram", "exp", "exp-edit", "its", "its-edit", "gumbel", "mpac"]
WORDS = "the river ran past an old town where a keeper lit the lamp every night and ships came home"
WORDS = WORDS.split(" ")


def mostly(usual: st.SearchStrategy, hostile: st.SearchStrategy, percent: int = 80) -> st.SearchStrategy:
    """`usual` in `percent` % of draws, else `hostile` (so most cases get past the first check)."""
    return st.integers(0, 99).flatmap(lambda r: usual if r < percent else hostile)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
plain_texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=60).map(" ".join)
# unicode without lone surrogates (those are the I/O hardening's; see below)
unicode_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)

PLAUSIBLE = {
    "gamma": st.floats(0.01, 0.99),
    "delta": st.floats(0, 10),
    "context_width": st.integers(0, 4),
    "seeding": st.sampled_from(["lefthash", "selfhash", "minhash"]),
    "count_repeats": st.booleans(),
    "candidates": st.integers(-1, 5000),
    "key_length": st.integers(-1, 64) | st.sampled_from([65_537, 10_000_000]),
    "block_length": st.none() | st.integers(-1, 80),
    "edit_gamma": st.none() | st.floats(-1, 2),
    "resamples": st.integers(-1, 40) | st.sampled_from([10**6 + 1, 10**9]),
    "stop_after": st.integers(-1, 5),
    "bound_weight": st.floats(-0.5, 1.5),
    "vocab_size": st.sampled_from([None, 49152, 32000, 1, 2**25]),
    "tokenizer": st.sampled_from([None, "smollm2-135m", "no-such-model", "/nonexistent/dir"]),
    "key_fingerprint": st.none() | st.text("0123456789abcdef", min_size=16, max_size=16),
}
FIELDS = sorted(PLAUSIBLE) + ["unknown_field"]


def _cap(config: dict) -> dict:
    """Keep cases cheap: an EXP/ITS config gets a small key and few resamples where it would
    otherwise use valid but slow ones (the defaults 256 and 999 included); out-of-range values
    are kept, they must be refused."""
    out = dict(config)
    if out.get("scheme") in ("exp", "exp-edit", "its", "its-edit"):
        for name, small in (("key_length", 32), ("resamples", 19)):
            v = out.get(name)
            if v is None or (isinstance(v, int) and not isinstance(v, bool) and 64 < v <= 10**6):
                out[name] = small
    return out


def _fields_of(scheme) -> list[str]:
    from wm_toolkit.watermark.config import config_class

    return (
        sorted(set(config_class(scheme).__dataclass_fields__) - {"scheme"}) if scheme in SCHEMES else FIELDS
    )


@st.composite
def configs(draw) -> dict:
    config = {}
    if draw(mostly(st.just(True), st.booleans(), 95)):
        config["scheme"] = draw(mostly(st.sampled_from(SCHEMES), json_scalars, 90))
    own = _fields_of(config.get("scheme"))
    for name in draw(
        st.lists(mostly(st.sampled_from(own), st.sampled_from(FIELDS), 90), max_size=4, unique=True)
    ):
        config[name] = draw(mostly(PLAUSIBLE.get(name, json_values), json_values, 85))
    return _cap(config)


@st.composite
def records(draw) -> dict:
    rec: dict = {"text": draw(mostly(plain_texts, unicode_texts | json_values, 85))}
    if draw(st.booleans()):
        rec["config"] = draw(mostly(configs(), json_values, 90))
    if draw(st.booleans()):
        rec["prompt"] = draw(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20) | json_values)
    for name in draw(st.lists(st.sampled_from(["num_tokens", "scheme", "model", "attack"]), max_size=2)):
        rec[name] = draw(json_values)
    return rec


def _jsonl(recs: list, junk: list[str]) -> bytes:
    lines = [json.dumps(r) for r in recs] + junk
    return ("\n".join(lines) + "\n").encode()


file_bodies = mostly(
    plain_texts.map(lambda t: (t + "\n").encode())
    | st.builds(_jsonl, st.lists(records(), min_size=1, max_size=4), st.just([])),
    st.binary(max_size=300)
    | unicode_texts.map(lambda t: t.encode())
    | st.builds(
        _jsonl,
        st.lists(records(), min_size=0, max_size=4),
        st.lists(
            st.sampled_from(["", "{", "[]", "null", '{"text": 5}', "  ", '{"text": "a"} x']), max_size=2
        ),
    ),
    70,
)
file_suffixes = st.sampled_from(["", ".txt", ".jsonl", ".ndjson"])

FLAG_VALUES = {
    "--scheme": st.sampled_from(SCHEMES + ["bogus"]),
    "--gamma": st.sampled_from(["0.25", "0.5", "0", "1", "-1", "nan", "inf", "1e-300", "x"]),
    "--delta": st.sampled_from(["0", "2", "1e9", "-1", "nan", "inf"]),
    "--context-width": st.sampled_from(["0", "1", "2", "33", "-1", "1.5", "99999999999999999999"]),
    "--key-length": st.sampled_from(["16", "0", "10000000", "-5", "x"]),
    "--block-length": st.sampled_from(["0", "4", "1000000000", "-3"]),
    "--resamples": st.sampled_from(["0", "9", "10000000"]),
    "--edit-gamma": st.sampled_from(["0", "0.4", "-1", "nan", "1e12"]),
    "--seeding": st.sampled_from(["selfhash", "lefthash", "nope"]),
    "--alpha": st.sampled_from(["0.001", "0.5", "0", "1", "2", "nan"]),
    "--model": st.sampled_from(["smollm2-135m", "no-such-model"]),
}


@st.composite
def detect_flags(draw) -> list[str]:
    out: list[str] = []
    for flag in draw(st.lists(st.sampled_from(sorted(FLAG_VALUES)), max_size=4, unique=True)):
        out += [flag, draw(FLAG_VALUES[flag])]
    for flag in ("--count-repeats", "--json", "--show-tokens", "--spans"):
        if draw(st.booleans()):
            out.append(flag)
    return out


# ---- detect ------------------------------------------------------------------------------------------


@fuzz(700)
@given(body=file_bodies, suffix=file_suffixes, flags=detect_flags())
def test_detect_any_file_with_any_flags(world, body, suffix, flags):
    path = new_path(world, suffix)
    path.write_bytes(body)
    invoke(["detect", path, "--key", world / "key", *flags])


@fuzz(700)
@given(
    config=mostly(configs(), json_values, 90),
    recs=st.lists(records(), min_size=1, max_size=3),
    flags=detect_flags(),
)
def test_detect_with_any_config_file_and_records(world, config, recs, flags):
    cfg = new_path(world, ".json")
    cfg.write_text(json.dumps(config))
    data = new_path(world, ".jsonl")
    data.write_bytes(_jsonl(recs, []))
    invoke(["detect", data, "--key", world / "key", "--config", cfg, *flags])


@fuzz(300)
@given(
    body=mostly(
        st.binary(min_size=32, max_size=32).map(lambda b: b.hex().encode()),
        st.binary(max_size=200) | st.sampled_from([b"", b"g" * 64, b"0" * 62 + b"\n", b"0" * 66]),
        50,
    ),
    space=st.sampled_from([b"", b"\n", b"  \r\n", b"\x00"]),
    mode=mostly(st.just(0o600), st.sampled_from([0o644, 0o400, 0o000, 0o666]), 80),
)
def test_detect_with_any_key_file(world, body, space, mode):
    key = new_path(world, ".key")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, body + space)
    os.close(fd)
    os.chmod(key, mode)
    text = new_path(world, ".txt")
    text.write_text(" ".join(WORDS))
    invoke(["detect", text, "--key", key, "--json"])


@fuzz(300)
@given(body=mostly(file_bodies, st.binary(max_size=200), 80), flags=detect_flags())
def test_detect_from_stdin(world, body, flags):
    invoke(["detect", "-", "--key", world / "key", *flags], stdin=body)


# ---- attacks (the cheap ones) --------------------------------------------------------------------


@fuzz(600)
@given(
    kind=st.sampled_from(["substitute", "insert", "delete"]),
    body=file_bodies,
    suffix=file_suffixes,
    rate=st.sampled_from(["0", "0.1", "0.5", "1", "1.5", "-0.1", "nan", "x"]) | st.none(),
    seed=st.sampled_from(["0", "7", "-5", "99999999999999999999999", "x"]) | st.none(),
    as_json=st.booleans(),
)
def test_token_attacks_on_any_file(world, kind, body, suffix, rate, seed, as_json):
    path = new_path(world, suffix)
    path.write_bytes(body)
    args = ["attack", kind, path, "-o", new_path(world, suffix or ".out")]
    args += ["--rate", rate] if rate is not None else []
    args += ["--seed", seed] if seed is not None else []
    invoke(args + (["--json"] if as_json else []))


@fuzz(300)
@given(
    kind=st.sampled_from(
        [
            "typo",
            "misspelling",
            "contraction",
            "expansion",
            "lowercase",
            "swap",
            "copy-paste",
            "scramble",
            "emoji",
        ]
    ),
    body=file_bodies,
    suffix=file_suffixes,
    rate=st.sampled_from(["0", "0.3", "1", "1.5", "nan", "x"]) | st.none(),
    extra=st.sampled_from([[], ["--mode", "char"], ["--mode", "keys"], ["--spans", "0"], ["--spans", "5"]]),
)
def test_text_attacks_on_any_file(world, kind, body, suffix, rate, extra):
    """The MarkMyWords / WaterPark kinds (attacks/text_kinds.py) on any input."""
    path = new_path(world, suffix)
    path.write_bytes(body)
    args = ["attack", kind, path, "-o", new_path(world, suffix or ".out")]
    args += ["--rate", rate] if rate is not None else []
    if (kind, extra[:1]) in (("typo", ["--mode"]), ("copy-paste", ["--spans"])):
        args += extra
    invoke(args)


# ---- keygen --------------------------------------------------------------------------------------


@fuzz(100)
@given(
    name=st.text("abcdefgh0123456789._- ", min_size=1, max_size=12),
    depth=st.integers(0, 3),
    force=st.booleans(),
    twice=st.booleans(),
)
def test_keygen_to_fresh_paths(world, name, depth, force, twice):
    target = new_path(world)
    for i in range(depth):
        target = target / f"d{i}"
    target = target / name
    args = ["keygen", "-o", target] + (["--force"] if force else [])
    invoke(args)
    if twice:  # an existing key: refused without --force, replaced with it
        invoke(args)


# ---- steal on tiny corpora -----------------------------------------------------------------------


@fuzz(25)
@given(
    wm_recs=st.lists(records(), min_size=1, max_size=4),
    natural=st.lists(plain_texts, min_size=1, max_size=4),
    threat=st.sampled_from(["vanilla", "pro", "blind", "oracle", "nope"]),
    flags=st.lists(
        st.sampled_from(
            [
                ["--gamma", "0.25"],
                ["--gamma", "0.25"],
                ["--gamma", "0.25"],
                ["--gamma", "2"],
                ["--context-width", "1"],
                ["--scheme", "exp"],
                ["--count-repeats"],
            ]
        ),
        max_size=2,
    ),
)
def test_steal_on_tiny_corpora(world, wm_recs, natural, threat, flags):
    wm_path = new_path(world, ".jsonl")
    wm_path.write_bytes(_jsonl(wm_recs, []))
    nat_path = new_path(world, ".txt")
    nat_path.write_text("\n".join(natural) + "\n")
    args = ["steal", "-w", wm_path, "-n", nat_path, "--threat", threat, "--time-limit", "2"]
    invoke(args + [x for f in flags for x in f] + ["-o", new_path(world, ".json"), "--json"])


# ---- inputs the I/O hardening covers -------------------------------------------------------


def _deep(n: int) -> bytes:
    return ("[" * n + "]" * n).encode()


hostile_io_bodies = st.one_of(
    st.integers(1000, 100_000).map(_deep),
    st.integers(1000, 100_000).map(
        lambda n: b'{"text": "a b", "config": ' + b'{"a":' * n + b"1" + b"}" * n + b"}"
    ),
    st.integers(4301, 6000).map(
        lambda n: b'{"text": "a b c d", "config": {"scheme": "exp", "key_length": ' + b"9" * n + b"}}"
    ),
    st.integers(4301, 6000).map(lambda n: b'{"text": ' + b"7" * n + b"}"),
    st.sampled_from([b'{"text": "abc \\ud800 def ghi"}', b'{"text": "abc def ghi", "prompt": "\\udfff"}']),
    st.sampled_from(
        [b'{"text": "a \\u001b]0;title\\u0007 \\u001b[2J b c d e f"}', b"a \x1b]52;c;aGk=\x07 b c d e f\n"]
    ),
)


@needs_io_hardening
@fuzz(200)
@given(body=hostile_io_bodies, command=st.sampled_from(["detect", "detect-show", "attack"]))
def test_hostile_json_surrogates_and_escapes(world, body, command):
    path = new_path(world, ".jsonl")
    path.write_bytes(body)
    if command == "attack":
        res = invoke(["attack", "substitute", path, "-o", new_path(world, ".jsonl")])
    else:
        res = invoke(
            ["detect", path, "--key", world / "key"] + (["--show-tokens"] if command == "detect-show" else [])
        )
    assert "\x1b]" not in res.output  # no OSC sequence from the input reaches the terminal


@needs_io_hardening
@fuzz(50)
@given(
    device=st.sampled_from(["/dev/zero", "/dev/urandom", "/dev/null"]),
    command=st.sampled_from(["detect", "attack", "config"]),
)
def test_devices_are_read_with_a_bound(world, device, command):
    if command == "detect":
        invoke(["detect", device, "--key", world / "key"])
    elif command == "config":
        text = new_path(world, ".txt")
        text.write_text(" ".join(WORDS))
        invoke(["detect", text, "--key", world / "key", "--config", device])
    else:
        invoke(["attack", "delete", device, "-o", new_path(world, ".txt")])


@needs_io_hardening
@fuzz(100)
@given(
    parent_is_file=st.booleans(),
    same_as_input=st.booleans(),
    exists=st.booleans(),
    name=st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=8),
)
def test_output_and_key_paths(world, parent_is_file, same_as_input, exists, name):
    src = new_path(world, ".txt")
    src.write_text(" ".join(WORDS) + "\n")
    out = src if same_as_input else new_path(world, ".txt")
    if parent_is_file:
        out = src / name
    elif exists:
        out.write_text("keep me\n")
    before = out.read_bytes() if out.is_file() else None
    res = invoke(["attack", "delete", src, "-o", out])
    if res.exit_code == 2 and before is not None:
        assert out.read_bytes() == before  # a refused run leaves the file as it was
    invoke(["keygen", "-o", (src / name) if parent_is_file else new_path(world) / name])
