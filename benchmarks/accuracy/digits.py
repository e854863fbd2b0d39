"""Accuracy suite (a): MLP 64-128-128-10 on scikit-learn's bundled digits (no download).

    .venv/bin/python -m benchmarks.accuracy.digits [--subsets 100 --seeds 3] [--smoke]

Ground truth: ``--subsets`` random half-size subsets of the training set, each retrained with
``--seeds`` seeds; the measurement of a query (a test digit) is its correct-class margin. Every
method scores the model trained on the full training set. Results go to
``benchmarks/accuracy/out/digits.json`` and plots next to ``benchmarks/ACCURACY.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from benchmarks.accuracy.digits_task import load, loss_fn, margins, train
from valuation import LoGra, LoGraConfig, ProjectedFisher, influence_scores, self_influence
from valuation.baselines import exact_influence, grad_cosine, grad_dot, representation_similarity
from valuation.evaluate import EvalTask, brittleness, ground_truth, lds, sample_subsets

OUT = Path(__file__).resolve().parent / "out"


def logra_scores(model, xtr, ytr, xq, yq, k: int, init: str, damping: float, mode: str) -> torch.Tensor:
    logra = LoGra(model, LoGraConfig(k_in=k, k_out=k, init=init, include=("",), seed=0))
    if init == "pca":
        logra.fit([(xtr, ytr)], loss_fn=loss_fn)
    g = logra.gradients((xtr, ytr), loss_fn=loss_fn)
    q = logra.gradients((xq, yq), loss_fn=loss_fn)
    fisher = ProjectedFisher(logra.layout)
    fisher.update(g)
    pre = fisher.preconditioner(damping)
    return influence_scores(pre(q), g, mode, self_influence(g, pre), self_influence(q, pre)).double()


def all_methods(model, xtr, ytr, xq, yq, ks=(8, 16, 32, 64)) -> dict[str, torch.Tensor]:
    out = {}
    for init in ("pca", "random"):
        for k in ks:
            out[f"LoGra {init} k={k}"] = logra_scores(model, xtr, ytr, xq, yq, k, init, 0.1, "if")
    for damping in (0.01, 1.0):
        out[f"LoGra pca k=16 damping={damping}"] = logra_scores(model, xtr, ytr, xq, yq, 16, "pca", damping, "if")
    for mode in ("relatif", "cosine"):
        out[f"LoGra pca k=16 {mode}"] = logra_scores(model, xtr, ytr, xq, yq, 16, "pca", 0.1, mode)
    exact = LoGra(model, LoGraConfig(init="identity", include=("",)))
    g, q = exact.gradients((xtr, ytr), loss_fn=loss_fn), exact.gradients((xq, yq), loss_fn=loss_fn)
    out["gradient dot product"] = grad_dot(q, g)
    out["gradient cosine"] = grad_cosine(q, g)
    for damping in (0.01, 0.1, 1.0):
        out[f"exact influence, layer-wise Fisher, damping {damping}"] = exact_influence(q, g, damping, exact.layout)
    out["exact influence, full Fisher, damping 0.1"] = exact_influence(q, g, 0.1)
    features = model[:-1]
    with torch.no_grad():
        out["representation similarity"] = representation_similarity(features(xq), features(xtr))
    return out


def task(n_train: int = 1000, n_query: int = 50) -> EvalTask:
    """Entry point for ``dataworth eval digits`` (= ``benchmarks.accuracy.digits:task``)."""
    torch.set_num_threads(1)
    xtr, ytr, xq, yq = load(n_train, n_query)
    cache: dict[str, torch.Tensor] = {}

    def score_methods(names):
        if not cache:
            full = train(xtr, ytr, torch.ones(n_train, dtype=torch.bool), 0)
            cache.update(all_methods(full, xtr, ytr, xq, yq))
        unknown = sorted(set(names or ()) - set(cache))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {sorted(cache)}")
        return {name: cache[name] for name in (names or cache)}

    return EvalTask(
        name=f"digits-{n_train}-{n_query}",
        n_train=n_train,
        train_fn=lambda mask, seed: train(xtr, ytr, mask, seed),
        measure_fn=lambda model: margins(model, xq, yq),
        score_methods=score_methods,
    )


def ekfac_peer(model, python: str, out_dir: Path, n_train: int, n_query: int) -> dict[str, torch.Tensor]:
    """EKFAC scores of the same weights from kronfluence, run in its own environment."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, scores = out_dir / "digits-full-model.pt", out_dir / "ekfac-digits-scores.pt"
    torch.save(model.state_dict(), weights)
    root = Path(__file__).resolve().parents[2]
    cmd = [python, "-m", "benchmarks.accuracy.ekfac_digits", "--model", str(weights), "--out", str(scores)]
    cmd += ["--n-train", str(n_train), "--n-query", str(n_query)]
    subprocess.run(cmd, check=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    return torch.load(scores)


def run(
    subsets: int,
    seeds: int,
    n_train: int,
    n_query: int,
    brittle_queries: int,
    out_dir: Path,
    brittle_ks: tuple[int, ...] = (5, 10, 20, 40),
    workers: int = 1,
    ekfac_python: str | None = None,
    ks: tuple[int, ...] = (8, 16, 32, 64),
) -> dict:
    """Suite (a) end to end; ``ks``: the LoGra ranks scored (k=64 costs a 4,096² eigendecomposition per layer)."""
    torch.set_num_threads(1)
    xtr, ytr, xq, yq = load(n_train, n_query)
    t0 = time.time()
    masks = sample_subsets(n_train, subsets, 0.5, seed=0)

    def train_fn(mask, seed):
        return train(xtr, ytr, mask, seed)

    def measure_fn(model):
        return margins(model, xq, yq)

    gt = ground_truth(
        train_fn,
        measure_fn,
        masks,
        list(range(seeds)),
        out_dir / "cache",
        key=f"digits-{n_train}-{n_query}",
        workers=workers,
    )
    t_gt = time.time() - t0
    full = train_fn(torch.ones(n_train, dtype=torch.bool), 0)
    methods = all_methods(full, xtr, ytr, xq, yq, ks)
    if ekfac_python:
        methods.update(ekfac_peer(full, ekfac_python, out_dir, n_train, n_query))
    results = {name: lds(scores, gt) for name, scores in methods.items()}
    out = {
        "config": {"subsets": subsets, "seeds": seeds, "n_train": n_train, "n_query": n_query},
        "ground_truth_seconds": t_gt,
        "ceiling": gt.reliability(),
        "lds": {name: {"mean": r.mean, "se": r.se, "per_query": r.per_query.tolist()} for name, r in results.items()},
    }
    if brittle_queries:
        base = torch.stack([measure_fn(train_fn(torch.ones(n_train, dtype=torch.bool), s)) for s in range(seeds)]).mean(
            0
        )
        chosen = [i for i in range(n_query) if base[i] > 0][:brittle_queries]
        out["brittleness"] = {}
        for name in (
            "LoGra pca k=16",
            "exact influence, layer-wise Fisher, damping 0.1",
            "gradient dot product",
            "representation similarity",
            *(name for name in methods if name.startswith("EKFAC") and "true" in name),
        ):
            sub = methods[name][chosen]

            def measure_sub(model, chosen=chosen):
                return measure_fn(model)[chosen]

            res = brittleness(
                sub,
                train_fn,
                measure_sub,
                list(brittle_ks),
                list(range(seeds)),
                base[chosen],
                out_dir / "cache",
                key=f"digits-brittle-{n_train}-{n_query}-{chosen}",
                workers=workers,
            )
            out["brittleness"][name] = {
                "ks": res.ks,
                "mean_change": res.mean_change,
                "flipped": res.flipped,
                "queries": len(chosen),
            }
    out["seconds"] = time.time() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-query", type=int, default=50)
    parser.add_argument("--brittle-queries", type=int, default=10)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--workers", type=int, default=1, help="processes retraining the ground truth")
    parser.add_argument("--ekfac-python", help="python of a venv with kronfluence (see ekfac_digits.py)")
    args = parser.parse_args()
    res = run(
        args.subsets,
        args.seeds,
        args.n_train,
        args.n_query,
        args.brittle_queries,
        args.out,
        workers=args.workers,
        ekfac_python=args.ekfac_python,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "digits.json").write_text(json.dumps(res, indent=2))
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Digits LDS ({args.subsets} subsets x {args.seeds} seeds; ceiling {res['ceiling']:.3f})")
    t.add_column("method")
    t.add_column("LDS", justify="right")
    for name, r in sorted(res["lds"].items(), key=lambda kv: -kv[1]["mean"]):
        t.add_row(name, f"{r['mean']:.3f} ± {r['se']:.3f}")
    Console().print(t)
    for name, b in res.get("brittleness", {}).items():
        print(name, b)


if __name__ == "__main__":
    main()
