"""Per-provider and per-document sum vectors of a gradient table, stored beside it in LanceDB.

``build_aggregates`` reads the table once (at a pinned version) and writes, per scoring mode,
``A_g = Σ_{i∈g} w_i g_i`` in float64 (``valuation.aggregate``) for every provider and, on request,
every document, as one commit of the table ``agg_<gradient table>``: each build is one Lance
version, which a run pins by number or tag. The build records the gradient table's version and the
damping its self-influence used; ``load_aggregates`` refuses another version or damping.

Document sums are written as partial rows when a document's rows are not contiguous in the scan;
readers add the parts (exact). A document of one row is its row: its sums are not written again
(most documents of a corpus of short documents; float64 copies would cost ``4 × modes`` times the
bytes of a float16 table) and readers take them from the table and its stored self-influence.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from storage.gradients import GradientTable
from valuation.aggregate import GroupSumAccumulator
from valuation.errors import DataworthError
from valuation.scoring import MODES, self_influence

LEVELS = ("provider", "document")
META_KEY = "dataworth.aggregates"


class AggregateError(DataworthError, ValueError):
    """Aggregates are missing, or were built for another table version or damping."""


@dataclass(frozen=True)
class AggregateInfo:
    """What a build was made from. ``version`` is the aggregate table's Lance version."""

    table: str
    table_version: int
    damping_ratio: float
    damping: dict[str, float]
    modes: tuple[str, ...]
    levels: tuple[str, ...]
    rows: int
    dim: int
    # True: documents of one row are read from the gradient table (not stored in the aggregates)
    single_row_documents_in_table: bool = False
    version: int = -1


@dataclass
class Aggregates:
    """Loaded sums of one level: ``vectors[mode]`` ``(n_groups, dim)`` float64, ``keys`` the
    provider (or document) ids, ``codes`` the provider codes (``-1`` for documents), ``rows`` the
    examples per group, ``norm_sums`` their ``Σ √self_i``."""

    info: AggregateInfo
    level: str
    keys: list[str]
    codes: torch.Tensor
    rows: torch.Tensor
    norm_sums: torch.Tensor
    vectors: dict[str, torch.Tensor]

    def by_code_column(self, values: torch.Tensor, num_providers: int) -> torch.Tensor:
        """A per-group column ``(n_groups,)`` laid out by provider code ``(num_providers,)``."""
        out = torch.zeros(num_providers, dtype=values.dtype)
        out[self.codes.long()] = values
        return out

    def by_code(self, mode: str, num_providers: int) -> torch.Tensor:
        """``(num_providers, dim)``: row ``c`` is provider code ``c``'s sum (zeros if it has no rows)."""
        if self.level != "provider":
            raise AggregateError("by_code needs provider-level aggregates")
        if mode not in self.vectors:
            raise AggregateError(f"aggregates of {self.info.table} hold modes {self.info.modes}, not {mode!r}")
        if len(self.codes) and int(self.codes.max()) >= num_providers:
            raise AggregateError(
                f"aggregates of {self.info.table} hold provider code {int(self.codes.max())}, "
                f"beyond the {num_providers} providers asked for"
            )
        out = torch.zeros(num_providers, self.info.dim, dtype=torch.float64)
        out[self.codes.long()] = self.vectors[mode]
        return out


def aggregate_table_name(table: GradientTable) -> str:
    return f"agg_{table.name}"


def _schema(dim: int, info: AggregateInfo) -> pa.Schema:
    meta = asdict(info)
    meta.pop("version")
    return pa.schema(
        [
            pa.field("level", pa.string(), nullable=False),
            pa.field("mode", pa.string(), nullable=False),
            pa.field("key", pa.string(), nullable=False),
            pa.field("code", pa.int32(), nullable=False),
            pa.field("rows", pa.int64(), nullable=False),
            pa.field("norm_sum", pa.float64(), nullable=False),  # Σ √self_i (0 without self-influence)
            pa.field("vector", pa.list_(pa.float64(), dim), nullable=False),
        ],
        metadata={META_KEY: json.dumps(meta, sort_keys=True)},
    )


def _batch(schema: pa.Schema, level: str, mode: str, keys, codes, rows, norms, vectors: torch.Tensor) -> pa.RecordBatch:
    flat = np.ascontiguousarray(vectors.cpu().numpy()).reshape(-1)
    n = len(keys)
    return pa.RecordBatch.from_arrays(
        [
            pa.array([level] * n, pa.string()),
            pa.array([mode] * n, pa.string()),
            pa.array(list(keys), pa.string()),
            pa.array(np.asarray(codes, dtype=np.int32)),
            pa.array(np.asarray(rows, dtype=np.int64)),
            pa.array(np.asarray(norms, dtype=np.float64)),
            pa.FixedSizeListArray.from_arrays(pa.array(flat), vectors.shape[1]),
        ],
        schema=schema,
    )


