"""Valuation cost against corpus size: full scan, aggregate provider sums, indexed top-k.

    .venv/bin/python benchmarks/bench_query.py generate --rows 100000 300000 1000000
    .venv/bin/python benchmarks/bench_query.py run --rows 100000 300000 1000000
    .venv/bin/python benchmarks/bench_query.py e2e --rows 1000000

``generate`` writes synthetic float16 gradient tables (benchmarks/synthetic.py: low-rank
structure, topic and provider directions, log-normal norms; 1,000 providers) through
``GradientTable.writer`` into real LanceDB directories under benchmarks/out/query/.

``run``, per size, 256 queries, mode ``if``, with a k=16-style block preconditioner
(the table's own block Fisher from its first 32,768 rows, as a checkpoint's is fitted on its
gradients): the full scan (``storage.scan.score_table``, today's streamed path:
top-100 and 1,000 provider sums), building the aggregates (all three modes) and the provider sums
from them (against the scan's), building the index, indexed top-10 and top-100 over a sweep of
``nprobes`` and ``refine_factor`` (recall against the scan, latency of the 256-query batch and of
one query), bytes on disk; then the slope of each cost in log N.

``e2e`` times ``dataworth value`` on a synthetic table (``generate`` first): a home is made
through the CLI (init; a 1,000-provider corpus ingested so that provider codes equal the synthetic
ones; a 4-layer GPT-2 trained here, whose 16 modules at k = 16 give 4,096 dims; ``checkpoint add``:
fit, log, finalize on that small corpus). The checkpoint's gradient table is then swapped for the
synthetic one (a hard-linked copy of its Lance directory), and its provider aggregates and its
index (whitened by the checkpoint's own preconditioner) are built as finalize would. Then, each on a
copy of that home (``E2E_VARIANTS``): ``query add`` and ``dataworth value`` in a subprocess under
cProfile (the breakdown is the cumulative time of the stages' functions): 256 queries under the
platform's defaults, the same with the index forced, and one query.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pstats
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import table as print_table
from benchmarks.synthetic import SyntheticGradients, SyntheticSpec, bench_layout
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


def fitted_preconditioner(synth: SyntheticGradients, dim: int, rows: int = 32768):
    """The table's own (block) Fisher, from its first ``rows`` rows, at damping ratio 0.1: as a
    checkpoint's preconditioner is fitted on its gradients (the index is built in its metric)."""
    from valuation import ProjectedFisher

    fisher = ProjectedFisher(bench_layout(dim))
    for start in range(0, rows, 8192):
        fisher.update(synth.rows(start, 8192)[0].double())
    return fisher.preconditioner(0.1)


def setup(rows: int, dim: int, n_query: int):
    synth = SyntheticGradients(SyntheticSpec(dim=dim))
    pre = fitted_preconditioner(synth, dim)
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
    table, pre, q_pre = setup(rows, dim, n_query)
    previous = out.get("index")
    if rebuild or index_info(table, "white") is None:
        start = time.perf_counter()
        out["index"] = build_index(table, pre, args, modes=("if",))["white"]
        out["index_build_s"] = time.perf_counter() - start
    else:
        out["index"] = index_info(table, "white")
        out["index_build_s"] = out.get("index_build_s", out["index"]["build_s"])
    print(json.dumps({"rows": rows, "index": out["index"]}), flush=True)
    companion = store_dir(rows) / f"white_{table.name}.lance"
    out["index_bytes"] = dir_bytes(companion / "_indices")
    out["companion_bytes"] = dir_bytes(companion) - out["index_bytes"]
    version = table.version
    truth = out["truth"]
    # Points of an earlier sweep of the same index are kept (a point measured again is replaced).
    kept = out.get("topk", []) if out["index"] == previous else []
    out["topk"] = []
    for nprobes, refine in sweep:
        a = IndexArguments(**{**args.__dict__, "nprobes": nprobes, "refine_factor": refine})
        for k in (10, 100):
            if k == 100 and refine > 5:
                continue
            batch_s, found = best_of(lambda a=a, k=k: topk(table, q_pre, k, "if", None, a, version, pre=pre), 1)
            one_s, _ = best_of(lambda a=a, k=k: topk(table, q_pre[:1], k, "if", None, a, version, pre=pre), 3)
            rec = {
                "k": k,
                "nprobes": a.probes(out["index"]["num_partitions"]),
                "refine": refine,
                "method": found.method,
                "recall": recall(found.example_ids, truth, k),
                "batch_s": batch_s,
                "one_query_s": one_s,
                "top1_same": float(np.mean([f[:1] == t[:1] for f, t in zip(found.example_ids, truth, strict=True)])),
            }
            out["topk"].append(rec)
            print(json.dumps(rec), flush=True)
    done = {(t["k"], t["nprobes"], t["refine"]) for t in out["topk"]}
    out["topk"] = [t for t in kept if (t["k"], t["nprobes"], t["refine"]) not in done] + out["topk"]
    return out


