"""Keyring entries of one scheme family scored together (runtime/keyring_batch.py) get exactly the
p-values each entry's own scheme.detect() gives (bit for bit: == on floats), on random texts,
texts full of repeated contexts, watermarked texts, too-short texts, with hints, and when two
contexts share a seed under one key; keying/prf_batch.py's seeds equal prf.context_seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wm_toolkit.watermark.keying import prf, prf_batch
from wm_toolkit.watermark.keying.keys import Key
from wm_toolkit.watermark.runtime.keyring import Entry, Keyring
from wm_toolkit.watermark.runtime.keyring_batch import GreenListBatch, _pair_counted, distinct_rows
from wm_toolkit.watermark.runtime.keyring_detect import RingDetector

V = 1000
CONFIGS = [
    {"scheme": "kgw"},
    {"scheme": "kgw", "gamma": 0.5},
    {"scheme": "kgw", "context_width": 3},
    {"scheme": "kgw", "count_repeats": True},
    {"scheme": "kgw", "seeding": "selfhash"},
    {"scheme": "kgw", "seeding": "selfhash", "context_width": 2, "count_repeats": True},
    {"scheme": "unigram"},
    {"scheme": "unigram", "count_repeats": True},
    {"scheme": "gumbel"},
    {"scheme": "gumbel", "context_width": 1},
    {"scheme": "synthid", "num_layers": 10},
    {"scheme": "synthid", "ngram_len": 2, "score": "mean"},
    {"scheme": "dipmark"},  # not batched: its own detect()
]


class _Tok:
    def __len__(self) -> int:
        return V


def _detector(per_config: int = 3, batched: bool = True, configs=CONFIGS) -> RingDetector:
    entries = [
        Entry(f"e{i}-{j}", {"inline": Key.from_seed(f"batch {i} {j}").secret.hex()}, cfg, "fake-tok")
        for i, cfg in enumerate(configs)
        for j in range(per_config)
    ]
    return RingDetector(Keyring(entries), alpha=1e-3, load_tokenizer=lambda name: _Tok(), batched=batched)


def _watermarked(scheme, n=120, seed=0):
    torch.manual_seed(seed)
    proc = scheme.processor()
    ids = torch.randint(0, V, (1, 8))
    for _ in range(n):
        out = proc(ids, torch.randn(1, V) * 3)
        ids = torch.cat([ids, torch.multinomial(torch.softmax(out.float(), -1), 1)], 1)
    return ids[0, 8:].numpy()


def _texts(rng):
    looped = np.tile(rng.integers(0, V, size=7), 30)[:200]  # one 7-token loop: contexts repeat
    looped[::9] = rng.integers(0, V, size=len(looped[::9]))
    few = rng.integers(0, 12, size=150)  # a dozen ids: most (context, token) pairs repeat
    same = np.full(60, 17)  # one context, one token
    random = [rng.integers(0, V, size=n) for n in (2, 3, 4, 5, 6, 50, 200, 400)]
    return [*random, looped, few, same]


def _assert_equal_to_own_detect(det: RingDetector, ids: np.ndarray, weights=None) -> None:
    res = det.detect_ids({"fake-tok": ids}, weights)
    w = det.weights() if weights is None else weights
    for m, r, wi in zip(det.members, res.entries, w, strict=True):
        if wi == 0:
            assert r.num_tokens_scored == 0 and r.log10_p_value == 0.0
            continue
        try:
            own = m.scheme.detect(ids, alpha=1e-3 * r.weight)
        except Exception as exc:  # too short for this entry: the same message
            assert r.error == str(exc), m.entry.name
            continue
        assert r.error is None, (m.entry.name, r.error)
        assert r.log10_p_value == min(0.0, float(own.log10_p_value)), (m.entry.name, len(ids))
        assert r.num_tokens_scored == own.num_tokens_scored, (m.entry.name, len(ids))


def test_every_family_is_batched_and_dipmark_is_not():
    det = _detector()
    batched = sorted(i for idx, _ in det.batches for i in idx)
    assert len(det.batches) == len(CONFIGS) - 1
    assert batched == list(range(3 * (len(CONFIGS) - 1)))  # the dipmark entries go one by one
    assert not _detector(batched=False).batches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_p_values_equal_each_entrys_own_detect_bit_for_bit(seed):
    det = _detector()
    for ids in _texts(np.random.default_rng(seed)):
        _assert_equal_to_own_detect(det, ids)


def test_watermarked_texts_too():
    det = _detector(per_config=2, configs=CONFIGS[:-1])
    for k in (0, 8, 12, 16, 20):  # kgw, selfhash, unigram, gumbel, synthid: each its first entry
        ids = _watermarked(det.members[k].scheme, seed=k)
        res = det.detect_ids({"fake-tok": ids})
        assert res.entries[k].log10_p_value < -3
        _assert_equal_to_own_detect(det, ids)


def test_hints_skip_entries_and_leave_the_others_exact():
    det = _detector(per_config=2)
    w = np.zeros(len(det.members))
    w[::3] = 1.0 / len(w[::3])
    _assert_equal_to_own_detect(det, np.random.default_rng(5).integers(0, V, 120), w)


def test_out_of_vocabulary_ids_fail_as_one_by_one():
    det, alone = _detector(per_config=1), _detector(per_config=1, batched=False)
    bad = {"fake-tok": np.array([1, 2, V + 5, 3, 4, 5, 6])}
    with pytest.raises(Exception) as batched_exc:
        det.detect_ids(bad)
    with pytest.raises(Exception) as own_exc:
        alone.detect_ids(bad)
    assert type(batched_exc.value) is type(own_exc.value) and str(batched_exc.value) == str(own_exc.value)


def test_a_key_with_two_contexts_on_one_seed_gets_its_own_mask():
    """Two distinct contexts on one 64-bit seed (never seen in practice, 2^-64 per pair): detection
    then counts the pairs by seed, and the batch must too."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, size=300)
    ids[:4] = [0, 5, 1, 5]  # contexts 0 and 1 (distinct rows 0 and 1) both before token 5
    uniq, inverse = distinct_rows(np.lib.stride_tricks.sliding_window_view(ids, 2)[:, :1])
    tokens = ids[1:].copy()
    seeds_u = rng.integers(-(2**62), 2**62, size=(3, len(uniq)))
    seeds_u[1, 1] = seeds_u[1, 0]  # key 1: contexts 0 and 1 collide
    counted = _pair_counted(seeds_u, inverse, tokens)
    from wm_toolkit.watermark.schemes.base import first_occurrences

    for e in range(3):
        assert (counted[e] == first_occurrences(seeds_u[e, inverse], tokens)).all()
    assert (counted[0] != counted[1]).any()  # the collision changed which pairs count


