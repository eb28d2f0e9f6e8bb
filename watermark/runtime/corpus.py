"""Detection over corpora: records in as a stream, results out as they come, in input order.

Memory stays bounded whatever the corpus size: records are read one at a time (JSONL line by
line, Parquet batch by batch), handed to the detector in batches of `BATCH` texts with at most
`2 x workers` batches in flight, and each result is written as soon as every earlier one has
been. One text is still capped (`textio.MAX_INPUT_BYTES`, tokenised in chunks by
`watermark.encoding`), so a single huge record cannot fill memory either.

With `workers > 1` the batches go to this process and workers - 1 worker processes (spawned, so
they share nothing with the parent): each worker gets the key and the public options once, in memory, through the pool's
initializer arguments (pickled over the pool's pipe), and builds its own tokenizer and schemes.
The key is never written to disk, never logged, and outputs carry only its fingerprint.

A record that cannot be tested (bad JSON on its line, no text field, too short, ...) gives a row
`{"source", "error"}` in its place, so there is always one output row per input record.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import stat
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SchemeConfig, config_from_dict
from ..config_resolve import ConfigSource, bind_tokenizer, refuse_other_scheme, resolve_record
from ..errors import InputError, OutputError
from ..text import textio
from ..text.encoding import CHUNK_CHARS, encode_array
from ..text.normalize import NormalizationReport, canonicalize
from ..text.textio import TextRecord
from . import atomic
from .report import detection_row

BATCH = int(os.environ.get("WM_CORPUS_BATCH", "64"))  # texts a task
PARQUET_BATCH = 1024  # rows read from a Parquet file at a time
STREAM_SUFFIXES = (*textio.JSONL_SUFFIXES, ".parquet")


# ---- reading ------------------------------------------------------------------------------------


def iter_corpus(path: str, text_field: str = "text", lines: bool = False) -> Iterator[TextRecord]:
    """The records of one input, read as a stream: JSONL (.jsonl/.ndjson) line by line, Parquet by
    row batches, plain text with `lines` one record a line. Any other file is read as `wm detect`
    always did (`textio.read_records`: one text, or sniffed JSONL; capped at MAX_INPUT_BYTES).

    A record that cannot be read is yielded as a TextRecord whose `record` holds {"error": ...}."""
    name = path.lower()
    if name.endswith(".parquet"):
        yield from _iter_parquet(path, text_field)
    elif name.endswith(textio.JSONL_SUFFIXES):
        yield from _iter_jsonl(path, text_field)
    elif lines:
        yield from _iter_text_lines(path)
    else:
        yield from textio.read_records(path, field_name=text_field)


def _error_record(where: str, message: str) -> TextRecord:
    return TextRecord(where, "", record={"error": message})


def record_error(rec: TextRecord) -> str | None:
    """The reason a streamed record could not be read, or None."""
    err = rec.record.get("error") if isinstance(rec.record, dict) and rec.text == "" else None
    return err if isinstance(err, str) else None


class _LineReader:
    """Lines of a file or stdin as bytes, none longer than `limit` (a longer one is skipped to its
    end and reported as too large), from a binary stream read in 1 MB chunks."""

    def __init__(self, path: str, limit: int):
        self.path, self.limit = path, limit
        self.fh = _open_binary(path)

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        n = 0
        try:
            while True:
                try:
                    line = self.fh.readline(self.limit + 1)
                except OSError as exc:
                    raise InputError(
                        f"{self.path}: cannot read ({exc.strerror or type(exc).__name__})"
                    ) from None
                if not line:
                    return
                n += 1
                if len(line) > self.limit and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):  # skip the rest of the huge line
                        line = self.fh.readline(1 << 20)
                    yield n, None
                    continue
                yield n, line
        finally:
            if self.fh is not getattr(sys.stdin, "buffer", None):
                self.fh.close()


def _open_binary(path: str):
    if path == "-":
        buf = getattr(sys.stdin, "buffer", None)
        if buf is None:
            raise InputError("stdin is closed: pass a file name, or pipe the text in")
        return buf
    try:
        fh = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 (closed by the reader)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a text file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(os.fstat(fh.fileno()).st_mode):
        fh.close()
        raise InputError(f"{path}: is a directory, not a text file")
    return fh


def _decode_line(where: str, raw: bytes, first: bool) -> str:
    if b"\x00" in raw:
        raise InputError(f"{where}: looks binary (contains NUL bytes), expected UTF-8 text")
    try:
        line = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    return line[:-1] if line.endswith("\n") else line


def _too_large(where: str) -> TextRecord:
    return _error_record(where, f"{where}: too large (more than the limit of {textio.MAX_INPUT_BYTES} bytes)")


def _iter_lines(path: str, to_record: Callable[[str, str], TextRecord], if_none: str) -> Iterator[TextRecord]:
    """One record per non-blank line (CRLF or LF), decoded as UTF-8; a line that cannot become a
    record (too large, not UTF-8, `to_record` raising InputError) yields an error record in its place."""
    count = 0
    for n, raw in _LineReader(path, textio.MAX_INPUT_BYTES):
        where = f"{path}:{n}"
        if raw is None:
            record = _too_large(where)
        else:
            try:
                line = _decode_line(where, raw, n == 1)
                line = line[:-1] if line.endswith("\r") else line
                if not line.strip():
                    continue
                record = to_record(where, line)
            except InputError as exc:
                record = _error_record(where, str(exc))
        count += 1
        yield record
    if not count:
        raise InputError(f"{path}: {if_none}")


def _iter_jsonl(path: str, text_field: str) -> Iterator[TextRecord]:
    """JSONL records one line at a time; each line is checked as `textio.parse_jsonl` checks it."""
    return _iter_lines(path, lambda where, line: _jsonl_record(where, line, text_field), "holds no records")


def _jsonl_record(where: str, line: str, text_field: str) -> TextRecord:
    try:
        obj = textio._parse_line(where, line)
    except textio._NotJson:
        raise InputError(f"{where}: not valid JSON (expected one JSON object per line)") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got a JSON {type(obj).__name__}")
    text, prompt = obj.get(text_field), obj.get("prompt")
    if not isinstance(text, str):
        raise InputError(f"{where}: expected a JSON object with a string {text_field!r} field")
    if prompt is not None and not isinstance(prompt, str):
        raise InputError(f"{where}: 'prompt' must be a string")
    config = obj.get("config") if isinstance(obj.get("config"), dict) else None
    return TextRecord(where, textio.check_text(text, where), prompt, config)


def _iter_text_lines(path: str) -> Iterator[TextRecord]:
    """Plain text, one record a non-empty line."""
    return _iter_lines(path, TextRecord, "is empty")


def _iter_parquet(path: str, text_field: str) -> Iterator[TextRecord]:
    """Parquet rows in batches of PARQUET_BATCH; source `path:ROW` (1-based)."""
    pq = _pyarrow_parquet()
    if path == "-":
        raise InputError("Parquet cannot be read from stdin: give the file name")
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})") from None
    names = pf.schema_arrow.names
    if text_field not in names:
        raise InputError(f"{path}: no column {text_field!r} (columns: {', '.join(names[:20])})")
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH, columns=[text_field]):
        for value in batch.column(0).to_pylist():
            row += 1
            where = f"{path}:{row}"
            if not isinstance(value, str):
                yield _error_record(where, f"{where}: {text_field!r} is not a string")
            elif len(value.encode("utf-8", "surrogatepass")) > textio.MAX_INPUT_BYTES:
                yield _too_large(where)
            else:
                yield TextRecord(where, value)
    if not row:
        raise InputError(f"{path}: holds no records")


def _pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            "reading or writing Parquet needs pyarrow: pip install 'wm-toolkit[ray]' or pyarrow"
        ) from None
    return pq


# ---- configs: resolved once per distinct record config, in the parent -------------------------------


@dataclass(frozen=True)
class Prepared:
    """What a worker needs to test a text: the bound config (public; the key is separate)."""

    config_json: str
    tokenizer: str
    conflicts: tuple[dict[str, Any], ...] = ()


@dataclass
class ConfigPlan:
    """The config sources of a run (--config file, flags) and the tokenizer override; resolves each
    record's config with `config_resolve.resolve_record`, caching by the record's config."""

    file: ConfigSource | None = None
    flags: ConfigSource | None = None
    model: str | None = None
    default_scheme: str = "kgw"
    load_tokenizer: Callable[[str], Any] | None = None
    warn: Callable[[str], None] | None = None
    other_scheme_ok: bool = True  # False: a --config for another scheme than a record's is an error
    _cache: dict[str, Prepared] = field(default_factory=dict)
    _tokenizers: dict[str, Any] = field(default_factory=dict)
    _warned: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, config: SchemeConfig | dict[str, Any], tokenizer: str | None = None) -> ConfigPlan:
        """A plan for one fixed config (the library's `detect_texts`)."""
        data = config.to_dict() if isinstance(config, SchemeConfig) else dict(config)
        return cls(file=ConfigSource.complete(data, "the config"), model=tokenizer)

    def prepare(self, record_config: dict[str, Any] | None, where: str | None = None) -> Prepared:
        cache_key = json.dumps(record_config, sort_keys=True, default=str) if record_config else ""
        hit = self._cache.get(cache_key)
        if hit is not None:
            return hit
        from ..modeling.models import canonical_name, load_tokenizer, model_vocab_size

        if not self.other_scheme_ok:
            refuse_other_scheme(record_config, where, self.file)
        resolved = resolve_record(record_config, where, self.file, self.flags, default_scheme=self.default_scheme,
                                  warned=self._warned, warn=self.warn)  # fmt: skip
        config = resolved.config
        tok_name = canonical_name(self.model or config.tokenizer)
        if tok_name not in self._tokenizers:
            self._tokenizers[tok_name] = (self.load_tokenizer or load_tokenizer)(tok_name)
        config = bind_tokenizer(config, len(self._tokenizers[tok_name]), tok_name)
        fields = config.to_dict()  # hf-kgw's configs have a model_vocab_size, the others none
        if "model_vocab_size" in fields and fields["model_vocab_size"] is None:
            config = config.replace(model_vocab_size=int(model_vocab_size(tok_name)))
        prepared = Prepared(config.to_json(), tok_name, tuple(c.to_dict() for c in resolved.conflicts))
        if len(self._cache) < 1024:
            self._cache[cache_key] = prepared
        return prepared

    def tokenizer(self, name: str) -> Any:
        return self._tokenizers[name]


# ---- the detector a worker runs ---------------------------------------------------------------------


@dataclass
class Detector:
    """Tests batches of texts with one key; holds the tokenizers and schemes it has built.

    Built in each worker from the key (in memory) and public options only."""

    key: Any
    alpha: float | None = 1e-3
    normalize: bool = True
    tokenizers: dict[str, Any] = field(default_factory=dict)
    schemes: dict[str, Any] = field(default_factory=dict)

    def scheme(self, config_json: str):
        s = self.schemes.get(config_json)
        if s is None:
            from ..schemes import build_scheme

            s = self.schemes[config_json] = build_scheme(config_from_dict(json.loads(config_json)), self.key)
        return s

    def tokenizer(self, name: str):
        tok = self.tokenizers.get(name)
        if tok is None:
            from ..modeling.models import load_tokenizer

            tok = self.tokenizers[name] = load_tokenizer(name)
        return tok

    def encode(self, tok: Any, texts: list[str]) -> list[Any]:
        """Ids of each (canonical) text: short ones in one batched tokenizer call (the same ids as
        one call each), long ones chunked by `encode_array` in bounded memory."""
        import numpy as np

        out: list[Any] = [None] * len(texts)
        short = [i for i, t in enumerate(texts) if len(t) <= CHUNK_CHARS]
        if short:
            batch = tok([texts[i] for i in short], add_special_tokens=False)["input_ids"]
            for i, ids in zip(short, batch, strict=True):
                out[i] = np.asarray(ids, dtype=np.int64)
        for i, t in enumerate(texts):
            if out[i] is None:
                out[i] = encode_array(tok, t)
        return out

    def run(self, items: list[tuple[str, str, Prepared | None]], rows: bool = True) -> list[Any]:
        """One result per item (source, text, prepared config; None = could not be read, the text is
        then the reason): a `wm detect --json` row (`rows`), else a Detection or an InputError."""
        results: list[Any] = [None] * len(items)
        groups: dict[Prepared, list[int]] = {}
        for i, (_source, text, prep) in enumerate(items):
            if prep is None:
                results[i] = InputError(text)
            else:
                groups.setdefault(prep, []).append(i)
        for prep, idx in groups.items():
            tok = self.tokenizer(prep.tokenizer)
            scheme = self.scheme(prep.config_json)
            canon: list[str] = []
            norms: list[NormalizationReport] = []
            for i in idx:
                text = items[i][1]
                c, n = canonicalize(text, offsets=False) if self.normalize else (text, NormalizationReport())
                canon.append(c)
                norms.append(n)
            ids = self.encode(tok, canon)
            for j, i in enumerate(idx):
                try:
                    results[i] = (scheme.detect(ids[j], alpha=self.alpha), norms[j])
                except InputError as exc:
                    results[i] = exc
            if rows:
                public = scheme.config.to_dict()
                for i in idx:
                    if isinstance(results[i], tuple):
                        det, norm = results[i]
                        row = detection_row(
                            items[i][0], det, self.alpha or 1e-3, None, public, list(prep.conflicts)
                        )
                        if self.normalize:
                            row.update(norm.to_dict())
                        results[i] = row
        if rows:
            return [
                r if isinstance(r, dict) else {"source": items[i][0], "error": str(r)}
                for i, r in enumerate(results)
            ]
        return [r[0] if isinstance(r, tuple) else r for r in results]


_WORKER: Detector | None = None


def _init_worker(key: Any, alpha: float | None, normalize: bool) -> None:
    """Pool initializer: the key arrives here in memory (pickled over the pool's pipe)."""
    global _WORKER
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    _WORKER = Detector(key, alpha, normalize)


def _run_batch(items: list[tuple[str, str, Prepared | None]], rows: bool) -> list[Any]:
    assert _WORKER is not None
    return _WORKER.run(items, rows)


# ---- the ordered, bounded pool -----------------------------------------------------------------------


def ordered_map(
    batches: Iterable[list[tuple[str, str, Prepared | None]]],
    key: Any,
    alpha: float | None,
    normalize: bool,
    workers: int = 1,
    rows: bool = True,
    detector: Detector | None = None,
) -> Iterator[list[Any]]:
    """Results of each batch, in order, with at most 2 x workers batches in flight (bounded memory).

    This process is one of the `workers` detectors (with `detector` when given): it tests every
    workers-th batch itself while workers - 1 spawned processes test the others, so N workers
    cost N copies of torch and the tokenizer in memory, not N + 1."""
    det = detector or Detector(key, alpha, normalize)
    if workers <= 1:
        for batch in batches:
            yield det.run(batch, rows)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers - 1, initializer=_init_worker, initargs=(key, alpha, normalize)) as pool:
        pending: deque = deque()
        for i, batch in enumerate(batches):
            if i % workers == 0:
                pending.append(_Done(det.run(batch, rows)))
            else:
                pending.append(pool.apply_async(_run_batch, (batch, rows)))
            while len(pending) >= 2 * workers or (pending and pending[0].ready()):
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class _Done:
    """A batch this process tested itself, queued in order with the pool's AsyncResults."""

    def __init__(self, result: list[Any]):
        self.result = result

    def ready(self) -> bool:
        return True

    def get(self) -> list[Any]:
        return self.result


