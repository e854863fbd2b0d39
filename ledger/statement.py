"""Provider statements: entries, totals and the queries and documents behind them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from decimal import Decimal

from sqlalchemy import Engine, text

from ledger.units import MICROS


@dataclass
class StatementLine:
    entry_id: int
    day: str
    run_id: str
    query_id: str | None
    kind: str
    basis: str
    amount: Decimal
    top_documents: str  # doc ids of this provider in the query's top-k, by rank


@dataclass
class Statement:
    provider_id: str
    start: str | None
    end: str | None
    lines: list[StatementLine]

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    def totals_by_kind(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for line in self.lines:
            out[line.kind] = out.get(line.kind, Decimal(0)) + line.amount
        return out

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["entry_id", "day", "run_id", "query_id", "kind", "basis", "amount", "top_documents"])
        for line in self.lines:
            writer.writerow([getattr(line, f) for f in StatementLine.__dataclass_fields__])
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps(
            {
                "provider_id": self.provider_id,
                "start": self.start,
                "end": self.end,
                "total": str(self.total),
                "totals_by_kind": {k: str(v) for k, v in self.totals_by_kind().items()},
                "lines": [{**asdict(line), "amount": str(line.amount)} for line in self.lines],
            },
            indent=2,
        )

    def to_rich(self):
        from rich.table import Table
        from rich.text import Text

        # Text, never markup: ids come from data (a provider may be called "acme[/]").
        t = Table(title=Text(f"Statement for {self.provider_id} ({self.start or '…'} – {self.end or '…'})"))
        for col in ("day", "run", "query", "kind", "amount", "top documents"):
            t.add_column(col, justify="right" if col == "amount" else "left")
        for line in self.lines:
            t.add_row(
                *map(
                    Text,
                    (
                        str(line.day),
                        line.run_id[:16],
                        line.query_id or "",
                        line.kind,
                        f"{line.amount:.6f}",
                        line.top_documents,
                    ),
                )
            )
        t.add_section()
        t.add_row("total", "", "", "", f"{self.total:.6f}", "")
        return t


def statement(
    engine: Engine,
    provider_id: str,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Statement:
    """Entries of ``provider_id`` with ``start <= day <= end`` (YYYY-MM-DD, both optional).

    ``limit``/``offset`` page the lines in statement order (a dashboard's page of a long statement).
    """
    where = "e.provider_id = :p"
    if start is not None:
        where += " AND e.day >= :start"
    if end is not None:
        where += " AND e.day <= :end"
    sql = f"""
        SELECT e.entry_id, e.day, e.run_id, e.query_id, e.kind, e.basis, e.amount_micros
        FROM ledger_entry e WHERE {where} ORDER BY e.day, e.entry_id
    """
    if limit is not None:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    docs_sql = """
        SELECT run_id, query_id, doc_id FROM query_attribution
        WHERE provider_id = :p {runs} ORDER BY run_id, query_id, rank
    """
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"p": provider_id, "start": start, "end": end}).all()
        runs, params = "", {"p": provider_id}
        if limit is not None:  # a page: only its runs' attributions
            names = {f"r{i}": r for i, r in enumerate(sorted({r[2] for r in rows}))}
            runs = f"AND run_id IN ({', '.join(':' + n for n in names)})" if names else "AND 1 = 0"
            params |= names
        docs: dict[tuple[str, str], list[str]] = {}
        for run_id, query_id, doc_id in conn.execute(text(docs_sql.format(runs=runs)), params):
            docs.setdefault((run_id, query_id), []).append(doc_id)
    lines = [
        StatementLine(
            entry_id=r[0],
            day=r[1],
            run_id=r[2],
            query_id=r[3],
            kind=r[4],
            basis=r[5],
            amount=Decimal(r[6]) / MICROS,
            top_documents=" ".join(dict.fromkeys(docs.get((r[2], r[3]), []))),
        )
        for r in rows
    ]
    return Statement(provider_id, start, end, lines)
