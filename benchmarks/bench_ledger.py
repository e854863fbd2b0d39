"""Ledger throughput and dashboard page loads on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_ledger.py --runs 10     # 10^4 ledger entries
    .venv/bin/python benchmarks/bench_ledger.py --runs 1000   # 10^6 ledger entries

Each run values ``--queries`` queries whose top-k lists (``--topk`` entries) spread over the
providers, so that ``runs × providers`` provider credits are posted (``--providers 1000``), with
prompts, responses and document excerpts for receipts. Every posting is one locked transaction
that also writes evidence, checkpoint splits, daily totals and the run's hash-chain link. The
page loads are the queries a dashboard page makes (through :func:`ledger.read_view` and the read
side), best of 3; ``verify_ledger`` recomputes the whole chain. PostgreSQL is a real server on
127.0.0.1 (``infra/localpg.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import console, table
from infra.localpg import LocalPostgres
from ledger import (
    QueryResult,
    RunCheckpointRef,
    RunRecord,
    TopKEntry,
    credits,
    ensure_providers,
    open_ledger,
    post_run,
    query_receipt,
    read_view,
    register_checkpoint,
    set_provider,
    verify_ledger,
)

PROVIDER = "p0007"
PAGES = {
    "providers: v_provider_summary, top 50 by credit": lambda e, run, q: read_view(
        e, "v_provider_summary", order_by="credit_total DESC, provider_id", limit=50
    ),
    "providers: credit per provider (ledger.credits)": lambda e, run, q: credits(e),
    "chart: v_provider_credit_daily, last 30 days": lambda e, run, q: read_view(
        e, "v_provider_credit_daily", where="day >= :d", params={"d": "2026-10-23"}, order_by="day, provider_id"
    ),
    "provider: daily series": lambda e, run, q: read_view(
        e, "v_provider_credit_daily", where="provider_id = :p", params={"p": PROVIDER}, order_by="day"
    ),
    "provider: by checkpoint": lambda e, run, q: read_view(
        e, "v_provider_credit_by_checkpoint", where="provider_id = :p", params={"p": PROVIDER}
    ),
    "provider: top 10 documents": lambda e, run, q: read_view(
        e,
        "v_provider_top_documents",
        where="provider_id = :p",
        params={"p": PROVIDER},
        order_by="times_in_topk DESC",
        limit=10,
    ),
    "provider: latest 50 queries that paid it": lambda e, run, q: read_view(
        e, "v_query_receipt", where="provider_id = :p", params={"p": PROVIDER}, order_by="day DESC, query_id", limit=50
    ),
    "query receipt (ledger.query_receipt)": lambda e, run, q: query_receipt(e, q),
    "runs: v_run_health, latest 20": lambda e, run, q: read_view(
        e, "v_run_health", order_by="day DESC, run_id", limit=20
    ),
    "run: v_query_provider_credit of one run": lambda e, run, q: read_view(
        e, "v_query_provider_credit", where="run_id = :r", params={"r": run}
    ),
}


def make_run(i: int, providers: list[str], queries: int, topk: int, rng: random.Random) -> RunRecord:
    per_query = len(providers) // queries
    results = []
    for q in range(queries):
        chosen = providers[q * per_query : (q + 1) * per_query][:topk]
        entries = []
        for p in chosen:
            doc = f"{p}-d{rng.randrange(50)}"
            entries.append(TopKEntry(f"{doc}#0", doc, p, rng.random(), excerpt=f"text of {doc} " * 20))
        sums = {e.provider_id: e.score for e in entries}
        results.append(
            QueryResult(f"q{i}-{q}", "1", entries, sums, sums, prompt=f"prompt {i}-{q} " * 20, response="answer " * 40)
        )
    return RunRecord(
        batch_id=f"b{i:05d}",
        checkpoints=[RunCheckpointRef("ck", "grad_ck", 1)],
        config_hash="cfg",
        queries=results,
        corpus_share=dict.fromkeys(providers, 1),
        run_id=f"run{i:05d}",
        day=f"2026-11-{1 + i % 22:02d}",
        topk_method="exact",
        metrics={"lds": 0.2},
    )


def bench(url: str, runs: int, providers: int, queries: int, topk: int) -> dict:
    engine = open_ledger(url)
    names = [f"p{i:04d}" for i in range(providers)]
    ensure_providers(engine, names)
    set_provider(engine, PROVIDER, name="Provider Seven", metadata={"tier": 1})
    register_checkpoint(engine, "ck", lineage="bench")
    rng = random.Random(0)
    entries = 0
    start = time.perf_counter()
    with console.status(f"posting {runs} runs") as status:
        for i in range(runs):
            entries += post_run(engine, make_run(i, names, queries, topk, rng)).entries_written
            if i % 20 == 0:
                status.update(f"posting runs: {i}/{runs}, {entries / (time.perf_counter() - start):,.0f} entries/s")
    elapsed = time.perf_counter() - start
    out = {"runs": runs, "entries": entries, "seconds": elapsed, "entries/s": entries / elapsed}
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:
            c.execute(text("ANALYZE"))
    run, query = f"run{runs // 2:05d}", f"q{runs // 2}-0"
    latencies = {}
    for name, page in PAGES.items():
        best = float("inf")
        for _ in range(3):
            t = time.perf_counter()
            page(engine, run, query)
            best = min(best, time.perf_counter() - t)
        latencies[name] = best * 1000
    out["page ms"] = latencies
    t = time.perf_counter()
    report = verify_ledger(engine)
    out["verify s"] = time.perf_counter() - t
    assert report.ok, str(report)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--db", choices=["both", "sqlite", "postgresql"], default="both")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    sizes = (args.runs, args.providers, args.queries, args.topk)
    if args.db in ("both", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            results["SQLite"] = bench(f"sqlite:///{tmp}/bench.db", *sizes)
    if args.db in ("both", "postgresql"):
        with LocalPostgres() as pg:
            results["PostgreSQL"] = bench(pg.create_database("bench"), *sizes)
    table(
        f"Posting {args.runs} runs x {args.providers} providers",
        ["database", "entries", "seconds", "entries/s", "verify_ledger s"],
        [[db, r["entries"], r["seconds"], r["entries/s"], r["verify s"]] for db, r in results.items()],
    )
    table(
        "Dashboard page loads (ms, best of 3)",
        ["page", *results],
        [[name, *(results[db]["page ms"][name] for db in results)] for name in PAGES],
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
