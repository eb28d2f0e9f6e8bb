"""The LLR score of dipmark / gamma-reweight / delta-reweight (`schemes/reweight_llr.py`): each
position's likelihood ratio has mean exactly 1 over the key for any key-independent distribution,
the p-value min(1, exp(-S)) is valid under H0 whatever model is used, it is more powerful than the
model-free score when the model is the generating one, and `wm detect --llr` reports it."""

from __future__ import annotations

import itertools
import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.base import sampling_warpers
from wm_toolkit.watermark.schemes.dipmark import reweight_log_probs
from wm_toolkit.watermark.schemes.distortion_free import FinalDistributionProcessor
from wm_toolkit.watermark.schemes.reweight_llr import (
    LLRSettings,
    detect_llr_many,
    final_log_probs,
    llr_scores,
    scored_positions,
)
from wm_toolkit.watermark.statistics.pvalues import binomial_tail

V = 64  # a tiny vocabulary: the synthetic model below and every scheme's permutation
SCHEMES = ["dipmark", "gamma-reweight", "delta-reweight"]


class Bigram(torch.nn.Module):
    """A synthetic language model: the next token's logits depend on the last token only."""

    def __init__(self, scale: float = 2.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(V, V, generator=g) * scale, requires_grad=False)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.table[input_ids])


def _scheme(name: str, seed="llr") -> Any:
    return build_scheme({"scheme": name, "vocab_size": V}, Key.from_seed(seed))