def batched(records: Iterable[TextRecord], plan: ConfigPlan, size: int = BATCH) -> Iterator[list[tuple]]:
    """(source, text, prepared config) batches; a record that could not be read carries its reason."""
    batch: list[tuple] = []
    for rec in records:
        err = record_error(rec)
        if err is not None:
            batch.append((rec.source, err, None))
        else:
            try:
                batch.append((rec.source, rec.text, plan.prepare(rec.config, rec.source)))
            except InputError as exc:
                batch.append((rec.source, str(exc), None))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def detect_texts(
    texts: Iterable[str],
    key: Any,
    config: SchemeConfig | dict[str, Any],
    workers: int = 1,
    tokenizer: Any = None,
    alpha: float | None = None,
    normalize: bool = True,
    errors: str = "raise",
) -> Iterator[Any]:
    """Test each text, yielding its `Detection` in input order, as `wm detect` would test it
    (canonical text unless `normalize=False`). Memory stays bounded for any number of texts.

    `tokenizer`: a name, or a tokenizer object (pickled to the workers), default the config's.
    `workers > 1` spreads batches over that many spawned processes; the key reaches them in memory
    only. A text that cannot be tested raises its InputError, or with `errors="return"` is
    yielded as the InputError in its place."""
    from ..modeling.models import canonical_name

    if errors not in ("raise", "return"):
        raise ValueError("errors must be 'raise' or 'return'")
    tok_obj = None if tokenizer is None or isinstance(tokenizer, str) else tokenizer
    name = canonical_name(
        tokenizer
        if isinstance(tokenizer, str)
        else getattr(tok_obj, "name_or_path", None)
        or (config.tokenizer if isinstance(config, SchemeConfig) else config.get("tokenizer"))
    )
    plan = ConfigPlan.of(config, name)
    if tok_obj is not None:
        plan.load_tokenizer = lambda _n: tok_obj
    records = (TextRecord(f"text {i}", t) for i, t in enumerate(texts))

    def checked(recs: Iterator[TextRecord]) -> Iterator[TextRecord]:
        for r in recs:
            if not isinstance(r.text, str):
                raise InputError(f"{r.source}: detect_texts needs str texts, got {type(r.text).__name__}")
            yield r

    detector = None
    if tok_obj is not None:
        detector = Detector(key, alpha, normalize, tokenizers={name: tok_obj})
        if workers > 1:
            _register_tokenizer(name, tok_obj)
    for results in ordered_map(
        batched(checked(records), plan), key, alpha, normalize, workers, rows=False, detector=detector
    ):
        for r in results:
            if isinstance(r, InputError) and errors == "raise":
                raise r
            yield r


