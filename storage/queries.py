"""The query store: prompts and responses to value, each belonging to the lineage of the model that
produced it, each valued once.

Statuses: ``pending`` (waiting for a run), ``valued`` (credited by ``run_id``), ``set_aside`` (can
no longer be valued: ``reason`` says why; never blocks the others), ``dropped`` (by an operator).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pyarrow as pa

from storage.corpus import _rows
from storage.errors import QueryError, QueryValidationError, ValidationIssue
from storage.lance_util import connect, open_or_create, sql_list

QUERIES_SCHEMA = pa.schema(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),  # exact decimal as text
        pa.field("received_at", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("lineage", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # pending | valued | set_aside | dropped
        pa.field("run_id", pa.string()),
        pa.field("reason", pa.string()),
    ]
)
MAX_VALUE = Decimal(10) ** 12  # the ledger's integer micro-units stay far inside a signed 64-bit integer
STATUSES = ("pending", "valued", "set_aside", "dropped")


@dataclass
class QueryAddReport:
    file: str
    rows: int = 0
    added: int = 0
    already_stored: int = 0
    duplicates_collapsed: int = 0


def _value(raw, file: str, row: int, issues: list) -> str | None:
    """A query's value as an exact decimal string, or None (with the issue recorded)."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return "1"
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        issues.append(ValidationIssue(file, row, "value", f"must be a number, got {type(raw).__name__} {raw!r}"))
        return None
    try:
        number = Decimal(str(raw).strip())
    except InvalidOperation:
        issues.append(ValidationIssue(file, row, "value", f"not a number: {raw!r}"))
        return None
    if not number.is_finite() or number < 0 or number > MAX_VALUE:
        issues.append(
            ValidationIssue(file, row, "value", f"must be a finite number >= 0 and <= {MAX_VALUE:,}, got {raw!r}")
        )
        return None
    return str(number.normalize()) if number == number.to_integral_value() else str(number)


