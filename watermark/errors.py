"""User-facing errors: the CLI prints these as one `error:` line and exits 2."""

from __future__ import annotations


class WmError(Exception):
    """Bad input or configuration that the user can fix; never an internal bug."""


class KeyFileError(WmError):
    """A key file is missing, unreadable, malformed or too permissive to trust."""


class ModelNotFoundError(WmError):
    """A model name or path that cannot be resolved locally."""


class InputError(WmError):
    """An input file or text that cannot be used (empty, binary, not UTF-8, too large)."""


class ConfigError(WmError):
    """A scheme configuration that is invalid or does not match the data it is used on."""


class OutputError(WmError):
    """An output that cannot or must not be written (exists, is an input, unwritable, disk full)."""
