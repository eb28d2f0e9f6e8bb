"""Canonical text: invisible characters, look-alikes and odd spaces are undone and counted, while
text a model writes (and text in other scripts) comes through unchanged."""

import numpy as np
import pytest

from wm_toolkit.watermark.text.confusables import CONFUSABLES
from wm_toolkit.watermark.text.normalize import _compat_map, canonical_text, canonicalize

CLEAN = [
    "Plain ASCII text, with punctuation (and numbers: 3.14).\n\nA second paragraph.",
    "Fancy quotes \u201clike this\u201d, an apostrophe \u2019, dashes \u2013 and \u2014, an ellipsis\u2026",
    "Units and marks: 5 m\u00b2, 20\u00b0C, \u00bd cup, Caf\u00e9 na\u00efve, Stra\u00dfe, \u00a9 2024, Apple\u2122, 3\u00d74",
    "Code:\n    def f(x):\n        return x\n\tindented with a tab\n- item\n  - nested item",
    "Emoji: \U0001f44d \u2764\ufe0f \U0001f468\u200d\U0001f469\u200d\U0001f467 and flags \U0001f1eb\U0001f1f7",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430? \u0421\u043e\u0440 \u0438 \u043c\u0438\u0440.",
    "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5",
    "The angle \u03b1 and the constant \u03c0; \u03c3 is the standard deviation.",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u0628\u0631\u0648\u0645 (Persian with ZWNJ)",
    "\u0915\u094d\u200d\u0937 Devanagari with ZWJ",
]


@pytest.mark.parametrize("text", CLEAN)
def test_text_a_model_writes_comes_through_unchanged(text):
    out, report = canonicalize(text)
    assert out == text
    assert report.normalized_chars == 0 and not report.tampered and report.offsets is None
    assert report.warning() is None


@pytest.mark.parametrize(
    "text, expected, kind, n",
    [
        ("Hello\u200b world\u200b again", "Hello world again", "invisible", 2),
        ("w\u200do\u200cr\u2060d\u00ads\ufeff", "words", "invisible", 5),
        ("bidi \u202eevil\u202c and \u200eLRM\u2066x\u2069", "bidi evil and LRMx", "invisible", 5),
        ("variation\ufe0f selector after a letter", "variation selector after a letter", "invisible", 1),
        ("p\u0430ssw\u043erd", "password", "confusable", 2),
        ("\u0441\u043e\u0440\u0443 \u0430nd \u0441\u043e\u0440", "copy and cop", "confusable", 8),
        ("\uff28\uff45\uff4c\uff4c\uff4f", "Hello", "confusable", 5),
        ("\U0001d5c1\U0001d5be\U0001d5c5\U0001d5c5\U0001d5c8 math font", "hello math font", "confusable", 5),
        ("o\ufb03ce \ufb01ne", "office fine", "confusable", 2),
        ("273 \u212a (Kelvin sign)", "273 K (Kelvin sign)", "confusable", 1),
        ("a\u00a0b\u2009c\u3000d\u202fe\u2002f", "a b c d e f", "whitespace", 5),
        ("doubled  spaces   here", "doubled spaces here", "whitespace", 3),
        ("tabs\tbetween\twords", "tabs between words", "whitespace", 2),
        ("line end  \nnext", "line end \nnext", "whitespace", 1),
        ("\u00a0\u00a0indent\n\u3000x", "  indent\n x", "whitespace", 3),
    ],
)
def test_each_kind_of_tampering_is_undone_and_counted(text, expected, kind, n):
    out, report = canonicalize(text)
    assert out == expected
    assert report.tampering[kind] == n and sum(report.tampering.values()) == n
    assert report.normalized_chars == n and report.tampered
    assert report.to_dict() == {"normalized_chars": n, "tampering": report.tampering}
    assert kind in report.warning()


def test_a_few_doubled_spaces_are_collapsed_but_are_not_tampering():
    """The default model writes an occasional doubled space; collapsing it keeps detection robust
    to an attacker who doubles some spaces, but only doubled spaces in most gaps are a sign."""
    text = "We are not proud  we yell, we do that. They  create a chart on the home screen today."
    out, report = canonicalize(text)
    assert out == text.replace("  ", " ")
    assert report.normalized_chars == 2 and report.doubled_spaces == 2
    assert report.tampering == {"invisible": 0, "confusable": 0, "whitespace": 0}
    assert not report.tampered and report.warning() is None


def test_newlines_and_indentation_are_kept():
    text = "a\n\n    b\n\t\tc\r\nd"
    assert canonical_text(text) == text


def test_every_confusable_maps_to_its_ascii_letter_inside_a_latin_word():
    wrong = {}
    for source, target in sorted(CONFUSABLES.items()):
        if _compat_map(source) is not None:
            continue  # its compatibility form (e.g. a mathematical Greek letter -> Greek) comes first
        out = canonical_text("b" + source + "d")
        if out != "b" + target + "d":
            wrong[source] = out
    assert not wrong


def test_confusables_table_maps_to_ascii_alphanumerics_only():
    assert len(CONFUSABLES) > 300
    assert all(
        not c.isascii() and t.isascii() and t.isalnum() and len(t) == 1 for c, t in CONFUSABLES.items()
    )
    # the common Cyrillic and Greek look-alikes, with the case of the source
    for src, dst in zip(
        "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0456\u0410\u0406\u03bf\u0391",
        "aceopxyiAIoA",
        strict=True,
    ):
        assert CONFUSABLES[src] == dst


def test_words_of_other_scripts_and_lone_greek_letters_stay():
    russian = "\u0421\u043e\u0440 \u0438 \u043c\u0438\u0440"  # all-Cyrillic words in a Cyrillic text
    assert canonical_text(russian) == russian
    assert canonical_text("with \u03b1 = 0.05") == "with \u03b1 = 0.05"
    # a Cyrillic word with a non-look-alike letter stays even in a Latin text
    assert canonical_text("the word \u0434\u043e\u043c here") == "the word \u0434\u043e\u043c here"


def test_offsets_map_canonical_spans_back_to_the_original():
    text = "Ｈi\u200b there\u00a0\u00a0f\u0430r \ufb01x"
    out, report = canonicalize(text)
    assert out == "Hi there far fix"
    offs = report.offsets
    assert len(offs) == len(out) + 1 and offs[-1] == len(text)
    assert np.all(np.diff(offs) >= 0)
    a = out.index("far")
    assert text[offs[a] : offs[a + 3]] == "f\u0430r"
    a = out.index("there")
    assert text[offs[a] : offs[a + 5]] == "there"
    a = out.index("fix")
    assert text[offs[a] : offs[a + 3]] == "\ufb01x"


def test_canonical_form_is_idempotent():
    text = "p\u0430ss\u200b  w\u043erd\u3000\uff41\tx"
    once = canonical_text(text)
    assert canonical_text(once) == once
    assert canonicalize(once)[1].normalized_chars == 0


def test_normalize_off_returns_the_text_itself():
    text = "a\u200bb"
    assert canonical_text(text, normalize=False) is text
