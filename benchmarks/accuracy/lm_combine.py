"""How to combine a checkpoint set's scores, on the LM suite's saved scores and cached ground truth.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.lm_combine

Needs a finished ``benchmarks.accuracy.lm`` run with the per-checkpoint methods
(``--method "LoGra pca k=16, checkpoint 1 of 3" --method "LoGra pca k=16, checkpoint 2 of 3"``):
no retraining, no rescoring.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from benchmarks.accuracy.lm import OUT, LMSuite, LMSuiteArguments
from valuation.combine import combine_score_matrices
from valuation.evaluate import LDSArguments, evaluate_task, planted_accuracy, provider_credit


def main() -> None:
    suite = LMSuite(LMSuiteArguments(), OUT / "lm")
    saved = torch.load(OUT / "lm" / "scores.pt")
    n = suite.args.recipe.checkpoints
    per_ck = [saved["scores"][f"LoGra pca k=16, checkpoint {c + 1} of {n}"] for c in range(n - 1)]
    per_ck.append(saved["scores"]["LoGra pca k=16"])
    combos = {
        "sum of scores (the platform's checkpoint set)": combine_score_matrices(per_ck, normalise=False),
        "sum of per-query-normalised scores": combine_score_matrices(per_ck, normalise=True),
        **{f"checkpoint {c + 1} of {n} alone": s for c, s in enumerate(per_ck)},
    }
    print("mean |score| per checkpoint:", [round(float(s.abs().mean()), 1) for s in per_ck])
    task = replace(suite.task(), score_methods=lambda names=None: combos)
    report = evaluate_task(task, LDSArguments(50, 2, 0.5, 0, 1, OUT / "cache"))
    print("| LoGra PCA k=16, combination | LDS (all queries) | planted top-1 | planted, learned |")
    print("| --- | ---: | ---: | ---: |")
    for name, r in report["lds"].items():
        credit = provider_credit(combos[name][suite.fact_queries], suite.groups, len(suite.providers), "topk_share")
        p = planted_accuracy(credit, suite.fact_truth, saved["learned"])
        lds_cell = f"{r['all']['mean']:.3f} ± {r['all']['se']:.3f}"
        print(f"| {name} | {lds_cell} | {p['accuracy']:.3f} | {p['accuracy_learned']:.3f} |")


if __name__ == "__main__":
    main()
