"""mpac: a multi-bit payload. The null law of the statistic, the BCH code, the decoder's posterior,
recovery on synthetic watermarked sequences and no confident wrong payloads on null texts."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.schemes.mpac import MpacConfig, format_payload, parse_payload
from wm_toolkit.watermark.schemes.mpac_code import bch_generator, payload_code, poly_mul
from wm_toolkit.watermark.statistics.pvalues import log10_max_count_tail, max_count_pmf

V = 1000


def exact_max_pmf(n: int, r: int) -> list[Fraction]:
    """P[max cell = m] for Multinomial(n, r equal cells), by counting assignments exactly."""
    ways = {(0, 0): 1}
    for _ in range(r):
        new: dict[tuple[int, int], int] = {}
        for (t, mx), w in ways.items():
            for j in range(n - t + 1):
                k = (t + j, max(mx, j))
                new[k] = new.get(k, 0) + w * math.comb(n - t, j)
        ways = new
    out = [Fraction(0)] * (n + 1)
    for (t, mx), w in ways.items():
        if t == n:
            out[mx] += Fraction(w, r**n)
    return out


@pytest.mark.parametrize("r", [2, 4, 8])
@pytest.mark.parametrize("n", [1, 2, 5, 13, 40, 90])
def test_max_count_pmf_is_the_exact_law_of_the_largest_cell(n, r):
    exact = exact_max_pmf(n, r)
    got = max_count_pmf(n, r)
    for m, e in enumerate(exact):
        if e == 0:
            assert got[m] == 0.0
        else:
            assert got[m] == pytest.approx(float(e), rel=2e-7)  # deep tails included (down to 8^-89)


def test_sum_of_maxima_tail_matches_brute_force_convolution():
    sizes = [3, 5, 5, 8]
    pmfs = [np.array([float(x) for x in exact_max_pmf(n, 4)]) for n in sizes]
    dist = np.ones(1)
    for p in pmfs:
        dist = np.convolve(dist, p)
    for s in (8, 12, 15, 18, 21):
        assert 10 ** log10_max_count_tail(sizes, s, 4) == pytest.approx(dist[s:].sum(), rel=1e-6)


def test_all_tokens_on_one_colour_has_the_floor_probability():
    # 22 positions of 10 tokens, every token on one colour: P = prod 4^-(n - 1)
    assert log10_max_count_tail([10] * 22, 220, 4) == pytest.approx(-22 * 9 * math.log10(4), abs=1e-6)


def test_bch_generator_divides_x_n_minus_1_and_the_code_has_the_designed_distance():
    for m, t in [(5, 2), (6, 2), (7, 2), (6, 1), (6, 3)]:
        g = bch_generator(m, t)
        n = (1 << m) - 1
        r_ = (1 << n) | 1  # x^n + 1
        for i in range(n, g.bit_length() - 2, -1):  # x^n + 1 mod g == 0
            if (r_ >> i) & 1 and i >= g.bit_length() - 1:
                r_ ^= g << (i - g.bit_length() + 1)
        assert r_ == 0
        assert g.bit_length() - 1 == m * t
    for k, t in [(8, 2), (32, 2), (32, 1), (64, 2)]:
        assert payload_code(k, t, 2).bit_distance >= 2 * t + 1
    assert poly_mul(0b11, 0b11) == 0b101


def test_codewords_pass_the_parity_check_and_the_trellis_ends_in_state_zero():
    code = payload_code(32, 2, 4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = int(rng.integers(0, 1 << 32))
        sym = code.encode(p)
        state = 0
        for s in sym:
            state = code.transitions[state, s]
        assert state == 0 and code.payload_of(sym) == p


@pytest.mark.parametrize("k,t,r", [(32, 2, 4), (16, 2, 8), (32, 2, 2), (64, 2, 4), (12, 2, 4)])
def test_the_code_corrects_its_designed_number_of_symbol_errors(k, t, r):
    """Counts that point at the codeword except at `correctable` positions, which point at another
    colour with the same margin: the ML decoder still returns the payload, and says it corrected
    that many positions."""
    code = payload_code(k, t, r)
    assert code.correctable >= 1
    rng = np.random.default_rng(k + r)
    for _ in range(10):
        p = int.from_bytes(rng.bytes(8), "big") >> (64 - k)
        sym = code.encode(p)
        counts = np.zeros((code.positions, r))
        counts[np.arange(code.positions), sym] = 4
        for pos in rng.choice(code.positions, code.correctable, replace=False):
            counts[pos] = 0
            wrong = (sym[pos] + 1 + rng.integers(r - 1)) % r
            if pos == 0 and code.padding:  # the first symbol's padding bits are known zeros
                wrong = sym[pos] ^ 1
            counts[pos, wrong] = 4
        d = code.decode(counts, math.log(3.0))
        assert d.payload == p and d.corrected == code.correctable


def test_posterior_equals_enumeration_over_all_payloads():
    code = payload_code(8, 2, 4)
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, size=(code.positions, 4)).astype(float)
    log_rho = 0.7
    scores = np.array([counts[np.arange(code.positions), code.encode(p)].sum() for p in range(256)])
    post = np.exp(log_rho * (scores - scores.max()))
    post /= post.sum()
    d = code.decode(counts, log_rho)
    assert d.payload == int(np.argmax(scores))
    assert d.confidence == pytest.approx(post[d.payload], rel=1e-9)
    for j in range(8):  # each bit's posterior, MSB first
        bit = (d.payload >> (7 - j)) & 1
        same = sum(post[p] for p in range(256) if (p >> (7 - j)) & 1 == bit)
        assert d.bit_confidence[j] == pytest.approx(same, rel=1e-9)


def test_payload_parsing_and_config_bounds():
    assert parse_payload("0x1234ABCD", 32) == 0x1234ABCD
    assert format_payload(0xAB, 16) == "0x00ab"
    for bad in ("0xZZ", "", "0x" + "1" * 17):
        with pytest.raises(ConfigError):
            parse_payload(bad, 32)
    with pytest.raises(ConfigError):
        MpacConfig(payload_bits=8, payload="0x1FF")
    for fields in ({"payload_bits": 7}, {"payload_bits": 65}, {"radix": 3}, {"ecc_errors": 3},
                   {"delta": -1.0}, {"context_width": 0}, {"min_payload_confidence": 0.2}):  # fmt: skip
        with pytest.raises(ConfigError):
            MpacConfig(**fields)
    with pytest.raises(ConfigError, match="payload"):
        build_scheme(MpacConfig(vocab_size=V), Key.from_seed("x")).processor()


def test_null_p_values_are_valid_under_random_keys():
    """Uniform random token sequences under 250 random keys: P[p <= u] <= u (binomial 3.3-sigma
    bound at each u: a false failure has probability < 2e-3 per level). The statistic is an
    integer, so the test is conservative at most levels (about 0.4 at u = 0.5)."""
    rng = np.random.default_rng(11)
    ps = []
    for i in range(250):
        s = build_scheme(MpacConfig(vocab_size=V), Key.from_seed(f"null-{i}"))
        d = s.detect(rng.integers(0, V, size=int(rng.integers(20, 250))))
        ps.append(d.p_value)
        assert d.payload is None or d.watermarked(1e-3)
    ps = np.array(ps)
    for u in (0.01, 0.05, 0.2, 0.5):
        assert (ps <= u).mean() <= u + 3.3 * math.sqrt(u * (1 - u) / len(ps))
    assert (ps <= 0.5).mean() >= 0.3  # valid, not vacuous


def synthetic(scheme, n: int, rng: np.random.Generator) -> np.ndarray:
    """A sequence from a random model of varying entropy (logit scale 0.5-4 over V tokens),
    biased by the scheme's processor."""
    proc = scheme.processor()
    g = torch.Generator().manual_seed(int(rng.integers(1 << 30)))
    ids = torch.tensor([[int(rng.integers(V))]])
    for _ in range(n):
        logits = torch.randn(1, V, generator=g) * float(rng.uniform(0.5, 4.0))
        nxt = torch.multinomial(torch.softmax(proc(ids, logits), -1), 1, generator=g)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0, 1:].numpy()