def _generate(model: Bigram, scheme, n: int, steps: int, seed: int) -> list[np.ndarray]:
    """n texts (a 4-token random prompt, then `steps` tokens) sampled through the scheme's own
    processor (None: plain sampling from the model)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (n, 4), generator=g)
    proc = scheme.processor() if scheme is not None else None
    for _ in range(steps):
        logits = model(ids).logits[:, -1].double()
        out = proc(ids, logits) if proc is not None else torch.log_softmax(logits, -1)
        ids = torch.cat([ids, torch.multinomial(out.exp(), 1, generator=g)], 1)
    return [row.numpy() for row in ids]


# ---- E_key[exp(s_t)] = 1 ------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.3, 0.45, 0.5])
def test_alpha_reweight_averages_to_q_over_every_permutation(alpha):
    """The exact form of distribution preservation on 5 tokens: the mean of Q_W over all 120
    permutations equals Q, so E[Q_W(x) / Q(x)] = 1 and, for any eps, E[(1 - eps) Q_W / Q + eps] = 1."""
    q = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15], dtype=torch.float64)
    perms = torch.tensor(list(itertools.permutations(range(5))))
    w = reweight_log_probs(q.log().expand(len(perms), 5), perms, alpha).exp()
    torch.testing.assert_close(w.mean(0), q, rtol=0, atol=1e-14)
    for eps in (0.0, 0.1, 0.5):
        ratio = ((1 - eps) * w + eps * q) / q
        torch.testing.assert_close(ratio.mean(0), torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", SCHEMES)
def test_llr_factor_has_mean_one_over_many_keys(name):
    """The whole scoring path (keyed permutations, uniforms, mixing) for one fixed Q: distinct
    contexts are independent keys, 5,000 per token. Each token's mean of exp(s_t) is within 5
    standard errors of 1 (false failure < 1e-5 per token by the CLT, 4 tokens)."""
    scheme = _scheme(name)
    n, top = 5_000, 4
    rows = np.arange(n * top)
    contexts = np.stack([rows % V, rows // V % V, rows // V**2, np.zeros_like(rows)], 1)
    logits = torch.randn(1, V, generator=torch.Generator().manual_seed(3)).double().expand(n * top, V)
    q = torch.softmax(logits[0], -1).numpy()
    likely = np.argsort(q)[-top:]  # the likelier tokens: delta-reweight's ratio is up to 1 / Q(x)
    tokens = np.repeat(likely, n)
    factor = np.exp(llr_scores(scheme, contexts, tokens, logits, LLRSettings(epsilon=0.2))).reshape(top, n)
    se = factor.std(axis=1) / math.sqrt(n)
    assert np.all(np.abs(factor.mean(axis=1) - 1.0) < 5 * se + 1e-12), (q[likely], factor.mean(axis=1), se)


def test_final_distribution_is_the_decoders():
    """log Q is built exactly as `FinalDistributionProcessor.final_log_probs` builds it."""

    class Probe(FinalDistributionProcessor):
        def pick(self, input_ids, step, log_probs):  # pragma: no cover - never decodes
            raise AssertionError

    scheme = _scheme("delta-reweight")
    logits = torch.randn(3, V + 5, generator=torch.Generator().manual_seed(1))
    ctx = torch.zeros((3, 4), dtype=torch.long)
    for settings in ({}, {"temperature": 0.7}, {"top_p": 0.9, "top_k": 20}):
        ours = final_log_probs(logits, ctx, V, sampling_warpers(**settings))
        theirs = Probe(scheme, **settings).final_log_probs(ctx, logits)
        assert torch.equal(ours, theirs)


def test_forward_logits_after_a_prefix_are_the_models(tiny_model):
    """Row r predicts token r of the text after its prefix (the formatted prompt), None = the
    start token; texts of other lengths batched beside it (right padding) change nothing."""
    from wm_toolkit.watermark.modeling.entropy import forward_logits

    g = np.random.default_rng(0)
    texts = [g.integers(0, 49152, size=n) for n in (30, 12, 21)]
    prefixes = [list(g.integers(0, 49152, size=7)), None, [5]]
    got = {i: logits for i, _, logits in forward_logits(tiny_model, texts, 1, prefixes=prefixes)}
    for i, (ids, pre) in enumerate(zip(texts, prefixes, strict=True)):
        full = torch.tensor([*(pre or [1]), *ids[:-1]]).reshape(1, -1)
        with torch.no_grad():
            want = tiny_model(input_ids=full).logits[0, len(pre or [1]) - 1 :]
        torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-4)


# ---- validity and power -------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMES)
def test_null_p_values_valid_over_keys(name):
    """Key-independent texts (plain samples; scored with their model and with another): over 60
    keys x 3 texts the share with p <= alpha stays within alpha plus sampling error, for alpha =
    0.05 and 0.2. The texts share no context, so all 180 p-values of one model are independent:
    P[Bin(180, alpha) >= count] >= 1e-4 (false failure <= 1e-4 per check, 12 checks)."""
    texts = _generate(Bigram(seed=0, scale=0.5), None, 3, 60, seed=5)
    contexts = [{tuple(w) for w in np.lib.stride_tricks.sliding_window_view(t, 4)} for t in texts]
    assert not (contexts[0] & contexts[1] or contexts[0] & contexts[2] or contexts[1] & contexts[2])
    for model in (Bigram(seed=0, scale=0.5), Bigram(seed=9)):
        ps = np.array(
            [
                d.p_value
                for k in range(60)
                for d in detect_llr_many(_scheme(name, seed=f"null {k}"), model, texts, 0, epsilon=0.1)
            ]
        )
        assert np.all((ps > 0) & (ps <= 1))
        for alpha in (0.05, 0.2):
            count = int((ps <= alpha).sum())
            assert binomial_tail(count, len(ps), alpha) >= 1e-4, (alpha, count)


@pytest.mark.parametrize("name", ["dipmark", "gamma-reweight"])
def test_plain_llr_is_the_sum_of_log_ratios(name):
    """eps = 0 is the paper's LLR: S = sum_t log Q_W(x_t) / Q(x_t), p = min(1, exp(-S))."""
    model = Bigram()
    scheme = _scheme(name)
    (ids,) = _generate(model, scheme, 1, 40, seed=2)
    (det,) = detect_llr_many(scheme, model, [ids], 0, epsilon=0.0)
    positions, contexts = scored_positions(scheme, ids)
    log_q = torch.log_softmax(model.table[ids[positions - 1]].double(), -1)
    lw = scheme.reweighted(contexts, log_q)
    x = torch.from_numpy(ids[positions]).reshape(-1, 1)
    expected = float((lw.gather(1, x) - log_q.gather(1, x)).sum())
    assert det.llr_score == pytest.approx(expected, rel=1e-12)
    assert det.log10_p_value == pytest.approx(min(0.0, -expected / math.log(10)), rel=1e-12)
    assert det.num_tokens_scored == scheme.detect(ids).num_tokens_scored