class _DocumentSums:
    """Per-document sums with bounded memory: a document's partial sum is flushed once a chunk
    no longer contains it (rows of one document are usually adjacent)."""

    def __init__(self, modes: tuple[str, ...], skip: frozenset[str] = frozenset()) -> None:
        self.modes = modes
        self.skip = skip
        self.pending: dict[str, tuple[dict[str, torch.Tensor], int, float]] = {}

    def update(self, chunk_docs: pa.Array, vectors: torch.Tensor, train_self: torch.Tensor | None):
        if self.skip:
            keep = ~pc.is_in(chunk_docs, value_set=pa.array(sorted(self.skip), pa.string())).to_numpy(
                zero_copy_only=False
            )
            if not keep.all():
                rows = torch.from_numpy(np.flatnonzero(keep))
                chunk_docs = chunk_docs.filter(pa.array(keep))
                vectors = vectors[rows]
                train_self = None if train_self is None else train_self[rows]
        encoded = pc.dictionary_encode(chunk_docs)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        docs = encoded.dictionary.to_pylist()
        codes = torch.from_numpy(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        acc = GroupSumAccumulator(len(docs), vectors.shape[1], self.modes)
        acc.update(vectors, codes, train_self)
        counts, norms = acc.counts.tolist(), acc.norm_sums.tolist()
        current = set(docs)
        flushed = {d: v for d, v in self.pending.items() if d not in current}
        for j, doc in enumerate(docs):
            sums = {m: acc.sums[m][j] for m in self.modes}
            n, norm = counts[j], norms[j]
            if doc in self.pending:
                old, old_n, old_norm = self.pending[doc]
                sums = {m: sums[m] + old[m] for m in self.modes}
                n, norm = n + old_n, norm + old_norm
            self.pending[doc] = (sums, n, norm)
        for doc in flushed:
            del self.pending[doc]
        return flushed

    def finish(self):
        out, self.pending = self.pending, {}
        return out


def build_aggregates(
    table: GradientTable,
    pre,
    damping_ratio: float,
    modes: Sequence[str] = MODES,
    levels: Sequence[str] = ("provider",),
    chunk_rows: int = 8192,
    write_self_influence: bool = True,
) -> AggregateInfo:
    """Scan ``table`` once and store its group sum vectors (one new version of ``agg_<table>``).

    ``pre`` is the table's :class:`~valuation.Preconditioner` at ``damping_ratio``; the normalised
    modes weigh each row by ``1/√(g_iᵀ pre(g_i))`` computed here in float64, and
    ``write_self_influence`` stores those values as the table's self-influence (what the scan path
    reads), so one pass serves finalize. Build after ``table.optimize()``: the recorded table
    version must be the one valuation runs read.
    """
    modes, levels = tuple(modes), tuple(levels)
    bad = [lv for lv in levels if lv not in LEVELS]
    if bad or not levels:
        raise AggregateError(f"levels must be among {LEVELS}, got {levels}")
    if any(m not in MODES for m in modes) or not modes:
        raise AggregateError(f"modes must be among {MODES}, got {modes}")
    table.tbl.checkout_latest()
    version = table.version
    info = AggregateInfo(
        table=table.name,
        table_version=version,
        damping_ratio=float(damping_ratio),
        damping={k: float(v) for k, v in sorted(pre.damping.items())},
        modes=modes,
        levels=levels,
        rows=table.count_rows(version),
        dim=table.dim,
    )
    singles: frozenset[str] = frozenset()
    # A one-row document's sums can be rebuilt from its row and stored self-influence, exactly
    if "document" in levels and (write_self_influence or modes == ("if",)):
        singles = frozenset(d for d, n in _document_rows(table, version).items() if n == 1)
        info = replace(info, single_row_documents_in_table=True)
    schema = _schema(table.dim, info)
    need_self = write_self_influence or any(m != "if" for m in modes)
    self_ids: list[str] = []
    self_shards: list[torch.Tensor] = []
    self_values: list[torch.Tensor] = []

    def batches() -> Iterator[pa.RecordBatch]:
        providers = GroupSumAccumulator(0, table.dim, modes)
        provider_ids: dict[int, str] = {}
        documents = _DocumentSums(modes, singles) if "document" in levels else None
        for chunk in table.read(chunk_rows=chunk_rows, version=version):
            wide = chunk.vectors.to(torch.float64)
            train_self = self_influence(wide, pre) if need_self else None
            if write_self_influence:
                self_ids.extend(chunk.example_ids)
                self_shards.append(chunk.shards.clone())
                self_values.append(train_self)
            codes = chunk.provider_codes.long()
            top = int(codes.max()) + 1
            if top > providers.counts.shape[0]:
                _grow(providers, top)
            providers.update(wide, codes, train_self)
            for code in set(codes.unique().tolist()) - set(provider_ids):
                first = int((codes == code).nonzero()[0, 0])
                provider_ids[code] = chunk.columns.column("provider_id")[first].as_py()
            if documents is not None:
                flushed = documents.update(chunk.columns.column("doc_id"), wide, train_self)
                yield from _document_batches(schema, modes, flushed)
        if documents is not None:
            yield from _document_batches(schema, modes, documents.finish())
        seen = sorted(provider_ids)
        counts, norms = providers.counts[seen].tolist(), providers.norm_sums[seen].tolist()
        keys = [provider_ids[c] for c in seen]
        for mode in modes:
            yield _batch(schema, "provider", mode, keys, seen, counts, norms, providers.sums[mode][seen])

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    agg = table.store.db.create_table(aggregate_table_name(table), reader, mode="overwrite")
    if write_self_influence and self_ids:
        table.write_self_influence(self_ids, torch.cat(self_shards).tolist(), torch.cat(self_values).numpy())
    return AggregateInfo(**{**asdict(info), "version": agg.version})


def _grow(acc: GroupSumAccumulator, num_groups: int) -> None:
    extra = num_groups - acc.counts.shape[0]
    acc.counts = torch.cat([acc.counts, acc.counts.new_zeros(extra)])
    acc.norm_sums = torch.cat([acc.norm_sums, acc.norm_sums.new_zeros(extra)])
    for mode, sums in acc.sums.items():
        acc.sums[mode] = torch.cat([sums, sums.new_zeros(extra, sums.shape[1])])


def _document_rows(table: GradientTable, version: int) -> dict[str, int]:
    """Rows per document among the committed rows of ``version`` (the doc_id column only)."""
    ids = table.column("doc_id", version)
    counts = pc.value_counts(ids)
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def _single_row_documents(table: GradientTable, info: AggregateInfo, modes: tuple[str, ...], stored: set[str]):
    """``(keys, rows, norm_sums, {mode: vectors})`` of the one-row documents, from the table's rows
    and stored self-influence, through the same accumulator the build uses."""
    keys: list[str] = []
    parts: dict[str, list[torch.Tensor]] = {m: [] for m in modes}
    norms: list[torch.Tensor] = []
    self_by_shard: dict[int, dict[str, float]] = {}
    need_self = any(m != "if" for m in modes)
    for chunk in table.read(version=info.table_version):
        docs = chunk.doc_ids
        pick = [i for i, d in enumerate(docs) if d not in stored]
        if not pick:
            continue
        rows = torch.tensor(pick, dtype=torch.int64)
        wide = chunk.vectors[rows].to(torch.float64)
        train_self = None
        if need_self:
            values = []
            for i in pick:
                shard = int(chunk.shards[i])
                if shard not in self_by_shard:
                    self_by_shard[shard] = table.self_influence(shard)
                values.append(self_by_shard[shard][chunk.example_ids[i]])
            train_self = torch.tensor(values, dtype=torch.float64)
        acc = GroupSumAccumulator(len(pick), info.dim, modes)
        acc.update(wide, torch.arange(len(pick)), train_self)
        keys.extend(docs[i] for i in pick)
        norms.append(acc.norm_sums)
        for m in modes:
            parts[m].append(acc.sums[m])
    empty = torch.zeros(0, info.dim, dtype=torch.float64)
    vectors = {m: torch.cat(parts[m]) if parts[m] else empty for m in modes}
    norm_sums = torch.cat(norms) if norms else torch.zeros(0, dtype=torch.float64)
    return keys, torch.ones(len(keys), dtype=torch.int64), norm_sums, vectors


def _document_batches(schema, modes, docs: dict) -> Iterator[pa.RecordBatch]:
    if not docs:
        return
    keys = list(docs)
    counts = [docs[k][1] for k in keys]
    norms = [docs[k][2] for k in keys]
    for mode in modes:
        vectors = torch.stack([docs[k][0][mode] for k in keys])
        yield _batch(schema, "document", mode, keys, [-1] * len(keys), counts, norms, vectors)


def _open(table: GradientTable, version: int | str | None):
    try:
        agg = table.store.db.open_table(aggregate_table_name(table))
    except (ValueError, FileNotFoundError):
        raise AggregateError(f"no aggregates for {table.name}: build them at finalize") from None
    ds = agg.to_lance()
    return agg, (ds if version is None else ds.checkout_version(version))


def aggregate_info(table: GradientTable, version: int | str | None = None) -> AggregateInfo:
    """The recorded provenance of the latest build (or of ``version``, a number or tag)."""
    _, ds = _open(table, version)
    meta = json.loads(ds.schema.metadata[META_KEY.encode()].decode())
    meta["modes"], meta["levels"] = tuple(meta["modes"]), tuple(meta["levels"])
    return AggregateInfo(**meta, version=ds.version)


def check_aggregates(info: AggregateInfo, damping_ratio: float, table_version: int) -> None:
    """Refuse aggregates made from another table version or damping (naming both values)."""
    if info.table_version != int(table_version):
        raise AggregateError(
            f"aggregates of {info.table} (version {info.version}) were built from table version "
            f"{info.table_version}, not the version {table_version} asked for: rebuild them"
        )
    if not np.isclose(info.damping_ratio, float(damping_ratio), rtol=1e-12, atol=0.0):
        raise AggregateError(
            f"aggregates of {info.table} (version {info.version}) were built with damping_ratio "
            f"{info.damping_ratio}, not {damping_ratio}: rebuild them with this damping or score by scan"
        )


def load_aggregates(
    table: GradientTable,
    damping_ratio: float,
    table_version: int,
    level: str = "provider",
    modes: Sequence[str] | None = None,
    version: int | str | None = None,
) -> Aggregates:
    """Load one level's sums (of the latest build, or ``version``: a number or tag), checked
    against the ``damping_ratio`` and gradient ``table_version`` the caller scores with."""
    info = aggregate_info(table, version)
    check_aggregates(info, damping_ratio, table_version)
    if level not in info.levels:
        raise AggregateError(f"aggregates of {table.name} hold levels {info.levels}, not {level!r}")
    modes = tuple(modes or info.modes)
    missing = [m for m in modes if m not in info.modes]
    if missing:
        raise AggregateError(f"aggregates of {table.name} hold modes {info.modes}, not {missing}")
    _, ds = _open(table, info.version)
    vectors: dict[str, torch.Tensor] = {}
    keys: list[str] = []
    codes = rows = torch.zeros(0, dtype=torch.int64)
    norms = torch.zeros(0, dtype=torch.float64)
    singles = None
    for mode in modes:
        t = ds.to_table(filter=f"level = '{level}' AND mode = '{mode}'")
        flat = t.column("vector").combine_chunks()
        vec = torch.from_numpy(flat.values.to_numpy().reshape(-1, info.dim).copy())
        mode_keys = t.column("key").to_pylist()
        mode_rows = torch.from_numpy(t.column("rows").to_numpy().copy())
        mode_norms = torch.from_numpy(t.column("norm_sum").to_numpy().copy())
        if level == "document":  # partial rows of one document add up
            if info.single_row_documents_in_table:
                if singles is None:
                    singles = _single_row_documents(table, info, modes, set(mode_keys))
                mode_keys = mode_keys + singles[0]
                vec = torch.cat([vec, singles[3][mode]])
                mode_rows = torch.cat([mode_rows, singles[1]])
                mode_norms = torch.cat([mode_norms, singles[2]])
            uniq = sorted(set(mode_keys))
            index = {k: j for j, k in enumerate(uniq)}
            inv = torch.tensor([index[k] for k in mode_keys], dtype=torch.int64)
            vec = torch.zeros(len(uniq), info.dim, dtype=torch.float64).index_add_(0, inv, vec)
            mode_rows = torch.zeros(len(uniq), dtype=torch.int64).index_add_(0, inv, mode_rows)
            mode_norms = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, mode_norms)
            mode_keys = uniq
            mode_codes = torch.full((len(uniq),), -1, dtype=torch.int64)
        else:
            mode_codes = torch.from_numpy(t.column("code").to_numpy().astype(np.int64))
            order = torch.argsort(mode_codes)
            vec, mode_rows, mode_codes = vec[order], mode_rows[order], mode_codes[order]
            mode_norms = mode_norms[order]
            mode_keys = [mode_keys[i] for i in order.tolist()]
        vectors[mode], keys, codes, rows, norms = vec, mode_keys, mode_codes, mode_rows, mode_norms
    return Aggregates(info, level, keys, codes, rows, norms, vectors)


def tag_aggregates(table: GradientTable, tag: str, version: int | None = None) -> int:
    """Tag a build (the latest by default) so a run can re-read exactly it."""
    agg, ds = _open(table, None)
    version = ds.version if version is None else int(version)
    agg.tags.create(tag, version)
    return version
