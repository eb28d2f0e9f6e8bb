"""`wm attack unicode`: invisible characters, look-alikes and odd spaces change the tokens but not
what a reader sees, and canonical text undoes every mode, so they no longer hide a watermark."""

import json
from pathlib import Path

import numpy as np
import pytest

from wm_toolkit.attacks.registry import AttackContext, apply_attack, parse_attack
from wm_toolkit.attacks.unicode import MODES, unicode_attack
from wm_toolkit.watermark.modeling.generation import encode_texts, generate
from wm_toolkit.watermark.schemes import GreenListConfig, build_scheme
from wm_toolkit.watermark.text.normalize import canonical_text, canonicalize

PROMPTS = Path(__file__).resolve().parent.parent / "data" / "prompts.jsonl"
KIND = {  # which tampering count each mode shows up in
    **dict.fromkeys(
        ["zwsp", "zwsp-chars", "zwj", "zwnj", "wordjoiner", "softhyphen", "bidi", "bom"], "invisible"
    ),
    **dict.fromkeys(["homoglyph", "homoglyph-greek", "fullwidth", "mathfont"], "confusable"),
    **dict.fromkeys(["nbsp", "thinspace", "ideographic", "doublespace", "tab"], "whitespace"),
}


@pytest.fixture(scope="module")
def texts():
    lines = [json.loads(x)["prompt"] for x in PROMPTS.read_text().splitlines() if x.strip()]
    return [" ".join(lines[i : i + 3]) for i in range(0, 30, 3)]


def test_every_mode_is_listed_with_its_tampering_kind():
    assert set(MODES) == set(KIND) and len(MODES) == 17


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_changes_the_tokens_and_canonical_text_undoes_it(mode, texts, tokenizer):
    for i, text in enumerate(texts):
        attacked = unicode_attack(text, mode, 1.0, np.random.default_rng(i))
        assert attacked != text
        assert encode_texts(tokenizer, [attacked], normalize=False) != encode_texts(tokenizer, [text])
        out, report = canonicalize(attacked)
        assert out == text, mode
        assert report.tampering[KIND[mode]] > 0
        assert sum(report.tampering.values()) == report.tampering[KIND[mode]]


def test_rate_edits_a_share_of_the_sites_reproducibly(texts):
    text = texts[0]
    full = unicode_attack(text, "zwsp", 1.0, np.random.default_rng(0))
    half = unicode_attack(text, "zwsp", 0.5, np.random.default_rng(0))
    assert half == unicode_attack(text, "zwsp", 0.5, np.random.default_rng(0))
    assert 0 < half.count("\u200b") < full.count("\u200b") == text.count(" ")
    assert unicode_attack(text, "zwsp", 0.0, np.random.default_rng(0)) == text


def test_registry_kind_measures_changes_as_the_detector_sees_them(texts, tokenizer):
    spec = parse_attack("unicode:homoglyph")
    assert (spec.kind, spec.mode, spec.strength) == ("unicode", "homoglyph", 1.0)
    assert parse_attack("unicode").mode == "zwsp"
    seen = apply_attack(spec, texts[:3], AttackContext(tokenizer=tokenizer))
    raw = apply_attack(spec, texts[:3], AttackContext(tokenizer=tokenizer, normalize=False))
    for a, b in zip(seen, raw, strict=True):
        assert a.text == b.text and a.params["mode"] == "homoglyph"
        assert a.fraction_changed == 0.0 < 0.3 < b.fraction_changed


