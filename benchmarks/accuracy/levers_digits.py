"""Each fidelity lever on the digits suite: LDS with paired standard errors against the default.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.levers_digits --subsets 60 --seeds 2

Same task, ground truth and cache as ``benchmarks.accuracy.digits`` (same masks and key); every
method scores the full model (seed 0); the optimizer lever reads that training run's Adam state.
Writes ``benchmarks/accuracy/out/levers-digits.json``.

``--trajectory N [--runs 0 1]``: each run (training seed) saves N evenly spaced checkpoints with
their Adam state; the trajectory levers score every checkpoint, and the evenly spaced sub-sets
ending at the final model are combined as the platform does (per-query normalised, learning-rate
weights of each checkpoint's segment: equal here, the rate is constant); the runs' whole
trajectories are also combined together. Writes ``levers-digits-trajectory-<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.accuracy.digits_task import load, loss_fn, margins, train, train_with_optimizer, trajectory
from benchmarks.accuracy.levers import (
    SINGLE_LEVERS,
    LeverConfig,
    lever_gradients,
    lever_scores,
    paired,
    panel_half_scores,
    scores_from_gradients,
    sub_trajectories,
)
from valuation.baselines import exact_influence
from valuation.combine import checkpoint_weights, combine_score_matrices
from valuation.evaluate import GroundTruth, ground_truth, lds, sample_subsets, tail_patch_check
from valuation.optimizer import adam_second_moments

OUT = Path(__file__).resolve().parent / "out"

CONFIGS = [
    *SINGLE_LEVERS,
    LeverConfig(fisher="sampled", damping=0.001),  # the sampled Fisher's spectrum needs less relative damping
    LeverConfig(damping_rule="effective_rank", damping=0.5),
    LeverConfig(damping_rule="effective_rank", damping=0.75),
    LeverConfig(damping_rule="quantile", damping=0.5),
    LeverConfig(damping=0.3),
    LeverConfig(optimizer=True, fisher="sampled"),
    LeverConfig(optimizer=True, mix_alpha=0.1, mode="cosine"),
    LeverConfig(k=32, optimizer=True),
    LeverConfig(k=32),
    # The unrolled segment estimate with the whole run as one segment: (1 - e^{-Tσ})/σ, T = c / mean σ.
    *(LeverConfig(horizon=c) for c in (1.0, 3.0, 10.0, 30.0, 100.0)),
    # Loss temperature (valuation.loss.ClassifierLoss): gradients of softmax(logits / T).
    *(LeverConfig(temperature=t) for t in (1.5, 2.0, 2.5, 3.0, 4.0)),
    LeverConfig(optimizer=True, temperature=2.0),
    LeverConfig(k=32, temperature=2.0),
    # Log-odds gradients (valuation.loss.ClassifierLogOddsLoss): (p − e_y) / (1 − p_y), no softening.
    LeverConfig(output="log_odds"),
    LeverConfig(optimizer=True, output="log_odds"),
]

TRAJECTORY = [
    LeverConfig(),
    LeverConfig(optimizer=True),
    LeverConfig(k=32),
    LeverConfig(k=32, optimizer=True),
    LeverConfig(k=32, fisher="sampled", damping=0.001),
    LeverConfig(temperature=2.0),
    LeverConfig(optimizer=True, temperature=2.0),
    LeverConfig(k=32, temperature=2.0),
]
SET_SIZES = (1, 3, 6, 10, 15, 30)
STEPS, LR = 300, 3e-3  # digits_task.train's run


def score_trajectories(xtr, ytr, xq, yq, n: int, runs: list[int], gt: GroundTruth, t0: float) -> dict:
    """LDS of every :data:`TRAJECTORY` lever on every evenly spaced sub-set of ``n`` checkpoints of
    each run, and on all runs' checkpoints together; paired against the default's final model."""
    every = STEPS // n
    sets = {m: idx for m, idx in sub_trajectories(n, 1).items() if m in SET_SIZES}
    scores: dict[str, torch.Tensor] = {}
    whole: dict[str, list[torch.Tensor]] = {}
    # Every run takes the same steps: one set of learning-rate weights per sub-set size.
    log_history = [{"step": s, "learning_rate": LR} for s in range(1, STEPS + 1)]
    weights = {size: checkpoint_weights(log_history, [every * (i + 1) for i in idx]) for size, idx in sets.items()}
    for run in runs:
        snaps = [
            (m, adam_second_moments(m, st, [p for p, _ in m.named_parameters()]))
            for _, m, st in trajectory(xtr, ytr, torch.ones(len(ytr), dtype=torch.bool), run, STEPS, every)
        ]
        for cfg in TRAJECTORY:
            per = [
                lever_scores(m, [(xtr, ytr)], [(xq, yq)], loss_fn, cfg, "classifier", ("",), moments)
                for m, moments in snaps
            ]
            whole.setdefault(cfg.label(), []).extend(per)
            for size, idx in sets.items():
                scores[f"{cfg.label()} | run {run} | {size}"] = combine_score_matrices(
                    [per[i] for i in idx], weights[size]
                )
            print(f"run {run} {cfg.label()} {time.time() - t0:.0f} s", flush=True)
    for label, per in whole.items():
        scores[f"{label} | runs {'+'.join(map(str, runs))} | {len(per)}"] = combine_score_matrices(per)
    results = {name: lds(s, gt) for name, s in scores.items()}
    base = results[f"{LeverConfig().label()} | run {runs[0]} | 1"]
    return {
        name: {
            "mean": r.mean,
            "se": r.se,
            "vs default final": paired(r.per_query.tolist(), base.per_query.tolist()),
            "per_query": r.per_query.tolist(),
        }
        for name, r in results.items()
    }


def panel_check(full, moments, xtr, ytr, xq, yq, gt: GroundTruth, alphas) -> dict:
    """LDS of the mixed second moment with the query side from a panel of other queries
    (:func:`levers.panel_half_scores`) and from the valued queries themselves, beside no mix, for
    LoGra k=16 at T = 1 and for the platform's defaults (:func:`lm.platform_lever_config`)."""
    from dataclasses import replace

    from benchmarks.accuracy.lm import platform_lever_config

    rows = {}
    for base_name, base in {"T = 1": LeverConfig(), "platform defaults": platform_lever_config()}.items():
        g = lever_gradients(full, [(xtr, ytr)], [(xq, yq)], loss_fn, base, "classifier", ("",), moments)
        plain = lds(scores_from_gradients(g, base), gt)
        rows[f"{base_name}, no mix"] = plain
        for alpha in alphas:
            cfg = replace(base, mix_alpha=alpha)
            rows[f"{base_name}, mixed α={alpha:g} with the valued queries"] = lds(scores_from_gradients(g, cfg), gt)
            rows[f"{base_name}, mixed α={alpha:g} with a panel"] = lds(panel_half_scores(g, cfg), gt)
    base = {name: r for name, r in rows.items() if name.endswith("no mix")}
    return {
        name: {
            "mean": r.mean,
            "se": r.se,
            "vs no mix": paired(r.per_query.tolist(), base[name.split(",")[0] + ", no mix"].per_query.tolist()),
        }
        for name, r in rows.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-query", type=int, default=50)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--trajectory", type=int, default=0, metavar="N", help="checkpoints per run (divides 300)")
    parser.add_argument("--runs", type=int, nargs="+", default=[0, 1], help="with --trajectory: training seeds")
    parser.add_argument("--panel-check", type=float, nargs="+", metavar="ALPHA", help="only: the query-panel mix")
    a = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    xtr, ytr, xq, yq = load(a.n_train, a.n_query)
    masks = sample_subsets(a.n_train, a.subsets, 0.5, seed=0)
    gt = ground_truth(
        lambda m, s: train(xtr, ytr, m, s),
        lambda model: margins(model, xq, yq),
        masks,
        list(range(a.seeds)),
        a.out / "cache",
        key=f"digits-{a.n_train}-{a.n_query}",
    )
    if a.trajectory:
        rows = score_trajectories(xtr, ytr, xq, yq, a.trajectory, a.runs, gt, t0)
        report = {"subsets": a.subsets, "seeds": a.seeds, "ceiling": gt.reliability(), "lds": rows}
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"levers-digits-trajectory-{a.trajectory}.json").write_text(json.dumps(report, indent=2))
        print(f"ceiling {report['ceiling']:.3f}, {time.time() - t0:.0f} s")
        for name, r in rows.items():
            d = r["vs default final"]
            print(
                f"{name:60s} {r['mean']:.3f} ± {r['se']:.3f}  {d['diff']:+.3f} ± {d['se']:.3f} ({d['wins']}/{d['n']})"
            )
        return
    full, state = train_with_optimizer(xtr, ytr, torch.ones(a.n_train, dtype=torch.bool), 0)
    moments = adam_second_moments(full, state, [n for n, _ in full.named_parameters()])
    if a.panel_check:
        rows = panel_check(full, moments, xtr, ytr, xq, yq, gt, a.panel_check)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "levers-digits-panel.json").write_text(json.dumps(rows, indent=2))
        for name, r in rows.items():
            d = r["vs no mix"]
            diff = f"{d['diff']:+.3f} ± {d['se']:.3f} ({d['wins']}/{d['n']})"
            print(f"{name:60s} {r['mean']:.3f} ± {r['se']:.3f}  {diff}")
        return
    methods = {}
    for cfg in CONFIGS:
        methods[cfg.label()] = lever_scores(full, [(xtr, ytr)], [(xq, yq)], loss_fn, cfg, "classifier", ("",), moments)
        print(cfg.label(), f"{time.time() - t0:.0f} s", flush=True)
    from valuation import LoGra, LoGraConfig

    exact = LoGra(full, LoGraConfig(init="identity", include=("",)))
    g, q = exact.gradients((xtr, ytr), loss_fn=loss_fn), exact.gradients((xq, yq), loss_fn=loss_fn)
    methods["exact influence, layer-wise, damping 1.0"] = exact_influence(q, g, 1.0, exact.layout)
    results = {name: lds(s, gt) for name, s in methods.items()}
    # Tail-patch: one SGD step (lr 0.01 on the summed loss) on each query's top-10 vs 10 random examples.
    patch = {
        name: tail_patch_check(
            full, loss_fn, lambda m: margins(m, xq, yq), s, lambda idx: (xtr[idx], ytr[idx]), k=10, lr=0.01
        ).summary()
        for name, s in methods.items()
    }
    base = results[LeverConfig().label()]
    report = {
        "subsets": a.subsets,
        "seeds": a.seeds,
        "ceiling": gt.reliability(),
        "seconds": time.time() - t0,
        "lds": {
            name: {
                "mean": r.mean,
                "se": r.se,
                "vs default": paired(r.per_query.tolist(), base.per_query.tolist()),
                "tail_patch": patch[name],
                "per_query": r.per_query.tolist(),
            }
            for name, r in results.items()
        },
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "levers-digits.json").write_text(json.dumps(report, indent=2))
    print(f"ceiling {report['ceiling']:.3f}")
    for name, r in sorted(report["lds"].items(), key=lambda kv: -kv[1]["mean"]):
        d = r["vs default"]
        print(
            f"{name:60s} {r['mean']:.3f} ± {r['se']:.3f}  "
            f"vs default {d['diff']:+.3f} ± {d['se']:.3f} ({d['wins']}/{d['n']})  "
            f"tail-patch {r['tail_patch']['margin']:+.4f} ± {r['tail_patch']['se']:.4f}"
        )


if __name__ == "__main__":
    main()
