"""Loaders of the dashboard's paginated tables (registered by name with :func:`tables.loader`):
each reads one page of rows from the ledger's views and adds the links a row carries."""

from __future__ import annotations

from flows.dashboard import queries
from flows.dashboard.tables import link, loader


@loader("providers")
def providers_rows(eng, args, offset, limit):
    rows = queries.providers(eng, offset, limit)
    return [r | {"open": link("open", "/provider", id=r["provider_id"])} for r in rows]


@loader("top_documents")
def top_documents_rows(eng, args, offset, limit):
    return queries.top_documents(eng, args["provider_id"], offset, limit)


@loader("paying_queries")
def paying_queries_rows(eng, args, offset, limit):
    rows = queries.paying_queries(eng, args["provider_id"], offset, limit)
    status = queries.run_status(eng, [r["run_id"] for r in rows])
    return [
        r | {"run_status": status[r["run_id"]], "receipt": link("receipt", "/query", id=r["query_id"], run=r["run_id"])}
        for r in rows
    ]


@loader("statement")
def statement_rows(eng, args, offset, limit):
    from ledger import statement

    return [line.__dict__ for line in statement(eng, args["provider_id"], limit=limit, offset=offset).lines]


@loader("runs")
def runs_rows(eng, args, offset, limit):
    rows = queries.run_health(eng, offset, limit)
    return [r | {"open": link("open", "/run", id=r["run_id"])} for r in rows]


@loader("run_queries")
def run_queries_rows(eng, args, offset, limit):
    rows = queries.run_queries(eng, args["run_id"], offset, limit)
    return [r | {"receipt": link("receipt", "/query", id=r["query_id"], run=r["run_id"])} for r in rows]
