"""Ray Data engine: the corpus detector (`watermark.corpus.Detector`) as a batch UDF.

`detect_dataset` maps any Ray Dataset with a text column to one JSON row per record (the rows of
`wm detect --json`) plus typed columns; `detect_files` is `wm detect --engine ray`: it reads
Parquet (`read_parquet`) or JSONL/plain-text lines (`read_text`) with Ray, runs the UDF on a
pool of Ray actors, and returns the rows in input order, numbered as the local run numbers them
(`file:line`, `file:row`), so the two runs agree row for row.

How the key reaches the workers: it is an argument of the UDF's constructor, pickled by Ray with
the map operator and shipped to each actor through Ray's in-memory channels (gRPC and the shared-
memory object store). wm never writes it to disk or logs it; the rows carry only its fingerprint.
On the local Ray this module starts, object spilling is turned off, so Ray does not write the
store's objects (the key among them) to disk either; on a cluster (`--address`) the cluster's
own spilling settings apply, so run the key's cluster with spilling off or on encrypted disks.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ...errors import InputError, WmError
from ...text.textio import JSONL_SUFFIXES, MAX_INPUT_BYTES
from ..corpus import PARQUET_COLUMNS, ConfigPlan, Detector, Prepared, _jsonl_record, row_json

_WHERE = "\x00where\x00"  # stands for `file:line` in a worker's message; the driver fills it in
_SKIP = "\x00blank\x00"  # a blank line: not a record, but it counts for the line numbers


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise WmError("--engine ray needs Ray Data: pip install 'wm-toolkit[ray]'") from None
    return ray


def init(address: str | None = None, workers: int = 2) -> None:
    """Join `address`, or start a small local Ray (no dashboard, object spilling off) with one
    logical CPU per actor plus one for the read tasks (without it the actors hold every CPU and
    the reads never run)."""
    ray = _ray()
    if ray.is_initialized():
        return
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(
            num_cpus=workers + 1,
            object_store_memory=256 * 1024**2,
            _system_config={"automatic_object_spilling_enabled": False},
            **quiet,
        )
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True  # rows come back in input order


class DetectUDF:
    """The batch UDF: one Detector per actor, built from the key (in memory) and public options."""

    def __init__(
        self,
        key: Any,
        prepared: Prepared,
        plan_sources: tuple,
        alpha: float,
        normalize: bool,
        text_field: str,
        kind: str,
    ):
        self.detector = Detector(key, alpha, normalize)
        self.prepared, self.text_field, self.kind = prepared, text_field, kind
        file, flags, model, default_scheme = plan_sources
        self.plan = ConfigPlan(file=file, flags=flags, model=model, default_scheme=default_scheme)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        items: list[tuple] = []
        skip: list[bool] = []
        for value in batch[self.text_field if self.kind == "parquet" else "text"]:
            skip.append(False)
            if self.kind == "parquet":
                if not isinstance(value, str):
                    items.append((_WHERE, f"{_WHERE}: {self.text_field!r} is not a string", None))
                elif len(value.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
                    items.append(
                        (
                            _WHERE,
                            f"{_WHERE}: too large (more than the limit of {MAX_INPUT_BYTES} bytes)",
                            None,
                        )
                    )
                else:
                    items.append((_WHERE, value, self.prepared))
            elif self.kind == "lines":
                if value.strip():
                    items.append((_WHERE, value, self.prepared))
                else:
                    skip[-1] = True
            else:  # jsonl: the same checks as the local reader
                line = value[:-1] if value.endswith("\r") else value
                if not line.strip():
                    skip[-1] = True
                    continue
                try:
                    rec = _jsonl_record(_WHERE, line, self.text_field)
                    prep = self.plan.prepare(rec.config, _WHERE) if rec.config else self.prepared
                    items.append((_WHERE, rec.text, prep))
                except InputError as exc:
                    items.append((_WHERE, str(exc), None))
        rows = iter(self.detector.run([i for i in items], rows=True)) if items else iter(())
        out: dict[str, list] = {c: [] for c in PARQUET_COLUMNS}
        for s in skip:
            row = {"source": _WHERE, "error": _SKIP} if s else next(rows)
            for c in PARQUET_COLUMNS[:-1]:
                out[c].append(row.get(c))
            out["row"].append(row_json(row))
        return out


def detect_dataset(
    ds: Any,
    key: Any,
    plan: ConfigPlan,
    alpha: float = 1e-3,
    normalize: bool = True,
    text_field: str = "text",
    kind: str = "parquet",
    workers: int = 2,
    batch_size: int = 64,
) -> Any:
    """`ds` mapped to detection rows: columns source, scheme, verdict, p_value, log10_p_value,
    num_tokens_scored, error and `row` (the JSON row; `source` is a placeholder that
    `detect_files` numbers). `kind`: "parquet" (a text column), "jsonl" or "lines" (a `text`
    column of raw lines, from `ray.data.read_text(..., drop_empty_lines=False)`)."""
    ray = _ray()
    prepared = plan.prepare(None)
    sources = (plan.file, plan.flags, plan.model, plan.default_scheme)
    return ds.map_batches(
        DetectUDF,
        fn_constructor_args=(key, prepared, sources, alpha, normalize, text_field, kind),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
    )


def detect_files(
    files: Iterable[str],
    key: Any,
    plan: ConfigPlan,
    alpha: float,
    normalize: bool,
    text_field: str = "text",
    lines: bool = False,
    address: str | None = None,
    workers: int = 2,
) -> Iterator[dict[str, Any]]:
    """`wm detect --engine ray`: each file read and tested by Ray, rows in input order."""
    init(address, workers)
    ray = _ray()
    for path in files:
        name = path.lower()
        if path == "-" or not os.path.exists(path):
            raise InputError(f"{path}: --engine ray reads files (Parquet, JSONL, or text with --lines)")
        if name.endswith(".parquet"):
            kind = "parquet"
            ds = _read(lambda p=path: ray.data.read_parquet(p, columns=None), path)
            if text_field not in ds.schema().names:
                raise InputError(f"{path}: no column {text_field!r}")
        elif name.endswith(JSONL_SUFFIXES) or lines:
            kind = "jsonl" if name.endswith(JSONL_SUFFIXES) else "lines"
            ds = _read(lambda p=path: ray.data.read_text(p, drop_empty_lines=False), path)
        else:
            raise InputError(f"{path}: --engine ray reads Parquet, JSONL, or plain text with --lines")
        mapped = detect_dataset(ds, key, plan, alpha, normalize, text_field, kind, workers)
        n = records = 0
        try:
            for row in mapped.iter_rows():
                n += 1
                where = f"{path}:{n}"
                full = json.loads(row["row"].replace(json.dumps(_WHERE)[1:-1], json.dumps(where)[1:-1]))
                if full.get("error") == _SKIP:
                    continue
                records += 1
                yield full
        except WmError:
            raise
        except Exception as exc:  # noqa: BLE001 (Ray wraps a worker's failure in its own types)
            raise InputError(f"{path}: Ray could not process it ({str(exc).splitlines()[0][:200]})") from None
        if not records:
            raise InputError(f"{path}: holds no records")


def _read(make, path: str):
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 (pyarrow/Ray readers raise many types)
        raise InputError(f"{path}: Ray could not read it ({str(exc).splitlines()[0][:200]})") from None
