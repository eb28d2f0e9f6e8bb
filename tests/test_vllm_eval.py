"""`wm eval --engine vllm`: the robustness grid on texts that wm's plugin writes inside vLLM.

The texts come from one vLLM engine opened for the scheme (watermarked requests, and the
unwatermarked side with the watermark turned off per request); perplexity and model attacks still
use the transformers model. `-m vllm` tests need vLLM (`make vllm`; make test runs them there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.measure.evaluation import GenerationSettings, cache_digest, generation_tag

ROOT = Path(__file__).resolve().parent.parent
WM = [sys.executable, "-m", "wm_toolkit.cli.main"]
VLLM_REASON = "vLLM is not installed here: `make vllm` creates .venv-vllm (make test runs these tests there)"

try:
    import vllm  # noqa: F401

    HAVE_VLLM = True
except ImportError:
    HAVE_VLLM = False


def test_hf_caches_keep_their_names_and_vllm_texts_get_their_own():
    """The engine is part of a cache's name only when it is not transformers, so caches made
    before engines were named are still found; vLLM's texts (another sampler) never mix with them."""
    hf = GenerationSettings(model="smollm2-135m")
    old_fields = {k: v for k, v in hf.__dict__.items() if k != "engine"}
    config = {"scheme": "gumbel", "context_width": 4}
    assert generation_tag(hf, config) == f"gumbel-{cache_digest({'settings': old_fields, 'config': config})}"
    vllm_settings = GenerationSettings(model="smollm2-135m", engine="vllm")
    assert generation_tag(vllm_settings, config) != generation_tag(hf, config)
    assert generation_tag(vllm_settings, None).startswith("plain-")


@pytest.mark.skipif(HAVE_VLLM, reason="checks the message where vLLM is missing")
def test_eval_engine_vllm_without_vllm_is_one_error_line(tmp_path):
    env = {**os.environ, "WM_KEY_FILE": str(tmp_path / "absent.key")}
    cmd = WM + ["eval", "--engine", "vllm", "--limit", "2", "-o", str(tmp_path / "run")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: --engine vllm:")
    assert "Traceback" not in out.stderr and not (tmp_path / "absent.key").exists()


@pytest.mark.vllm
def test_wm_eval_engine_vllm_detects_the_plugins_texts(tmp_path):
    pytest.importorskip("vllm", reason=VLLM_REASON)
    key = tmp_path / "k.key"
    write_key_file(key, Key.from_seed("vllm-eval-test"))
    out_dir = tmp_path / "run"
    cmd = WM + ["eval", "--engine", "vllm", "--key", str(key), "--scheme", "gumbel", "--limit", "4"]
    cmd += ["--max-new-tokens", "80", "--attacks", "none", "--no-perplexity", "--no-plots"]
    cmd += ["-o", str(out_dir), "--json"]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads(out.stdout)
    assert row["scheme"] == "gumbel" and row["n"] == 4 and row["attack"] == "none"
    assert row["median_p_value"] < 1e-3 and row["auroc"] == 1.0
    caches = sorted(p.name for p in (out_dir / "generations").glob("*.jsonl"))
    assert len(caches) == 2 and caches[0].startswith("gumbel-") and caches[1].startswith("plain-")