def time_scan(out: dict, dim: int, n_query: int) -> dict:
    """The full scan of ``run_scan`` timed again (the machine's load changes by the hour), with the
    load average around it; its top-100 must equal the stored truth."""
    table, _, q_pre = setup(out["rows"], dim, n_query)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    scan = score_table(table, [QueryBatch(q_pre.float(), "if", 100, 1000)], table.version)
    seconds = time.perf_counter() - start
    truth = [[e for e, _, _ in scan.rows(row)] for row in scan.results[0].topk_indices.tolist()]
    start = time.perf_counter()
    score_table(table, [QueryBatch(q_pre[:1].float(), "if", 10, 1000)], table.version)
    one = time.perf_counter() - start  # what an interactive query costs without the index
    rec = {"s": seconds, "one_query_s": one, "loadavg_1min": [load, os.getloadavg()[0]]}
    rec["top100_same"] = recall(truth, out["truth"], 100)
    # The normalised combination's mean |score| per query: exact from this scan's sums against the
    # fast path's estimate from its fixed row sample (flows.fastpath.sampled_mean_abs).
    from flows.fastpath import NORMALISER_SAMPLE
    from valuation.combine import mean_abs_from_sample, mean_abs_from_sums

    res = scan.results[0]
    exact = mean_abs_from_sums(res.group_sums, res.group_positive_sums, scan.rows_seen)
    start = time.perf_counter()
    chunk, population = table.sample(NORMALISER_SAMPLE, table.version, seed=table.version)
    est, rel = mean_abs_from_sample(q_pre.double() @ chunk.vectors.double().T, population)
    rec["normaliser"] = {
        "sample": len(chunk),
        "s": time.perf_counter() - start,
        "max_rel_error": float(((est - exact) / exact).abs().max()),
        "mean_rel_error": float(((est - exact) / exact).abs().mean()),
        "max_rel_se": float(rel.max()),
        "errors_beyond_3_se": int((((est - exact) / exact).abs() > 3 * rel).sum()),
    }
    out.setdefault("full_scan_again", []).append(rec)
    print(json.dumps({"full_scan_again": rec}), flush=True)
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


