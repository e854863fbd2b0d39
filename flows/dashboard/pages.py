"""The dashboard's pages: providers, a provider, a query receipt, runs, a run.

Each layout is a function of the page's query-string parameters (``/provider?id=...``): ids travel
percent-encoded in the query string, never in the path, so any provider id routes. Every text from
the ledger is a Dash text child or a table cell, which the browser shows as text.
"""

from __future__ import annotations

import json

from dash import dcc, html

from flows.dashboard import loaders, queries  # loaders: registering them is importing them
from flows.dashboard.blocks import figures, href, problem, trend
from flows.dashboard.cells import cell
from flows.dashboard.tables import engine, link, paged_table, static_table
from ledger import LedgerError, query_receipt

TOP_PROVIDERS_CHARTED = 10


# ---- pages ---------------------------------------------------------------------------------------


def providers_layout(**_):
    eng = engine()
    total = queries.count(eng, "v_provider")  # the summary's rows, without its aggregates
    first = loaders.providers_rows(eng, {}, 0, queries.PAGE_SIZE)
    top = [r["provider_id"] for r in first[:TOP_PROVIDERS_CHARTED]]
    columns = ["provider_id", "name", "status", "credit_total", "credit_30d", "credit_7d", "queries_paid", "runs"]
    return html.Div(
        [
            html.H2("Providers ranked by credit"),
            html.P(f"{total} providers; the chart shows the top {len(top)}."),
            trend({"provider_ids": top}),
            paged_table("providers", {}, [*columns, "first_day", "last_day", "open"], total, ("open",), first),
        ]
    )


def provider_layout(id: str | None = None, **_):
    eng = engine()
    if id is None:
        return problem("no provider given: open one from the providers page")
    try:
        p = queries.provider(eng, id)
    except LedgerError as exc:
        return problem(str(exc))
    scope = {"provider_id": id}
    n_docs = queries.count(eng, "v_provider_top_documents", "provider_id = :p", {"p": id})
    n_paid = queries.count(eng, "v_query_receipt", "provider_id = :p", {"p": id})
    st = queries.statement_summary(eng, id)
    return html.Div(
        [
            html.H2(["Provider ", html.Span(id, className="ident")]),
            figures(
                [
                    ("name", p["name"]),
                    ("status", p["status"]),
                    ("credit, total", p["credit_total"]),
                    ("last 30 days", p["credit_30d"]),
                    ("last 7 days", p["credit_7d"]),
                    ("queries paid", p["queries_paid"]),
                    ("runs", p["runs"]),
                    ("first day", p["first_day"]),
                    ("last day", p["last_day"]),
                ]
            ),
            html.Pre(json.dumps(p["metadata"], indent=1, sort_keys=True), className="meta") if p["metadata"] else None,
            html.H3("Credit over time"),
            trend(scope),
            html.H3("Queries that paid it"),
            paged_table(
                "paying_queries",
                scope,
                ["run_id", "run_status", "day", "query_id", "prompt", "score", "credit", "basis", "receipt"],
                n_paid,
                links=("receipt",),
            ),
            html.H3("Top documents"),
            paged_table("top_documents", scope, ["doc_id", "times_in_topk", "total_score", "excerpt"], n_docs),
            html.H3("Credit by checkpoint (measured)"),
            static_table("by-checkpoint", queries.by_checkpoint(eng, id), ["checkpoint_id", "credit"]),
            html.H3("Statement"),
            figures([*st["by_kind"].items(), ("total", sum(st["by_kind"].values()))]),
            html.A(
                "Download statement (CSV)",
                id="statement-csv",
                href=href("/export/statement.csv", provider=id),
                download="",
                className="button",
            ),
            paged_table(
                "statement",
                scope,
                ["entry_id", "day", "run_id", "query_id", "kind", "basis", "amount", "top_documents"],
                st["lines"],
            ),
        ]
    )


