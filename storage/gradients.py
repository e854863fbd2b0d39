"""The gradient store: one LanceDB table of projected vectors per (checkpoint, valuation config).

A shard is the unit of commit. Opening a shard writer deletes the shard's rows and records an
``open`` marker for a new attempt; rows, tagged with the attempt, are appended in large
batches from a background thread; ``commit`` deletes any other attempt's rows of the shard and
records a ``committed`` marker. Readers see a shard only when its latest attempt (at the table
version they read) is committed, so a writer that died mid-shard leaves nothing visible, and the
redo replaces its rows instead of duplicating them. A writer that was presumed dead but wakes up
(a hung worker whose shard was handed to another) finds itself superseded after its next append,
removes its own rows and stops.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from storage import codec
from storage.lance_util import connect, open_or_create, sql_list

# Lance's "legacy" (v1) file format scans fixed-size float vectors ~5x faster than v2.x here
# (3.9 vs 0.7 GB/s warm, 40k x 4096 float32, lance 14): gradient tables are scan-bound.
VECTOR_FILE_FORMAT = "legacy"
# Chunks wrap read-only Arrow memory without a copy; consumers never write to them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)

MARKERS_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("state", pa.string(), nullable=False),  # open | committed
        pa.field("rows", pa.int64()),
        pa.field("table_version", pa.int64(), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("attempt", pa.string()),
        pa.field("worker", pa.string()),  # $DATAWORTH_WORKER or host:pid of the writing process
    ]
)
SELF_INFLUENCE_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string(), nullable=False),
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("self_influence", pa.float64(), nullable=False),
    ]
)


def table_name(checkpoint: str, config_hash: str) -> str:
    return f"grad_{checkpoint[:16]}_{config_hash[:16]}"


def gradient_schema(dim: int, dtype: str, metadata: dict[str, str]) -> pa.Schema:
    """Row schema; ``dtype`` is a :mod:`storage.codec` name (int8 rows add a float32 ``scale``)."""
    fields = [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("provider_id", pa.string(), nullable=False),
        pa.field("provider_code", pa.int32(), nullable=False),
        pa.field("shard", pa.int32(), nullable=False),
        pa.field("attempt", pa.string(), nullable=False),
        pa.field("vector", pa.list_(codec.value_type(dtype), dim), nullable=False),
    ]
    if codec.has_scale(dtype):
        fields.append(pa.field("scale", pa.float32(), nullable=False))
    return pa.schema(fields, metadata=metadata)


@dataclass(eq=False)
class GradientChunk:
    """One streamed chunk: ``vectors`` ``(n, dim)`` and its row metadata.

    The string columns stay Arrow arrays until asked for: a scorer needs only the vectors and
    provider codes for every row, and the ids of the few rows that reach a top-k.
    """

    vectors: torch.Tensor
    provider_codes: torch.Tensor  # (n,) int32
    shards: torch.Tensor  # (n,) int32
    columns: pa.Table  # example_id, doc_id, provider_id

    def __len__(self) -> int:
        return self.vectors.shape[0]

    @functools.cached_property
    def example_ids(self) -> list[str]:
        return self.columns.column("example_id").to_pylist()

    @functools.cached_property
    def doc_ids(self) -> list[str]:
        return self.columns.column("doc_id").to_pylist()

    @functools.cached_property
    def provider_ids(self) -> list[str]:
        return self.columns.column("provider_id").to_pylist()


class GradientStore:
    """All gradient tables under one LanceDB URI (a directory, or object storage)."""

    def __init__(self, uri: str | Path, storage_options: dict | None = None) -> None:
        self.uri = str(uri)
        self.db = connect(uri, storage_options)
        self.markers = open_or_create(self.db, "shard_markers", MARKERS_SCHEMA)
        self.self_influence = open_or_create(self.db, "self_influence", SELF_INFLUENCE_SCHEMA)

    def table(
        self,
        checkpoint: str,
        config_hash: str,
        layout: Sequence[Sequence] | None = None,
        dtype: str = "float32",
        config: dict | None = None,
    ) -> GradientTable:
        """Open (or create, when ``layout`` is given) the table of (checkpoint, config)."""
        name = table_name(checkpoint, config_hash)
        try:
            tbl = self.db.open_table(name)
        except (ValueError, FileNotFoundError):
            if layout is None:
                raise KeyError(f"no gradient table for checkpoint {checkpoint[:16]} config {config_hash}") from None
            codec.check_codec(dtype)
            dim = sum(int(k_out) * int(k_in) for _, k_out, k_in in layout)
            metadata = {
                "dataworth.layout": json.dumps([list(e) for e in layout]),
                "dataworth.config": json.dumps(config or {}, sort_keys=True),
                "dataworth.checkpoint": checkpoint,
                "dataworth.config_hash": config_hash,
                "dataworth.dtype": dtype,
            }
            tbl = open_or_create(self.db, name, gradient_schema(dim, dtype, metadata), VECTOR_FILE_FORMAT)
        return GradientTable(self, name, tbl)

    def tables_of(self, checkpoint: str) -> list[GradientTable]:
        """Every table of ``checkpoint`` (one per configuration it was logged with)."""
        prefix = f"grad_{checkpoint[:16]}_"
        return [GradientTable(self, n, self.db.open_table(n)) for n in self.tables() if n.startswith(prefix)]

    def tables(self) -> list[str]:
        names, token = [], None
        while True:
            resp = self.db.list_tables(page_token=token)
            names.extend(resp.tables)
            token = resp.page_token
            if not token:
                return [n for n in names if n.startswith("grad_")]


class GradientTable:
    """One (checkpoint, config) table: shard writers, committed-shard readers, self-influence."""

    def __init__(self, store: GradientStore, name: str, tbl) -> None:
        self.store, self.name, self.tbl = store, name, tbl
        # Fetched once: Table.schema re-reads the latest manifest on every access.
        self.schema = tbl.schema
        meta = {k.decode(): v.decode() for k, v in (self.schema.metadata or {}).items()}
        self.layout = [tuple(e) for e in json.loads(meta["dataworth.layout"])]
        self.config = json.loads(meta["dataworth.config"])
        self.checkpoint = meta["dataworth.checkpoint"]
        self.dtype = meta["dataworth.dtype"]
        self.dim = sum(k_out * k_in for _, k_out, k_in in self.layout)

    @property
    def version(self) -> int:
        return self.tbl.version

    # markers --------------------------------------------------------------------------------
    def _mark(self, shard: int, state: str, rows: int | None, attempt: str | None = None) -> None:
        self.store.markers.add(
            pa.table(
                {
                    "table": [self.name],
                    "shard": [shard],
                    "state": [state],
                    "rows": [rows],
                    "table_version": [self.tbl.version],
                    "seq": [time.time_ns()],
                    "attempt": [attempt],
                    "worker": [worker_name()],
                },
                schema=MARKERS_SCHEMA,
            )
        )

    def _markers(self, version: int | None = None, shard: int | None = None) -> dict[int, dict]:
        """Per shard, its latest attempt: ``{"attempt", "state", "worker", "rows"}``."""
        flt = f"`table` = '{self.name}'"
        if version is not None:
            flt += f" AND table_version <= {int(version)}"
        if shard is not None:
            flt += f" AND shard = {int(shard)}"
        cols = ["shard", "state", "seq", "attempt", "worker", "rows"]
        rows = self.store.markers.to_lance().to_table(filter=flt, columns=cols).to_pylist()
        latest: dict[int, dict] = {}
        for r in sorted(rows, key=lambda r: r["seq"]):
            if r["state"] == "open":
                latest[r["shard"]] = {**r, "state": "open"}
            elif r["shard"] in latest and r["attempt"] == latest[r["shard"]]["attempt"]:
                latest[r["shard"]].update(state=r["state"], rows=r["rows"], worker=r["worker"])
        return latest

    def shard_states(self, version: int | None = None) -> dict[int, str]:
        """State (``open`` or ``committed``) of each shard's latest attempt as of table ``version``."""
        return {s: m["state"] for s, m in self._markers(version).items()}

    def shard_workers(self, version: int | None = None) -> dict[int, str]:
        """Which worker committed each committed shard."""
        return {s: m["worker"] for s, m in self._markers(version).items() if m["state"] == "committed"}

    def latest_attempt(self, shard: int) -> str | None:
        m = self._markers(shard=shard).get(shard)
        return None if m is None else m["attempt"]

    def committed_shards(self, version: int | None = None) -> list[int]:
        return sorted(s for s, st in self.shard_states(version).items() if st == "committed")

    # writing --------------------------------------------------------------------------------
    def writer(self, shard: int, batch_rows: int = 8192) -> ShardWriter:
        """A writer for ``shard``: its previous rows (complete or partial) are replaced."""
        return ShardWriter(self, int(shard), batch_rows)

    def write_self_influence(self, example_ids: list[str], shards: Sequence[int], values: np.ndarray) -> None:
        """Store self-influence per example (finalize); replaces earlier values of these shards."""
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError("self-influence contains NaN or inf")
        shard_set = sorted({int(s) for s in shards})
        self.store.self_influence.delete(f"`table` = '{self.name}' AND shard IN {sql_list(shard_set)}")
        self.store.self_influence.add(
            pa.table(
                {
                    "table": [self.name] * len(example_ids),
                    "example_id": list(example_ids),
                    "shard": pa.array(list(shards), pa.int32()),
                    "self_influence": values,
                },
                schema=SELF_INFLUENCE_SCHEMA,
            )
        )

    def self_influence(self, shard: int) -> dict[str, float]:
        t = self.store.self_influence.to_lance().to_table(
            filter=f"`table` = '{self.name}' AND shard = {int(shard)}",
            columns=["example_id", "self_influence"],
        )
        return dict(zip(t.column("example_id").to_pylist(), t.column("self_influence").to_pylist(), strict=True))

    def count_rows(self, version: int | None = None) -> int:
        shards = self.committed_shards(version)
        if not shards:
            return 0
        return self._dataset(version).count_rows(filter=f"shard IN {sql_list(shards)}")

    def column(self, name: str, version: int | None = None) -> pa.Array:
        """One metadata column (``example_id``, ``doc_id``, ...) of the committed rows of ``version``."""
        shards = self.committed_shards(version)
        if not shards:
            return pa.array([], pa.string())
        t = self._dataset(version).to_table(columns=[name], filter=f"shard IN {sql_list(shards)}")
        return t.column(name).combine_chunks()

    def _dataset(self, version: int | None):
        if version is None:
            self.tbl.checkout_latest()
            return self.tbl.to_lance()
        return self.tbl.to_lance().checkout_version(int(version))

    # reading --------------------------------------------------------------------------------
    def read(
        self,
        chunk_rows: int = 8192,
        version: int | None = None,
        providers: Sequence[str] | None = None,
        shards: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        prefetch: int = 2,
    ) -> Iterator[GradientChunk]:
        """Stream committed rows as chunks of at most ``chunk_rows`` vectors (zero-copy views of
        Lance's batches); read-ahead in a thread.

        ``version`` pins the table version (a reader pinned there never sees later writes).
        """
        states = self.shard_states(version)
        committed = sorted(s for s, st in states.items() if st == "committed")
        if shards is not None:
            committed = [s for s in committed if s in set(int(x) for x in shards)]
        if not committed:
            return
        flt = None
        # Rows are only written after a shard's "open" marker: when every shard with a marker is
        # committed, the table holds committed rows only and the scan needs no filter (filters
        # cost Lance's fast sequential path, ~3x here).
        if shards is not None or len(committed) != len(states):
            flt = f"shard IN {sql_list(committed)}"
        if providers is not None:
            flt = (f"{flt} AND " if flt else "") + f"provider_id IN {sql_list(list(providers))}"
        scanner = self._dataset(version).scanner(filter=flt, batch_size=chunk_rows, late_materialization=False)
        yield from _prefetch(self._chunks(scanner.to_batches(), chunk_rows, device), prefetch)

    def sample(self, n: int, version: int | None = None, seed: int = 0) -> tuple[GradientChunk, int] | None:
        """A uniform sample of ``n`` rows of ``version`` drawn without replacement (every row when
        there are no more than ``n``; seeded, so the same version gives the same sample), and the
        number of rows it was drawn from. None while any shard is open: row positions would then
        include rows no reader sees."""
        states = self.shard_states(version)
        if not states or any(st != "committed" for st in states.values()):
            return None
        ds = self._dataset(version)
        total = ds.count_rows()
        if total <= n:
            pick = np.arange(total)
        else:
            pick = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        cols = ["vector", "provider_code", "shard", "example_id", "doc_id", "provider_id"]
        if codec.has_scale(self.dtype):
            cols.append("scale")
        return self._to_chunk(ds.take(pick, columns=cols), None), total

    def _chunks(self, batches, chunk_rows: int, device) -> Iterator[GradientChunk]:
        # Batches are passed on as they come (split when larger than chunk_rows), never merged:
        # merging copies, and a copy is where the pages of a cold table get touched twice.
        for batch in batches:
            for start in range(0, batch.num_rows, chunk_rows):
                part = batch.slice(start, chunk_rows)
                if part.num_rows:
                    yield self._to_chunk(pa.Table.from_batches([part]), device)

    def _values(self, fsl: pa.FixedSizeListArray) -> torch.Tensor:
        """``(len, dim)`` view of a FixedSizeList chunk's values (``.values`` ignores offsets)."""
        flat = fsl.values.to_numpy(zero_copy_only=True)
        flat = flat[fsl.offset * self.dim : (fsl.offset + len(fsl)) * self.dim]
        return codec.numpy_view(flat, self.dtype).reshape(-1, self.dim)

    def _to_chunk(self, table: pa.Table, device) -> GradientChunk:
        vec = table.column("vector")
        pieces = [self._values(c) for c in vec.chunks if len(c)]
        if len(pieces) == 1:
            vectors = pieces[0]  # Arrow → torch without a copy (read-only memory, never written)
        else:
            # One preallocated block filled by torch's (parallel) copies: FixedSizeList.flatten()
            # and np.concatenate were ~10x slower here.
            vectors = torch.empty((len(table), self.dim), dtype=pieces[0].dtype)
            start = 0
            for piece in pieces:
                vectors[start : start + len(piece)].copy_(piece)
                start += len(piece)
        scale = None
        if codec.has_scale(self.dtype):
            scale = torch.from_numpy(table.column("scale").to_numpy())
        vectors = codec.decode(vectors, self.dtype, scale)
        if device is not None:
            vectors = vectors.to(device, non_blocking=True)
        return GradientChunk(
            vectors=vectors,
            provider_codes=torch.from_numpy(table.column("provider_code").to_numpy()),
            shards=torch.from_numpy(table.column("shard").to_numpy()),
            columns=table.select(["example_id", "doc_id", "provider_id"]),
        )

    # maintenance ----------------------------------------------------------------------------
    def optimize(self, keep_versions_newer_than: timedelta = timedelta(hours=1)) -> None:
        """Compact fragments and drop old versions (after logging finished)."""
        self.tbl.optimize(cleanup_older_than=keep_versions_newer_than)

    def tag(self, name: str) -> int:
        """Tag the current version (a valuation run records and re-reads it)."""
        version = self.tbl.version
        self.tbl.tags.create(name, version)
        return version


