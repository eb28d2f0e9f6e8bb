"""The MarkMyWords / WaterPark text operations do what their papers say, site by site."""

from collections import Counter

import numpy as np
import pytest

from wm_toolkit.attacks.copy_paste import copy_paste
from wm_toolkit.attacks.emoji import EMOJI_INSTRUCTION, emoji_prompt, insert_emojis, strip_emojis
from wm_toolkit.attacks.reorder import scramble, split_sentences, swap_words
from wm_toolkit.attacks.spelling import (
    _EXPANDED,
    CONTRACTIONS,
    contract,
    expand,
    lowercase,
    misspell,
    misspellings,
)
from wm_toolkit.attacks.typos import QWERTY_NEIGHBOURS, typo, typo_chars, typo_words
from wm_toolkit.attacks.word_edits import is_word, split_words

TEXT = (
    "The old keeper climbed the stairs every night, and he lit the lamp before the ships came home. "
    "Nobody in the village knew why he did it. His daughter said that the sea had taken her mother "
    "years ago, and that the light was a promise. Sometimes, in winter, the wind was so strong that "
    "the glass shook in its frame.\n\nStill he went up. I'm sure you'd have done the same, wouldn't you?"
)
EXPANDED = (
    "I am sure that you do not know. She will not come, and we are late. Do not go! "
    "It is what they would have said, because it is late and there is no bus. DO NOT PANIC. "
    "I have not seen what is there, and they are not sure it is true."
)


def osa_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment: adjacent transpositions count 1)."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def slip_kind(old: str, new: str) -> str:
    if len(new) == len(old) + 1:
        return "insert"
    if len(new) == len(old) - 1:
        return "delete"
    diff = [i for i, (x, y) in enumerate(zip(old, new, strict=True)) if x != y]
    if len(diff) == 1:
        assert new[diff[0]].lower() in QWERTY_NEIGHBOURS[old[diff[0]].lower()]  # a neighbouring key
        assert new[diff[0]].isupper() == old[diff[0]].isupper()
        return "substitute"
    assert len(diff) == 2 and diff[1] == diff[0] + 1
    return "transpose"


@pytest.mark.parametrize("rate", [0.1, 0.5, 1.0])
def test_typos_give_the_chosen_words_exactly_one_slip_each(rate):
    kinds: Counter = Counter()
    for seed in range(20):
        before = split_words(TEXT)
        after = split_words(typo_words(TEXT, rate, np.random.default_rng(seed)))
        assert len(after) == len(before)  # words stay words; separators untouched
        n_words = sum(is_word(p) for p in before)
        changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
        assert len(changed) == int(rate * n_words + 1e-9)
        for a, b in changed:
            assert is_word(a) and is_word(b) and osa_distance(a, b) == 1
            kinds[slip_kind(a, b)] += 1
    assert set(kinds) == {"substitute", "insert", "delete", "transpose"}
    # each drawn uniformly among those a word allows: none is rare (false failure < 1e-6 at rate 0.5+)
    if rate >= 0.5:
        assert min(kinds.values()) > 0.15 * sum(kinds.values()), kinds


def test_typo_keeps_short_words_and_contractions_one_word():
    rng = np.random.default_rng(0)
    for _ in range(200):
        for word in ("a", "I", "I'm", "don't", "ll", "Aa"):
            new = typo(word, rng)
            assert is_word(new) and osa_distance(word, new) == 1
            assert new.split("'")[1:] == word.split("'")[1:]  # the part after the apostrophe kept


def test_char_typos_replace_the_asked_fraction_of_letters_by_keyboard_neighbours():
    out = typo_chars(TEXT, 0.1, np.random.default_rng(3))
    assert len(out) == len(TEXT)
    letters = sum(c.lower() in QWERTY_NEIGHBOURS for c in TEXT)
    diff = [(a, b) for a, b in zip(TEXT, out, strict=True) if a != b]
    assert len(diff) == int(0.1 * letters)
    assert all(b.lower() in QWERTY_NEIGHBOURS[a.lower()] and a.isupper() == b.isupper() for a, b in diff)


def test_the_misspelling_list_is_ours_and_a_few_hundred_pairs():
    table = misspellings()
    assert sum(len(v) for v in table.values()) >= 300
    assert all(w != k and w.strip() == w for k, v in table.items() for w in v)


@pytest.mark.parametrize("rate", [0.5, 1.0])
def test_misspelling_replaces_the_asked_fraction_of_eligible_words_from_the_list(rate):
    table = misspellings()
    text = TEXT + " Their friend believed it was necessary, Definitely NECESSARY, to receive them."
    before = split_words(text)
    eligible = [p for p in before if is_word(p) and p.lower() in table]
    assert len(eligible) >= 8
    after = split_words(misspell(text, rate, np.random.default_rng(1)))
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == int(rate * len(eligible))
    for a, b in changed:
        assert b.lower() in table[a.lower()]
        assert (a.isupper(), a[0].isupper()) == (b.isupper(), b[0].isupper())  # case copied


def test_contraction_and_expansion_are_one_table_read_both_ways():
    assert len(set(CONTRACTIONS.values())) == len(CONTRACTIONS)
    rng = np.random.default_rng(0)
    short = contract(EXPANDED, 1.0, rng)
    assert "I'm sure" in short and "don't know" in short and "Don't go" in short and "DON'T PANIC" in short
    assert "She'll not" in short and "they'd have" in short and "there's no" in short
    assert contract("I know it is.", 1.0, rng) == "I know it is."  # before whitespace only, as HELM
    assert expand(short, 1.0, rng) == EXPANDED  # the round trip, case included
    long = expand(TEXT, 1.0, rng)
    assert "I am sure you would have done the same, would not you?" in long
    assert contract(long, 1.0, rng) == TEXT
    assert expand("Typographic: I\u2019m here.", 1.0, rng) == "Typographic: I am here."