class QueryStore:
    """Queries in a LanceDB table; repeated identical ids collapse, conflicting ids are refused."""

    def __init__(self, uri: str | Path, storage_options: dict | None = None) -> None:
        self.db = connect(uri, storage_options)
        self.table = open_or_create(self.db, "queries", QUERIES_SCHEMA)

    def pending_lineages(self) -> list[str]:
        t = self.table.to_lance().to_table(columns=["lineage"], filter="status = 'pending'")
        return sorted(set(t.column("lineage").to_pylist()))

    def lineages(self) -> list[str]:
        return sorted(set(self.table.to_lance().to_table(columns=["lineage"]).column("lineage").to_pylist()))

    def add_file(self, path: str | Path, lineage: str | None = None, known_lineages: list[str] = ()) -> QueryAddReport:
        """Validate the whole file, then queue its new queries (nothing is stored if any row is bad).

        A query's lineage is its ``lineage`` field, else ``lineage``, else the only one of
        ``known_lineages``; with none of them the row is refused.
        """
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
                row_lineage = record.get("lineage") or lineage
                if row_lineage is None and len(known_lineages) == 1:
                    row_lineage = known_lineages[0]
                if row_lineage is None:
                    known = ", ".join(known_lineages) or "none registered yet"
                    issues.append(
                        ValidationIssue(
                            file, row, "lineage", f"no lineage: add a lineage field or pass --lineage (known: {known})"
                        )
                    )
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
                    "lineage": str(row_lineage),
                    "status": "pending",
                    "run_id": None,
                    "reason": None,
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
        if report.rows == 0 and not issues:
            issues.append(ValidationIssue(file, None, None, "the file has no rows"))
        if issues:
            raise QueryValidationError(issues)
        if rows:
            self.table.add(
                pa.table({k: [r[k] for r in rows.values()] for k in QUERIES_SCHEMA.names}, schema=QUERIES_SCHEMA)
            )
        report.added = len(rows)
        return report

    def pending(self, lineage: str | None = None) -> pa.Table:
        flt = "status = 'pending'"
        if lineage is not None:
            flt += f" AND lineage = {sql_list([lineage])[1:-1]}"
        return self.table.to_lance().to_table(filter=flt)

    def with_status(self, status: str | None = None) -> pa.Table:
        if status is not None and status not in STATUSES:
            raise QueryError(f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
        return self.table.to_lance().to_table(filter=f"status = '{status}'" if status else None)

    def rows(self, query_ids: list[str]) -> dict[str, dict]:
        """``{query_id: row}`` of the given queries (whatever their status)."""
        out: dict[str, dict] = {}
        for start in range(0, len(query_ids), 1000):
            part = query_ids[start : start + 1000]
            for r in self.table.to_lance().to_table(filter=f"query_id IN {sql_list(part)}").to_pylist():
                out[r["query_id"]] = r
        return out

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

    def set_aside(self, query_ids: list[str], reason: str) -> None:
        """Pending → set aside with ``reason``: the others go on without them."""
        for start in range(0, len(query_ids), 1000):
            part = query_ids[start : start + 1000]
            self.table.update(
                where=f"status = 'pending' AND query_id IN {sql_list(part)}",
                values={"status": "set_aside", "reason": reason},
            )

    def drop(self, query_id: str) -> None:
        """An operator's decision: a pending or set-aside query is never valued."""
        t = self.table.to_lance().to_table(filter=f"query_id = {sql_list([query_id])[1:-1]}", columns=["status"])
        if not t.num_rows:
            raise QueryError(f"unknown query {query_id!r}")
        status = t.column("status")[0].as_py()
        if status == "valued":
            raise QueryError(f"query {query_id!r} is already valued; reverse its run instead (dataworth reverse RUN)")
        self.table.update(where=f"query_id = {sql_list([query_id])[1:-1]}", values={"status": "dropped"})


@dataclass(frozen=True)
class QueryPanel:
    """A fixed set of prompts and responses whose second moment the scoring mixes into the train
    one (setting ``query_panel``). ``digest`` names its content (order-free): it goes into every
    run key, so a changed panel never reuses a run made with another."""

    file: str
    rows: list[dict]  # {"prompt", "response"}, in the order of first appearance
    digest: str


def read_query_panel(path: str | Path) -> QueryPanel:
    """The panel in ``path`` (any query-file format: a ``prompt`` and a non-empty ``response`` per
    row; other fields are ignored; identical rows collapse). Bad rows raise
    :class:`QueryValidationError` naming the file, row and field; a missing file names the setting."""
    file = str(path)
    if not Path(path).is_file():
        raise QueryValidationError([ValidationIssue(file, None, "query_panel", "no such file (setting query_panel)")])
    issues: list[ValidationIssue] = []
    seen: dict[str, dict] = {}
    n_rows = 0
    for first, batch, read_issues in _rows(Path(path), 10_000, QueryValidationError):
        issues.extend(read_issues)
        for offset, record in enumerate(batch):
            n_rows += 1
            if record is None:
                continue
            row, ok = first + offset, True
            for name in ("prompt", "response"):
                v = record.get(name)
                if v is None:
                    issues.append(ValidationIssue(file, row, name, "missing"))
                    ok = False
                elif not isinstance(v, str):
                    issues.append(ValidationIssue(file, row, name, f"must be a string, got {type(v).__name__}"))
                    ok = False
                elif name == "response" and v.strip() == "":
                    issues.append(ValidationIssue(file, row, name, "empty"))
                    ok = False
            if ok:
                h = hashlib.sha256(f"{record['prompt']}\x00{record['response']}".encode()).hexdigest()
                seen.setdefault(h, {"prompt": record["prompt"], "response": record["response"]})
    if n_rows == 0 and not issues:
        issues.append(ValidationIssue(file, None, None, "the panel has no rows"))
    if issues:
        raise QueryValidationError(issues)
    digest = hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest()[:16]
    return QueryPanel(file, list(seen.values()), digest)
