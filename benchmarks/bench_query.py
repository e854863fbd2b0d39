"""Valuation cost against corpus size: full scan, aggregate provider sums, indexed top-k.

    .venv/bin/python benchmarks/bench_query.py generate --rows 100000 300000 1000000
    .venv/bin/python benchmarks/bench_query.py run --rows 100000 300000 1000000

``generate`` writes synthetic float16 gradient tables (benchmarks/synthetic.py: low-rank
structure, topic and provider directions, log-normal norms; 1,000 providers) through
``GradientTable.writer`` into real LanceDB directories under benchmarks/out/query/.

``run``, per size, 256 queries, mode ``if``, with a k=16-style block preconditioner
(``bench_preconditioner``): the full scan (``storage.scan.score_table``, today's streamed path:
top-100 and 1,000 provider sums), building the aggregates (all three modes) and the provider sums
from them (against the scan's), building the index, indexed top-10 and top-100 over a sweep of
``nprobes`` and ``refine_factor`` (recall against the scan, latency of the 256-query batch and of
one query), bytes on disk; then the slope of each cost in log N.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import table as print_table
from benchmarks.synthetic import SyntheticGradients, SyntheticSpec, bench_layout, bench_preconditioner
from storage import GradientStore
from storage.aggregates import build_aggregates, load_aggregates
from storage.scan import QueryBatch, score_table
from storage.vector_index import IndexArguments, build_index, index_info, topk
from valuation.aggregate import group_sums_from_aggregates

OUT = Path(__file__).resolve().parent / "out" / "query"
CHECKPOINT = "c" * 64


def store_dir(rows: int) -> Path:
    return OUT / f"n{rows}"


def generate(rows: int, dim: int, shards: int, chunk: int = 32768) -> dict:
    synth = SyntheticGradients(SyntheticSpec(dim=dim))
    store = GradientStore(store_dir(rows))
    table = store.table(CHECKPOINT, "bench", bench_layout(dim), "float16", {"bench": "query"})
    if table.count_rows() == rows:
        return {"rows": rows, "skipped": True}
    start = time.perf_counter()
    per_shard = -(-rows // shards)
    for shard in range(shards):
        lo, hi = shard * per_shard, min(rows, (shard + 1) * per_shard)
        with table.writer(shard, batch_rows=65536) as w:
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                vec, codes = synth.rows(s, n)
                ids = [f"e{i}" for i in range(s, s + n)]
                docs = [f"d{i // 4}" for i in range(s, s + n)]
                w.add(ids, docs, [f"p{c}" for c in codes.tolist()], codes.tolist(), vec)
        print(f"rows {rows}: shard {shard} done at {time.perf_counter() - start:.0f} s", flush=True)
    return {"rows": rows, "write_s": time.perf_counter() - start}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def best_of(fn, rounds: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def recall(found: list[list[str]], truth: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def setup(rows: int, dim: int, n_query: int):
    synth = SyntheticGradients(SyntheticSpec(dim=dim))
    pre = bench_preconditioner(bench_layout(dim))
    q, _ = synth.queries(n_query)
    table = GradientStore(store_dir(rows)).table(CHECKPOINT, "bench")
    return table, pre, pre(q.double())


def results_path(rows: int) -> Path:
    return OUT / f"results-{rows}.json"


def run_scan(rows: int, dim: int, n_query: int) -> dict:
    """The full scan (truth for the index), the aggregates and the provider sums from them."""
    table, pre, q_pre = setup(rows, dim, n_query)
    out: dict = {"rows": rows, "table_bytes": dir_bytes(store_dir(rows) / f"{table.name}.lance")}
    version = table.version
    start = time.perf_counter()
    scan = score_table(table, [QueryBatch(q_pre.float(), "if", 100, 1000)], version)
    out["full_scan_s"] = time.perf_counter() - start
    res = scan.results[0]
    out["truth"] = [[e for e, _, _ in scan.rows(row)] for row in res.topk_indices.tolist()]
    print(json.dumps({"rows": rows, "full_scan_s": out["full_scan_s"]}), flush=True)

    start = time.perf_counter()
    info = build_aggregates(table, pre, 0.1)
    out["aggregates_build_s"] = time.perf_counter() - start
    out["aggregates_bytes"] = dir_bytes(store_dir(rows) / f"agg_{table.name}.lance")

    def provider_sums():
        agg = load_aggregates(table, 0.1, info.table_version, modes=("if",))
        return group_sums_from_aggregates(q_pre, agg.by_code("if", 1000), "if")

    out["aggregate_sums_s"], sums = best_of(provider_sums, 5)
    scale = float(res.group_sums.abs().max())
    out["aggregate_vs_scan_max_rel_err"] = float((sums - res.group_sums).abs().max()) / scale
    out["scan_over_aggregates"] = out["full_scan_s"] / out["aggregate_sums_s"]
    print(json.dumps({k: v for k, v in out.items() if "aggregate" in k}), flush=True)
    return out


def run_index(out: dict, dim: int, n_query: int, args: IndexArguments, sweep, rebuild: bool) -> dict:
    """Build the index (or reuse it) and sweep nprobes x refine for top-10 and top-100."""
    rows = out["rows"]
    table, _, q_pre = setup(rows, dim, n_query)
    if rebuild or index_info(table, "raw") is None:
        start = time.perf_counter()
        out["index"] = build_index(table, args, modes=("if",))["raw"]
        out["index_build_s"] = time.perf_counter() - start
    else:
        out["index"] = index_info(table, "raw")
        out["index_build_s"] = out["index"]["build_s"]
    print(json.dumps({"rows": rows, "index": out["index"]}), flush=True)
    out["index_bytes"] = dir_bytes(store_dir(rows) / f"{table.name}.lance" / "_indices")
    version = table.version
    truth = out["truth"]
    out["topk"] = []
    for nprobes, refine in sweep:
        a = IndexArguments(**{**args.__dict__, "nprobes": nprobes, "refine_factor": refine})
        for k in (10, 100):
            if k == 100 and refine > 5:
                continue
            batch_s, found = best_of(lambda a=a, k=k: topk(table, q_pre, k, "if", None, a, version), 1)
            one_s, _ = best_of(lambda a=a, k=k: topk(table, q_pre[:1], k, "if", None, a, version), 3)
            rec = {
                "k": k,
                "nprobes": nprobes,
                "refine": refine,
                "method": found.method,
                "recall": recall(found.example_ids, truth, k),
                "batch_s": batch_s,
                "one_query_s": one_s,
                "top1_same": float(np.mean([f[:1] == t[:1] for f, t in zip(found.example_ids, truth, strict=True)])),
            }
            out["topk"].append(rec)
            print(json.dumps(rec), flush=True)
    return out


def slope(sizes: list[int], values: list[float]) -> float:
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(values, float))
    return float(np.polyfit(x, y, 1)[0]) if len(sizes) > 1 else math.nan


def report(results: list[dict]) -> None:
    sizes = [r["rows"] for r in results]
    rows = []
    keys = ("full_scan_s", "aggregates_build_s", "aggregate_sums_s", "scan_over_aggregates", "table_bytes")
    keys += ("aggregates_bytes", "index_build_s", "index_bytes")
    for key in keys:
        vals = [r.get(key, math.nan) for r in results]
        rows.append([key, *vals, slope(sizes, vals)])
    print_table("cost against N", ["cost", *[f"N={n:,}" for n in sizes], "slope (log-log)"], rows)
    best = []
    for r in results:
        for t in r.get("topk", []):
            best.append(
                [
                    r["rows"],
                    t["k"],
                    t["nprobes"],
                    t["refine"],
                    t["recall"],
                    t["batch_s"],
                    r["full_scan_s"] / t["batch_s"],
                    t["one_query_s"],
                ]
            )
    print_table(
        "indexed top-k (256 queries)",
        ["N", "k", "nprobes", "refine", "recall", "batch s", "scan / index", "1 query s"],
        best,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["generate", "run"])
    ap.add_argument("--rows", type=int, nargs="+", default=[100000, 300000, 1000000])
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--index-type", default="IVF_PQ")
    ap.add_argument("--sub-vectors", type=int, default=256)
    ap.add_argument("--rows-per-partition", type=int, default=1024)
    ap.add_argument("--rebuild-index", action="store_true")
    ap.add_argument("--rescan", action="store_true", help="redo the scan phase even if its results exist")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--sweep", default="5:5,10:5,20:5,20:10,40:10", help="nprobes:refine pairs")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.command == "generate":
        for rows in args.rows:
            print(json.dumps(generate(rows, args.dim, args.shards)), flush=True)
        return
    index_args = IndexArguments(
        index_type=args.index_type,
        num_sub_vectors=args.sub_vectors,
        rows_per_partition=args.rows_per_partition,
        min_rows=0,
    )
    sweep = [tuple(int(v) for v in pair.split(":")) for pair in args.sweep.split(",")]
    results = []
    for rows in args.rows:
        path = results_path(rows)
        out = json.loads(path.read_text()) if path.exists() and not args.rescan else None
        if out is None:
            out = run_scan(rows, args.dim, args.queries)
            path.write_text(json.dumps(out))
        if not args.skip_index:
            out = run_index(out, args.dim, args.queries, index_args, sweep, args.rebuild_index)
            path.write_text(json.dumps(out))
        results.append(out)
    report(results)


if __name__ == "__main__":
    main()