@pytest.mark.parametrize("name", SCHEMES)
def test_llr_more_powerful_than_the_model_free_score(name):
    """Texts generated through the scheme, scored with the generating model: the LLR's mean
    log10 p is below the model-free score's, and every text is detected at 1e-3."""
    model = Bigram()
    scheme = _scheme(name)
    texts = _generate(model, scheme, 6, 80, seed=7)
    dets = detect_llr_many(scheme, model, texts, 0)
    llr = np.mean([d.log10_p_value for d in dets])
    free = np.mean([d.model_free_log10_p_value for d in dets])
    assert llr < free, (llr, free)
    assert all(d.verdict(1e-3) == "watermarked" for d in dets)


def test_delta_reweight_plain_llr_dies_on_one_disagreement_and_eps_keeps_it():
    """Q_W is a point mass: with eps = 0 one token the model decodes otherwise gives S = -inf
    (p = 1, llr_score None); eps > 0 bounds that position's loss by log(eps)."""
    scheme = _scheme("delta-reweight")
    texts = _generate(Bigram(), scheme, 1, 80, seed=4)
    other = Bigram(seed=1)
    (plain,) = detect_llr_many(scheme, other, texts, 0, epsilon=0.0)
    assert plain.llr_impossible_tokens > 0 and plain.llr_score is None and plain.p_value == 1.0
    assert math.isfinite(plain.statistic) and "Infinity" not in json.dumps(plain.to_dict(1e-3))
    (mixed,) = detect_llr_many(scheme, Bigram(), texts, 0, epsilon=0.1)
    assert mixed.llr_impossible_tokens == 0 and mixed.llr_score is not None and mixed.llr_score > 0


def test_refused_inputs():
    with pytest.raises(ConfigError, match="eps"):
        LLRSettings(epsilon=1.0)
    with pytest.raises(ConfigError, match="dipmark, gamma-reweight and delta-reweight"):
        detect_llr_many(
            build_scheme({"scheme": "kgw", "vocab_size": V}, Key.from_seed(1)), Bigram(), [[1] * 9], 0
        )


# ---- the command --------------------------------------------------------------------------------


def _wm(args):
    from wm_toolkit.cli.main import wm

    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def key_file(tmp_path):
    from wm_toolkit.watermark.keying.keys import write_key_file

    path = tmp_path / "k.key"
    write_key_file(path, Key.from_seed("llr-cli"))
    return path


@pytest.mark.parametrize(
    "name",
    [
        "dipmark",
        pytest.param("gamma-reweight", marks=pytest.mark.slow),
        pytest.param("delta-reweight", marks=pytest.mark.slow),
    ],
)
def test_cli_llr_round_trip(tmp_path, tiny_dir, key_file, name):
    """`wm generate` with the tiny model, then `wm detect --llr`: the LLR fields, the verdict
    from the LLR p-value, and without --llr the very same row as before."""
    out = tmp_path / "g.jsonl"
    res = _wm(["generate", "--model", tiny_dir, "--key", key_file, "--scheme", name,
               "Tell me a story.", "--max-new-tokens", "30", "--seed", "1", "-o", out, "--force"])  # fmt: skip
    assert res.exit_code == 0, res.output
    base = ["detect", out, "--key", key_file, "--model", tiny_dir, "--json"]
    plain = _wm(base)
    row = json.loads(_wm([*base, "--llr", "--llr-epsilon", "0.2"]).output.strip().splitlines()[-1])
    assert row["llr"]["epsilon"] == 0.2 and row["llr"]["model"] == tiny_dir and row["llr"]["prompt"] is True
    assert row["log10_p_value"] == row["llr_log10_p_value"] <= 0.0
    assert row["verdict"] == ("watermarked" if row["llr_log10_p_value"] <= -3 else "not watermarked")
    assert row["model_free_log10_p_value"] == json.loads(plain.output)["log10_p_value"]
    assert _wm(base).output == plain.output  # the plain path is untouched


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--llr-epsilon", "0.5"], "--llr-epsilon needs --llr"),
        (["--llr", "--scheme", "kgw"], "dipmark, gamma-reweight and delta-reweight"),
        (["--llr", "--scheme", "dipmark", "--spans"], "not available with --spans"),
        (["--llr", "--scheme", "dipmark", "--entropy-model", "X"], "not available with --entropy-model"),
        (["--llr", "--scheme", "dipmark", "--llr-epsilon", "1"], "1"),
    ],
)
def test_cli_llr_flags_refused_in_one_line(tmp_path, key_file, extra, message):
    text = tmp_path / "t.txt"
    text.write_text("some words to test " * 10)
    res = _wm(["detect", text, "--key", key_file, *extra])
    assert res.exit_code == 2
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