def test_payload_is_recovered_from_synthetic_watermarked_sequences():
    """8 sequences of 200 tokens, 32-bit payloads: at least 7 candidates right (synthetic q ~ 0.7;
    measured 20/20 at this length), and no payload reported wrong."""
    rng = np.random.default_rng(5)
    right = 0
    for i in range(8):
        payload = format_payload(int(rng.integers(0, 1 << 32)), 32)
        s = build_scheme(MpacConfig(vocab_size=V, payload=payload), Key.from_seed(f"syn-{i}"))
        d = s.detect(synthetic(s, 200, rng))
        assert d.watermarked(1e-3)
        right += d.payload_candidate == payload
        assert d.payload in (None, payload)
        assert len(d.payload_bit_confidence) == 32
    assert right >= 7


def test_no_confident_wrong_payload_on_null_or_weak_texts():
    """Null texts (random tokens) never reach confidence 0.99; short watermarked texts (60 tokens,
    where most candidates are wrong) never put a wrong candidate at 0.99."""
    rng = np.random.default_rng(9)
    for i in range(100):
        s = build_scheme(MpacConfig(vocab_size=V), Key.from_seed(f"nul-{i}"))
        d = s.detect(rng.integers(0, V, size=200))
        assert d.payload_confidence < 0.99
    for i in range(10):
        payload = format_payload(int(rng.integers(0, 1 << 32)), 32)
        s = build_scheme(MpacConfig(vocab_size=V, payload=payload), Key.from_seed(f"weak-{i}"))
        d = s.detect(synthetic(s, 60, rng))
        assert d.payload_candidate == payload or d.payload_confidence < 0.99


