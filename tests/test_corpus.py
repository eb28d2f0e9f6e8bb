"""Corpus mode of `wm detect` and `watermark.detect_texts`: records streamed in, one row out per
record in input order, the same rows as the in-memory path, bounded work in flight, Parquet in and
out, and the key never written anywhere."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.config import config_from_dict
from wm_toolkit.watermark.keying.keys import load_key_file, write_key_file
from wm_toolkit.watermark.runtime import corpus
from wm_toolkit.watermark.text import textio

WORDS = [
    "river",
    "stone",
    "light",
    "market",
    "winter",
    "garden",
    "letter",
    "engine",
    "music",
    "paper",
    "mountain",
    "silver",
    "window",
]


def natural_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) + "." for _ in range(n)]


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_key_file(tmp_path / "key")
    return tmp_path


def run(*args, input=None):
    return CliRunner().invoke(wm, [str(a) for a in args], input=input, catch_exceptions=False)


def jsonl(path, texts, extra_lines=()):
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "id": len(t)}) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


def rows_of(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines()]


@pytest.mark.parametrize("scheme, n", [("kgw", 150), ("exp", 12)])
def test_stream_rows_equal_the_in_memory_rows_in_order(env, scheme, n):
    jsonl(env / "c.jsonl", natural_texts(n))  # kgw: more than two batches
    old = run("detect", "c.jsonl", "--key", "key", "--json", "--scheme", scheme)
    new = run("detect", "c.jsonl", "--key", "key", "--stream", "--scheme", scheme)
    assert old.exit_code == 0 and new.exit_code == 0, new.output
    assert rows_of(new.stdout) == rows_of(old.stdout)
    assert [r["source"] for r in rows_of(new.stdout)] == [f"c.jsonl:{i}" for i in range(1, n + 1)]


def test_bad_records_get_an_error_row_in_place_and_exit_2(env):
    jsonl(env / "c.jsonl", natural_texts(3), ["not json", "", '{"other": 1}', '{"text": "hi"}', "[1]"])
    res = run("detect", "c.jsonl", "--key", "key", "--stream")
    assert res.exit_code == 2
    rows = rows_of(res.stdout)
    assert [r["source"] for r in rows] == ["c.jsonl:1", "c.jsonl:2", "c.jsonl:3", "c.jsonl:4"] + [
        "c.jsonl:6",
        "c.jsonl:7",
        "c.jsonl:8",
    ]  # the blank line 5 is not a record
    assert ["error" in r for r in rows] == [False] * 3 + [True] * 4
    assert "not valid JSON" in rows[3]["error"] and "'text' field" in rows[4]["error"]
    assert res.stderr.startswith("error: 4 of 7 text(s)") and len(res.stderr.splitlines()) == 1


def test_stream_has_no_whole_input_cap_but_keeps_the_per_text_cap(env, monkeypatch):
    monkeypatch.setattr(textio, "MAX_INPUT_BYTES", 2000)
    texts = natural_texts(40)
    jsonl(env / "c.jsonl", texts[:20] + ["word " * 1000] + texts[20:])  # one record over the cap
    assert (env / "c.jsonl").stat().st_size > 4 * 2000
    res = run("detect", "c.jsonl", "--key", "key", "--stream")
    rows = rows_of(res.stdout)
    assert len(rows) == 41 and res.exit_code == 2
    assert "too large" in rows[20]["error"] and all("error" not in r for i, r in enumerate(rows) if i != 20)
    # the in-memory path refuses the whole file; a JSONL file over the cap switches to streaming
    assert run("detect", "c.jsonl", "--key", "key", "--json").exit_code == 2
    assert len(rows_of(run("detect", "c.jsonl", "--key", "key", "--json").stdout)) == 41


def test_readers_are_lazy(env):
    """Records come one at a time: the first is there before the bad tail of the file is read."""
    with open(env / "c.jsonl", "w") as f:
        f.write(json.dumps({"text": "first text"}) + "\n")
        f.write("garbage\n" * 10000)
    it = corpus.iter_corpus(str(env / "c.jsonl"))
    first = next(it)
    assert first.text == "first text" and corpus.record_error(first) is None
    assert corpus.record_error(next(it)) is not None


def test_in_flight_batches_are_bounded(tokenizer):
    """The pool never pulls more than 2 x workers batches ahead of the consumer."""
    key = load_key_file_from_seed()
    cfg = config_from_dict({"scheme": "kgw"})
    plan = corpus.ConfigPlan.of(cfg)
    plan.load_tokenizer = lambda _n: tokenizer
    pulled = []

    def batches():
        for i, b in enumerate(
            corpus.batched(
                (textio.TextRecord(f"t{i}", t) for i, t in enumerate(natural_texts(40))), plan, size=2
            )
        ):
            pulled.append(i)
            yield b

    det = corpus.Detector(key, 1e-3, True, tokenizers={plan.model or "smollm2-135m": tokenizer})
    seen = 0
    for _ in corpus.ordered_map(batches(), key, 1e-3, True, workers=1, detector=det):
        seen += 1
        assert len(pulled) - seen <= 0
    assert seen == 20


def load_key_file_from_seed():
    from wm_toolkit.watermark.keying.keys import Key

    return Key.from_seed("corpus-test")


@pytest.mark.slow  # spawns two workers (each imports torch)
def test_detect_texts_two_workers_equal_one_worker_in_order():
    key = load_key_file_from_seed()
    texts = natural_texts(300, seed=3)
    one = list(corpus.detect_texts(texts, key, {"scheme": "kgw"}, workers=1, alpha=1e-3))
    two_gen = corpus.detect_texts(texts, key, {"scheme": "kgw"}, workers=2, alpha=1e-3)
    two = list(two_gen)
    assert [d.to_dict(1e-3) for d in two] == [d.to_dict(1e-3) for d in one]
    assert len(one) == 300


def test_detect_texts_raises_or_returns_errors():
    key = load_key_file_from_seed()
    texts = ["hi", *natural_texts(2)]
    with pytest.raises(textio.InputError):
        list(corpus.detect_texts(texts, key, {"scheme": "kgw"}))
    out = list(corpus.detect_texts(texts, key, {"scheme": "kgw"}, errors="return"))
    assert isinstance(out[0], textio.InputError) and out[1].p_value is not None


def test_parquet_in_and_out_round_trip(env):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = natural_texts(30, seed=5)
    pq.write_table(pa.table({"body": texts, "n": list(range(30))}), env / "c.parquet", row_group_size=7)
    jsonl(env / "c.jsonl", texts)
    res = run("detect", "c.parquet", "--key", "key", "--text-field", "body", "-o", "out.parquet")
    assert res.exit_code == 0, res.output
    back = pq.read_table(env / "out.parquet").to_pylist()
    ref = rows_of(run("detect", "c.jsonl", "--key", "key", "--json").stdout)
    assert [r["source"] for r in back] == [f"c.parquet:{i}" for i in range(1, 31)]
    assert [json.loads(r["row"])["p_value"] for r in back] == [r["p_value"] for r in ref]
    assert [r["p_value"] for r in back] == [r["p_value"] for r in ref]
    assert not list(env.glob(".out.parquet.*"))  # no temporary file left behind
    # JSONL output to a file: the same rows
    assert run("detect", "c.parquet", "--key", "key", "--text-field", "body", "-o", "o.jsonl").exit_code == 0
    assert [r["p_value"] for r in rows_of((env / "o.jsonl").read_text())] == [r["p_value"] for r in ref]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: (d / "c.parquet").write_bytes(b"PAR1 not really"), "not a readable Parquet file"),
        (lambda d: (d / "c.parquet").write_bytes(b""), "Parquet"),
    ],
)
def test_bad_parquet_is_one_error_line(env, setup, message):
    setup(env)
    res = run("detect", "c.parquet", "--key", "key")
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and message in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_missing_parquet_column_and_refused_flags(env):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"body": natural_texts(2)}), env / "c.parquet")
    res = run("detect", "c.parquet", "--key", "key")
    assert res.exit_code == 2 and "no column 'text'" in res.stderr
    res = run("detect", "c.parquet", "--key", "key", "--text-field", "body", "--show-tokens")
    assert res.exit_code == 2 and "--show-tokens is not available in corpus mode" in res.stderr
    res = run("detect", "c.parquet", "--key", "key", "--text-field", "body", "--spans")
    assert res.exit_code == 2 and "--spans is not available in corpus mode" in res.stderr


def test_plain_text_lines_and_existing_output_refused_without_force(env):
    (env / "t.txt").write_text("\n".join(natural_texts(5)) + "\n\n")
    res = run("detect", "t.txt", "--key", "key", "--lines", "-o", "o.jsonl")
    assert res.exit_code == 0, res.output
    assert [r["source"] for r in rows_of((env / "o.jsonl").read_text())] == [
        f"t.txt:{i}" for i in range(1, 6)
    ]
    res = run("detect", "t.txt", "--key", "key", "--lines", "-o", "o.jsonl")
    assert res.exit_code == 2 and "already exists" in res.stderr


def test_the_key_is_never_written_with_workers(env):
    """Two worker processes (the one test of the real pool in the fast suite): the same rows as one
    process, in order, and no output, log or file holds the key."""
    jsonl(env / "c.jsonl", natural_texts(200))
    before = set(env.rglob("*"))
    res = run("detect", "c.jsonl", "--key", "key", "--workers", "2", "-o", "o.jsonl")
    assert res.exit_code == 0, res.output
    key = load_key_file(env / "key")
    secrets = [(env / "key").read_text().strip(), key.secret.hex()]
    created = set(env.rglob("*")) - before
    assert created == {env / "o.jsonl"}
    rows = rows_of((env / "o.jsonl").read_text())
    assert rows == rows_of(run("detect", "c.jsonl", "--key", "key", "--stream").stdout)
    assert len(rows) == 200 and rows[0]["config"]["key_fingerprint"] == key.fingerprint
    for text in [res.output, (env / "o.jsonl").read_text()]:
        assert not any(s in text for s in secrets)


@pytest.mark.slow  # starting a local Ray and two actors: ~3 minutes on a loaded 2-core machine
def test_ray_engine_gives_the_local_rows_row_for_row(env):
    """`--engine ray` (a local Ray, two actors) on Parquet and JSONL: the same rows as the local run."""
    pytest.importorskip("ray.data")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    import ray

    texts = natural_texts(40, seed=9)
    pq.write_table(pa.table({"text": [*texts[:20], None, *texts[20:]]}), env / "c.parquet", row_group_size=9)
    jsonl(env / "c.jsonl", texts[:10], ["", "not json", '{"text": "hi"}'])
    try:
        for f in ("c.parquet", "c.jsonl"):
            local = run("detect", f, "--key", "key", "--stream")
            dist = run("detect", f, "--key", "key", "--engine", "ray", "--workers", "2")
            assert dist.exit_code == local.exit_code == 2, dist.output
            assert rows_of(dist.stdout) == rows_of(local.stdout)
            assert dist.stderr == local.stderr
    finally:
        ray.shutdown()
