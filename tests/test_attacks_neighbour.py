"""Embedding-neighbour substitution: word tokens only, nearest by cosine, same leading space, seeded."""

import numpy as np
import pytest
import torch

from wm_toolkit.attacks.neighbour import NeighbourIndex, neighbour_substitute

TEXT = (
    "The quick brown fox jumps over the lazy dog, and then it sleeps under a tall green tree. "
    "Later, the farmer walks to the market (about 3 miles) with 12 baskets of apples!"
)


@pytest.fixture(scope="module")
def index(tokenizer):
    torch.manual_seed(0)
    return NeighbourIndex(torch.randn(len(tokenizer), 24), tokenizer)


def test_word_mask_excludes_punctuation_digits_and_special_tokens(index, tokenizer):
    for t in tokenizer.all_special_ids:
        assert not index.is_word[t]
    for piece in (",", " (", "12", "!", " 3", " ..."):
        assert not any(index.is_word[t] for t in tokenizer(piece, add_special_tokens=False)["input_ids"])
    (fox,) = tokenizer(" fox", add_special_tokens=False)["input_ids"]
    assert index.is_word[fox] and index.has_space[fox]


def test_neighbours_are_the_cosine_nearest_allowed_tokens(index):
    tok = 1000 + int(np.flatnonzero(index.is_word[1000:])[0])
    sims = (index.unit @ index.unit[tok]).numpy()
    allowed = index.is_word & (index.has_space == index.has_space[tok])
    allowed &= (index.is_capital == index.is_capital[tok]) & (index.word_group != index.word_group[tok])
    expected = np.argsort(-np.where(allowed, sims, -np.inf))[:3]
    assert index.neighbours([tok], k=3)[0].tolist() == expected.tolist()


@pytest.mark.parametrize("rate", [0.25, 0.5, 1.0])
def test_changes_exactly_the_rate_of_word_tokens_and_nothing_else(index, tokenizer, rate):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    eligible = [i for i, t in enumerate(ids) if index.is_word[t]]
    out = neighbour_substitute(ids, rate, index, np.random.default_rng(0))
    changed = [i for i, (a, b) in enumerate(zip(ids, out, strict=True)) if a != b]
    assert len(changed) == int(np.floor(rate * len(eligible)))
    assert set(changed) <= set(eligible)  # punctuation, digits, specials never touched
    special = set(tokenizer.all_special_ids)
    for i in changed:
        assert index.is_word[out[i]] and out[i] not in special
        assert index.has_space[out[i]] == index.has_space[ids[i]]  # words do not run together
        assert index.is_capital[out[i]] == index.is_capital[ids[i]]
        assert tokenizer.decode([out[i]]).lower() != tokenizer.decode([ids[i]]).lower()  # another word
        assert out[i] == index.neighbours([ids[i]])[0, 0]


def test_deterministic_under_a_seed(index, tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    a = neighbour_substitute(ids, 0.3, index, np.random.default_rng(4), k=3)
    assert a == neighbour_substitute(ids, 0.3, index, np.random.default_rng(4), k=3)
    assert a != neighbour_substitute(ids, 0.3, index, np.random.default_rng(5), k=3)
