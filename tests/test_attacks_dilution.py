"""Dilution: the watermarked part makes up the asked fraction, in contiguous pieces, donor order kept."""

import numpy as np
import pytest

from wm_toolkit.attacks.dilution import dilute


def strip_pieces(out, wm):
    """Remove the watermarked ids (values >= 1000 here) and return (donor part, wm part)."""
    return [t for t in out if t < 1000], [t for t in out if t >= 1000]


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_fraction_is_met_and_order_is_kept(fraction):
    wm = list(range(1000, 1040))
    donor = list(range(500))
    res = dilute(wm, donor, fraction, np.random.default_rng(0))
    don_part, wm_part = strip_pieces(res.token_ids, wm)
    assert wm_part == wm[: res.watermarked_tokens]
    assert don_part == donor[: len(don_part)]
    assert abs(res.fraction - fraction) <= 1 / len(res.token_ids)


def test_a_short_donor_shortens_the_watermarked_part_instead():
    res = dilute(list(range(1000, 1100)), list(range(30)), 0.25, np.random.default_rng(0))
    assert res.watermarked_tokens == 10 and len(res.token_ids) == 40
    assert res.fraction == pytest.approx(0.25)


def test_spans_are_contiguous_pieces_at_allowed_boundaries():
    wm = list(range(1000, 1030))
    donor = list(range(90))
    boundaries = [i % 3 == 0 for i in range(90)]  # only every third donor token starts a word
    res = dilute(wm, donor, 0.25, np.random.default_rng(3), spans=3, boundaries=boundaries)
    out = res.token_ids
    starts = [i for i, t in enumerate(out) if t >= 1000 and (i == 0 or out[i - 1] < 1000)]
    assert 1 <= len(starts) <= 3  # pieces may land at the same point and join
    for s in starts:
        donor_before = sum(t < 1000 for t in out[:s])
        assert donor_before == len([t for t in out if t < 1000]) or boundaries[donor_before]
    assert [t for t in out if t >= 1000] == wm


def test_deterministic_under_a_seed():
    a = dilute(list(range(1000, 1040)), list(range(300)), 0.2, np.random.default_rng(5), spans=2)
    b = dilute(list(range(1000, 1040)), list(range(300)), 0.2, np.random.default_rng(5), spans=2)
    assert a == b
