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

Bad input raises :class:`InputValidationError` subclasses naming file, row, field and reason.
"""

from storage.artifacts import ArtifactStore, checkpoint_fingerprint, sha256_file, tokenizer_fingerprint
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

__all__ = [
    "ArtifactError",
    "ArtifactStore",
    "CorpusError",
    "CorpusStore",
    "CorpusValidationError",
    "GradientChunk",
    "GradientStore",
    "GradientTable",
    "IngestArguments",
    "IngestReport",
    "InputValidationError",
    "QueryAddReport",
    "QueryError",
    "QueryStore",
    "QueryValidationError",
    "ShardWriter",
    "ValidationIssue",
    "checkpoint_fingerprint",
    "sha256_file",
    "tokenizer_fingerprint",
]
