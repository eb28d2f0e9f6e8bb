"""wm's vLLM plugin (watermark/runtime/engines/vllm_plugin.py).

Settings, request policy, the equality with the HF path and the chi-square run everywhere (the
processor is driven with BatchUpdate-shaped objects: vLLM's own classes where vLLM is installed).
`-m vllm` tests need vLLM (`make vllm`; `make test` runs them inside .venv-vllm).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.hfkeys import HashingKey
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.modeling.generation import scheme_processor
from wm_toolkit.watermark.runtime.engines import vllm_plugin as vp
from wm_toolkit.watermark.schemes.distortion_free import DistortionFreeLogitsProcessor

ROOT = Path(__file__).resolve().parent.parent
V = 64
KEY = Key.from_seed("vllm-plugin")
VLLM_REASON = "vLLM is not installed here: `make vllm` creates .venv-vllm (make test runs these tests there)"

try:
    from vllm import SamplingParams
    from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

    HAVE_VLLM = True
except ImportError:
    HAVE_VLLM = False


def params(temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, **extra) -> object:
    if HAVE_VLLM:
        return SamplingParams(temperature=temperature, top_p=top_p, top_k=top_k, extra_args=extra or None)
    return SimpleNamespace(temperature=temperature, top_p=top_p, top_k=top_k, extra_args=extra or None)


def update(added=(), removed=(), moved=(), size=0) -> object:
    if HAVE_VLLM:
        return BatchUpdate(batch_size=size, removed=list(removed), added=list(added), moved=list(moved))
    return SimpleNamespace(batch_size=size, removed=list(removed), added=list(added), moved=list(moved))


def swap() -> object:
    return MoveDirectionality.SWAP if HAVE_VLLM else SimpleNamespace(name="SWAP")


def processor(config: dict, key=KEY, **policy) -> vp.WmLogitsProcessor:
    cfg = vp.Policy(vp.config_from_dict({"vocab_size": V, **config}), **policy)
    return vp.WmLogitsProcessor.from_server(vp.WatermarkServer(cfg, key, V, V, "test"))


# ---- settings and request policy (no vLLM needed) -----------------------------------------------


def test_policy_from_env_reads_file_or_json_and_the_allow_list(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"scheme": "kgw", "gamma": 0.5}))
    p = vp.Policy.from_env({vp.ENV_CONFIG: str(path), vp.ENV_ALLOW: "delta, gamma", vp.ENV_ENFORCE: "1"})
    assert p.config.gamma == 0.5 and p.allow == {"delta", "gamma"} and p.enforce
    p = vp.Policy.from_env({vp.ENV_CONFIG: '{"scheme": "gumbel"}'})
    assert p.config.scheme == "gumbel" and not p.allow and not p.enforce


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "WM_VLLM_CONFIG is not set"),
        ({vp.ENV_CONFIG: "{nope"}, "not valid JSON"),
        ({vp.ENV_CONFIG: '{"scheme": "kgw"}', vp.ENV_ALLOW: "key_fingerprint"}, "cannot be a request's"),
        ({vp.ENV_CONFIG: '{"scheme": "kgw"}', vp.ENV_ALLOW: "scheme"}, "cannot be a request's"),
        ({vp.ENV_CONFIG: '{"scheme": "kgw"}', vp.ENV_ENFORCE: "maybe"}, "true or false"),
    ],
)
def test_bad_server_settings_are_one_clear_error(env, message):
    with pytest.raises(ConfigError, match=message):
        vp.Policy.from_env(env)


def test_only_both_or_neither_of_key_and_config_may_be_set():
    assert not vp.configured({})
    assert vp.configured({vp.ENV_KEY: "k", vp.ENV_CONFIG: "{}"})
    with pytest.raises(ConfigError, match="WM_VLLM_CONFIG is not set"):
        vp.configured({vp.ENV_KEY: "k"})


def test_without_settings_the_processor_is_inactive_and_a_second_copy_stays_idle(monkeypatch):
    for name in (vp.ENV_KEY, vp.ENV_CONFIG):
        monkeypatch.delenv(name, raising=False)
    cfg = SimpleNamespace(model_config=SimpleNamespace(logits_processors=[vp.PROCESSOR_FQCN]))
    proc = vp.WmLogitsProcessor(cfg, "cpu", False)
    assert proc.server is None and proc.is_argmax_invariant()
    logits = torch.randn(2, V)
    assert torch.equal(proc.apply(logits.clone()), logits)
    other = SimpleNamespace(model_config=SimpleNamespace(logits_processors=[vp.PROCESSOR_FQCN]))
    copies = vp._copies_per_build(other)  # 2 where wm is installed (entry point) and also listed
    assert [vp._duplicate(other) for _ in range(2 * copies)] == [i % copies != 0 for i in range(2 * copies)]


def test_request_policy():
    p = vp.Policy(vp.config_from_dict({"scheme": "kgw"}), allow=frozenset({"delta"}))
    assert p.request(None) == (True, ())
    assert p.request({"wm_watermark": False, "other_processor_arg": 3}) == (False, ())
    assert p.request({"wm_delta": 3.0}) == (True, (("delta", 3.0),))
    for bad, message in [
        ({"wm_key": "00" * 32}, "the watermark key is the server's"),
        ({"wm_key_file": "/etc/k"}, "the watermark key is the server's"),
        ({"wm_gamma": 0.5}, "not allowed here"),
        ({"wm_delta": -1.0}, "delta"),
        ({"wm_delta": [1]}, "a number, a string or a boolean"),
        ({"wm_watermark": "perhaps"}, "true or false"),
    ]:
        with pytest.raises(ConfigError, match=message):
            p.request(bad)
    enforced = vp.Policy(p.config, enforce=True)
    assert enforced.request({"wm_watermark": True}) == (True, ())
    with pytest.raises(ConfigError, match="watermarks every request"):
        enforced.request({"wm_watermark": False})


def test_validate_params_refuses_with_value_error(monkeypatch):
    monkeypatch.setenv(vp.ENV_CONFIG, '{"scheme": "kgw"}')
    monkeypatch.setenv(vp.ENV_ENFORCE, "1")
    vp.WmLogitsProcessor.validate_params(params())
    for extra in ({"wm_watermark": False}, {"wm_key": "x"}):
        with pytest.raises(ValueError, match="wm watermark"):
            vp.WmLogitsProcessor.validate_params(params(**extra))
    monkeypatch.delenv(vp.ENV_CONFIG)
    vp.WmLogitsProcessor.validate_params(params(wm_watermark=False))  # none configured: the engine decides


def test_a_config_made_for_another_key_is_refused():
    cfg = vp.config_from_dict({"scheme": "kgw", "key_fingerprint": Key.from_seed("other").fingerprint})
    with pytest.raises(ConfigError, match="wrong key"):
        vp.WatermarkServer(vp.Policy(cfg), KEY, V, V, "test")


def test_wm_imports_no_vllm():
    code = "import sys, wm_toolkit.cli.main, wm_toolkit.watermark.modeling.generation; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(HAVE_VLLM, reason="checks the message where vLLM is missing")
def test_engine_vllm_without_vllm_is_one_error_line(tmp_path):
    cmd = [sys.executable, "-m", "wm_toolkit.cli.main", "generate", "--engine", "vllm", "hello"]
    env = {**os.environ, "WM_KEY_FILE": str(tmp_path / "absent.key")}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert (
        out.stderr.strip().splitlines()[-1].startswith("error: --engine vllm:") and "make vllm" in out.stderr
    )
    assert "Traceback" not in out.stderr and not (tmp_path / "absent.key").exists()


# ---- the plugin emits what wm's HF processors emit ------------------------------------------------

SCHEMES = [
    ({"scheme": "kgw"}, KEY),
    ({"scheme": "unigram"}, KEY),
    ({"scheme": "kgw", "seeding": "selfhash"}, KEY),
    ({"scheme": "hf-kgw"}, HashingKey(15485863)),
    ({"scheme": "synthid"}, KEY),
    ({"scheme": "exp"}, KEY),
    ({"scheme": "its"}, KEY),
    ({"scheme": "gumbel"}, KEY),
]
SETTINGS = [dict(temperature=0.7, top_p=0.9, top_k=20), dict(temperature=0.0), dict(temperature=1.3)]


def _reference_step(proc, ids: list[int], logits: torch.Tensor, draw: bool) -> torch.Tensor:
    """wm's HF path for one row and step: the processor, and transformers' sampling where the
    engine would sample from a distribution-returning final processor (hf-kgw)."""
    out = proc(torch.tensor([ids]), logits)
    return vp.force(out, torch.multinomial(torch.softmax(out, dim=-1), 1).squeeze(1)) if draw else out


@pytest.mark.parametrize(
    "config, key", SCHEMES, ids=lambda x: x.get("seeding", x.get("scheme")) if isinstance(x, dict) else ""
)
def test_plugin_output_equals_the_hf_processors(config, key, monkeypatch):
    monkeypatch.setattr(DistortionFreeLogitsProcessor, "shift_seed", 0)
    plugin = processor(config, key)
    scheme = plugin.server.base
    final = scheme.acts_on_final_distribution if hasattr(scheme, "acts_on_final_distribution") else False
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, V, 6).tolist() for _ in SETTINGS]
    outputs: list[list[int]] = [[] for _ in SETTINGS]
    added = [(i, params(**s), prompts[i], outputs[i]) for i, s in enumerate(SETTINGS)]
    plugin.update_state(update(added=added, size=len(SETTINGS)))
    refs = [
        scheme_processor(scheme, s.get("temperature", 1.0), s.get("top_p", 1.0), s.get("top_k", 0))
        for s in SETTINGS
    ]
    where = {i: i for i in range(len(SETTINGS))}  # request -> batch row
    for step in range(8):
        if step == 4:  # vLLM reorders its batch: rows 0 and 2 swap
            plugin.update_state(update(moved=[(0, 2, swap())], size=len(SETTINGS)))
            where[0], where[2] = 2, 0
        logits = torch.randn(len(SETTINGS), V, generator=torch.Generator().manual_seed(step)) * 3
        torch.manual_seed(100 + step)
        got = plugin.apply(logits.clone())
        torch.manual_seed(100 + step)
        order = sorted(where, key=lambda r: list(plugin.rows).index(where[r]))  # the plugin's call order
        for r in order:
            draw = final and SETTINGS[r].get("temperature", 1.0) > 0 and not hasattr(refs[r], "pick")
            want = _reference_step(refs[r], prompts[r] + outputs[r], logits[where[r] : where[r] + 1], draw)
            assert torch.equal(got[where[r]], want[0]), (config, r, step)
        for r in range(len(SETTINGS)):
            row = got[where[r]]
            outputs[r].append(int(row.argmax()))  # forced: the only finite logit


def test_unwatermarked_requests_and_removed_rows_are_left_alone():
    plugin = processor({"scheme": "gumbel"})
    out_a: list[int] = []
    plugin.update_state(
        update(added=[(0, params(), [1, 2, 3, 4], out_a), (1, params(wm_watermark=False), [1, 2, 3, 4], [])])
    )
    assert set(plugin.rows) == {0}
    logits = torch.randn(2, V)
    got = plugin.apply(logits.clone())
    assert torch.equal(got[1], logits[1]) and torch.isinf(got[0]).sum() == V - 1
    plugin.update_state(update(removed=[0]))
    assert not plugin.rows
    assert torch.equal(plugin.apply(logits.clone()), logits)


def test_allowed_request_parameters_change_the_scheme_for_that_request():
    plugin = processor({"scheme": "kgw", "delta": 2.0}, allow=frozenset({"delta"}))
    plugin.update_state(update(added=[(0, params(wm_delta=8.0), [5], []), (1, params(), [5], [])]))
    logits = torch.zeros(2, V)
    got = plugin.apply(logits.clone())
    assert set(got[0].unique().tolist()) == {0.0, 8.0} and set(got[1].unique().tolist()) == {0.0, 2.0}


def test_greedy_forcing_requests_are_watermarked_with_one_warning(caplog):
    plugin = processor({"scheme": "gumbel"})
    plugin.update_state(update(added=[(i, params(temperature=0.0), [1, 2, 3, i], []) for i in range(3)]))
    assert sum("greedy requests are watermarked" in r.message for r in caplog.records) == 1
    got = plugin.apply(torch.randn(3, V))
    assert all(torch.isinf(got[i]).sum() == V - 1 for i in range(3))


def test_a_failing_row_is_left_unwatermarked_and_the_batch_goes_on(caplog):
    plugin = processor({"scheme": "gumbel", "context_width": 4})
    plugin.update_state(
        update(added=[(0, params(), [1], []), (1, params(), [1, 2, 3, 4], [])])
    )  # row 0: short prompt
    logits = torch.randn(2, V)
    got = plugin.apply(logits.clone())
    assert torch.equal(got[0], logits[0]) and torch.isinf(got[1]).sum() == V - 1
    assert 0 not in plugin.rows and "left unwatermarked" in caplog.text


# ---- no distortion: the first token's law through the plugin is the model's ----------------------


def test_gumbel_through_the_plugin_is_distortion_free():
    """3,000 requests with fresh random contexts, temperature 0.8 and top-k 6 on 8 fixed logits:
    the tokens the plugin forces follow softmax(top-6(logits) / 0.8) (chi-square)."""
    from scipy.stats import chisquare

    plugin = processor({"scheme": "gumbel", "context_width": 4})
    logits = torch.full((1, V), -1e9)
    logits[0, :8] = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5])
    want = torch.softmax(logits[0, :6].double() / 0.8, dim=-1).numpy()
    want /= want.sum()
    rng = np.random.default_rng(1)
    counts = np.zeros(8)
    n = 3000
    for _ in range(n):
        plugin.update_state(
            update(added=[(0, params(temperature=0.8, top_k=6), rng.integers(0, V, 4).tolist(), [])])
        )
        counts[int(plugin.apply(logits.clone())[0].argmax())] += 1
        plugin.update_state(update(removed=[0]))
    assert counts[6:].sum() == 0
    assert chisquare(counts[:6], want * n).pvalue > 1e-3


# ---- inside vLLM ---------------------------------------------------------------------------------


@pytest.mark.vllm
def test_the_processor_is_a_vllm_logits_processor_and_an_entry_point():
    pytest.importorskip("vllm", reason=VLLM_REASON)
    from vllm.v1.sample.logits_processor import LogitsProcessor

    assert issubclass(vp.WmLogitsProcessor, LogitsProcessor)
    text = (ROOT / "pyproject.toml").read_text()
    assert f'wm = "{vp.PROCESSOR_FQCN}"' in text


@pytest.mark.vllm
def test_wm_generate_engine_vllm_then_wm_detect(tmp_path):
    """The whole path: `wm generate --engine vllm` (gumbel, the plugin inside vLLM's engine on the
    default model) writes the HF path's records and config, and `wm detect` finds the watermark."""
    pytest.importorskip("vllm", reason=VLLM_REASON)
    key = tmp_path / "k.key"
    write_key_file(key, Key.from_seed("vllm-engine-test"))
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": p}) + "\n" for p in ["Tell me a story.", "Explain rain."])
    )
    wm = [sys.executable, "-m", "wm_toolkit.cli.main"]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    gen = wm + [
        "generate",
        "--engine",
        "vllm",
        "--key",
        str(key),
        "--scheme",
        "gumbel",
        "--prompt-file",
        str(prompts),
    ]
    gen += [
        "--max-new-tokens",
        "40",
        "--seed",
        "0",
        "-o",
        str(tmp_path / "w.jsonl"),
        "--config-out",
        str(tmp_path / "c.json"),
    ]
    subprocess.run(gen, cwd=ROOT, env=env, check=True, capture_output=True, timeout=900)
    records = [json.loads(x) for x in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in records] == [["config", "model", "num_tokens", "prompt", "scheme", "text"]] * 2
    assert records[0]["scheme"] == "gumbel" and records[0]["config"] == json.loads(
        (tmp_path / "c.json").read_text()
    )
    det = wm + [
        "detect",
        "--key",
        str(key),
        "--config",
        str(tmp_path / "c.json"),
        str(tmp_path / "w.jsonl"),
        "--json",
    ]
    out = subprocess.run(det, cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=300)
    rows = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    assert len(rows) == 2 and all(r["p_value"] < 1e-3 for r in rows), out.stdout


