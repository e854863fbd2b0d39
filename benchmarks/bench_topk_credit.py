"""Top-k credits (``topk_share``) from the indexed path against the exact path, on real gradients.

    .venv/bin/python -m flows.cli demo --home /tmp/demo-home        # once: a finalized demo home
    .venv/bin/python benchmarks/bench_topk_credit.py --demo-home /tmp/demo-home [--digits-queries 797]

Small tables are below ``index_min_rows``: the index is forced here (``min_rows=0``). Per table and
mode, the top-10 of every query comes from ``storage.vector_index.topk`` twice, once from the index
and once by the exact scan (``exact=True``), and both go through the ledger's ``topk_share`` split
(``flows.demo.run.top_provider_by_policy``); the headline is the fraction of queries whose most
credited provider is the same. Index configurations:

- ``default``: the platform's ``IndexArguments`` (lists of ~4,096 rows: a small table is one list, so
  only PQ and the refine step can lose anything);
- ``scaled``: as many lists as a table allows (rows / 16), the platform's share of them probed (a
  third), so each query misses most of the table.

Both answer every batch from the index (``max_candidate_fraction`` is lifted; the platform would
scan batches this large relative to these tables).

Demo: a home made by ``dataworth demo`` is copied (never modified), and each finalized checkpoint is
indexed; besides the per-checkpoint comparison, the platform's ``value_lineage`` (aggregates + index
fast path: the platform's ``checkpoint_combine = "normalised"``, the normaliser exact on tables
this small) is run against the streamed scan on the whole checkpoint set in the home's mode.
Digits: the accuracy suite's MLP and LoGra k = 16 (``benchmarks/accuracy``),
1,000 train digits written to a gradient table with 100 providers of 10 random digits each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import table as print_table
from flows.demo.run import top_provider_by_policy
from ledger import QueryResult, TopKEntry
from storage import GradientStore
from storage.vector_index import FAMILY, IndexArguments, build_index, topk

OUT = Path(__file__).resolve().parent / "out" / "topk_credit"
EVERY_BATCH = {"min_rows": 0, "max_candidate_fraction": float("inf")}


def configs(rows: int, dim: int, sv_div: int | None) -> dict[str, IndexArguments]:
    lists = max(2, rows // 16)
    sv = {"num_sub_vectors": dim // sv_div} if sv_div else {}
    return {
        "default": IndexArguments(**EVERY_BATCH, **sv),
        "scaled": IndexArguments(**EVERY_BATCH, num_partitions=lists, **sv),
    }


def credit_tops(found, providers: list[str]) -> list[str | None]:
    out = []
    for qi, (ids, docs, provs) in enumerate(zip(found.example_ids, found.doc_ids, found.provider_ids, strict=True)):
        scores = found.scores[qi].tolist()[: len(ids)]
        entries = [TopKEntry(e, d, p, float(s)) for e, d, p, s in zip(ids, docs, provs, scores, strict=True)]
        out.append(top_provider_by_policy(QueryResult(str(qi), 1, entries), providers))
    return out


def compare(table, q_pre, mode: str, query_self, providers: list[str], args: IndexArguments, pre, k: int = 10) -> dict:
    """Indexed vs exact top-``k`` of one table: recall, same top-1 row, same top-1 credited provider."""
    exact = topk(table, q_pre, k, mode, query_self, exact=True)
    found = topk(table, q_pre, k, mode, query_self, args, pre=pre)
    if found.method == "exact":
        raise RuntimeError(f"{table.name}: no index answered ({mode})")
    a, b = credit_tops(found, providers), credit_tops(exact, providers)
    pairs = list(zip(found.example_ids, exact.example_ids, strict=True))
    return {
        "queries": len(a),
        "method": found.method,
        "credit_top1_same": float(np.mean([x == y for x, y in zip(a, b, strict=True)])),
        "credit_top1_differ": int(sum(x != y for x, y in zip(a, b, strict=True))),
        "recall@10": float(np.mean([len(set(f) & set(t)) / max(1, len(t)) for f, t in pairs])),
        "top1_row_same": float(np.mean([f[:1] == t[:1] for f, t in pairs])),
    }


def index_and_compare(table, q_pre, mode, query_self, providers, rows: int, pre, sv_div: int | None = None) -> dict:
    out = {}
    for name, args in configs(rows, table.dim, sv_div).items():
        info = build_index(table, pre, args, modes=(mode,))[FAMILY[mode]]
        out[name] = {
            "lists": info["num_partitions"],
            "nprobes": args.probes(info["num_partitions"]),
            **compare(table, q_pre, mode, query_self, providers, args, pre),
        }
        print(json.dumps({"table": table.name, "mode": mode, "config": name, **out[name]}), flush=True)
    return out


def digits(n_query: int, modes: tuple[str, ...], sv_div: int | None) -> dict:
    from benchmarks.bench_codec import digits_gradients
    from valuation import self_influence

    *_, logra, g, q, pre = digits_gradients(n_query)
    q_pre = pre(q.double())
    root = OUT / "digits"
    shutil.rmtree(root, ignore_errors=True)
    table = GradientStore(root).table("d" * 64, "digits", logra.layout, "float32", {})
    perm = np.random.default_rng(0).permutation(1000)
    codes = (perm % 100).tolist()
    ids = [f"x{i}" for i in range(1000)]
    with table.writer(0) as w:
        w.add(ids, ids, [f"p{c}" for c in codes], codes, g)
    table.write_self_influence(ids, [0] * 1000, self_influence(g.double(), pre).numpy())
    table.optimize()
    providers = [f"p{c}" for c in range(100)]
    q_self = self_influence(q.double(), pre)
    return {mode: index_and_compare(table, q_pre.float(), mode, q_self, providers, 1000, pre, sv_div) for mode in modes}


def demo(home: Path, modes: tuple[str, ...], dtype: str) -> dict:
    from flows.app import App
    from flows.config import load_settings
    from flows.valuate import checkpoint_set, provider_list, query_vectors, value_lineage
    from valuation import Preconditioner, self_influence

    work = OUT / "demo"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(home, work)
    # The stored vectors' key includes dtype: the home's own (a demo home pins none in its toml).
    base = load_settings(home=str(work), db_url=f"sqlite:///{work / 'ledger.db'}", dtype=dtype)
    qs = [json.loads(line) for line in (work / "assets" / "queries.jsonl").read_text().splitlines()]
    lineage = "demo"
    out: dict = {"queries": len(qs), "checkpoints": {}}
    fast_app = App.of(base.replace(policy="topk_share", index_batch_fraction=1e9))
    contexts = checkpoint_set(fast_app, lineage)
    providers = provider_list(fast_app)
    # Indexes are whitened companions: the gradient table's version (and its aggregates) stay as is.
    order = list(modes)
    for ctx in contexts:
        table = ctx.table()
        rows = table.count_rows()
        q, layout = query_vectors(ctx, qs)
        state, _ = ctx.load("preconditioner")
        pre = Preconditioner.from_state_dict(layout, state).with_damping_ratio(base.damping_ratio)
        q_pre = pre(q)
        q_self = self_influence(q.double(), pre)
        per = {"rows": rows}
        for mode in order:
            per[mode] = index_and_compare(table, q_pre, mode, q_self, providers, rows, pre)
            if mode == base.mode:
                # The platform's default index for the home's mode stays for value_lineage below.
                build_index(table, pre, IndexArguments(**EVERY_BATCH), modes=(mode,))
        out["checkpoints"][ctx.row.checkpoint_id[:12]] = per
    # The whole set through the platform: fast path (aggregates + index) against the streamed scan.
    fast = value_lineage(fast_app, lineage, contexts, qs)
    scan_app = App.of(base.replace(policy="positive_share"))
    scan = value_lineage(scan_app, lineage, checkpoint_set(scan_app, lineage), qs)
    normalise = base.checkpoint_combine == "normalised"
    a = [top_provider_by_policy(r, providers) for r in fast.combined(fast.weights, normalise)]
    b = [top_provider_by_policy(r, providers) for r in scan.combined(scan.weights, normalise)]
    out["value_lineage"] = {
        "mode": base.mode,
        "methods": sorted({cs.topk_method for cs in fast.per_checkpoint}),
        "scan_methods": sorted({cs.topk_method for cs in scan.per_checkpoint}),
        "normalisers": sorted({cs.normaliser for cs in fast.per_checkpoint}),
        "credit_top1_same": float(np.mean([x == y for x, y in zip(a, b, strict=True)])),
        "queries": len(a),
    }
    print(json.dumps({"value_lineage": out["value_lineage"]}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo-home", type=Path, help="a home made by `dataworth demo` (copied, not modified)")
    ap.add_argument("--digits-queries", type=int, default=797, help="test digits used as queries (≤ 797)")
    ap.add_argument("--modes", default="if,cosine")
    ap.add_argument("--demo-dtype", default="float32", help="the dtype the demo home was logged with")
    ap.add_argument("--skip-digits", action="store_true")
    ap.add_argument("--sv-div", type=int, help="digits: PQ sub-vectors = dim / this (default: the platform's)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    modes = tuple(args.modes.split(","))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if not args.skip_digits:
        key = f"digits sv=dim/{args.sv_div}" if args.sv_div else "digits"
        results[key] = digits(args.digits_queries, modes, args.sv_div)
    if args.demo_home:
        results["demo"] = demo(args.demo_home, modes, args.demo_dtype)
    path.write_text(json.dumps(results, indent=1))
    rows = []
    demo_tables = results.get("demo", {}).get("checkpoints", {})
    suites = [(k, {k: v}) for k, v in results.items() if k.startswith("digits")] + [("demo", demo_tables)]
    for suite, per_table in suites:
        for name, per_mode in per_table.items():
            for mode, per_cfg in per_mode.items():
                if mode == "rows":
                    continue
                for cfg, r in per_cfg.items():
                    rows.append(
                        [
                            suite,
                            name,
                            mode,
                            cfg,
                            r["lists"],
                            r["nprobes"],
                            r["queries"],
                            r["recall@10"],
                            r["top1_row_same"],
                            r["credit_top1_same"],
                        ]
                    )
    print_table(
        "topk_share: indexed vs exact",
        [
            "suite",
            "table",
            "mode",
            "index",
            "lists",
            "nprobes",
            "queries",
            "recall@10",
            "top-1 row same",
            "top-1 provider same",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
