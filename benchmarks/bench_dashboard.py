"""Dashboard page loads at 10^4 and 10^6 ledger entries, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/bench_dashboard.py [--entries 10000 1000000] [--db sqlite postgresql]

Each ledger is filled through ``ledger.post_run`` (the bulk posting path: chunked inserts, one
transaction per run): ``--providers`` providers, runs of ``--queries`` queries each crediting
``--topk`` providers with excerpts, prompts and two checkpoints, one run a day over 60 days, so a
provider is paid by many queries a day and the materialised daily totals are ~``queries × topk /
providers`` times smaller than the entries. Then ``dataworth dashboard`` serves it and headless
Chromium loads each page: a page's time is from navigation start to the last Dash callback
response (layout and every table's first page), best of ``--repeat``; the statement CSV is one
HTTP GET. ``server ms`` is the same page's reads done in-process (no browser, no HTTP).
PostgreSQL is a real server started on 127.0.0.1 (``infra/localpg.py``).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from benchmarks.common import console, table
from flows.dashboard import pages, queries
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
from tests.dashboard.browser import dashboard_server, make_driver, open_page, page_load_ms

CHECKPOINTS = ("ck-a", "ck-b")


def make_run(i: int, providers: list[str], queries_per_run: int, topk: int, rng: random.Random) -> RunRecord:
    results = []
    for q in range(queries_per_run):
        entries = []
        for p in rng.sample(providers, topk):
            score = rng.random()
            per_ck = {CHECKPOINTS[0]: score * 0.7, CHECKPOINTS[1]: score * 0.3}
            doc = f"{p}-d{rng.randrange(200)}"
            entries.append(TopKEntry(f"{doc}#0", doc, p, score, f"excerpt of {doc} " * 4, per_ck))
        sums = {e.provider_id: e.score for e in entries}
        by_ck = {c: {p: s * w for p, s in sums.items()} for c, w in zip(CHECKPOINTS, (0.7, 0.3), strict=True)}
        results.append(
            QueryResult(
                f"q{i}-{q}",
                "1",
                entries,
                sums,
                sums,
                prompt=f"prompt {i}-{q}",
                response=f"response {i}-{q}",
                confidence=0.9,
                by_checkpoint=by_ck,
            )
        )
    return RunRecord(
        batch_id=f"b{i:05d}",
        checkpoints=[RunCheckpointRef(c, f"grad_{c}", 1) for c in CHECKPOINTS],
        config_hash="cfg",
        queries=results,
        corpus_share=dict.fromkeys(providers, 1),
        config={"mode": "cosine", "topk": topk},
        metrics={"lds": 0.4},
        run_id=f"run{i:05d}",
        day=f"2026-{9 + (i % 60) // 30:02d}-{1 + (i % 60) % 30:02d}",
    )


def fill(url: str, entries: int, providers: int, queries_per_run: int, topk: int) -> dict:
    engine = open_ledger(url)
    names = [f"p{i:04d}" for i in range(providers)]
    ensure_providers(engine, names)
    for step, ck in enumerate(CHECKPOINTS):
        register_checkpoint(engine, ck, lineage="bench", step=step)
    runs = max(1, entries // (queries_per_run * topk))
    rng = random.Random(0)
    written = 0
    start = time.perf_counter()
    with console.status(f"posting {runs} runs") as status:
        for i in range(runs):
            written += post_run(engine, make_run(i, names, queries_per_run, topk, rng)).entries_written
            status.update(f"posting runs: {i + 1}/{runs}, {written / (time.perf_counter() - start):,.0f} entries/s")
    seconds = time.perf_counter() - start
    if engine.dialect.name == "postgresql":
        with engine.begin() as c:
            c.execute(text("ANALYZE"))
    with engine.connect() as c:
        deltas = c.execute(text("SELECT COUNT(*) FROM provider_credit_day")).scalar_one()
    engine.dispose()
    return {"runs": runs, "entries": written, "daily_rows": deltas, "fill_s": seconds}


# Indexes the ledger does not have (no migration adds them): measured with --indexes to show what
# they would buy the provider page (top documents, statement attributions, credit by checkpoint).
SUGGESTED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_query_attribution_provider ON query_attribution (provider_id, doc_id)",
    "CREATE INDEX IF NOT EXISTS ix_entry_split_provider ON entry_split (provider_id, checkpoint_id)",
    "CREATE INDEX IF NOT EXISTS ix_attribution_evidence_provider ON attribution_evidence (provider_id, doc_id)",
)


def add_indexes(url: str, drop: bool = False) -> None:
    """Create :data:`SUGGESTED_INDEXES` (or drop them: an existing ledger measured as the schema has it)."""
    engine = open_ledger(url)
    with engine.begin() as c:
        for sql in SUGGESTED_INDEXES:
            name = sql.split(" IF NOT EXISTS ")[1].split()[0]
            c.execute(text(f"DROP INDEX IF EXISTS {name}" if drop else sql))
        c.execute(text("ANALYZE"))
    engine.dispose()


def page_paths(provider: str, run_id: str, query_id: str) -> dict[str, str]:
    return {
        "providers": "/",
        "provider": f"/provider?id={provider}",
        "query receipt": f"/query?id={query_id}&run={run_id}",
        "runs": "/runs",
        "run": f"/run?id={run_id}",
    }


def server_side_ms(url: str, provider: str, run_id: str, query_id: str, repeat: int) -> dict[str, float]:
    """The same reads as each page (layout + first page of every table), in-process."""
    from flows.dashboard import tables

    engine = open_ledger(url)
    tables.bind(engine)
    size = queries.PAGE_SIZE
    work = {
        "providers": lambda: (
            pages.providers_layout(),
            tables.LOADERS["providers"](engine, {}, 0, size),
            queries.credit_series(engine, "week", [r["provider_id"] for r in queries.providers(engine, 0, 10)]),
        ),
        "provider": lambda: (
            pages.provider_layout(id=provider),
            *(
                tables.LOADERS[n](engine, {"provider_id": provider}, 0, size)
                for n in ("paying_queries", "top_documents", "statement")
            ),
            queries.credit_series(engine, "day", [provider]),
        ),
        "query receipt": lambda: pages.query_layout(id=query_id, run=run_id),
        "runs": lambda: (pages.runs_layout(), tables.LOADERS["runs"](engine, {}, 0, size)),
        "run": lambda: (
            pages.run_layout(id=run_id),
            tables.LOADERS["run_queries"](engine, {"run_id": run_id}, 0, size),
        ),
    }
    out = {}
    for name, fn in work.items():
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        out[name] = best * 1000
    engine.dispose()
    return out


def browser_ms(url: str, home: Path, provider: str, run_id: str, query_id: str, repeat: int) -> dict[str, float]:
    out = {}
    driver = make_driver(home / "profile", home / "downloads")
    try:
        with dashboard_server(url, home) as base:
            for name, path in page_paths(provider, run_id, query_id).items():
                best = float("inf")
                for _ in range(repeat):
                    open_page(driver, base, path, timeout=600)
                    best = min(best, page_load_ms(driver))
                out[name] = best
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                urllib.request.urlopen(f"{base}/export/statement.csv?provider={provider}", timeout=600).read()
                best = min(best, time.perf_counter() - t)
            out["statement CSV"] = best * 1000
    finally:
        driver.quit()
    return out


def measure_existing(url: str, tmp: Path, args) -> dict:
    """Page loads on an existing ledger, without then with :data:`SUGGESTED_INDEXES`."""
    out = {}
    for label, drop in (("schema indexes", True), ("+indexes", False)):
        add_indexes(url, drop=drop)
        home = tmp / label.replace(" ", "-")
        home.mkdir()
        out[label] = {
            "server ms": server_side_ms(url, "p0007", "run00001", "q1-0", args.repeat),
            "browser ms": browser_ms(url, home, "p0007", "run00001", "q1-0", args.repeat),
        }
        console.print(json.dumps(out, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--providers", type=int, default=200)
    parser.add_argument("--queries", type=int, default=100, help="queries per run")
    parser.add_argument("--topk", type=int, default=10, help="providers credited per query")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--indexes", action="store_true", help="measure again with SUGGESTED_INDEXES")
    parser.add_argument("--ledger", default=None, help="measure this ledger URL instead of filling new ones")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the local PostgreSQL on kill
    results: dict[str, dict] = {}
    if args.ledger:  # measure a ledger filled earlier (e.g. kept from a previous run)
        with tempfile.TemporaryDirectory() as tmp:
            results = measure_existing(args.ledger, Path(tmp), args)
        print(json.dumps(results, indent=1))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp, LocalPostgres() as pg:
        for n in args.entries:
            for db in args.db:
                url = f"sqlite:///{tmp}/bench-{n}.db" if db == "sqlite" else pg.create_database(f"bench_{n}")
                label = f"{db} {n:,}"
                console.print(f"[bold]{label}[/bold]: filling")
                r = fill(url, n, args.providers, args.queries, args.topk)
                home = Path(tmp) / f"home-{db}-{n}"
                home.mkdir()
                run_id, query_id = "run00001", "q1-0"
                r["server ms"] = server_side_ms(url, "p0007", run_id, query_id, args.repeat)
                r["browser ms"] = browser_ms(url, home, "p0007", run_id, query_id, args.repeat)
                results[label] = r
                if args.indexes:
                    add_indexes(url)
                    results[label + " +indexes"] = r | {
                        "server ms": server_side_ms(url, "p0007", run_id, query_id, args.repeat),
                        "browser ms": browser_ms(url, home, "p0007", run_id, query_id, args.repeat),
                    }
                console.print(json.dumps(results, indent=1))
                if args.json:
                    args.json.write_text(json.dumps(results, indent=2))
    table(
        "Ledgers",
        ["ledger", "runs", "entries", "daily total rows", "fill s"],
        [[k, r["runs"], r["entries"], r["daily_rows"], r["fill_s"]] for k, r in results.items()],
    )
    names = list(next(iter(results.values()))["browser ms"])
    table(
        "Page load in headless Chromium (ms, best of repeats)",
        ["page", *results],
        [[p, *(r["browser ms"][p] for r in results.values())] for p in names],
    )
    names = list(next(iter(results.values()))["server ms"])
    table(
        "Same reads in-process (ms)",
        ["page", *results],
        [[p, *(r["server ms"][p] for r in results.values())] for p in names],
    )


if __name__ == "__main__":
    main()
