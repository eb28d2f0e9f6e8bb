"""Scheme configs are type-checked and bounded: a wrong type or a value that would blow up memory is a
ConfigError (one `error:` line, exit 2 in the CLI), never a silent coercion, an internal error or an OOM."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import wm_toolkit.watermark.schemes  # noqa: F401  (registers every config class)
from wm_toolkit import watermark  # noqa: F401
from wm_toolkit.cli.main import wm
from wm_toolkit.watermark.config import config_from_dict
from wm_toolkit.watermark.errors import ConfigError
from wm_toolkit.watermark.keying.keys import write_key_file

BAD = [
    ({"scheme": "kgw", "context_width": 1.5}, "must be an integer"),
    ({"scheme": "kgw", "context_width": True}, "must be an integer"),
    ({"scheme": "kgw", "count_repeats": "no"}, "must be true/false"),
    ({"scheme": "kgw", "count_repeats": 0}, "must be true/false"),
    ({"scheme": ["kgw"]}, "must be a string"),
    ({"scheme": {"kgw": 1}}, "must be a string"),
    ({"scheme": "kgw", "tokenizer": 5}, "must be a string"),
    ({"scheme": "kgw", "tokenizer": "a\x00b"}, "control characters"),
    ({"scheme": "kgw", "tokenizer": "\ud800"}, "lone surrogates"),
    ({"scheme": "kgw", "seeding": None}, "got null"),
    ({"scheme": "kgw", "gamma": "0.25"}, "must be a number"),
    ({"scheme": "kgw", "gamma": float("nan")}, "finite"),
    ({"scheme": "kgw", "delta": float("inf")}, "finite"),
    ({"scheme": "kgw", "delta": 1e300}, "delta"),
    ({"scheme": "exp", "key_length": 10_000_000}, "key_length"),
    ({"scheme": "exp", "key_length": 0}, "key_length"),
    ({"scheme": "kgw", "context_width": 33}, "context width"),
    ({"scheme": "gumbel", "context_width": 1000}, "context width"),
    ({"scheme": "kgw", "candidates": 5000}, "candidates"),
    ({"scheme": "exp", "resamples": 10**7}, "resamples"),
    ({"scheme": "exp", "stop_after": 10**7}, "stop_after"),
    ({"scheme": "exp", "block_length": 2**30}, "block_length"),
    ({"scheme": "its-edit", "edit_gamma": 1e9}, "edit_gamma"),
    ({"scheme": "kgw", "vocab_size": 2**25}, "vocab_size"),
    ({"scheme": "kgw", "vocab_size": 10**5000}, "out of range"),
    ({"scheme": "kgw", "key_fingerprint": 12}, "must be a string"),
]


@pytest.mark.parametrize("data,message", BAD, ids=[m for _, m in BAD])
def test_wrong_types_and_unbounded_values_are_config_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_numbers_are_normalised_not_rejected():
    cfg = config_from_dict({"scheme": "kgw", "delta": 2, "vocab_size": np.int64(49152)})
    assert cfg.delta == 2.0 and isinstance(cfg.delta, float)
    assert cfg.vocab_size == 49152 and type(cfg.vocab_size) is int
    # 2 and 2.0 are one config: same JSON, so caches keyed on it agree
    assert cfg.to_json() == config_from_dict({"scheme": "kgw", "delta": 2.0, "vocab_size": 49152}).to_json()


def test_a_huge_number_in_an_error_message_is_not_printed():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"scheme": "exp", "key_length": 10**5000})
    assert len(str(err.value)) < 200


@pytest.mark.parametrize(
    "config",
    [
        {"scheme": "exp", "key_length": 10_000_000},
        {"scheme": "kgw", "context_width": 1.5},
        {"scheme": ["kgw"]},
        {"scheme": "kgw", "tokenizer": 5},
        {"scheme": "kgw", "count_repeats": "no"},
    ],
)
def test_a_record_with_a_bad_config_is_one_error_line_and_exit_2(tmp_path, config):
    key = tmp_path / "key"
    write_key_file(key)
    rec = tmp_path / "r.jsonl"
    rec.write_text(json.dumps({"text": "a short text that is long enough to score", "config": config}) + "\n")
    res = CliRunner().invoke(wm, ["detect", str(rec), "--key", str(key), "--json"])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal" not in lines[0]


def test_exp_detection_refuses_more_cells_than_its_memory_budget():
    from wm_toolkit.watermark.keying.keys import Key
    from wm_toolkit.watermark.schemes import build_scheme
    from wm_toolkit.watermark.schemes.distortion_free import MAX_COST_CELLS

    scheme = build_scheme({"scheme": "exp", "vocab_size": 1000, "key_length": 65_536}, Key.from_seed(0))
    m = MAX_COST_CELLS // 65_536 + 1
    with pytest.raises(watermark.errors.InputError, match="limit"):
        scheme.detect(np.arange(m) % 1000)