def test_the_seed_table_fills_once_and_matches_the_scheme():
    det = _detector(per_config=4, configs=[{"scheme": "kgw"}])
    ((idx, batch),) = det.batches
    assert isinstance(batch, GreenListBatch)
    ids = np.random.default_rng(4).integers(0, V, 80)
    det.detect_ids({"fake-tok": ids})
    assert batch.table is not None
    seen = np.flatnonzero(batch.filled)
    assert set(seen) == set(ids[:-1].tolist())
    for row, i in enumerate(idx):
        want = det.members[i].scheme.seeds_for(seen.reshape(-1, 1))
        assert (batch.table[seen, row] == want).all()


@pytest.mark.parametrize("width", [1, 2, 4, 16, 17, 33])
def test_many_key_seeds_equal_context_seeds(width):
    rng = np.random.default_rng(width)
    keys = [Key.from_seed(f"many {i}").derive("test") for i in range(5)] + [b"short key", bytes(64)]
    ctx = rng.integers(-(2**63), 2**63 - 1, size=(40, width), dtype=np.int64)
    want = np.stack([prf.context_seeds(k, ctx) for k in keys])
    many = prf_batch.ManyKeySeeds(keys)
    assert (many(ctx) == want).all()
    assert (many(ctx, np.array([5, 0])) == want[[5, 0]]).all()
    assert (prf_batch.many_context_seeds(keys, ctx[:0]) == want[:, :0]).all()


def test_many_key_seeds_without_numba(monkeypatch):
    monkeypatch.setenv("WM_NUMBA", "0")
    monkeypatch.setattr(prf_batch, "_KERNELS", [])
    keys = [Key.from_seed(f"plain {i}").derive("test") for i in range(3)]
    ctx = np.random.default_rng(0).integers(0, V, size=(20, 4))
    many = prf_batch.ManyKeySeeds(keys)
    assert many._states is None
    assert (many(ctx) == np.stack([prf.context_seeds(k, ctx) for k in keys])).all()
