"""EKFAC influence (``kronfluence``) on the digits task, in its own environment.

kronfluence is an optional peer, never a dependency of dataworth: it runs in a separate venv
and reads the model that ``digits.py`` trained, so both score the same weights.

    python3 -m venv benchmarks/accuracy/out/ekfac-venv
    benchmarks/accuracy/out/ekfac-venv/bin/pip install kronfluence==1.0.1 torch==2.13.0 scikit-learn
    PYTHONPATH=. benchmarks/accuracy/out/ekfac-venv/bin/python -m benchmarks.accuracy.ekfac_digits \
        --model out/digits-full-model.pt --out out/ekfac-digits-scores.pt

Writes ``{name: scores (n_query, n_train)}``, positive = the train example lowers the query's
cross-entropy (the same measurement LoGra's query gradients use).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from kronfluence.analyzer import Analyzer, prepare_model
from kronfluence.arguments import FactorArguments, ScoreArguments
from kronfluence.task import Task
from torch.utils.data import TensorDataset

from benchmarks.accuracy.digits_task import load, mlp


class DigitsTask(Task):
    def compute_train_loss(self, batch, model, sample: bool = False) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        if sample:  # the true Fisher: labels drawn from the model
            with torch.no_grad():
                y = torch.multinomial(torch.softmax(logits.detach(), -1), 1).squeeze(1)
        return F.cross_entropy(logits, y, reduction="sum")

    def compute_measurement(self, batch, model) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y, reduction="sum")


def ekfac_scores(
    model: torch.nn.Module, xtr, ytr, xq, yq, empirical: bool, damping: float | None, workdir: Path
) -> torch.Tensor:
    task = DigitsTask()
    model = prepare_model(model, task)
    analyzer = Analyzer("digits", model, task, cpu=True, disable_tqdm=True, output_dir=str(workdir))
    name = f"ekfac-{'emp' if empirical else 'true'}"
    analyzer.fit_all_factors(
        name,
        TensorDataset(xtr, ytr),
        per_device_batch_size=len(xtr),
        factor_args=FactorArguments(strategy="ekfac", use_empirical_fisher=empirical),
        overwrite_output_dir=True,
    )
    analyzer.compute_pairwise_scores(
        f"{name}-{damping}",
        name,
        TensorDataset(xq, yq),
        TensorDataset(xtr, ytr),
        per_device_query_batch_size=len(xq),
        per_device_train_batch_size=len(xtr),
        score_args=ScoreArguments(damping_factor=damping),
        overwrite_output_dir=True,
    )
    return analyzer.load_pairwise_scores(f"{name}-{damping}")["all_modules"].double()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="state dict saved by digits.py")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-query", type=int, default=50)
    a = parser.parse_args()
    torch.set_num_threads(1)
    xtr, ytr, xq, yq = load(a.n_train, a.n_query)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for empirical in (False, True):
            # None: kronfluence's heuristic, 0.1 × the mean eigenvalue (our damping ratio 0.1).
            model = mlp()
            model.load_state_dict(torch.load(a.model))
            label = "empirical" if empirical else "true"
            out[f"EKFAC (kronfluence), {label} Fisher"] = ekfac_scores(
                model.eval(), xtr, ytr, xq, yq, empirical, None, Path(tmp)
            )
    torch.save(out, a.out)
    print({k: tuple(v.shape) for k, v in out.items()})


if __name__ == "__main__":
    main()
