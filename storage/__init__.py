"""dataworth storage: where the bytes of a valuation live.

- :class:`CorpusStore` — ``ingest(path)`` validates a Parquet/JSONL/CSV corpus (``doc_id``,
  ``provider_id``, ``text``), dedupes and stores the documents as a new corpus version (no
  tokenizer needed); ``ensure_examples(key, tokenizer, max_length, version)`` chunks them per
  tokenizer (cached); ``iter_examples(key, version, shard, num_shards)``; ``pin(checkpoint, version)``.
- :class:`GradientStore` — ``table(checkpoint, config_hash, layout, dtype)`` →
  :class:`GradientTable` with ``writer(shard)`` (background appends, ``commit()``),
  ``read(chunk_rows, version=, providers=, shards=)`` → :class:`GradientChunk` stream,
  ``committed_shards()``, ``write_self_influence``/``self_influence``, ``optimize()``.
- :class:`ArtifactStore` — safetensors + sha256 manifest, atomic writes, verified loads;
  :func:`checkpoint_fingerprint`.
- :class:`QueryStore` — ``add_file``, ``pending()``, ``mark_valued(ids, run_id)``.
- Valuation at scale (benchmarks/SCALE.md): :func:`build_aggregates` / :func:`load_aggregates`
  (per-provider and per-document sum vectors per mode: exact provider sums in O(P·dim)),
  :func:`build_index` / :func:`topk` (a Lance vector index, candidates re-ranked exactly),
  :func:`score_table` (one read of a table for many query batches), :mod:`storage.codec`
  (float32, float16, bfloat16, int8 with per-row scales).

Bad input raises :class:`InputValidationError` subclasses naming file, row, field and reason.

Names load lazily (PEP 562): ``import storage.objectstore`` does not load LanceDB or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from valuation.lazy import lazy_names

_EXPORTS: dict[str, str] = {
    "AggregateError": "storage.aggregates",
    "AggregateInfo": "storage.aggregates",
    "Aggregates": "storage.aggregates",
    "ArtifactError": "storage.errors",
    "ArtifactStore": "storage.artifacts",
    "CODECS": "storage.codec",
    "CodecError": "storage.codec",
    "CodecOverflowError": "storage.codec",
    "CorpusError": "storage.errors",
    "CorpusStore": "storage.corpus",
    "CorpusValidationError": "storage.errors",
    "GradientChunk": "storage.gradients",
    "GradientStore": "storage.gradients",
    "GradientTable": "storage.gradients",
    "IndexArguments": "storage.vector_index",
    "IngestArguments": "storage.corpus",
    "IngestReport": "storage.corpus",
    "InputValidationError": "storage.errors",
    "QueryAddReport": "storage.queries",
    "QueryBatch": "storage.scan",
    "QueryError": "storage.errors",
    "QueryStore": "storage.queries",
    "QueryValidationError": "storage.errors",
    "ShardWriter": "storage.gradients",
    "TableScan": "storage.scan",
    "TopK": "storage.vector_index",
    "ValidationIssue": "storage.errors",
    "VectorIndexError": "storage.vector_index",
    "aggregate_info": "storage.aggregates",
    "build_aggregates": "storage.aggregates",
    "build_index": "storage.vector_index",
    "checkpoint_fingerprint": "storage.artifacts",
    "index_info": "storage.vector_index",
    "load_aggregates": "storage.aggregates",
    "score_table": "storage.scan",
    "sha256_file": "storage.artifacts",
    "tag_aggregates": "storage.aggregates",
    "tokenizer_fingerprint": "storage.artifacts",
    "topk": "storage.vector_index",
}
__all__ = [
    "CODECS",
    "AggregateError",
    "AggregateInfo",
    "Aggregates",
    "ArtifactError",
    "ArtifactStore",
    "CodecError",
    "CodecOverflowError",
    "CorpusError",
    "CorpusStore",
    "CorpusValidationError",
    "GradientChunk",
    "GradientStore",
    "GradientTable",
    "IndexArguments",
    "IngestArguments",
    "IngestReport",
    "InputValidationError",
    "QueryAddReport",
    "QueryBatch",
    "QueryError",
    "QueryStore",
    "QueryValidationError",
    "ShardWriter",
    "TableScan",
    "TopK",
    "ValidationIssue",
    "VectorIndexError",
    "aggregate_info",
    "build_aggregates",
    "build_index",
    "checkpoint_fingerprint",
    "index_info",
    "load_aggregates",
    "score_table",
    "sha256_file",
    "tag_aggregates",
    "tokenizer_fingerprint",
    "topk",
]


__getattr__, __dir__ = lazy_names(__name__, _EXPORTS, globals())

if TYPE_CHECKING:  # static names for type checkers and IDEs
    from storage.aggregates import (
        AggregateError,
        AggregateInfo,
        Aggregates,
        aggregate_info,
        build_aggregates,
        load_aggregates,
        tag_aggregates,
    )
    from storage.artifacts import ArtifactStore, checkpoint_fingerprint, sha256_file, tokenizer_fingerprint
    from storage.codec import CODECS, CodecError, CodecOverflowError
    from storage.corpus import CorpusStore, IngestArguments, IngestReport
    from storage.errors import (
        ArtifactError,
        CorpusError,
        CorpusValidationError,
        InputValidationError,
        QueryError,
        QueryValidationError,
        ValidationIssue,
    )
    from storage.gradients import GradientChunk, GradientStore, GradientTable, ShardWriter
    from storage.queries import QueryAddReport, QueryStore
    from storage.scan import QueryBatch, TableScan, score_table
    from storage.vector_index import IndexArguments, TopK, VectorIndexError, build_index, index_info, topk
