"""Keyrings: one private file of keys and configs, one family-wise verdict over all of them."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.config import config_from_dict, save_config_file
from wm_toolkit.watermark.errors import KeyFileError
from wm_toolkit.watermark.keying.keys import Key, write_key_file
from wm_toolkit.watermark.runtime.keyring import add_entry, load_keyring, make_entry
from wm_toolkit.watermark.runtime.keyring_detect import RingDetector
from wm_toolkit.watermark.schemes import build_scheme
from wm_toolkit.watermark.statistics.family import family_log10_p, hint_weights, weighted_holm

SCHEMES = ("kgw", "unigram", "gumbel")


def run(*args, input=None):
    return CliRunner().invoke(wm, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def ring(tmp_path):
    """A three-entry ring (kgw, unigram, gumbel), each with its own key, keys stored by path."""
    path = tmp_path / "ring.json"
    for i, scheme in enumerate(SCHEMES):
        key = write_key_file(tmp_path / f"k{i}", Key.from_seed(f"ring {i}"))
        save_config_file(config_from_dict({"scheme": scheme}), tmp_path / f"c{i}.json")
        res = run("keyring", "add", path, "--name", f"tenant-{i}", "--key", tmp_path / f"k{i}",
                  "--config", tmp_path / f"c{i}.json", "--label", f"model=m{i}")  # fmt: skip
        assert res.exit_code == 0, res.output
        assert key.secret.hex() not in res.output
    return path


def _watermarked(scheme, n=120, seed=0):
    """Token ids drawn through the scheme's processor from random logits (high entropy)."""
    torch.manual_seed(seed)
    proc = scheme.processor()
    ids = torch.randint(0, scheme.config.vocab_size, (1, 4))
    for _ in range(n):
        out = proc(ids, torch.randn(1, scheme.config.vocab_size) * 3)
        nxt = torch.multinomial(torch.softmax(out.float(), -1), 1)
        ids = torch.cat([ids, nxt], 1)
    return ids[0, 4:].numpy()


def test_the_ring_file_is_private_and_lists_no_key(ring, tmp_path):
    assert stat.S_IMODE(os.stat(ring).st_mode) == 0o600
    res = run("keyring", "list", ring, "--json")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["tenant-0", "tenant-1", "tenant-2"]
    assert rows[0]["key_fingerprint"] == Key.from_seed("ring 0").fingerprint
    for i in range(3):
        assert Key.from_seed(f"ring {i}").secret.hex() not in res.output
        assert str(tmp_path / f"k{i}") not in res.output  # nor where the key lives


def test_a_ring_others_can_read_is_refused(ring):
    os.chmod(ring, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_keyring(ring)


def test_inline_keys_make_the_ring_self_contained(tmp_path):
    write_key_file(tmp_path / "k", Key.from_seed("inline"))
    save_config_file(config_from_dict({"scheme": "kgw"}), tmp_path / "c.json")
    add_entry(tmp_path / "r", make_entry("a", str(tmp_path / "k"), str(tmp_path / "c.json"), inline=True))
    os.remove(tmp_path / "k")
    assert load_keyring(tmp_path / "r").get("a").load_key() == Key.from_seed("inline")


def test_remove_and_duplicate_names(ring, tmp_path):
    res = run(
        "keyring",
        "add",
        ring,
        "--name",
        "tenant-0",
        "--key",
        tmp_path / "k0",
        "--config",
        tmp_path / "c0.json",
    )
    assert res.exit_code == 2 and "already has an entry" in res.stderr
    assert run("keyring", "remove", ring, "--name", "tenant-1").exit_code == 0
    assert load_keyring(ring).names() == ["tenant-0", "tenant-2"]


def test_a_config_made_with_another_key_is_refused(tmp_path):
    write_key_file(tmp_path / "k", Key.from_seed("a"))
    cfg = build_scheme(config_from_dict({"scheme": "kgw", "vocab_size": 49152}), Key.from_seed("b")).config
    save_config_file(cfg, tmp_path / "c.json")
    res = run(
        "keyring",
        "add",
        tmp_path / "r",
        "--name",
        "x",
        "--key",
        tmp_path / "k",
        "--config",
        tmp_path / "c.json",
    )
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and "made with key" in res.stderr


@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_entry_that_watermarked_is_named(ring, which):
    det = RingDetector(load_keyring(ring), alpha=1e-3)
    ids = _watermarked(det.members[which].scheme, seed=which)
    result = det.detect_ids({"smollm2-135m": ids})
    assert result.match == f"tenant-{which}"
    assert result.family_p_value < 1e-3
    assert result.to_dict()["entries"][which]["adjusted_p_value"] < 1e-3


def test_results_name_entries_only(ring):
    det = RingDetector(load_keyring(ring))
    row = det.detect_ids({"smollm2-135m": np.arange(100, 300)}).to_dict()
    text = json.dumps(row)
    assert "config" not in text and "fingerprint" not in text and row["keyring_match"] is None


def test_cli_detect_keyring_json_contract(ring, tmp_path):
    (tmp_path / "t.txt").write_text("The river runs past the old mill and under the stone bridge. " * 6)
    res = run("detect", "--keyring", ring, tmp_path / "t.txt", "--json")
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert {"keyring_match", "family_p_value", "entries"} <= set(row)
    assert len(row["entries"]) == 3 and row["keyring_match"] is None
    assert all("key" not in e for e in row["entries"])


def test_cli_detect_keyring_refuses_a_key_too(ring, tmp_path):
    (tmp_path / "t.txt").write_text("hello " * 40)
    res = run("detect", "--keyring", ring, "--key", tmp_path / "k0", tmp_path / "t.txt")
    assert res.exit_code == 2 and res.stderr.startswith("error: ")


def test_hints_that_match_nothing_are_an_error(ring, tmp_path):
    (tmp_path / "t.txt").write_text("hello there " * 40)
    res = run("detect", "--keyring", ring, "--hint", "tenant=nobody", tmp_path / "t.txt")
    assert res.exit_code == 2 and "no keyring entry matches" in res.stderr


# ---- the family statistics ------------------------------------------------------------------------


def test_bonferroni_family_p_is_n_times_the_smallest():
    assert 10 ** family_log10_p([0.01, 0.2, 0.5, 0.9]) == pytest.approx(0.04)
    assert 10 ** family_log10_p([0.5, 0.6]) == pytest.approx(1.0)


def test_holm_adjusted_p_values_step_down():
    adj = 10 ** weighted_holm([0.01, 0.04, 0.5])
    assert adj == pytest.approx([0.03, 0.08, 0.5])


def test_hint_weights_sum_to_one_and_restrict_at_one():
    w = hint_weights([True, False, False, False], 0.5)
    assert w.sum() == pytest.approx(1) and w[0] == 0.5
    assert list(hint_weights([True, False], 1.0)) == [1.0, 0.0]
    assert math.isclose(hint_weights([False, False], 0.9).sum(), 1.0)


def test_family_p_is_valid_over_dependent_entries():
    # 20 copies of one p-value (one key, 20 configs): Bonferroni stays valid, only conservative
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    fam = np.array([10 ** family_log10_p([x] * 20) for x in p])
    assert np.mean(fam <= 0.05) <= 0.05


def test_family_fpr_at_alpha_with_50_independent_entries():
    rng = np.random.default_rng(1)
    p = rng.random((20000, 50))
    fam = np.minimum(1, 50 * p.min(axis=1))
    rate = np.mean(fam <= 0.05)
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 20000)