WORDS = [
    *("harbour", "tide", "ferry", "garden", "soil", "seed", "orbit", "comet", "lens", "ledger", "market"),
    *("price", "river", "bridge", "castle", "winter", "summer", "engine", "signal", "copper", "timber"),
    *("canvas", "violin", "recipe", "pepper", "falcon", "meadow", "glacier"),
]
# Where each stage of `dataworth value` spends its time (cumulative, cProfile).
STAGES = {
    "valuation_cycle (whole command after start-up)": ("flows/pipeline.py", "valuation_cycle"),
    "reconcile (pending queries vs ledger)": ("flows/credit.py", "reconcile"),
    "query gradients (model load, LoGra, 256 queries)": ("flows/valuate.py", "query_vectors"),
    "  of which model load": ("flows/app.py", "model"),
    "preconditioner load": ("flows/checkpoint/context.py", "load"),
    "aggregates load": ("storage/aggregates.py", "load_aggregates"),
    "provider sums (float64 matmul)": ("valuation/aggregate.py", "group_sums_from_aggregates"),
    "top-k (index + exact re-rank)": ("storage/vector_index.py", "topk"),
    "normaliser (mean |score| of a row sample)": ("flows/fastpath.py", "sampled_mean_abs"),
    "streamed scan of the table (when the batch is too large for the index)": ("flows/valuate.py", "score_checkpoint"),
    "fast path total (sums + top-k)": ("flows/fastpath.py", "score_fast"),
    "posting: credits to the ledger": ("flows/credit.py", "post_credits"),
    "  of which per-query results and evidence": ("flows/credit.py", "build_results"),
    "  of which lexical evidence (BM25)": ("flows/evidence.py", "lexical_evidence"),
    "  of which ledger post_run": ("ledger/posting.py", "post_run"),
    "    of which the hash chain's row digests": ("ledger/chain.py", "part_digests"),
}


def e2e_corpus(home: Path, providers: int) -> tuple[list[Path], list[str]]:
    """One document per provider; one file per digit count so that ingest (which codes each
    file's new providers in sorted order) gives provider ``p{c}`` the code ``c``."""
    rng = random.Random(0)
    texts, files = [], []
    for digits in range(1, len(str(providers - 1)) + 1):
        codes = [c for c in range(providers) if len(str(c)) == digits]
        path = home / "assets" / f"corpus-{digits}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            for c in codes:
                text = f"Provider {c} writes: " + " ".join(rng.choice(WORDS) for _ in range(24)) + "."
                texts.append(text)
                fh.write(json.dumps({"doc_id": f"doc{c}", "provider_id": f"p{c}", "text": text}) + "\n")
        files.append(path)
    return files, texts


E2E_SETTINGS = {
    "dtype": "float16",
    "k_in": 16,
    "k_out": 16,
    "num_shards": 10,
    "max_length": 48,
    "policy": "topk_share",
    "mode": "if",
    # The rows are synthetic: no corpus text behind them for the tail-patch step.
    "confidence": "off",
}
# What `value` is timed under, each on its own copy of the prepared home: the platform's defaults
# (checkpoint_combine "normalised"; a 256-query batch is past index_batch_fraction, so it streams
# the table), the index forced for the same batch, and one interactive query (the index answers).
E2E_VARIANTS = {
    "256 queries, defaults": ({}, None),
    "256 queries, index forced (index_batch_fraction = 1e9)": ({"index_batch_fraction": 1e9}, None),
    "1 query, defaults": ({}, 1),
}


def e2e_cli(home: Path):
    """``dataworth ARGS`` in a subprocess on ``home`` (optionally under cProfile) → wall seconds."""
    env = {**os.environ, "DATAWORTH_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    env.pop("DATAWORTH_DB_URL", None)

    def cli(*args: str, profile: Path | None = None) -> float:
        pre = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else []) + ["-m", "flows.cli"]
        start = time.perf_counter()
        with open(home / "cli.log", "a") as log:
            subprocess.run([*pre, *args], env=env, check=True, cwd=Path(__file__).resolve().parent.parent, stdout=log)
        return time.perf_counter() - start

    return cli


