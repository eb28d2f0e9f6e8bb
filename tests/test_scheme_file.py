"""A scheme saved as one file (config + key path) loads back equal; the key never enters the file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from wm_toolkit.watermark import Key, build_scheme, load_scheme, save_scheme, write_key_file
from wm_toolkit.watermark.errors import ConfigError, InputError


@pytest.fixture
def saved(tmp_path):
    key = write_key_file(tmp_path / "keys" / "k.key", Key.from_seed("scheme-file"))
    scheme = build_scheme({"scheme": "kgw", "gamma": 0.25, "delta": 2.0, "vocab_size": 500}, key)
    save_scheme(scheme, tmp_path / "scheme.json", tmp_path / "keys" / "k.key")
    return tmp_path, scheme, key


def test_a_saved_scheme_loads_back_and_detects_identically(saved):
    folder, scheme, _ = saved
    again = load_scheme(folder / "scheme.json")
    ids = np.random.default_rng(0).integers(0, 500, 120)
    assert again.config == scheme.config
    assert again.detect(ids).p_value == scheme.detect(ids).p_value


def test_the_file_names_the_key_relative_to_itself_and_never_holds_it(saved, tmp_path):
    folder, _, key = saved
    text = (folder / "scheme.json").read_text()
    assert key.secret.hex() not in text
    assert json.loads(text)["key_file"] == "keys/k.key"
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.copytree(folder, moved)  # the pair moves together
    assert load_scheme(moved / "scheme.json").key.fingerprint == key.fingerprint


def test_a_different_key_at_that_path_is_refused(saved):
    folder, _, _ = saved
    write_key_file(folder / "keys" / "k.key", Key.from_seed("another"), overwrite=True)
    with pytest.raises(ConfigError, match="wrong key"):
        load_scheme(folder / "scheme.json")


def test_saving_with_a_key_file_of_another_key_is_refused(saved):
    folder, scheme, _ = saved
    write_key_file(folder / "other.key", Key.from_seed("other"))
    with pytest.raises(ConfigError, match="does not hold"):
        save_scheme(scheme, folder / "s2.json", folder / "other.key")


def test_a_config_file_is_not_a_scheme_file(saved):
    folder, scheme, _ = saved
    (folder / "c.json").write_text(json.dumps(scheme.config.to_dict()))
    with pytest.raises(ConfigError, match="not a scheme file"):
        load_scheme(folder / "c.json")


def test_detect_on_a_string_says_to_use_detect_text(saved):
    _, scheme, _ = saved
    with pytest.raises(InputError, match="detect_text"):
        scheme.detect("some text")


def test_fractional_token_ids_are_refused_not_truncated(saved):
    _, scheme, _ = saved
    with pytest.raises(InputError, match="integers"):
        scheme.detect([1.5, 2.0, 3.0] * 20)
    assert scheme.detect(np.arange(60, dtype=np.float64)).num_tokens_scored > 0