def query_layout(id: str | None = None, run: str | None = None, **_):
    eng = engine()
    if id is None:
        return problem("no query given: open one from a provider or a run")
    try:
        r = query_receipt(eng, id, run or None)
    except LedgerError as exc:
        return problem(str(exc))
    evidence = r["evidence"]
    combined = [e for e in evidence if e["channel"] == "influence" and e["checkpoint_id"] is None]
    per_ck = [e for e in evidence if e["channel"] == "influence" and e["checkpoint_id"] is not None]
    lexical = [e for e in evidence if e["channel"] == "lexical"]
    ev_cols = ["rank", "doc_id", "provider_id", "score", "excerpt"]
    return html.Div(
        [
            html.H2(["Receipt of query ", html.Span(id, className="ident")]),
            figures(
                [
                    ("run", r["run_id"]),
                    ("day", r["day"]),
                    ("status", r["status"]),
                    ("policy", r["policy"]),
                    ("mode", r["mode"]),
                    ("value", r["value"]),
                    ("basis", r["basis"]),
                    ("confidence", r["confidence"]),
                    ("lineage", r["lineage"]),
                ]
            ),
            dcc.Link("the run", href=href("/run", id=r["run_id"])),
            html.H3("Prompt"),
            html.Pre(r["prompt"] or "(not stored)", id="prompt", className="text"),
            html.H3("Response"),
            html.Pre(r["response"] or "(not stored)", id="response", className="text"),
            html.H3("Provider split"),
            static_table(
                "provider-split",
                [p | {"open": link("open", "/provider", id=p["provider_id"])} for p in r["providers"]],
                ["provider_id", "provider_name", "score", "credit", "basis", "open"],
                links=("open",),
            ),
            html.H3("Credited documents (combined top-k)"),
            static_table("evidence-influence", combined, ev_cols),
            html.H3("Per checkpoint"),
            static_table("evidence-checkpoint", per_ck, ["checkpoint_id", *ev_cols])
            if per_ck
            else html.P("the run stored no per-checkpoint ranks"),
            html.H3("Lexical evidence (shown beside, never credited)"),
            static_table("evidence-lexical", lexical, ev_cols)
            if lexical
            else html.P("the run has no lexical evidence"),
        ]
    )


def runs_layout(**_):
    eng = engine()
    total = queries.count(eng, "v_run_health")
    columns = ["run_id", "day", "status", "policy", "mode", "topk_method", "checkpoints", "queries"]
    columns += ["queries_credited", "coverage", "total_credit", "reversed_by", "metrics", "open"]
    return html.Div(
        [html.H2("Valuation runs"), html.P(f"{total} runs"), paged_table("runs", {}, columns, total, links=("open",))]
    )


def run_layout(id: str | None = None, **_):
    eng = engine()
    if id is None:
        return problem("no run given: open one from the runs page")
    try:
        r = queries.run(eng, id)
    except LedgerError as exc:
        return problem(str(exc))
    n_rows = queries.count(eng, "v_query_receipt", "run_id = :r", {"r": id})
    settings = [{"setting": k, "value": cell(v)} for k, v in sorted(r["settings"].items())]
    metrics = [{"figure": k, "value": cell(v)} for k, v in sorted(r["metrics"].items())]
    return html.Div(
        [
            html.H2(["Run ", html.Span(id, className="ident")]),
            figures(
                [
                    ("day", r["day"]),
                    ("status", r["status"]),
                    ("reversed by", r["reversed_by"]),
                    ("policy", r["policy"]),
                    ("mode", r["mode"]),
                    ("top-k", r["topk_method"]),
                    ("queries", r["queries"]),
                    ("credited", r["queries_credited"]),
                    ("coverage", r["coverage"]),
                    ("providers credited", r["providers_credited"]),
                    ("credit posted", r["total_credit"]),
                ]
            ),
            html.H3("Accuracy and confidence figures"),
            static_table("run-metrics", metrics, ["figure", "value"]) if metrics else html.P("none recorded"),
            html.H3("Checkpoints"),
            static_table(
                "run-checkpoints", r["checkpoints_list"], ["checkpoint_id", "lineage", "step", "weight", "share"]
            ),
            html.H3("Settings"),
            static_table("run-settings", settings, ["setting", "value"]),
            html.H3("Credit per provider (net of reversals)"),
            static_table(
                "run-credits",
                [c | {"open": link("open", "/provider", id=c["provider_id"])} for c in queries.run_credits(eng, id)],
                ["provider_id", "credit", "open"],
                links=("open",),
            ),
            html.H3("Credits by query"),
            paged_table(
                "run_queries",
                {"run_id": id},
                ["query_id", "provider_id", "score", "credit", "basis", "confidence", "receipt"],
                n_rows,
                links=("receipt",),
            ),
        ]
    )


PAGES = [
    ("providers", "/", "Providers", providers_layout),
    ("provider", "/provider", "Provider", provider_layout),
    ("query", "/query", "Query receipt", query_layout),
    ("runs", "/runs", "Runs", runs_layout),
    ("run", "/run", "Run", run_layout),
]