def e2e_setup(home: Path) -> dict:
    """A home with one finalized checkpoint of a 4,096-dim model on a 1,000-provider corpus."""
    from flows.demo.model import TrainArguments, train_demo_model

    sec: dict = {}
    cli = e2e_cli(home)
    (home / "dataworth.toml").write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in E2E_SETTINGS.items()) + "\n")
    sec["init"] = cli("init")
    files, texts = e2e_corpus(home, 1000)
    sec["ingest (3 files, 1,000 documents)"] = sum(cli("ingest", str(f)) for f in files)
    start = time.perf_counter()
    model = train_demo_model(
        texts,
        home / "assets" / "model",
        TrainArguments(vocab_size=400, n_layer=4, n_embd=32, n_head=2, max_length=48, epochs=1, checkpoints=1),
    )[0]
    sec["train the 4-layer GPT-2"] = time.perf_counter() - start
    sec["checkpoint add (1,000 examples: fit, log, finalize)"] = cli(
        "checkpoint", "add", str(model), "--lineage", "bench", "--step", "1"
    )
    return sec


def e2e(rows: int, n_query: int) -> dict:
    """``dataworth value`` end to end on the indexed synthetic table of ``rows`` rows."""
    from flows.app import App
    from flows.checkpoint.context import CheckpointContext
    from flows.config import load_settings
    from valuation import Preconditioner

    bench = GradientStore(store_dir(rows)).table(CHECKPOINT, "bench")
    template, home = OUT / "e2e-home", OUT / f"e2e-{rows}"
    out: dict = {"rows": rows, "queries": n_query, "seconds": {}}
    sec = out["seconds"]
    if not (template / "setup.json").exists():
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir(parents=True)
        (template / "setup.json").write_text(json.dumps(e2e_setup(template), indent=1))
    sec.update(json.loads((template / "setup.json").read_text()))
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home)
    settings = load_settings(home=str(home))
    # The checkpoint's table → the synthetic one (hard links: Lance never rewrites a file).
    app = App.of(settings)
    ctx = CheckpointContext(app, app.checkpoints()[0].checkpoint_id)
    small = ctx.table()
    if small.dim != bench.dim:
        raise SystemExit(f"model layout gives {small.dim} dims, the table has {bench.dim}")
    name, gdir = small.name, Path(small.store.uri)
    for d in (f"{name}.lance", f"agg_{name}.lance", f"white_{name}.lance", f"white_index_{name}.lance"):
        shutil.rmtree(gdir / d, ignore_errors=True)
    subprocess.run(["cp", "-al", str(store_dir(rows) / f"{bench.name}.lance"), str(gdir / f"{name}.lance")], check=True)
    table = GradientStore(gdir).table(ctx.row.checkpoint_id, ctx.key)
    state, _ = ctx.load("preconditioner")
    pre = Preconditioner.from_state_dict(small.layout, state).with_damping_ratio(settings.damping_ratio)
    start = time.perf_counter()
    build_aggregates(table, pre, settings.damping_ratio, ("if",), ("provider",), write_self_influence=False)
    sec["build provider aggregates, mode if (finalize's pass; not part of value)"] = time.perf_counter() - start
    # The index in the metric of this checkpoint's own preconditioner, as finalize builds it.
    start = time.perf_counter()
    info = build_index(table, pre, IndexArguments(), modes=("if",))["white"]
    sec["build the index: whitened copy + IVF_PQ (finalize's; not part of value)"] = time.perf_counter() - start
    out["index"] = info
    out["variants"] = {}
    for label, (extra, count) in E2E_VARIANTS.items():
        out["variants"][label] = e2e_value(home, rows, label, extra, count or n_query)
        print(json.dumps({label: out["variants"][label]}, indent=1), flush=True)
        (OUT / f"e2e-{rows}.json").write_text(json.dumps(out, indent=1))
    return out