def test_watermark_survives_every_mode_with_the_tiny_model(tiny_model, tokenizer, key):
    """Three watermarked texts: after each mode the canonical text is still detected at p < 1e-3,
    while the raw attacked text (no normalisation) mostly is not."""
    scheme = build_scheme(GreenListConfig(vocab_size=len(tokenizer), gamma=0.25, delta=4.0), key)
    gens = generate(
        tiny_model, tokenizer, ["Tell me a story.", "Explain rain.", "Describe a city."], scheme,
        max_new_tokens=60, seed=0, chat=False,
    )  # fmt: skip
    clean = [scheme.detect(encode_texts(tokenizer, [g.text])[0]).p_value for g in gens]
    assert max(clean) < 1e-4
    hidden = 0
    for mode in MODES:
        for i, g in enumerate(gens):
            attacked = unicode_attack(g.text, mode, 1.0, np.random.default_rng(i))
            p = scheme.detect(encode_texts(tokenizer, [attacked])[0]).p_value
            assert p < 1e-3, (mode, i, p, clean[i])
            assert canonicalize(attacked)[1].tampered
            raw = scheme.detect(encode_texts(tokenizer, [attacked], normalize=False)[0]).p_value
            hidden += raw >= 1e-3
    assert hidden >= 17  # without normalisation many of the 51 attacked texts hide the watermark


def test_canonical_text_of_clean_generations_is_unchanged_for_natural_prompts(texts):
    for t in texts:
        assert canonical_text(t) == t


def test_cli_attack_unicode_then_detect_flags_tampering(tmp_path, monkeypatch, tokenizer):
    from click.testing import CliRunner

    from wm_toolkit.cli.main import wm
    from wm_toolkit.watermark.keying.keys import write_key_file

    key = write_key_file(tmp_path / "key")
    monkeypatch.setenv("WM_KEY_FILE", str(tmp_path / "key"))
    scheme = build_scheme(GreenListConfig.for_scheme("unigram", vocab_size=len(tokenizer)), key)
    words = [int(t) for t in scheme.green_token_ids() if tokenizer.decode([int(t)]).startswith(" ")]
    text = tokenizer.decode([w for w in words if tokenizer.decode([w])[1:].isalpha()][:60])
    rec = {"text": text, "config": scheme.config.to_dict()}
    (tmp_path / "wm.jsonl").write_text(json.dumps(rec) + "\n")

    def run(*args):
        return CliRunner().invoke(wm, [str(a) for a in args], catch_exceptions=False)

    res = run("attack", "unicode", tmp_path / "wm.jsonl", "--mode", "zwsp", "-o", tmp_path / "z.jsonl")
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "z.jsonl").read_text())
    assert out["config"] == rec["config"] and out["attack"]["kind"] == "unicode"
    assert out["attack"]["mode"] == "zwsp" and out["text"].count("\u200b") == text.count(" ")

    res = run("detect", tmp_path / "z.jsonl", "--json")
    row = json.loads(res.stdout)
    assert row["p_value"] < 1e-3 and row["verdict"] == "watermarked"
    assert row["tampering"] == {"invisible": text.count(" "), "confusable": 0, "whitespace": 0}
    assert row["normalized_chars"] == text.count(" ")
    raw = json.loads(run("detect", tmp_path / "z.jsonl", "--json", "--no-normalize").stdout)
    assert "tampering" not in raw and raw["p_value"] > row["p_value"]
    res = run("detect", tmp_path / "z.jsonl")  # the table run warns on stderr and notes it in the table
    assert "possible tampering" in res.stderr and "invisible" in res.stderr
    assert "tampering" in res.stdout


@pytest.mark.slow
def test_real_model_watermark_survives_every_mode_and_its_output_is_unchanged(key):
    """Default model, three kgw texts: the generations show no sign of tampering, and canonical text
    gives back exactly the clean p-values after every mode (benchmarks/unicode.py prints the table)."""
    from wm_toolkit.watermark.modeling.models import load_model

    model, tok = load_model()
    scheme = build_scheme(GreenListConfig(vocab_size=len(tok)), key)
    gens = generate(
        model, tok, ["Write a letter to a friend.", "Explain how tides work.", "Describe a busy market."],
        scheme, max_new_tokens=200, seed=0,
    )  # fmt: skip
    for i, g in enumerate(gens):
        assert not canonicalize(g.text)[1].tampered  # at most a doubled space the model wrote itself
        clean = scheme.detect(encode_texts(tok, [g.text])[0]).p_value
        assert clean < 1e-3
        for mode in MODES:
            attacked = unicode_attack(g.text, mode, 1.0, np.random.default_rng(i))
            assert scheme.detect(encode_texts(tok, [attacked])[0]).p_value == pytest.approx(clean, rel=1e-9)
