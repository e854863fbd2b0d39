"""Ledger throughput: posting runs on SQLite and PostgreSQL, and dashboard view latency.

    .venv/bin/python benchmarks/bench_ledger.py [--runs 1000 --providers 1000]

Each run values ``--queries`` queries whose top-k lists (``--topk`` entries) spread over the
providers, so that ``runs × providers`` provider credits are posted in all (1,000 × 1,000 by
default: 1M ledger entries, plus attributions and scores). PostgreSQL is a real server started
on 127.0.0.1 for the run (``infra/localpg.py``).
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
    ensure_providers,
    open_ledger,
    post_run,
    register_checkpoint,
)

DASHBOARD = {
    "v_provider_credit_daily: last 30 days, top 20 providers": (
        "SELECT provider_id, SUM(credit) AS credit FROM v_provider_credit_daily "
        "WHERE day >= '2026-10-23' GROUP BY provider_id ORDER BY credit DESC LIMIT 20"
    ),
    "v_provider_credit_daily: one provider's daily series": (
        "SELECT day, credit FROM v_provider_credit_daily WHERE provider_id = 'p0007' ORDER BY day"
    ),
    "v_provider_credit_by_checkpoint: full": "SELECT COUNT(*), SUM(credit) FROM v_provider_credit_by_checkpoint",
    "v_query_provider_credit: one run": (
        "SELECT query_id, provider_id, score, credit FROM v_query_provider_credit WHERE run_id = :run"
    ),
    "v_provider_top_documents: one provider, top 10": (
        "SELECT doc_id, times_in_topk, total_score FROM v_provider_top_documents "
        "WHERE provider_id = 'p0007' ORDER BY times_in_topk DESC LIMIT 10"
    ),
    "v_run_summary: latest 20 runs": "SELECT * FROM v_run_summary ORDER BY run_id DESC LIMIT 20",
}


def make_run(i: int, providers: list[str], queries: int, topk: int, rng: random.Random) -> RunRecord:
    per_query = len(providers) // queries
    results = []
    for q in range(queries):
        chosen = providers[q * per_query : (q + 1) * per_query][:topk]
        entries = [
            TopKEntry(f"{p}-d{rng.randrange(50)}#0", f"{p}-d{rng.randrange(50)}", p, rng.random()) for p in chosen
        ]
        sums = {e.provider_id: e.score for e in entries}
        results.append(QueryResult(f"q{i}-{q}", "1", entries, sums, sums))
    return RunRecord(
        batch_id=f"b{i:05d}",
        checkpoints=[RunCheckpointRef("ck", "grad_ck", 1)],
        config_hash="cfg",
        queries=results,
        corpus_share=dict.fromkeys(providers, 1),
        run_id=f"run{i:05d}",
        day=f"2026-11-{1 + i % 22:02d}",
    )


def bench(url: str, runs: int, providers: int, queries: int, topk: int) -> dict:
    engine = open_ledger(url)
    names = [f"p{i:04d}" for i in range(providers)]
    ensure_providers(engine, names)
    register_checkpoint(engine, "ck", lineage="bench")
    rng = random.Random(0)
    records = [make_run(i, names, queries, topk, rng) for i in range(runs)]
    entries = 0
    start = time.perf_counter()
    with console.status(f"posting {runs} runs") as status:
        for i, rec in enumerate(records):
            entries += post_run(engine, rec).entries_written
            if i % 50 == 0:
                status.update(f"posting runs: {i}/{runs}, {entries / (time.perf_counter() - start):,.0f} entries/s")
    elapsed = time.perf_counter() - start
    out = {"runs": runs, "entries": entries, "seconds": elapsed, "entries/s": entries / elapsed}
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:
            c.execute(text("ANALYZE"))
    latencies = {}
    with engine.connect() as c:
        for name, sql in DASHBOARD.items():
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                c.execute(text(sql), {"run": "run00007"}).all()
                best = min(best, time.perf_counter() - t)
            latencies[name] = best * 1000
    out["view ms"] = latencies
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--providers", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["SQLite"] = bench(f"sqlite:///{tmp}/bench.db", args.runs, args.providers, args.queries, args.topk)
    with LocalPostgres() as pg:
        results["PostgreSQL"] = bench(pg.create_database("bench"), args.runs, args.providers, args.queries, args.topk)
    table(
        f"Posting {args.runs} runs x {args.providers} providers",
        ["database", "entries", "seconds", "entries/s"],
        [[db, r["entries"], r["seconds"], r["entries/s"]] for db, r in results.items()],
    )
    table(
        "Dashboard query latency (ms, best of 3)",
        ["query", *results],
        [[name, *(results[db]["view ms"][name] for db in results)] for name in DASHBOARD],
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