def e2e_value(prepared: Path, rows: int, label: str, extra: dict, n_query: int) -> dict:
    """``query add`` of ``n_query`` queries and ``dataworth value`` under cProfile on a copy of the
    prepared home with ``extra`` settings."""
    import sqlite3

    home = OUT / f"e2e-{rows}-{len(list(OUT.glob(f'e2e-{rows}-*')))}"
    shutil.rmtree(home, ignore_errors=True)
    # Lance never rewrites a file: hard links are safe for its directories; SQLite files are copied.
    subprocess.run(["cp", "-al", str(prepared), str(home)], check=True)
    for db in home.rglob("*.db"):
        db.unlink()
        shutil.copy2(prepared / db.relative_to(home), db)
    extra = {"confidence": "off", **extra}  # synthetic rows: no corpus text to tail-patch on
    toml = home / "dataworth.toml"
    kept = [line for line in toml.read_text().splitlines() if line.split("=")[0].strip() not in extra]
    toml.unlink()  # a hard link to the prepared home's file
    toml.write_text("\n".join(kept + [f"{k} = {json.dumps(v)}" for k, v in extra.items()]) + "\n")
    cli = e2e_cli(home)
    synth = SyntheticGradients(SyntheticSpec(dim=4096))
    _, codes = synth.queries(n_query)
    rng = random.Random(1)
    qfile = home / "assets" / "queries.jsonl"
    with open(qfile, "w") as fh:
        for i, c in enumerate(codes.tolist()):
            words = " ".join(rng.choice(WORDS) for _ in range(12))
            row = {"query_id": f"q{i}", "prompt": f"What does provider {c} write?", "response": words}
            fh.write(json.dumps(row) + "\n")
    res: dict = {"settings": extra, "queries": n_query, "seconds": {}}
    res["seconds"]["query add"] = cli("query", "add", str(qfile), "--lineage", "bench")
    prof = home / "value.prof"
    res["seconds"]["dataworth value (wall, process start to exit, under cProfile)"] = cli("value", profile=prof)
    stats = pstats.Stats(str(prof)).stats
    res["breakdown"] = {}
    for stage, (path, func) in STAGES.items():
        hits = [v[3] for (f, _, fn), v in stats.items() if fn == func and f.endswith(path)]
        res["breakdown"][stage] = max(hits) if hits else None
    with sqlite3.connect(home / "ledger.db") as db:
        res["ledger"] = {
            "topk_method": db.execute("SELECT topk_method FROM run_info").fetchall(),
            "entries": db.execute("SELECT count(*) FROM ledger_entry").fetchone()[0],
        }
    shutil.rmtree(home, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["generate", "run", "e2e"])
    ap.add_argument("--rows", type=int, nargs="+", default=[100000, 300000, 1000000])
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--index-type", default="IVF_PQ")
    ap.add_argument("--sub-vectors", type=int, default=None, help="PQ sub-vectors (default: the platform's, dim / 8)")
    ap.add_argument("--rows-per-partition", type=int, default=IndexArguments.rows_per_partition)
    ap.add_argument("--rebuild-index", action="store_true")
    ap.add_argument("--rescan", action="store_true", help="redo the scan phase even if its results exist")
    ap.add_argument("--skip-index", action="store_true")
    ap.add_argument("--time-scan", action="store_true", help="time the full scan again after the index sweep")
    ap.add_argument("--sweep", default="d:40", help="nprobes:refine pairs (nprobes d: the platform's share)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.command == "e2e":
        for rows in args.rows:
            e2e(rows, args.queries)
        return
    if args.command == "generate":
        for rows in args.rows:
            print(json.dumps(generate(rows, args.dim, args.shards)), flush=True)
        return
    # The index is measured on every batch here: the platform's batch rule (index_batch_fraction)
    # would scan a 256-query batch (max_candidate_fraction), which is what its choice is based on.
    index_args = IndexArguments(
        max_candidate_fraction=float("inf"),
        index_type=args.index_type,
        num_sub_vectors=args.sub_vectors,
        rows_per_partition=args.rows_per_partition,
        min_rows=0,
    )
    # "d" for nprobes: the platform's share of the lists (IndexArguments.probe_fraction)
    sweep = [tuple(None if v == "d" else int(v) for v in pair.split(":")) for pair in args.sweep.split(",")]
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
        if args.time_scan:
            out = time_scan(out, args.dim, args.queries)
            path.write_text(json.dumps(out))
        results.append(out)
    report(results)


if __name__ == "__main__":
    main()
