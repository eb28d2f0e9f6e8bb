"""Every output file is written the same way: checked first, then atomically, never half-written.

`check_output` runs before a command does any work, so a bad `-o` fails in a second rather than
after an hour of generation: the path must not be a folder, its parent must be a folder (or
creatable), it must not be one of the command's inputs, and an existing file is replaced only
with `force`. `atomic_writer` then writes into a unique temporary file in the same folder
(`tempfile.mkstemp`), fsyncs it and renames it over the target with `os.replace`; on any
failure (a full disk, an unencodable character, Ctrl-C) the temporary file is removed and the
old file is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from ..errors import OutputError

_BUFFER = 1 << 20


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(
    path: str | os.PathLike[str],
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    force: bool = False,
    what: str = "output",
) -> Path:
    """Refuse an output path that cannot be written, names an input, or exists without `force`."""
    p = Path(path)
    if str(path) in ("", "-"):
        raise OutputError(f"{what} {str(path)!r}: give a file name")
    for src in inputs:
        if src is None or str(src) == "-":
            continue
        if _same_file(p, Path(src)):
            raise OutputError(f"{what} {p} is also an input; write to another file")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise OutputError(f"{what} {p}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"{what} {p}: {_describe(exc)}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{what} {p} is a folder; give a file name")
        if not force:
            raise OutputError(f"{what} {p} already exists; pass --force to replace it")
        if not stat.S_ISREG(st.st_mode):
            raise OutputError(f"{what} {p} is not a regular file; refusing to replace it")
    parent = _nearest_existing(p.parent)
    if not parent.is_dir():
        raise OutputError(f"{what} {p}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {p}: folder {parent} is not writable")
    return p


def check_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """An output folder (a resumable cache of a command): a folder or creatable, and writable."""
    p = Path(path)
    if os.path.lexists(p) and not p.is_dir():
        raise OutputError(f"{what} {p} exists and is not a folder")
    existing = _nearest_existing(p)
    if not existing.is_dir():
        raise OutputError(f"{what} {p}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {p}: {existing} is not writable")
    return p


def _nearest_existing(folder: Path) -> Path:
    folder = Path(os.path.abspath(folder))
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def make_parents(path: Path) -> None:
    """Create the missing folders above `path` (as `mkdir -p`), with one clear error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot write {path}: a parent of it is a file, not a folder") from None
    except NotADirectoryError:
        raise OutputError(f"cannot write {path}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_describe(exc)}") from None


class _Writer:
    """A text or bytes sink over a raw fd: buffered, every byte goes through `os.write`."""

    def __init__(self, fd: int, encoding: str | None):
        self.fd = fd
        self.encoding = encoding
        self.buffer = bytearray()

    def write(self, data: str | bytes) -> int:
        raw = data.encode(cast(str, self.encoding)) if isinstance(data, str) else data  # str: a text writer
        self.buffer += raw
        if len(self.buffer) >= _BUFFER:
            self.flush()
        return len(data)

    def flush(self) -> None:
        view = memoryview(self.buffer)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        del view
        self.buffer.clear()


def _new_file_mode(target: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(target).st_mode)  # keep the mode of the file being replaced
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], binary: bool = False) -> Iterator[_Writer]:
    """Yield a writer (`.write(str)`, UTF-8; bytes when `binary`); publish only if the block succeeds."""
    target = Path(path)
    make_parents(target)
    tmp: str | None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {_describe(exc)}") from None
    try:
        writer = _Writer(fd, None if binary else "utf-8")
        yield writer
        writer.flush()
        os.fchmod(fd, _new_file_mode(target))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
        tmp = None
        _fsync_dir(target.parent)
    except UnicodeEncodeError as exc:
        raise OutputError(
            f"cannot write {target}: the text holds a character that is not valid Unicode "
            f"({exc.object[exc.start : exc.end]!a}, a lone surrogate); nothing was written"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(
                f"cannot write {target}: no space left on the device; the old file is kept"
            ) from None
        raise OutputError(f"cannot write {target}: {_describe(exc)}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        dfd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_writer(path) as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_writer(path, binary=True) as fh:
        fh.write(data)


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 1, default: Any = None) -> None:
    """One JSON document (plus a newline), written atomically."""
    write_text(path, json.dumps(obj, indent=indent, default=default, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> int:
    """One JSON object a line, written atomically; returns how many were written."""
    n = 0
    with atomic_writer(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def save_figure(fig: Any, path: str | os.PathLike[str], **savefig_kwargs: Any) -> None:
    """A matplotlib figure, rendered in memory and written atomically (format from the suffix)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", **savefig_kwargs)
    write_bytes(path, buf.getvalue())