def test_contraction_rate_is_a_fraction_of_the_sites():
    half = contract(EXPANDED, 0.5, np.random.default_rng(2))
    sites = len(list(_EXPANDED.finditer(EXPANDED)))
    assert sites == 14 and half.count("'") == sites // 2
    assert expand(half, 1.0, np.random.default_rng(0)) == EXPANDED


def test_lowercase_the_whole_text_or_a_fraction_of_capitalised_words():
    assert lowercase(TEXT, 1.0, np.random.default_rng(0)) == TEXT.lower()
    out = lowercase(TEXT, 0.5, np.random.default_rng(0))
    before, after = split_words(TEXT), split_words(out)
    capital = [p for p in before if any(c.isupper() for c in p)]
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == len(capital) // 2 and all(b == a.lower() for a, b in changed)
    assert out.lower() == TEXT.lower()


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5])
def test_swap_moves_the_asked_fraction_of_words_by_one_place_keeping_the_multiset(rate):
    before = split_words(TEXT)
    n_words = sum(is_word(p) for p in before)
    for seed in range(10):
        after = split_words(swap_words(TEXT, rate, np.random.default_rng(seed)))
        assert Counter(after) == Counter(before)
        assert [p for p in after if not is_word(p)] == [p for p in before if not is_word(p)]
        moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert len(moved) == 2 * int(rate * n_words / 2)
        for i in moved:  # with its neighbour across one space
            j = i + 2 if i + 2 < len(before) and after[i] == before[i + 2] else i - 2
            assert after[i] == before[j] and after[j] == before[i] and before[(i + j) // 2].isspace()


def test_scramble_keeps_the_multiset_of_sentences_and_the_separators():
    sentences, seps = split_sentences(TEXT)
    assert len(sentences) == 6 and "\n\n" in seps
    orders = set()
    for seed in range(10):
        out = scramble(TEXT, 1.0, np.random.default_rng(seed))
        got, got_seps = split_sentences(out)
        assert Counter(got) == Counter(sentences) and got_seps == seps
        orders.add(tuple(got))
    assert len(orders) > 5
    partial = split_sentences(scramble(TEXT, 0.5, np.random.default_rng(4)))[0]
    assert sum(a != b for a, b in zip(partial, sentences, strict=True)) <= 3
    assert scramble("  One sentence only.\n", 1.0, np.random.default_rng(0)) == "  One sentence only.\n"


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("spans", [1, 3])
def test_copy_paste_embeds_the_exact_fraction_in_the_asked_number_of_spans(fraction, spans):
    human = " ".join(f"h{i}" for i in range(2000))
    wm = " ".join(f"w{i}" for i in range(120))
    for seed in range(5):
        res = copy_paste(wm, human, fraction, np.random.default_rng(seed), spans=spans)
        out = res.text.split()
        marked = [i for i, w in enumerate(out) if w.startswith("w")]
        assert len(out) == res.total_words and len(marked) == res.watermarked_words
        assert abs(len(marked) - fraction * len(out)) <= 1  # within one word
        assert [out[i] for i in marked] == wm.split()[: len(marked)]  # in order, contiguous pieces
        assert [w for w in out if w.startswith("h")] == human.split()[: len(out) - len(marked)]
        starts = [i for i in marked if i - 1 not in marked]
        ends = [i + 1 for i in marked if i + 1 not in marked]
        assert list(res.spans) == list(zip(starts, ends, strict=True)) and len(starts) == spans


def test_copy_paste_with_little_human_text_shortens_the_watermarked_part():
    res = copy_paste("w " * 300, "h " * 30, 0.25, np.random.default_rng(0), spans=3)
    assert res.text.split().count("h") == 30 and res.text.split().count("w") == 10
    assert res.fraction == 0.25 and len(res.spans) == 3


def test_copy_paste_keeps_each_texts_spacing():
    res = copy_paste("Alpha beta.\nGamma", "one two  three\n\nfour", 0.5, np.random.default_rng(1), spans=1)
    assert res.watermarked_words == 3 and res.total_words == 6
    assert "Alpha beta.\nGamma" in res.text and "two  three" in res.text
    assert [w for w in res.text.split() if w in {"one", "two", "three", "four"}] == ["one", "two", "three"]


@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_emoji_stripping_restores_the_original_words_exactly(rate):
    texts = [TEXT, "Short.", "Line one.\nLine two, with commas; and more!\n", "  indented text  "]
    for seed, text in enumerate(texts):
        with_emojis = insert_emojis(text, np.random.default_rng(seed), rate=rate)
        assert with_emojis != text or rate * len(text.split()) < 1
        assert strip_emojis(with_emojis) == text


def test_emoji_runs_of_every_shape_are_stripped_and_other_symbols_kept():
    text = "We 👍🏽 went 🇫🇷 to 👨\u200d👩\u200d👧 the ❤️ sea 🎉 🎉 today 1️⃣ now."
    assert strip_emojis(text) == "We went to the sea today now."
    assert strip_emojis("😀 Start and end 🙌") == "Start and end"
    keep = "Prices (c) © 2024 ™ 42 # * -> ok"
    assert strip_emojis(keep) == keep
    half = strip_emojis(text, 0.5, np.random.default_rng(0))
    assert half != text and strip_emojis(half) == strip_emojis(text)


def test_the_emoji_prompt_asks_for_emojis():
    wrapped = emoji_prompt("Tell me about rivers.  ")
    assert wrapped.startswith("Tell me about rivers.\n\n") and wrapped.endswith(EMOJI_INSTRUCTION)
    assert "emoji" in EMOJI_INSTRUCTION
