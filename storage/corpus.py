"""The corpus: versioned documents (text first, no tokenizer needed), and their examples per tokenizer.

Tables (LanceDB, one directory):

- ``documents``: one row per stored document (content hash, text, metadata, ``added_in``: the
  corpus version that added it). Append-only: a document never changes or disappears.
- ``versions``: one row per committed ingest: corpus version ``N`` (1, 2, ...) and the Lance
  version of ``documents`` at that point (also a Lance tag ``corpus-vN``). Rows of an ingest that
  did not commit (a killed process) are invisible and removed by the next ingest.
- ``providers``: provider id → int32 code used by the scoring loop.
- ``examples_<tokenizer key>``: chunks of at most ``max_length`` tokens of every document, made
  per tokenizer fingerprint when a checkpoint of that tokenizer needs them, cached, extended
  incrementally as versions are added (``tokenized`` records how far each key got).
- ``pins``: the corpus version each checkpoint was trained on (first pin wins).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from storage.errors import CorpusError, CorpusValidationError, InputValidationError, ValidationIssue
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
        pa.field("added_in", pa.int32(), nullable=False),
    ]
)
VERSIONS_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int32(), nullable=False),
        pa.field("lance_version", pa.int64(), nullable=False),
        pa.field("source_file", pa.string()),
        pa.field("documents_added", pa.int64()),
        pa.field("created_at", pa.float64()),
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
        pa.field("added_in", pa.int32(), nullable=False),
        pa.field("input_ids", pa.list_(pa.int32())),
    ]
)
TOKENIZED_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("through_version", pa.int32(), nullable=False),
        pa.field("examples", pa.int64()),
    ]
)
PINS_SCHEMA = pa.schema(
    [
        pa.field("checkpoint_id", pa.string(), nullable=False),
        pa.field("corpus_version", pa.int32(), nullable=False),
        pa.field("created_at", pa.float64()),
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
    """How a file is read: rows per batch (memory stays bounded by it)."""

    batch_rows: int = 5_000


@dataclass
class IngestReport:
    file: str
    rows: int = 0
    documents_added: int = 0
    already_stored: int = 0
    duplicates_collapsed: int = 0
    version: int = 0  # the corpus version after this ingest
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
    """Versioned documents and per-tokenizer examples in one LanceDB directory (or object-store URI)."""

    def __init__(self, uri: str | Path, storage_options: dict | None = None) -> None:
        self.uri = str(uri)
        self.db = connect(uri, storage_options)
        self.documents = open_or_create(self.db, "documents", DOCUMENTS_SCHEMA)
        if "added_in" not in self.documents.schema.names:
            raise CorpusError(
                f"{self.uri}: this corpus was stored by an older dataworth (no versions); ingest into a new home"
            )
        self.versions = open_or_create(self.db, "versions", VERSIONS_SCHEMA)
        self.providers_table = open_or_create(self.db, "providers", PROVIDERS_SCHEMA)
        self.tokenized = open_or_create(self.db, "tokenized", TOKENIZED_SCHEMA)
        self.pins = open_or_create(self.db, "pins", PINS_SCHEMA)

    # versions -------------------------------------------------------------------------------
    def version(self) -> int:
        """The latest committed corpus version (0: nothing ingested yet)."""
        t = self.versions.to_arrow()
        return max(t.column("version").to_pylist(), default=0)

    def version_rows(self) -> list[dict]:
        return sorted(self.versions.to_arrow().to_pylist(), key=lambda r: r["version"])

    def check_version(self, version: int) -> int:
        latest = self.version()
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= latest:
            raise CorpusError(f"corpus version {version!r} does not exist (versions 1..{latest})")
        return version

    def _visible(self, version: int | None) -> str:
        return f"added_in <= {int(self.version() if version is None else version)}"

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
                columns=["doc_id", "content_hash"], filter=f"doc_id IN {sql_list(part)} AND {self._visible(None)}"
            )
            out.update(zip(t.column("doc_id").to_pylist(), t.column("content_hash").to_pylist(), strict=True))
        return out

    def num_documents(self, version: int | None = None) -> int:
        return self.documents.count_rows(self._visible(version))

    def documents_of(self, doc_ids: list[str]) -> pa.Table:
        return self.documents.to_lance().to_table(filter=f"doc_id IN {sql_list(doc_ids)} AND {self._visible(None)}")

    def sample_texts(self, n: int) -> list[str]:
        """Texts of up to ``n`` stored documents (for the tokenizer round-trip check)."""
        t = self.documents.to_lance().to_table(columns=["text"], filter=self._visible(None), limit=n)
        return t.column("text").to_pylist()

    def document_counts(self, version: int | None = None) -> dict[str, int]:
        """Documents per provider in a version."""
        out: dict[str, int] = {}
        scanner = self.documents.to_lance().scanner(columns=["provider_id"], filter=self._visible(version))
        for rb in scanner.to_batches():
            for p in rb.column("provider_id").to_pylist():
                out[p] = out.get(p, 0) + 1
        return out

    # pins -----------------------------------------------------------------------------------
    def pin(self, checkpoint_id: str, version: int | None = None) -> int:
        """The corpus version a checkpoint was trained on; the first pin of a checkpoint wins
        (a second ``pin`` with another version is refused)."""
        current = self.pinned_version(checkpoint_id)
        wanted = self.check_version(self.version() if version is None else version)
        if current is not None:
            if version is not None and version != current:
                raise CorpusError(
                    f"checkpoint {checkpoint_id[:16]} is pinned to corpus version {current}; asked for {version}"
                )
            return current
        self.pins.add(
            pa.table(
                {"checkpoint_id": [checkpoint_id], "corpus_version": [wanted], "created_at": [time.time()]},
                schema=PINS_SCHEMA,
            )
        )
        return self.pinned_version(checkpoint_id)

    def pinned_version(self, checkpoint_id: str) -> int | None:
        t = self.pins.to_lance().to_table(filter=f"checkpoint_id = {sql_list([checkpoint_id])[1:-1]}")
        if not t.num_rows:
            return None
        rows = sorted(t.to_pylist(), key=lambda r: r["created_at"])
        return rows[0]["corpus_version"]

    # examples per tokenizer -----------------------------------------------------------------
    def examples(self, key: str):
        """The examples table of a tokenizer key (``<tokenizer fingerprint>-L<max_length>``)."""
        return open_or_create(self.db, f"examples_{key}", EXAMPLES_SCHEMA)

    def tokenized_through(self, key: str) -> int:
        t = self.tokenized.to_lance().to_table(filter=f"key = {sql_list([key])[1:-1]}")
        return max(t.column("through_version").to_pylist(), default=0)

    def ensure_examples(self, key: str, tokenizer, max_length: int, version: int, progress=None) -> int:
        """Tokenise and chunk every document up to ``version`` not yet done for ``key``; returns the
        examples added. A second checkpoint of the same tokenizer finds them done; a killed run is
        redone from the last recorded version (its partial rows are replaced, never doubled)."""
        version = self.check_version(version)
        done = self.tokenized_through(key)
        if done >= version:
            return 0
        table = self.examples(key)
        if table.count_rows(f"added_in > {done}"):  # a run killed before it recorded its progress
            table.delete(f"added_in > {done}")
        codes = self.providers()
        added = 0
        scanner = self.documents.to_lance().scanner(
            columns=["doc_id", "provider_id", "text", "added_in"],
            filter=f"added_in > {done} AND added_in <= {version}",
            batch_size=1024,
        )
        for rb in scanner.to_batches():
            docs = rb.to_pylist()
            if not docs:
                continue
            ids = tokenizer([d["text"] for d in docs], add_special_tokens=False)["input_ids"]
            ex = {name: [] for name in EXAMPLES_SCHEMA.names}
            for doc, tokens in zip(docs, ids, strict=True):
                for c, start in enumerate(range(0, len(tokens), max_length)):
                    piece = tokens[start : start + max_length]
                    example_id = f"{doc['doc_id']}#{c}"
                    ex["example_id"].append(example_id)
                    ex["doc_id"].append(doc["doc_id"])
                    ex["provider_id"].append(doc["provider_id"])
                    ex["provider_code"].append(codes[doc["provider_id"]])
                    ex["chunk"].append(c)
                    ex["bucket"].append(example_bucket(example_id))
                    ex["n_tokens"].append(len(piece))
                    ex["added_in"].append(doc["added_in"])
                    ex["input_ids"].append(piece)
            if ex["example_id"]:
                table.add(pa.table(ex, schema=EXAMPLES_SCHEMA))
            added += len(ex["example_id"])
            if progress is not None:
                progress(len(docs))
        self.tokenized.add(
            pa.table({"key": [key], "through_version": [version], "examples": [added]}, schema=TOKENIZED_SCHEMA)
        )
        return added

    def iter_examples(
        self,
        key: str,
        version: int,
        shard: int | None = None,
        num_shards: int | None = None,
        batch_size: int = 1024,
        columns: list[str] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Examples of corpus ``version`` as Arrow batches, optionally shard ``shard`` of ``num_shards``."""
        if self.tokenized_through(key) < version:
            raise CorpusError(f"examples of {key} are not made for corpus version {version} yet")
        flt = self._visible(version)
        if num_shards is not None:
            if not 0 <= (shard or 0) < num_shards:
                raise CorpusError(f"shard must be in [0, {num_shards}), got {shard}")
            flt += f" AND bucket % {int(num_shards)} = {int(shard or 0)}"
        scanner = self.examples(key).to_lance().scanner(columns=columns, filter=flt, batch_size=batch_size)
        yield from scanner.to_batches()

    def examples_of(self, key: str, version: int, example_ids: list[str], columns: list[str]) -> pa.Table:
        """The given examples of corpus ``version`` (a filtered read, not a scan of every example)."""
        if not example_ids:
            return pa.table({c: [] for c in columns})
        flt = f"example_id IN {sql_list(sorted(set(example_ids)))} AND {self._visible(version)}"
        return self.examples(key).to_lance().to_table(columns=columns, filter=flt)

    def num_examples(self, key: str, version: int) -> int:
        return self.examples(key).count_rows(self._visible(version))

    def example_counts(self, key: str, version: int) -> dict[str, int]:
        """Examples per provider in ``version`` (the pro-rata share of the corpus a checkpoint saw)."""
        out: dict[str, int] = {}
        for rb in self.iter_examples(key, version, columns=["provider_id"], batch_size=65536):
            for p in rb.column("provider_id").to_pylist():
                out[p] = out.get(p, 0) + 1
        return out

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

    def ingest(self, path: str | Path, args: IngestArguments | None = None, progress=None) -> IngestReport:
        """Validate the whole file, then add the documents not stored yet as a new corpus version.

        Needs no tokenizer. Idempotent (a file ingested twice adds nothing and no version). A
        rejected file raises :class:`CorpusValidationError` and stores nothing; a killed ingest
        leaves rows no reader sees, removed by the next ingest.
        """
        args = args or IngestArguments()
        path = Path(path)
        latest = self.version()
        if self.documents.count_rows(f"added_in > {latest}"):  # an ingest that never committed
            self.documents.delete(f"added_in > {latest}")
        new_docs, report = self.validate(path, args)
        report.version = latest
        if not new_docs:
            return report
        version = latest + 1
        codes = self.providers()
        fresh = sorted(set(new_docs.values()) - set(codes))
        if fresh:
            start = max(codes.values(), default=-1) + 1
            rows = {"provider_id": fresh, "provider_code": list(range(start, start + len(fresh)))}
            self.providers_table.add(pa.table(rows, schema=PROVIDERS_SCHEMA))
            report.new_providers = fresh
        for batch in self._new_document_batches(path, new_docs, args.batch_rows):
            self.documents.add(
                pa.table(
                    {
                        "doc_id": [d["doc_id"] for d in batch],
                        "provider_id": [d["provider_id"] for d in batch],
                        "content_hash": [d["content_hash"] for d in batch],
                        "text": [d["text"] for d in batch],
                        "metadata": [d["metadata"] for d in batch],
                        "source_file": [str(path)] * len(batch),
                        "added_in": [version] * len(batch),
                    },
                    schema=DOCUMENTS_SCHEMA,
                )
            )
            report.documents_added += len(batch)
            if progress is not None:
                progress(len(batch))
        lance_version = self.documents.version
        with contextlib.suppress(Exception):  # a tag is a convenience for audits; the row is the commit
            self.documents.tags.create(f"corpus-v{version}", lance_version)
        self.versions.add(
            pa.table(
                {
                    "version": [version],
                    "lance_version": [lance_version],
                    "source_file": [str(path)],
                    "documents_added": [report.documents_added],
                    "created_at": [time.time()],
                },
                schema=VERSIONS_SCHEMA,
            )
        )
        report.version = version
        return report
