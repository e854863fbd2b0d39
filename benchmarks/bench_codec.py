"""Bytes per example and accuracy of each gradient codec (storage/codec.py) against float32.

    .venv/bin/python benchmarks/bench_codec.py [--subsets 40 --seeds 2]

Accuracy on real gradients: the digits suite's trained MLP (benchmarks/accuracy/digits_task.py),
LoGra PCA k=16, damping ratio 0.1, mode ``if``. Only the stored train vectors go through the
codec (queries, the Fisher and self-influence stay float32, as in the platform). Per codec: LDS
against retrained ground truth (``--subsets`` half-size subsets × ``--seeds``; paired difference
to float32 over queries, mean ± s.e.), per-query Pearson and Spearman correlation of the scores
with float32's, top-10 overlap and top-1 agreement. Bytes per example: the size on disk of a
LanceDB table of 20,000 synthetic 4,096-dim rows (benchmarks/synthetic.py) written with each codec.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.accuracy.digits_task import load, loss_fn, margins, train
from benchmarks.common import table
from benchmarks.synthetic import SyntheticGradients, SyntheticSpec, bench_layout
from storage import GradientStore
from storage.codec import CODECS, decode, encode
from valuation import LoGra, LoGraConfig, ProjectedFisher, influence_scores
from valuation.evaluate import ground_truth, lds, sample_subsets, spearman

OUT = Path(__file__).resolve().parent / "out" / "codec"


def round_trip(g: torch.Tensor, dtype: str) -> torch.Tensor:
    values, scale = encode(g.numpy(), dtype)
    stored = torch.from_numpy(values.view(np.int16) if dtype == "bfloat16" else values)
    return decode(stored, dtype, None if scale is None else torch.from_numpy(scale)).double()


def digits_gradients(n_query: int):
    """The digits suite's MLP trained on 1,000 digits, LoGra PCA k = 16 over it: ``(xtr, ytr, xq,
    yq, logra, train vectors, query vectors, preconditioner at damping ratio 0.1)``."""
    xtr, ytr, xq, yq = load(1000, n_query)
    model = train(xtr, ytr, torch.ones(1000, dtype=torch.bool), 0)
    logra = LoGra(model, LoGraConfig(k_in=16, k_out=16, init="pca", include=("",), seed=0))
    logra.fit([(xtr, ytr)], loss_fn=loss_fn)
    g = logra.gradients((xtr, ytr), loss_fn=loss_fn).float()
    q = logra.gradients((xq, yq), loss_fn=loss_fn).float()
    fisher = ProjectedFisher(logra.layout)
    fisher.update(g.double())
    return xtr, ytr, xq, yq, logra, g, q, fisher.preconditioner(0.1)


def disk_bytes(rows: int, dim: int, dtype: str) -> float:
    root = OUT / f"disk_{dtype}"
    shutil.rmtree(root, ignore_errors=True)
    synth = SyntheticGradients(SyntheticSpec(dim=dim))
    t = GradientStore(root).table("c" * 64, "codec", bench_layout(dim), dtype)
    with t.writer(0, batch_rows=rows) as w:
        for s in range(0, rows, 5000):
            vec, codes = synth.rows(s, 5000)
            ids = [f"e{i}" for i in range(s, s + 5000)]
            w.add(ids, ids, [f"p{c}" for c in codes.tolist()], codes.tolist(), vec)
    table_dir = root / f"{t.name}.lance"
    size = sum(p.stat().st_size for p in table_dir.rglob("*") if p.is_file())
    shutil.rmtree(root, ignore_errors=True)
    return size / rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subsets", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--disk-rows", type=int, default=20000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    xtr, ytr, xq, yq, _, g, q, pre = digits_gradients(50)
    q_pre = pre(q.double())
    gt = None
    if args.subsets:  # --subsets 0: no retraining, agreement with float32 only
        masks = sample_subsets(1000, args.subsets, seed=0)
        gt = ground_truth(
            lambda m, s: train(xtr, ytr, m, s),
            lambda m: margins(m, xq, yq),
            masks,
            range(args.seeds),
            cache_dir=OUT / "cache",
            key="digits-margins-300",
        )
    ref = influence_scores(q_pre, g.double())
    ref_lds = lds(ref, gt) if gt is not None else None
    rows, out = [], {"dim": g.shape[1], "subsets": args.subsets, "seeds": args.seeds, "codecs": {}}
    for dtype in CODECS:
        s = influence_scores(q_pre, round_trip(g, dtype))
        lds_cols = {}
        if gt is not None:
            res = lds(s, gt)
            diff = (res.per_query - ref_lds.per_query)[~(res.per_query - ref_lds.per_query).isnan()]
            lds_cols = {
                "LDS": res.mean,
                "LDS s.e.": res.se,
                "LDS - float32 (paired)": float(diff.mean()),
                "paired s.e.": float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
            }
        pearson = torch.stack([torch.corrcoef(torch.stack([a, b]))[0, 1] for a, b in zip(s, ref, strict=True)])
        top_ref, top = ref.topk(10, 1).indices, s.topk(10, 1).indices
        overlap = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(top, top_ref, strict=True)])
        rec = {
            "bytes/example (4096-dim, on disk)": disk_bytes(args.disk_rows, 4096, dtype),
            **lds_cols,
            "Pearson vs float32 (min over queries)": float(pearson.min()),
            "Spearman vs float32 (mean)": float(spearman(s, ref).mean()),
            "top-10 overlap": float(overlap),
            "top-1 same": float((top[:, 0] == top_ref[:, 0]).double().mean()),
            "max |score - float32| / max |score|": float((s - ref).abs().max() / ref.abs().max()),
        }
        out["codecs"][dtype] = rec
        rows.append([dtype, *rec.values()])
    table("codecs: digits MLP, LoGra PCA k=16, if", ["codec", *next(iter(out["codecs"].values())).keys()], rows)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "codec.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
