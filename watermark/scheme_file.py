"""One file that names a whole scheme: its config and where its key lives, never the key itself.

`save_scheme(scheme, "wm-scheme.json", key_path="secret.key")` then `load_scheme("wm-scheme.json")`
gives back an equal scheme in one call. The key stays in its own 0600 file; the scheme file
holds the path (relative to the scheme file when the key sits in the same folder tree, so the
pair can be moved together) and the config's key fingerprint, so a different key is refused.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .config import config_from_dict, read_config_json
from .errors import ConfigError
from .keying.hfkeys import load_any_key_file
from .runtime.atomic import write_json
from .schemes import WatermarkScheme, build_scheme

FORMAT = "wm-scheme"
VERSION = 1


def save_scheme(
    scheme: WatermarkScheme, path: str | os.PathLike[str], key_path: str | os.PathLike[str]
) -> None:
    """Write `scheme`'s config and a reference to `key_path` (which must hold this scheme's key)."""
    key_file = Path(key_path).expanduser().resolve()
    if load_any_key_file(key_file).fingerprint != scheme.key.fingerprint:
        raise ConfigError(f"{key_path} does not hold this scheme's key")
    folder = Path(path).expanduser().resolve().parent
    try:
        stored = str(key_file.relative_to(folder))
    except ValueError:
        stored = str(key_file)
    write_json(
        path, {"format": FORMAT, "version": VERSION, "key_file": stored, "config": scheme.config.to_dict()}
    )


def load_scheme(path: str | os.PathLike[str]) -> WatermarkScheme:
    """The scheme a `save_scheme` file names; its key file is read (and checked) now."""
    data: Any = read_config_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a scheme file (made by watermark.save_scheme)")
    if data.get("version") != VERSION:
        raise ConfigError(
            f"{path}: scheme file version {data.get('version')!r}; this wm reads version {VERSION}"
        )
    key_file = data.get("key_file")
    if not isinstance(key_file, str) or not key_file:
        raise ConfigError(f"{path}: 'key_file' must name the key file")
    key_path = Path(key_file).expanduser()
    if not key_path.is_absolute():
        key_path = Path(path).expanduser().resolve().parent / key_path
    return build_scheme(config_from_dict(data.get("config")), load_any_key_file(key_path))
