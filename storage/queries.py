"""The query store: prompts and responses to value, each valued once."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from storage.corpus import _rows
from storage.errors import QueryValidationError, ValidationIssue
from storage.lance_util import connect, open_or_create, sql_list

QUERIES_SCHEMA = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),  # exact decimal as text
        pa.field("received_at", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # pending | valued
        pa.field("run_id", pa.string()),
    ]
)


@dataclass
class QueryAddReport:
    file: str
    rows: int = 0
    added: int = 0
    already_stored: int = 0
    duplicates_collapsed: int = 0


def _value(raw, file: str, row: int, issues: list) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return "1"
    try:
        number = float(raw)
    except (TypeError, ValueError):
        issues.append(ValidationIssue(file, row, "value", f"not a number: {raw!r}"))
        return None
    if not math.isfinite(number) or number < 0:
        issues.append(ValidationIssue(file, row, "value", f"must be a finite number >= 0, got {raw!r}"))
        return None
    return str(raw).strip()


class QueryStore:
    """Queries in a LanceDB table; repeated identical ids collapse, conflicting ids are refused."""

    def __init__(self, uri: str | Path, storage_options: dict | None = None) -> None:
        self.db = connect(uri, storage_options)
        self.table = open_or_create(self.db, "queries", QUERIES_SCHEMA)

    def add_file(self, path: str | Path) -> QueryAddReport:
        file = str(path)
        report = QueryAddReport(file=file)
        issues: list[ValidationIssue] = []
        rows: dict[str, dict] = {}
        first_row: dict[str, int] = {}
        for first, batch, read_issues in _rows(Path(path), 10_000, QueryValidationError):
            issues.extend(read_issues)
            for offset, record in enumerate(batch):
                row = first + offset
                report.rows += 1
                if record is None:
                    continue
                bad = False
                for name in ("query_id", "prompt", "response"):
                    v = record.get(name)
                    if v is None:
                        issues.append(ValidationIssue(file, row, name, "missing"))
                        bad = True
                    elif not isinstance(v, str | int) or isinstance(v, bool):
                        issues.append(ValidationIssue(file, row, name, f"must be a string, got {type(v).__name__}"))
                        bad = True
                    elif name != "prompt" and str(v).strip() == "":
                        issues.append(ValidationIssue(file, row, name, "empty"))
                        bad = True
                value = _value(record.get("value"), file, row, issues)
                if bad or value is None:
                    continue
                qid = str(record["query_id"]).strip()
                received = str(record.get("received_at") or datetime.now(UTC).isoformat())
                h = hashlib.sha256(f"{record['prompt']}\x00{record['response']}\x00{value}".encode()).hexdigest()
                entry = {
                    "query_id": qid,
                    "prompt": str(record["prompt"]),
                    "response": str(record["response"]),
                    "value": value,
                    "received_at": received,
                    "content_hash": h,
                    "status": "pending",
                    "run_id": None,
                }
                if qid in rows:
                    if rows[qid]["content_hash"] == h:
                        report.duplicates_collapsed += 1
                    else:
                        issues.append(
                            ValidationIssue(
                                file,
                                row,
                                "query_id",
                                f"{qid!r} repeats row {first_row[qid]} with different content",
                            )
                        )
                    continue
                rows[qid], first_row[qid] = entry, row
        ids = list(rows)
        for start in range(0, len(ids), 1000):
            part = ids[start : start + 1000]
            t = self.table.to_lance().to_table(
                filter=f"query_id IN {sql_list(part)}", columns=["query_id", "content_hash"]
            )
            for qid, h in zip(t.column("query_id").to_pylist(), t.column("content_hash").to_pylist(), strict=True):
                if h != rows[qid]["content_hash"]:
                    issues.append(
                        ValidationIssue(
                            file,
                            first_row[qid],
                            "query_id",
                            f"{qid!r} is already stored with different content",
                        )
                    )
                else:
                    report.already_stored += 1
                rows.pop(qid, None)
        if issues:
            raise QueryValidationError(issues)
        if rows:
            self.table.add(
                pa.table({k: [r[k] for r in rows.values()] for k in QUERIES_SCHEMA.names}, schema=QUERIES_SCHEMA)
            )
        report.added = len(rows)
        return report

    def pending(self) -> pa.Table:
        return self.table.to_lance().to_table(filter="status = 'pending'")

    def all(self) -> pa.Table:
        return self.table.to_arrow()

    def mark_valued(self, query_ids: list[str], run_id: str) -> None:
        """Pending → valued by ``run_id`` (queries already valued keep their run)."""
        for start in range(0, len(query_ids), 1000):
            part = query_ids[start : start + 1000]
            self.table.update(
                where=f"status = 'pending' AND query_id IN {sql_list(part)}",
                values={"status": "valued", "run_id": run_id},
            )