def _prefetch(it: Iterator, depth: int) -> Iterator:
    """Run ``it`` in a thread, ``depth`` items ahead of the consumer."""
    if depth <= 0:
        yield from it
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def worker():
        try:
            for item in it:
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(done)

    threading.Thread(target=worker, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


class ShardSupersededError(RuntimeError):
    """Another attempt took over this shard (its writer was presumed dead)."""


def worker_name() -> str:
    return os.environ.get("DATAWORTH_WORKER") or f"{socket.gethostname()}:{os.getpid()}"


class ShardWriter:
    """Appends one shard's rows from a background thread; ``commit()`` makes them visible."""

    def __init__(self, table: GradientTable, shard: int, batch_rows: int) -> None:
        self.table, self.shard, self.batch_rows = table, shard, batch_rows
        self.rows = 0
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self.attempt = uuid.uuid4().hex[:16]
        # Cleared, then marked: the marker's table version is the first one without the old rows
        # (pinned readers of earlier versions still see them). A stale attempt's appends made
        # meanwhile carry its own attempt id: it removes them itself, or this commit does.
        table.tbl.delete(f"shard = {shard}")
        table._mark(shard, "open", None, self.attempt)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self._stop()

    def add(
        self,
        example_ids: Sequence[str],
        doc_ids: Sequence[str],
        provider_ids: Sequence[str],
        provider_codes: Sequence[int],
        vectors: torch.Tensor | np.ndarray,
    ) -> None:
        """Queue rows; ``vectors`` is ``(n, dim)``, stored with the table's codec (:mod:`storage.codec`;
        float16 tables refuse values beyond ±65504)."""
        if self._error is not None:
            raise RuntimeError(f"shard {self.shard} writer failed") from self._error
        arr = vectors.detach().to("cpu").numpy() if isinstance(vectors, torch.Tensor) else np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self.table.dim:
            raise ValueError(f"vectors must be (n, {self.table.dim}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"shard {self.shard}: vectors contain NaN or inf")
        arr, scale = codec.encode(arr, self.table.dtype, where=f"shard {self.shard}")
        n = arr.shape[0]
        columns = {
            "example_id": list(example_ids),
            "doc_id": list(doc_ids),
            "provider_id": list(provider_ids),
            "provider_code": pa.array(list(provider_codes), pa.int32()),
            "shard": pa.array(np.full(n, self.shard, dtype=np.int32)),
            "attempt": pa.array([self.attempt] * n, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(arr).reshape(-1)), self.table.dim
            ),
        }
        if scale is not None:
            columns["scale"] = pa.array(scale, pa.float32())
        batch = pa.table(columns, schema=self.table.schema)
        self._buffer.append(batch)
        self._buffered += n
        self.rows += n
        if self._buffered >= self.batch_rows:
            self._send()

    def _send(self) -> None:
        if self._buffer:
            self._queue.put(pa.concat_tables(self._buffer))
            self._buffer, self._buffered = [], 0

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self.table.tbl.add(item)
                    self._check_current()
                except BaseException as exc:  # reported by add() / commit()
                    self._error = exc

    def _stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _check_current(self) -> None:
        """Raise :class:`ShardSupersededError` (after removing this attempt's rows) if another
        attempt has opened the shard since."""
        latest = self.table.latest_attempt(self.shard)
        if latest != self.attempt:
            self.table.tbl.delete(f"shard = {self.shard} AND attempt = '{self.attempt}'")
            raise ShardSupersededError(f"shard {self.shard}: attempt {self.attempt} superseded by {latest}")

    def commit(self) -> int:
        """Flush, wait for the appends and mark the shard committed; returns its row count."""
        self._send()
        self._stop()
        if self._error is not None:
            raise RuntimeError(f"shard {self.shard} writer failed; the shard stays invisible") from self._error
        self._check_current()
        # Rows a superseded attempt appended after this one opened the shard.
        self.table.tbl.delete(f"shard = {self.shard} AND attempt != '{self.attempt}'")
        self.table.tbl.checkout_latest()
        self.table._mark(self.shard, "committed", self.rows, self.attempt)
        return self.rows