def _register_tokenizer(name: str, tok: Any) -> None:
    """A tokenizer object for spawned workers: they load by name, so the object must be loadable
    by that name (a saved or hub tokenizer); anything else is an error here, not a wrong result."""
    from ..modeling.models import load_tokenizer

    try:
        other = load_tokenizer(name)
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            f"workers load the tokenizer by name, and {name!r} cannot be loaded: {exc}"
        ) from None
    if len(other) != len(tok):
        raise InputError(f"the tokenizer {name!r} the workers would load differs from the one given")


def keyring_rows(
    records: Iterable[TextRecord], ring_detector: Any, hints: tuple = (), hint_weight: float = 0.5,
    size: int = BATCH,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """Corpus mode over a keyring (`runtime.keyring_detect.RingDetector`): one row per record, in
    order, in this process (each batch tokenised once per distinct tokenizer); entries by name only."""
    from .keyring_detect import keyring_row

    batch: list[TextRecord] = []
    for rec in [*records, None]:
        if rec is not None:
            batch.append(rec)
        if batch and (rec is None or len(batch) >= size):
            ok = [r for r in batch if record_error(r) is None]
            results = iter(ring_detector.detect_texts([r.text for r in ok], hints, hint_weight))
            for r in batch:
                err = record_error(r)
                yield {"source": r.source, "error": err} if err else keyring_row(r.source, *next(results))
            batch = []


# ---- writing ------------------------------------------------------------------------------------------


def json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def row_json(row: dict[str, Any]) -> str:
    return json.dumps(row, default=json_default)


PARQUET_COLUMNS = (
    "source",
    "scheme",
    "verdict",
    "p_value",
    "log10_p_value",
    "num_tokens_scored",
    "error",
    "row",
)


class RowSink:
    """Where rows go: JSONL on stdout, or a file written atomically (JSONL, or Parquet when the
    name ends in .parquet: the main fields as columns plus `row`, the whole JSON row)."""

    def __init__(self, path: str | None):
        self.path = path
        self.parquet = bool(path) and str(path).lower().endswith(".parquet")
        self._cm: contextlib.AbstractContextManager[Any] | None = None
        self._fh: Any = None  # atomic.atomic_writer's writer (bytes for parquet)
        self._pq_writer: Any = None  # pyarrow.parquet.ParquetWriter (pyarrow has no type information)
        self._pending: list[dict[str, Any]] = []

    def __enter__(self) -> RowSink:
        if self.path:
            self._cm = atomic.atomic_writer(self.path, binary=self.parquet)
            self._fh = self._cm.__enter__()
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self.parquet:
            self._pending.append(row)
            if len(self._pending) >= PARQUET_BATCH:
                self._flush_parquet()
        elif self._fh is not None:
            self._fh.write(row_json(row) + "\n")
        else:
            sys.stdout.write(row_json(row) + "\n")

    def flush(self) -> None:
        if self._fh is None and not self.parquet:
            sys.stdout.flush()

    def _flush_parquet(self) -> None:
        import pyarrow as pa

        pq = _pyarrow_parquet()
        schema = pa.schema(
            [
                ("source", pa.string()),
                ("scheme", pa.string()),
                ("verdict", pa.string()),
                ("p_value", pa.float64()),
                ("log10_p_value", pa.float64()),
                ("num_tokens_scored", pa.int64()),
                ("error", pa.string()),
                ("row", pa.string()),
            ]
        )
        cols: dict[str, list] = {c: [] for c in PARQUET_COLUMNS}
        for r in self._pending:
            for c in PARQUET_COLUMNS[:-1]:
                cols[c].append(r.get(c))
            cols["row"].append(row_json(r))
        table = pa.table(cols, schema=schema)
        if self._pq_writer is None:
            self._pq_writer = pq.ParquetWriter(pa.PythonFile(_Tell(self._fh), mode="w"), schema)
        self._pq_writer.write_table(table)
        self._pending = []

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None and self.parquet:
                if self._pending or self._pq_writer is None:
                    self._flush_parquet()
                self._pq_writer.close()
        except BaseException:
            if self._cm is not None:
                self._cm.__exit__(*sys.exc_info())
            raise
        if self._cm is not None:
            return bool(self._cm.__exit__(exc_type, exc, tb))
        return False


class _Tell:
    """The atomic writer as the file object pyarrow wants (write, tell, flush, closed)."""

    def __init__(self, fh: Any):
        self.fh, self.pos, self.closed = fh, 0, False

    def write(self, data: bytes) -> int:
        self.fh.write(bytes(data))
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def check_sink(path: str | None) -> None:
    if path and str(path).lower().endswith(".parquet"):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise OutputError("writing Parquet needs pyarrow: pip install pyarrow") from None
