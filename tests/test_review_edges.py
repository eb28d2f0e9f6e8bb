"""The edges an outside review of the statistics found (issue 30 item 4), one test each."""

from __future__ import annotations

import numpy as np

from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.schemes import build_scheme


def test_a_p_value_clearly_above_alpha_is_not_watermarked_even_below_the_needed_cap():
    s = build_scheme({"scheme": "exp", "vocab_size": 1000, "key_length": 64, "resamples": 99,
                      "max_resamples": 99, "stop_after": 0}, Key.from_seed("edges"))  # fmt: skip
    det = s.detect(np.random.default_rng(0).integers(0, 1000, 60), alpha=1e-4)
    assert det.p_value_floor > 1e-4  # the cap cannot reach alpha
    if det.p_value > 0.2:
        assert det.verdict(1e-4) == "not watermarked" and det.inconclusive_reason(1e-4) is None


def test_a_p_value_near_the_floor_stays_inconclusive():
    from dataclasses import replace

    s = build_scheme({"scheme": "exp", "vocab_size": 1000, "key_length": 64, "resamples": 99,
                      "max_resamples": 99, "stop_after": 0}, Key.from_seed("edges"))  # fmt: skip
    det = s.detect(np.random.default_rng(0).integers(0, 1000, 60), alpha=1e-4)
    near = replace(det, p_value=0.01, log10_p_value=-2.0, null_at_most=0)
    assert near.verdict(1e-4) == "inconclusive"
    far = replace(det, p_value=1.0, log10_p_value=0.0, null_at_most=det.resamples)
    assert far.verdict(1e-4) == "not watermarked"


def test_capitals_quoted_from_another_script_are_not_tampering():
    from wm_toolkit.watermark.text.normalize import canonicalize

    for text in ("The СССР and ТАСС signed it.", "The Greek word ΚΑΙ means and."):
        out, report = canonicalize(text)
        assert out == text and report.tampering["confusable"] == 0


def test_look_alikes_inside_latin_words_are_still_mapped():
    from wm_toolkit.watermark.text.normalize import canonicalize

    out, report = canonicalize("Pаy with pаypal")  # Cyrillic a inside Latin words
    assert out == "Pay with paypal" and report.tampering["confusable"] == 2


def test_code_alignment_is_left_as_written():
    from wm_toolkit.watermark.text.normalize import canonicalize

    code = "def f(x):\n    a  = 1\n    bb = 2\n"
    assert canonicalize(code)[0] == code
    fenced = "Set them:\n```\nx  = 1\nyy = 2\n```\nthen  run."
    assert canonicalize(fenced)[0] == "Set them:\n```\nx  = 1\nyy = 2\n```\nthen run."
