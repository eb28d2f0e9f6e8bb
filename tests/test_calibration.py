"""Per-key calibration: the calibrated p-value is the rank among this key's natural p-values, it is
bound to the key and config it was made with, and its false-positive rate holds at alpha."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.errors import ConfigError, InputError
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme
from wm_toolkit.watermark.schemes.base import Detection
from wm_toolkit.watermark.statistics.calibration import Calibration, calibrate

PROMPTS = Path(__file__).resolve().parent.parent / "data" / "prompts.jsonl"


def _det(p: float) -> Detection:
    return Detection("unigram", p, 100, 0.0)


def _calib(null_p, key=None, **config) -> Calibration:
    cfg = GreenListConfig.for_scheme("unigram", vocab_size=1000, **config)
    scheme = build_scheme(cfg, key or Key.from_seed("c"))
    return Calibration(scheme.config.to_dict(), np.sort(np.log10(np.asarray(null_p, dtype=float))))


def test_calibrated_p_value_is_the_rank_with_plus_one():
    c = _calib([0.01, 0.2, 0.2, 0.5, 0.9])
    assert c.num_texts == 5 and c.floor == pytest.approx(1 / 6)
    assert c.calibrated_p_value(_det(0.001)) == pytest.approx(1 / 6)
    assert c.calibrated_p_value(_det(0.01)) == pytest.approx(2 / 6)  # ties count against the text
    assert c.calibrated_p_value(_det(0.2)) == pytest.approx(4 / 6)
    assert c.calibrated_p_value(_det(1.0)) == pytest.approx(1.0)
    # ranks are taken in log space: p-values below the float range still order
    tiny = Detection("unigram", 0.0, 100, 0.0, log10_p_value=-400.0)
    assert c.calibrated_p_value(tiny) == pytest.approx(1 / 6)


def test_verdict_uses_the_calibrated_p_value_and_its_floor():
    c = _calib(np.linspace(0.01, 1, 99))
    f = c.fields(_det(1e-6), alpha=0.05)
    assert f["verdict"] == "watermarked" and f["calibrated_p_value"] == pytest.approx(0.01)
    f = c.fields(_det(0.5), alpha=0.05)
    assert f["verdict"] == "not watermarked" and not f["watermarked"]
    f = c.fields(_det(1e-6), alpha=0.001)  # 1/100 > alpha: no text can be called watermarked
    assert f["verdict"] == "inconclusive" and "999" in f["inconclusive_reason"]


def test_calibration_is_bound_to_its_key_config_and_normalisation(tmp_path):
    key = Key.from_seed("c")
    c = _calib([0.1, 0.5], key=key)
    same = build_scheme(GreenListConfig.for_scheme("unigram", vocab_size=1000), key)
    c.check(same, normalize=True)
    with pytest.raises(ConfigError, match="key"):
        c.check(
            build_scheme(GreenListConfig.for_scheme("unigram", vocab_size=1000), Key.from_seed("x")), True
        )
    with pytest.raises(ConfigError, match="gamma"):
        c.check(build_scheme(GreenListConfig.for_scheme("unigram", vocab_size=1000, gamma=0.5), key), True)
    with pytest.raises(ConfigError, match="normalisation"):
        c.check(same, normalize=False)


def test_file_round_trip_holds_fingerprints_never_the_key(tmp_path):
    key = Key.from_seed("c")
    c = _calib([0.3, 0.02, 0.7], key=key)
    path = tmp_path / "calib.json"
    c.save(path)
    text = path.read_text()
    assert key.secret.hex() not in text and key.fingerprint in text
    back = Calibration.load(path)
    assert back.config == c.config and np.allclose(back.null_log10_p, c.null_log10_p)
    data = json.loads(text)
    data["config"]["gamma"] = 0.5  # edited by hand: refused
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="fingerprint"):
        Calibration.load(path)
    path.write_text('{"format": "something else"}')
    with pytest.raises(InputError, match="not a calibration"):
        Calibration.load(path)


def test_calibrated_false_positive_rate_holds_at_alpha_for_an_unlucky_key():
    """Natural texts share a skewed vocabulary, so one unigram key's analytic FPR can stray from
    alpha. Among 8 keys take the unluckiest on 200 Zipf texts; calibrated on 200 others, its FPR on
    the first 200 is within the binomial 99.9% band of alpha = 0.05 (fixed seeds; a correct
    procedure fails this with probability < 0.001 per key)."""
    rng = np.random.default_rng(0)
    vocab = 2000
    w = 1.0 / np.arange(1, vocab + 1) ** 1.1
    w /= w.sum()
    texts = [rng.choice(vocab, size=60, p=w) for _ in range(400)]
    test, natural = texts[:200], texts[200:]
    cfg = GreenListConfig.for_scheme("unigram", vocab_size=vocab)
    alpha = 0.05
    worst, worst_share = None, -1.0
    for k in range(8):
        scheme = build_scheme(cfg, Key.from_seed(f"zipf-{k}"))
        share = np.mean([scheme.detect(t).p_value <= alpha for t in test])
        if share > worst_share:
            worst, worst_share = scheme, share
    calib = calibrate(worst, natural)
    fpr = np.mean([calib.calibrated_p_value(worst.detect(t)) <= alpha for t in test])
    sd = math.sqrt(alpha * (1 - alpha) / len(test))
    assert worst_share > alpha + 2 * sd  # the unlucky key really is unlucky uncalibrated
    assert abs(fpr - alpha) < 3.3 * sd


@pytest.fixture
def env(tmp_path, monkeypatch):
    # a fixed key: with a fresh random one the unwatermarked text below would get a calibrated
    # p <= 0.05 in about one run in twenty (that is what a valid p-value does), failing the test
    write_key_file(tmp_path / "key", Key.from_seed("calibration-end-to-end"))
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args):
    return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)


def test_calibrate_then_detect_with_calibration_end_to_end(env, tokenizer):
    prompts = [json.loads(x)["prompt"] for x in PROMPTS.read_text().splitlines() if x.strip()]
    natural = [" ".join(prompts[i : i + 3]) for i in range(0, 120, 3)]  # 40 natural texts
    (env / "natural.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in natural))
    res = run("calibrate", env / "natural.jsonl", "--scheme", "unigram", "-o", env / "calib.json", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["num_texts"] == 40 and summary["floor"] == pytest.approx(1 / 41)
    saved = json.loads((env / "calib.json").read_text())
    assert saved["key_fingerprint"] == summary["key_fingerprint"] and len(saved["null_log10_p_values"]) == 40

    # a text of green tokens only, and a natural text the calibration did not see
    from wm_toolkit.watermark.keying.keys import load_key_file

    scheme = build_scheme(
        GreenListConfig.for_scheme("unigram", vocab_size=len(tokenizer)), load_key_file(env / "key")
    )
    green = [int(t) for t in scheme.green_token_ids() if tokenizer.decode([int(t)]).strip().isalpha()][:80]
    (env / "green.txt").write_text(tokenizer.decode(green))
    (env / "plain.txt").write_text(" ".join(prompts[150:153]))
    res = run(
        "detect", env / "green.txt", env / "plain.txt", "--scheme", "unigram", "--calibration", env / "calib.json",
        "--alpha", 0.05, "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    green_row, plain_row = (json.loads(x) for x in res.stdout.splitlines())
    assert green_row["calibrated_p_value"] == pytest.approx(1 / 41) and green_row["verdict"] == "watermarked"
    assert green_row["p_value"] < 1e-6  # the analytic p-value is kept
    assert plain_row["calibrated_p_value"] > 0.05 and plain_row["verdict"] == "not watermarked"
    assert plain_row["calibration_texts"] == 40

    # at alpha 1e-3 the 40-text calibration cannot decide: inconclusive, with the reason
    res = run(
        "detect", env / "green.txt", "--scheme", "unigram", "--calibration", env / "calib.json", "--json"
    )
    row = json.loads(res.stdout)
    assert row["verdict"] == "inconclusive" and "40 natural texts" in row["inconclusive_reason"]

    # another config (kgw) or another key is an error, not a silent answer
    res = run("detect", env / "green.txt", "--calibration", env / "calib.json")
    assert res.exit_code == 2 and "calibration was made for another config" in res.stderr
    write_key_file(env / "key2")
    res = run(
        "detect",
        env / "green.txt",
        "--scheme",
        "unigram",
        "--key",
        env / "key2",
        "--calibration",
        env / "calib.json",
    )
    assert res.exit_code == 2 and "calibration was made with key" in res.stderr
    (env / "bad.json").write_text("[1, 2]")
    res = run("detect", env / "green.txt", "--scheme", "unigram", "--calibration", env / "bad.json")
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "not a calibration" in res.stderr


# ---- does the tested text look like the calibration texts? (issue 30, the review's first edge) ----
V = 1000


def _repetitive(rng, n=200):
    """A short random phrase looped, a fifth of its tokens replaced: most (context, token) pairs repeat."""
    phrase = rng.integers(0, V, size=int(rng.integers(5, 15)))
    out = np.tile(phrase, n // len(phrase) + 1)[:n].copy()
    flip = rng.random(n) < 0.2
    out[flip] = rng.integers(0, V, size=int(flip.sum()))
    return out


def _kgw():
    return build_scheme(GreenListConfig.for_scheme("kgw", vocab_size=V), Key.from_seed("mismatch"))


def test_a_calibration_on_repetitive_text_flags_random_text_and_passes_its_own_kind():
    """kgw calibrated on repetitive text runs at about 2x alpha on random text (the review: 0.0205 at
    0.01). Random text repeats none of its contexts, the calibration texts 40-75%: flagged, alone
    and as a batch. Fresh repetitive texts are not flagged (fixed seed; for an exchangeable text
    the check fires only beyond the far-out fences, here 0 of 200)."""
    rng = np.random.default_rng(1)
    calib = calibrate(_kgw(), [_repetitive(rng) for _ in range(200)])
    random_text = rng.integers(0, V, size=200)
    reason = calib.mismatch(random_text)
    assert reason is not None and "repeat" in reason and "0.0%" in reason
    assert calib.batch_mismatch([rng.integers(0, V, size=200) for _ in range(30)]) is not None
    assert sum(calib.mismatch(_repetitive(rng)) is not None for _ in range(200)) == 0
    assert calib.batch_mismatch([_repetitive(rng) for _ in range(30)]) is None
    fields = calib.fields(_kgw().detect(random_text), alpha=0.05, mismatch=reason)
    assert fields["calibration_mismatch"] == reason


def test_matching_random_texts_are_not_flagged_and_another_length_is():
    rng = np.random.default_rng(2)
    calib = calibrate(_kgw(), [rng.integers(0, V, size=200) for _ in range(200)])
    assert sum(calib.mismatch(rng.integers(0, V, size=200)) is not None for _ in range(300)) == 0
    batches = [[rng.integers(0, V, size=200) for _ in range(30)] for _ in range(20)]
    assert sum(calib.batch_mismatch(b) is not None for b in batches) == 0  # KS at 1e-3: P(any) < 0.02
    assert "tokens" in (calib.mismatch(rng.integers(0, V, size=60)) or "")
    assert "repeat" in (calib.mismatch(_repetitive(rng)) or "")


def test_too_few_calibration_texts_for_alpha_warn_with_the_chance_of_twice_alpha():
    """With N texts the calibrated FPR is the k-th smallest of N uniforms, k = floor(alpha (N + 1)):
    at N = 99, alpha = 0.01 it exceeds 2 alpha with probability 0.98^99 = 13.5%."""
    c = _calib(np.linspace(0.005, 1, 99))
    warning = c.fields(_det(0.5), alpha=0.01)["calibration_size_warning"]
    assert warning is not None and "99 texts" in warning and "13.5%" in warning and "1000" in warning
    assert c.size_warning(0.2) is None  # 99 texts >= 10 / 0.2
    big = _calib(np.linspace(0.0005, 1, 1000))
    assert big.size_warning(0.01) is None and big.fields(_det(0.5), 0.01)["calibration_size_warning"] is None


def test_an_old_format_calibration_file_still_loads_without_text_statistics(tmp_path):
    c = _calib([0.3, 0.02, 0.7])
    old = c.to_dict()  # a calibration without text statistics is written as version 1
    assert old["version"] == 1 and set(old) == {  # exactly the keys version 1 wrote
        "format", "version", "key_fingerprint", "config_fingerprint", "config", "normalize",
        "num_texts", "skipped_too_short", "null_log10_p_values",
    }  # fmt: skip
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    back = Calibration.load(path)
    assert back.text_stats is None and back.num_texts == 3
    assert back.mismatch(np.arange(50)) is None and back.batch_mismatch([np.arange(50)] * 30) is None
    assert back.calibrated_p_value(_det(0.02)) == pytest.approx(2 / 4)


def test_new_files_round_trip_their_text_statistics(tmp_path):
    rng = np.random.default_rng(3)
    c = calibrate(_kgw(), [_repetitive(rng) for _ in range(20)] + [np.arange(1)])  # one too short
    c.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["version"] == 2 and len(data["text_stats"]["num_tokens"]) == 20 and c.skipped == 1
    assert data["null_summary"]["share_p_below"]["0.05"] == c.share_below(0.05)
    back = Calibration.load(tmp_path / "c.json")
    assert back.text_stats is not None and np.allclose(back.text_stats.rates, c.text_stats.rates, atol=1e-6)
    data["text_stats"]["repeat_rate"] = data["text_stats"]["repeat_rate"][:-1]
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match="malformed"):
        Calibration.load(tmp_path / "c.json")


def test_detect_warns_once_when_the_texts_are_unlike_the_calibration(env, tokenizer):
    """CLI: calibrated on looped sentences, a text of distinct words gets one `warning:` line and
    `calibration_mismatch` in --json; a looped text like the calibration's gets null."""
    rng = np.random.default_rng(4)
    words = [
        w
        for w in tokenizer.convert_ids_to_tokens(range(2000, 12000))
        if w.startswith("Ġ") and w[1:].isalpha()
    ]

    def looped():
        phrase = " ".join(rng.choice(words[:3000], size=int(rng.integers(5, 12))).tolist()).replace("Ġ", "")
        return " ".join([phrase] * 12)

    (env / "natural.jsonl").write_text("".join(json.dumps({"text": looped()}) + "\n" for _ in range(60)))
    res = run("calibrate", env / "natural.jsonl", "--scheme", "kgw", "-o", env / "calib.json", "--json")
    assert res.exit_code == 0, res.output
    (env / "plain.txt").write_text(" ".join(w[1:] for w in rng.choice(words, size=120)))
    (env / "looped.txt").write_text(looped())
    res = run("detect", env / "plain.txt", env / "looped.txt", "--scheme", "kgw", "--calibration",
              env / "calib.json", "--alpha", 0.2, "--json")  # fmt: skip
    assert res.exit_code == 0, res.output
    plain, same = (json.loads(x) for x in res.stdout.splitlines())
    assert "repeat" in plain["calibration_mismatch"] and same["calibration_mismatch"] is None
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "1 of 2 text(s) do not look like the calibration texts" in warnings[0]
    assert plain["calibration_size_warning"] is None  # 60 texts >= 10 / 0.2
    res = run(
        "detect", env / "looped.txt", "--scheme", "kgw", "--calibration", env / "calib.json", "--alpha", 0.05
    )
    assert res.exit_code == 0 and "fewer than 10 / alpha = 200" in res.stderr
