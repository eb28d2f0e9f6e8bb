"""Fraction of tokens changed = Levenshtein distance / original length, checked by brute force."""

import numpy as np
import pytest

from wm_toolkit.attacks.metrics import edit_distance, fraction_changed


def reference(a, b):
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_edit_distance_matches_the_textbook_recurrence():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.integers(0, 4, rng.integers(0, 15)).tolist()
        b = rng.integers(0, 4, rng.integers(0, 15)).tolist()
        assert edit_distance(a, b) == reference(a, b)


def test_fraction_changed_counts_substitutions_insertions_and_deletions():
    x = list(range(100))
    y = x.copy()
    for i in (3, 50, 99):
        y[i] = -1
    assert fraction_changed(x, y) == pytest.approx(0.03)
    assert fraction_changed(x, x[:90]) == pytest.approx(0.10)
    assert fraction_changed(x, x[:50] + [-1] * 5 + x[50:]) == pytest.approx(0.05)
    assert fraction_changed(x[:10], list(range(100, 200))) == 1.0  # capped
    assert fraction_changed([], []) == 0.0


def quadratic_edit_distance(a, b):
    """The O(n m) numpy implementation `attacks.metrics` used before (one vectorised row per token)."""
    x = np.asarray(a, dtype=np.int64).reshape(-1)
    y = np.asarray(b, dtype=np.int64).reshape(-1)
    if x.size == 0 or y.size == 0:
        return int(max(x.size, y.size))
    j = np.arange(y.size + 1, dtype=np.int64)
    prev = j.copy()
    for i, t in enumerate(x, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[:-1] + (y != t), prev[1:] + 1)
        cur = np.minimum.accumulate(cur - j) + j
        prev = cur
    return int(prev[-1])


def edited(rng, a, vocab=1000):
    from wm_toolkit.attacks.edits import delete_tokens, insert_tokens, substitute_tokens

    b = substitute_tokens(a, rng.uniform(0, 0.3), vocab, rng)
    b = insert_tokens(b, rng.uniform(0, 0.1), vocab, rng)
    return delete_tokens(b, rng.uniform(0, 0.1), rng)


def test_edit_distance_equals_the_previous_quadratic_implementation():
    rng = np.random.default_rng(1)
    for _ in range(60):
        a = rng.integers(0, int(rng.choice([3, 50, 1000])), rng.integers(0, 400))
        b = edited(rng, a) if rng.random() < 0.7 else rng.integers(0, 50, rng.integers(0, 400))
        assert edit_distance(a, b) == quadratic_edit_distance(a, b)
    a = rng.integers(0, 49152, 3000)
    b = edited(rng, a, 49152)
    assert edit_distance(a, b) == quadratic_edit_distance(a, b)


def test_long_texts_are_cut_at_anchors_and_still_measured_exactly(monkeypatch):
    from rapidfuzz.distance import Levenshtein

    from wm_toolkit.attacks import metrics

    monkeypatch.setattr(metrics, "EXACT_TOKENS", 500)
    monkeypatch.setattr(metrics, "MIN_SEGMENT", 64)
    rng = np.random.default_rng(2)
    for _ in range(5):
        a = (rng.zipf(1.3, 20_000) % 49152).astype(np.int64)  # repetitive, like text
        b = np.asarray(edited(rng, a, 49152))
        exact = Levenshtein.distance(a.tolist(), b.tolist())
        seen = []
        assert edit_distance(a, b, on_progress=lambda d, t, seen=seen: seen.append((d, t))) == exact
        assert len(seen) > 10 and seen[-1] == (a.size, a.size)  # progress on one long text
        assert all(d1 <= d2 for (d1, _), (d2, _) in zip(seen, seen[1:], strict=False))


def test_the_anchored_measure_never_undercounts_and_a_rewrite_counts_whole(monkeypatch):
    from rapidfuzz.distance import Levenshtein

    from wm_toolkit.attacks import metrics

    monkeypatch.setattr(metrics, "EXACT_TOKENS", 200)
    monkeypatch.setattr(metrics, "MIN_SEGMENT", 16)
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.integers(0, 30, 2000)  # small alphabet: anchors may mislead, never below the truth
        b = np.concatenate([a[1000:], a[:1000]]) if rng.random() < 0.5 else np.asarray(edited(rng, a, 30))
        assert edit_distance(a, b) >= Levenshtein.distance(a.tolist(), b.tolist())
    a, b = rng.integers(0, 1000, 5000), rng.integers(1000, 2000, 4000)  # nothing in common
    assert edit_distance(a, b) == 5000 and fraction_changed(a, b) == 1.0


def test_a_long_single_record_shows_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from wm_toolkit.attacks import registry
    from wm_toolkit.cli.main import wm

    monkeypatch.setenv("WM_PROGRESS_INTERVAL", "0")
    monkeypatch.setattr(registry, "LONG_TEXT_CHARS", 1000)
    (tmp_path / "long.txt").write_text("The keeper climbed the stairs and lit the lamp. " * 100)
    res = CliRunner().invoke(
        wm, ["attack", "substitute", str(tmp_path / "long.txt"), "-o", str(tmp_path / "o.txt")]
    )
    assert res.exit_code == 0, res.output
    assert "text 1: tokenising" in res.stderr and "text 1: measuring changes (tokens)" in res.stderr
    assert "\x1b" not in res.stderr  # plain lines, no terminal codes
