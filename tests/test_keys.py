"""Keys: 0600 files, fingerprints instead of secrets, independent sub-keys."""

import os
import stat

import pytest

from wm_toolkit.watermark.errors import KeyFileError
from wm_toolkit.watermark.keying.keys import Key, load_key_file, write_key_file


def test_key_file_is_written_with_mode_0600_and_round_trips(tmp_path):
    path = tmp_path / "k"
    key = write_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path) == key


def test_repr_and_str_never_show_the_secret():
    key = Key.generate()
    assert key.secret.hex() not in repr(key) and key.secret.hex() not in str(key)
    assert key.fingerprint in repr(key)


def test_refuses_to_overwrite_and_to_read_group_readable_keys(tmp_path):
    path = tmp_path / "k"
    write_key_file(path)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_key_file(path)


@pytest.mark.parametrize("content", ["abcd\n", "zz" * 32, "00" * 33])
def test_malformed_keys_are_rejected(tmp_path, content):
    path = tmp_path / "k"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_key_file(path)


def test_sub_keys_differ_by_purpose_and_key():
    a, b = Key.from_seed(1), Key.from_seed(2)
    assert a.derive("x") != a.derive("y")
    assert a.derive("x") != b.derive("x")
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 16
