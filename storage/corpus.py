"""Corpus ingestion: validate, dedupe, tokenize and chunk documents into training examples.

Tables (LanceDB, one directory): ``documents`` (one row per stored document, with a content
hash), ``examples`` (``example_id = "<doc_id>#<chunk>"``, token ids, provider code) and
``providers`` (provider id → int32 code used by the scoring loop).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from storage.errors import CorpusValidationError, InputValidationError, ValidationIssue
from storage.lance_util import connect, open_or_create, sql_list
from storage.records import iter_rows

REQUIRED = ("doc_id", "provider_id", "text")
BUCKETS = 4096  # examples are sharded by bucket % num_shards; stable under incremental ingest

DOCUMENTS_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("provider_id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("metadata", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("n_examples", pa.int32()),
    ]
)
EXAMPLES_SCHEMA = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("provider_id", pa.string(), nullable=False),
        pa.field("provider_code", pa.int32(), nullable=False),
        pa.field("chunk", pa.int32()),
        pa.field("bucket", pa.int32()),
        pa.field("n_tokens", pa.int32()),
        pa.field("input_ids", pa.list_(pa.int32())),
    ]
)
PROVIDERS_SCHEMA = pa.schema(
    [
        pa.field("provider_id", pa.string(), nullable=False),
        pa.field("provider_code", pa.int32(), nullable=False),
    ]
)


@dataclass(frozen=True)
class IngestArguments:
    """How documents become examples: chunks of at most ``max_length`` tokens."""

    max_length: int = 128
    batch_rows: int = 5_000


@dataclass
class IngestReport:
    file: str
    rows: int = 0
    documents_added: int = 0
    already_stored: int = 0
    duplicates_collapsed: int = 0
    examples_added: int = 0
    new_providers: list[str] = field(default_factory=list)


def content_hash(provider_id: str, text: str) -> str:
    return hashlib.sha256(f"{provider_id}\x00{text}".encode()).hexdigest()


def example_bucket(example_id: str) -> int:
    return zlib.crc32(example_id.encode()) % BUCKETS


def _check_row(file: str, row: int, record: dict | None) -> tuple[list[ValidationIssue], dict | None]:
    if record is None:
        return [], None
    issues = []
    for name in REQUIRED:
        value = record.get(name)
        if value is None:
            issues.append(ValidationIssue(file, row, name, "missing"))
        elif not isinstance(value, str) and (name == "text" or not isinstance(value, int) or isinstance(value, bool)):
            issues.append(ValidationIssue(file, row, name, f"must be a string, got {type(value).__name__}"))
        elif str(value).strip() == "":
            issues.append(ValidationIssue(file, row, name, "empty"))
    if issues:
        return issues, None
    clean = {
        "doc_id": str(record["doc_id"]).strip(),
        "provider_id": str(record["provider_id"]).strip(),
        "text": record["text"],
        "metadata": json.dumps({k: v for k, v in record.items() if k not in REQUIRED}, default=str, sort_keys=True),
    }
    clean["content_hash"] = content_hash(clean["provider_id"], clean["text"])
    return [], clean


def _rows(path: Path, batch_rows: int, error: type[InputValidationError]):
    """:func:`iter_rows`, with read errors raised as ``error`` (the store's own error type)."""
    try:
        yield from iter_rows(path, batch_rows)
    except InputValidationError as exc:
        if isinstance(exc, error):
            raise
        raise error(exc.issues) from None


class CorpusStore:
    """Documents, examples and provider codes in one LanceDB directory (or object-store URI)."""

    def __init__(self, uri: str | Path, storage_options: dict | None = None) -> None:
        self.uri = str(uri)
        self.db = connect(uri, storage_options)
        self.documents = open_or_create(self.db, "documents", DOCUMENTS_SCHEMA)
        self.examples_table = open_or_create(self.db, "examples", EXAMPLES_SCHEMA)
        self.providers_table = open_or_create(self.db, "providers", PROVIDERS_SCHEMA)

    # reading --------------------------------------------------------------------------------
    def providers(self) -> dict[str, int]:
        """Provider id → int32 code."""
        t = self.providers_table.to_arrow()
        return dict(zip(t.column("provider_id").to_pylist(), t.column("provider_code").to_pylist(), strict=True))

    def stored_hashes(self, doc_ids: list[str]) -> dict[str, str]:
        out = {}
        for start in range(0, len(doc_ids), 1000):
            part = doc_ids[start : start + 1000]
            t = self.documents.to_lance().to_table(
                columns=["doc_id", "content_hash"], filter=f"doc_id IN {sql_list(part)}"
            )
            out.update(zip(t.column("doc_id").to_pylist(), t.column("content_hash").to_pylist(), strict=True))
        return out

    def num_examples(self) -> int:
        return self.examples_table.count_rows()

    def num_documents(self) -> int:
        return self.documents.count_rows()

    def iter_examples(
        self,
        shard: int | None = None,
        num_shards: int | None = None,
        batch_size: int = 1024,
        columns: list[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Examples as Arrow batches, optionally shard ``shard`` of ``num_shards`` (by bucket)."""
        flt = None
        if num_shards is not None:
            if not 0 <= (shard or 0) < num_shards:
                raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
            flt = f"bucket % {int(num_shards)} = {int(shard or 0)}"
        scanner = self.examples_table.to_lance().scanner(columns=columns, filter=flt, batch_size=batch_size)
        yield from scanner.to_batches()

    def documents_of(self, doc_ids: list[str]) -> pa.Table:
        return self.documents.to_lance().to_table(filter=f"doc_id IN {sql_list(doc_ids)}")

    # ingest ---------------------------------------------------------------------------------
    def validate(self, path: Path, args: IngestArguments) -> tuple[dict[str, str], IngestReport]:
        """First pass: every row checked; returns ``{doc_id: provider_id}`` of new documents.

        Only ids and content hashes are held, never texts: the second pass streams the file again.
        """
        file = str(path)
        report = IngestReport(file=file)
        issues: list[ValidationIssue] = []
        seen: dict[str, tuple[int, str]] = {}
        new_docs: dict[str, tuple[str, str]] = {}  # doc_id -> (content hash, provider)
        for first, rows, read_issues in _rows(path, args.batch_rows, CorpusValidationError):
            issues.extend(read_issues)
            for offset, record in enumerate(rows):
                row = first + offset
                report.rows += 1
                row_issues, clean = _check_row(file, row, record)
                issues.extend(row_issues)
                if clean is None:
                    continue
                prior = seen.get(clean["doc_id"])
                if prior is not None:
                    if prior[1] == clean["content_hash"]:
                        report.duplicates_collapsed += 1
                    else:
                        issues.append(
                            ValidationIssue(
                                file,
                                row,
                                "doc_id",
                                f"doc_id {clean['doc_id']!r} repeats row {prior[0]} with different content",
                            )
                        )
                    continue
                seen[clean["doc_id"]] = (row, clean["content_hash"])
                new_docs[clean["doc_id"]] = (clean["content_hash"], clean["provider_id"])
        stored = self.stored_hashes(list(new_docs))
        for doc_id, stored_hash in stored.items():
            row = seen[doc_id][0]
            if stored_hash != new_docs[doc_id][0]:
                issues.append(
                    ValidationIssue(file, row, "doc_id", f"doc_id {doc_id!r} is already stored with different content")
                )
            else:
                report.already_stored += 1
            del new_docs[doc_id]
        if issues:
            raise CorpusValidationError(issues)
        return {doc_id: provider for doc_id, (_, provider) in new_docs.items()}, report

    def _new_document_batches(self, path: Path, new: dict[str, str], batch_rows: int) -> Iterator[list[dict]]:
        """Second pass: the validated file again, as batches of documents still to store."""
        pending = set(new)
        batch: list[dict] = []
        for first, rows, _ in _rows(path, batch_rows, CorpusValidationError):
            for offset, record in enumerate(rows):
                _, clean = _check_row(str(path), first + offset, record)
                if clean is None or clean["doc_id"] not in pending:
                    continue
                pending.discard(clean["doc_id"])  # identical repeats: the first one is stored
                batch.append(clean)
                if len(batch) >= batch_rows:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def ingest(self, path: str | Path, tokenizer, args: IngestArguments | None = None, progress=None) -> IngestReport:
        """Validate the whole file, then add only documents not stored yet (idempotent).

        ``tokenizer`` is a HF fast tokenizer; each document becomes chunks of at most
        ``args.max_length`` tokens. A rejected file raises :class:`CorpusValidationError` and
        stores nothing.
        """
        args = args or IngestArguments()
        path = Path(path)
        new_docs, report = self.validate(path, args)
        if not new_docs:
            return report
        codes = self.providers()
        fresh = sorted(set(new_docs.values()) - set(codes))
        if fresh:
            start = max(codes.values(), default=-1) + 1
            rows = {"provider_id": fresh, "provider_code": list(range(start, start + len(fresh)))}
            self.providers_table.add(pa.table(rows, schema=PROVIDERS_SCHEMA))
            codes.update(zip(rows["provider_id"], rows["provider_code"], strict=True))
            report.new_providers = fresh
        for batch in self._new_document_batches(path, new_docs, args.batch_rows):
            ids = tokenizer([d["text"] for d in batch], add_special_tokens=False)["input_ids"]
            ex = {name: [] for name in EXAMPLES_SCHEMA.names}
            for doc, tokens in zip(batch, ids, strict=True):
                chunks = [tokens[i : i + args.max_length] for i in range(0, len(tokens), args.max_length)]
                doc["n_examples"] = len(chunks)
                for c, piece in enumerate(chunks):
                    example_id = f"{doc['doc_id']}#{c}"
                    ex["example_id"].append(example_id)
                    ex["doc_id"].append(doc["doc_id"])
                    ex["provider_id"].append(doc["provider_id"])
                    ex["provider_code"].append(codes[doc["provider_id"]])
                    ex["chunk"].append(c)
                    ex["bucket"].append(example_bucket(example_id))
                    ex["n_tokens"].append(len(piece))
                    ex["input_ids"].append(piece)
            # A crash between the two writes leaves examples without a document row: the re-run
            # deletes and rewrites them, and a document row marks its examples as complete.
            self.examples_table.delete(f"doc_id IN {sql_list([d['doc_id'] for d in batch])}")
            if ex["example_id"]:
                self.examples_table.add(pa.table(ex, schema=EXAMPLES_SCHEMA))
            self.documents.add(
                pa.table(
                    {
                        "doc_id": [d["doc_id"] for d in batch],
                        "provider_id": [d["provider_id"] for d in batch],
                        "content_hash": [d["content_hash"] for d in batch],
                        "text": [d["text"] for d in batch],
                        "metadata": [d["metadata"] for d in batch],
                        "source_file": [str(path)] * len(batch),
                        "n_examples": [d["n_examples"] for d in batch],
                    },
                    schema=DOCUMENTS_SCHEMA,
                )
            )
            report.documents_added += len(batch)
            report.examples_added += len(ex["example_id"])
            if progress is not None:
                progress(len(batch))
        return report
