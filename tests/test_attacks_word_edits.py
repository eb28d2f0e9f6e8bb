"""Word-level edits: exactly floor(rate * #words) words change, everything else is kept, seeded."""

import numpy as np
import pytest

from wm_toolkit.attacks.word_edits import (
    COMMON_WORDS,
    SYNONYMS,
    is_word,
    split_words,
    word_delete,
    word_substitute,
)

TEXT = (
    "The old lighthouse keeper walked along the shore every morning. He was happy to see the big "
    "ships, and he often said that the sea was a strong and calm friend. One day a small child asked "
    "him why he never left the town. He thought for a moment, then gave a simple answer: the light "
    "needed him, and the people on the ships needed the light. It was a hard job but an important one."
)


def words(text):
    return [p for p in split_words(text) if is_word(p)]


def test_pieces_join_back_to_the_text():
    assert "".join(split_words(TEXT)) == TEXT


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.35, 1.0])
def test_word_substitute_changes_exactly_the_chosen_fraction_and_nothing_else(rate):
    before = words(TEXT)
    out = word_substitute(TEXT, rate, np.random.default_rng(1))
    after = words(out)
    assert len(after) == len(before)
    changed = sum(a != b for a, b in zip(before, after, strict=True))
    assert changed == int(np.floor(rate * len(before)))
    # punctuation and whitespace untouched
    assert [p for p in split_words(out) if not is_word(p)] == [p for p in split_words(TEXT) if not is_word(p)]
    for a, b in zip(before, after, strict=True):
        if a != b:
            assert b.lower() == SYNONYMS.get(a.lower(), b.lower()) or b.lower() in COMMON_WORDS
            assert a[0].isupper() == b[0].isupper()  # capitalisation copied


def test_word_delete_removes_exactly_the_chosen_fraction_in_order():
    before = words(TEXT)
    out = word_delete(TEXT, 0.3, np.random.default_rng(2))
    after = words(out)
    assert len(after) == len(before) - int(np.floor(0.3 * len(before)))
    it = iter(w.lower() for w in before)
    assert all(w.lower() in it for w in after)  # a subsequence: survivors keep their order
    assert "  " not in out and out == out.strip()
    assert out[0].isupper()


def test_word_edits_are_deterministic_under_a_seed_and_vary_with_it():
    for fn in (word_substitute, word_delete):
        a = fn(TEXT, 0.2, np.random.default_rng(7))
        assert a == fn(TEXT, 0.2, np.random.default_rng(7))
        assert a != fn(TEXT, 0.2, np.random.default_rng(8))


def test_rate_outside_unit_interval_is_refused():
    with pytest.raises(ValueError):
        word_delete(TEXT, 1.5, np.random.default_rng(0))
