"""Valuation cost against corpus size: full scan, aggregate provider sums, indexed top-k.

    .venv/bin/python benchmarks/bench_query.py generate --rows 100000 300000 1000000
    .venv/bin/python benchmarks/bench_query.py run --rows 100000 300000 1000000

``generate`` writes synthetic float16 gradient tables (benchmarks/synthetic.py: low-rank
structure, topic and provider directions, log-normal norms; 1,000 providers) through
``GradientTable.writer`` into real LanceDB directories under benchmarks/out/query/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.synthetic import SyntheticGradients, SyntheticSpec, bench_layout
from storage import GradientStore

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["generate", "run"])
    ap.add_argument("--rows", type=int, nargs="+", default=[100000, 300000, 1000000])
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--shards", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.command == "generate":
        for rows in args.rows:
            print(json.dumps(generate(rows, args.dim, args.shards)), flush=True)


if __name__ == "__main__":
    main()
