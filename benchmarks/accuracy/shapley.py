"""Provider-level ground truth on the demo corpus: exact Shapley values vs the ledger's credit.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.shapley --seeds 2 [--workers 1] \
        [--docs-per-provider 60 --fact-repeats 6]

Retrains the demo recipe (``flows.demo.model``) on every coalition of the 6 providers (64
coalitions × seeds; the empty coalition is the untrained model of that seed), utility = minus each
query's loss (the LM suite's 24 held-out documents and 18 planted-fact responses), and computes
each query's exact Shapley value per provider. Every method's credit (per crediting policy) is
compared with it: mean L1 distance of the share vectors, top-1 provider agreement, Spearman over
providers; pro-rata (corpus share), TF-IDF and BM25 beside them. Cached and resumable
(``benchmarks/accuracy/out/cache``); ``--ground-truth-only`` stops after the retraining.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.accuracy.lm import OUT, LMSuite, LMSuiteArguments
from valuation.evaluate import pro_rata_credit, provider_credit, provider_shapley, shapley_agreement

POLICIES = ("topk_share", "positive_share", "sum")


class ShapleySuite:
    """The LM suite's corpus, queries and recipe, retrained per coalition of providers."""

    def __init__(self, suite: LMSuite) -> None:
        self.suite = suite

    def train_fn(self, mask: torch.Tensor, seed: int):
        return self.suite.train_model(mask, seed)  # the untrained model for the empty coalition

    def key(self) -> str:
        return "shapley-" + self.suite.ground_truth_key()

    def shapley(self, seeds: int, workers: int, cache: Path, progress=None):
        return provider_shapley(
            self.train_fn,
            self.suite.measure,
            self.suite.groups,
            len(self.suite.providers),
            range(seeds),
            cache,
            self.key(),
            progress,
            workers,
        )

    def agreement(self, methods: dict[str, torch.Tensor], values: torch.Tensor) -> dict:
        """Per method and policy, per query group: agreement with the Shapley values."""
        s = self.suite
        groups = {"all": None, "held-out documents": s.heldout_queries, "planted-fact queries": s.fact_queries}
        n_p = len(s.providers)
        out = {
            "pro-rata": {
                "-": {
                    g: shapley_agreement(pro_rata_credit(s.groups, n_p, len(values)), values, q)
                    for g, q in groups.items()
                }
            }
        }
        for name, scores in methods.items():
            out[name] = {
                policy: {
                    g: shapley_agreement(provider_credit(scores, s.groups, n_p, policy), values, q)
                    for g, q in groups.items()
                }
                for policy in POLICIES
            }
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--docs-per-provider", type=int, default=60)
    parser.add_argument("--fact-repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=24, help="of the demo recipe (24)")
    parser.add_argument("--ground-truth-only", action="store_true")
    parser.add_argument("--method", action="append", help="only these LM-suite methods (repeatable)")
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    torch.set_num_threads(1)  # more threads spin-wait on a busy machine
    args = LMSuiteArguments.sized(a.docs_per_provider, a.fact_repeats, a.epochs)
    name = f"shapley-{a.docs_per_provider}x{a.fact_repeats}" + ("" if a.epochs == 24 else f"-e{a.epochs}")
    t0 = time.time()
    suite = ShapleySuite(LMSuite(args, a.out / ("lm" if name == "shapley-60x6" else f"lm-{name}")))
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        print(f"coalition cells {done[0]} ({time.time() - t0:.0f} s)", flush=True)

    res = suite.shapley(a.seeds, a.workers, a.out / "cache", progress)
    t_gt = time.time() - t0
    a.out.mkdir(parents=True, exist_ok=True)
    torch.save({"values": res.values, "per_seed": res.per_seed, "utilities": res.utilities}, a.out / f"{name}.pt")
    print(f"ground truth {t_gt:.0f} s; mean |φ| per provider {res.values.abs().mean(0).tolist()}")
    if a.ground_truth_only:
        return
    methods = suite.suite.score_methods(a.method)
    report = {
        "seeds": a.seeds,
        "docs_per_provider": a.docs_per_provider,
        "ground_truth_seconds": t_gt,
        "seed_agreement": shapley_agreement(res.per_seed[0], res.per_seed[-1]) if a.seeds > 1 else None,
        "agreement": suite.agreement(methods, res.values),
    }
    (a.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    for method, policies in report["agreement"].items():
        for policy, g in policies.items():
            r = g["all"]
            print(
                f"{method:50s} {policy:15s} L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f}  "
                f"top1 {r['top1']['mean']:.3f}  spearman {r['spearman']['mean']:.3f}"
            )


if __name__ == "__main__":
    main()