@pytest.mark.parametrize(
    "name, key",
    [
        ("kgw", Key.from_seed("env")),
        ("hf-kgw", HashingKey(15485863)),
        ("vllm-gumbel", None),
    ],
)
def test_the_engine_gets_the_schemes_key_through_a_private_file_whatever_its_kind(name, key):
    """`open_llm` hands the key to vLLM's engine process as a 0600 temporary file of the key's own
    kind (wm, transformers' integer, vLLM's integer), removed once the engine has started."""
    from wm_toolkit.watermark.keying.hfkeys import load_any_key_file
    from wm_toolkit.watermark.keying.vllmkey import VllmKey
    from wm_toolkit.watermark.schemes import build_scheme

    key = VllmKey(0x5EED0000CAFE0001) if key is None else key
    scheme = build_scheme({"scheme": name, "vocab_size": 49152}, key)
    with vp.server_environment(scheme):
        path = Path(os.environ[vp.ENV_KEY])
        assert path.stat().st_mode & 0o077 == 0
        assert load_any_key_file(path) == key
    assert not path.exists() and os.environ.get(vp.ENV_KEY) != str(path)


# ---- the batched step equals row by row -----------------------------------------------------------

CHANGES = {
    "kgw": ("delta", 5.0),
    "unigram": ("gamma", 0.5),
    "hf-kgw": ("delta", 4.0),
    "synthid": ("ngram_len", 3),
}
CHANGES |= {"exp": ("key_length", 64), "its": ("key_length", 64), "gumbel": ("context_width", 2)}