def test_processor_biases_each_row_of_a_batch_under_its_own_context():
    s = build_scheme(MpacConfig(vocab_size=V, payload="0x1234abcd", delta=3.0), Key.from_seed("b"))
    ids = torch.tensor([[5, 17], [9, 400], [1, 17]])
    out = s.processor()(ids, torch.zeros(3, V))
    for b in range(3):
        ctx = ids[b : b + 1, -1:].numpy()
        seed = torch.from_numpy(s.colour_seeds(ctx))
        sym = s.message[s.positions_of(ctx)[0]]
        green = s.vocab_colours(seed, V)[0] == sym
        assert torch.equal(out[b] == 3.0, green)
    assert torch.equal(out[0], out[2])  # same previous token, same list


def test_detection_json_fields_and_levels():
    rng = np.random.default_rng(1)
    s = build_scheme(MpacConfig(vocab_size=V, payload="0xdeadbeef"), Key.from_seed("j"))
    d = s.detect(synthetic(s, 200, rng))
    row = d.to_dict(alpha=1e-3)
    assert row["payload"] in (None, "0xdeadbeef") and 0.0 <= row["payload_confidence"] <= 1.0
    assert "token_mask" not in row and row["payload_status"] in ("decoded", "inconclusive")
    tiny = d.to_dict(alpha=10 ** (d.log10_p_value - 1))  # not watermarked at that level
    assert tiny["payload"] is None and "not watermarked" in tiny["payload_reason"]
    assert set(itertools.chain(d.token_mask)) <= {-1, 0, 1}


def test_cli_embeds_a_payload_and_detect_decodes_it(tmp_path, monkeypatch, tiny_dir):
    """`wm generate --payload 0x1234ABCD` (implies mpac, 32 bits) then `wm detect --json` on a
    plain-text copy (so detection cannot read the record's payload): the payload comes back from
    the text with the key alone. A fixed key and seed, so the run is deterministic (under a fresh
    key a 200-token text of the tiny model is now and then left inconclusive, below 0.99)."""
    import json

    from click.testing import CliRunner

    from wm_toolkit.cli.main import wm
    from wm_toolkit.watermark.keying.keys import write_key_file

    write_key_file(tmp_path / "key", Key.from_seed("cli-payload"))
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    (tmp_path / "p.txt").write_text("Tell me about rivers.\nWrite about the sea.\n")

    def run(*args):
        return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)

    res = run("generate", "--prompt-file", tmp_path / "p.txt", "--model", tiny_dir, "--max-new-tokens", 200,
              "--payload", "0x1234ABCD", "--seed", 1, "-o", tmp_path / "out.jsonl")  # fmt: skip
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records[0]["config"]["scheme"] == "mpac" and records[0]["config"]["payload_bits"] == 32
    (tmp_path / "plain.txt").write_text(records[0]["text"])
    res = run("detect", tmp_path / "plain.txt", "--scheme", "mpac", "--model", tiny_dir, "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout.splitlines()[0])
    assert row["watermarked"] and row["payload"] == "0x1234abcd", {
        k: v for k, v in row.items() if k.startswith("payload") or k in ("log10_p_value", "green_fraction")
    }
    assert row["payload_confidence"] >= 0.99 and row["payload_status"] == "decoded"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--payload", "0xZZ"], "hex digits"),
        (["--payload", "0x12", "--scheme", "kgw"], "does not apply"),
        (["--payload", "0x1FF", "--payload-bits", "8"], "does not fit"),
        (["--payload", "0x" + "ab" * 9], "hex digits"),
    ],
)
def test_bad_payloads_are_one_error_line(args, message, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from wm_toolkit.cli.main import wm

    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    res = CliRunner().invoke(wm, ["generate", "hello", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], res.output
