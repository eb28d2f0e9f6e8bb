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