def _mixed_requests(field: str, value) -> list[tuple[int, object]]:
    """(step it joins, sampling params): default sampling twice, other settings, another variant,
    watermark off, greedy, and one joining late with the defaults."""
    return [
        (0, params()),
        (0, params(temperature=0.7, top_p=0.9, top_k=20)),
        (0, params(**{f"wm_{field}": value})),
        (0, params(wm_watermark=False)),
        (0, params(temperature=0.0)),
        (0, params()),
        (3, params()),
        (2, params(temperature=1.3, **{f"wm_{field}": value})),
    ]


@pytest.mark.parametrize(
    "config, key", SCHEMES, ids=lambda x: x.get("seeding", x.get("scheme")) if isinstance(x, dict) else ""
)
def test_a_batched_step_of_mixed_rows_equals_row_by_row(config, key, monkeypatch):
    """The same requests through the batched step and through each row's own processor, with the
    same logits and torch seed at every step: the same logits out, -inf and forced tokens alike
    (including torch's random draws); vLLM moves and removes rows on the way."""
    from wm_toolkit.watermark.runtime.engines import vllm_rows

    monkeypatch.setattr(DistortionFreeLogitsProcessor, "shift_seed", 7)
    monkeypatch.setattr(vllm_rows, "CHUNK_SCORES", 2 * V)  # forcing batches in chunks of two rows
    field, value = CHANGES[config["scheme"]]
    plugins = [processor(config, key, allow=frozenset({field})) for _ in range(2)]
    plugins[1].batch_rows = False
    requests = _mixed_requests(field, value)
    rng = np.random.default_rng(3)
    prompts = [rng.integers(0, V, int(rng.integers(5, 9))).tolist() for _ in requests]
    outputs = [[[] for _ in requests] for _ in plugins]
    for step in range(9):
        for plugin, outs in zip(plugins, outputs, strict=True):
            added = [(i, p, prompts[i], outs[i]) for i, (at, p) in enumerate(requests) if at == step]
            moved = [(0, 5, swap())] if step == 5 else []
            removed = [2] if step == 7 else []
            plugin.update_state(update(added=added, moved=moved, removed=removed, size=len(requests)))
        logits = torch.randn(len(requests), V, generator=torch.Generator().manual_seed(step)) * 3
        got = []
        for plugin in plugins:
            torch.manual_seed(50 + step)
            got.append(plugin.apply(logits.clone()))
        assert torch.equal(got[0], got[1]), (config, step)
        assert set(plugins[0].rows) == set(plugins[1].rows)
        assert not torch.isinf(got[0][3]).any()  # watermark off: untouched
        for outs in outputs:
            for r in range(len(requests)):
                if requests[r][0] <= step:
                    outs[r].append(int(got[0][r].argmax()))
    assert len(plugins[0].rows) == 6
    sizes = Counter(row.group for row in plugins[0].rows.values())
    assert None not in sizes and max(sizes.values()) >= 3  # every row batched, three in one batch
