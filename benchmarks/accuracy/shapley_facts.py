"""Provider Shapley on a second corpus: the fact suite's generator (``benchmarks.accuracy.facts``:
five providers of uneven size, subjects shared across providers, distractor documents).

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.shapley_facts [--entities 24 --seeds 1]

Retrains the fact suite's recipe (the demo GPT-2, 20 epochs) on every coalition of the 5
providers (32 coalitions × seeds; the empty coalition is the untrained model of that seed),
utility = minus each fact query's response loss (unseen question and answer templates), exact
Shapley value per provider per query. The model trained on every document (seed 0, three
checkpoints carrying ``optimizer.pt`` and ``trainer_state.json``) is scored by the platform's old
default (LoGra k=16, checkpoint set, normalised), its new one (+ Adam scaling, learning-rate
weights) and the main levers; each method's provider credit under ``topk_share`` and ``sum`` is
compared with the Shapley values (mean L1 of the share vectors, top-1 agreement, Spearman),
beside pro-rata, TF-IDF and BM25. Cached and resumable (``benchmarks/accuracy/out/cache``).
Writes ``benchmarks/accuracy/out/shapley-facts-<entities>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from torch import nn

from benchmarks.accuracy.facts import PROVIDERS, FactSuiteArguments, generate
from benchmarks.accuracy.levers import LeverConfig, paired
from benchmarks.accuracy.levers_lm import checkpoint_scores
from benchmarks.accuracy.lm import CHUNK, OUT, sequence_losses, untrained_model
from flows.demo.model import TrainArguments, train_demo_model, train_tokenizer
from valuation import pad_batch, query_batch
from valuation.baselines import tfidf_similarity
from valuation.combine import checkpoint_weights, combine_score_matrices
from valuation.evaluate import pro_rata_credit, provider_credit, provider_shapley, shapley_agreement
from valuation.lexical import bm25_scores

POLICIES = ("topk_share", "sum")
CONFIGS = [
    LeverConfig(),
    LeverConfig(optimizer=True),
    LeverConfig(k=32),
    LeverConfig(mix_alpha=0.5),
    LeverConfig(mode="cosine"),
    LeverConfig(optimizer=True, mix_alpha=0.5, mode="cosine"),  # TrackStar-like
    LeverConfig(fisher="sampled", damping=0.001),
    LeverConfig(temperature=2.0),
    LeverConfig(optimizer=True, temperature=2.0),  # the platform's defaults since the loss temperature
]
OLD_DEFAULT = f"{LeverConfig().label()}, set normalised"
PREVIOUS_DEFAULT = f"{LeverConfig(optimizer=True).label()}, set normalised, lr-weighted"
NEW_DEFAULT = f"{LeverConfig(optimizer=True, temperature=2.0).label()}, set normalised, lr-weighted"


class FactShapleySuite:
    """The fact suite's corpus and queries, its recipe, retrained per coalition of providers."""

    def __init__(self, fargs: FactSuiteArguments, recipe: TrainArguments, workdir: Path) -> None:
        self.fargs, self.recipe, self.workdir = fargs, recipe, Path(workdir)
        docs, self.facts = generate(fargs)
        self.texts = [d["text"] for d in docs]
        self.providers = list(PROVIDERS)
        self.groups = torch.tensor([self.providers.index(d["provider_id"]) for d in docs])
        self.tokenizer = train_tokenizer(self.texts, recipe.vocab_size)  # as every retraining does
        tok, width = self.tokenizer, recipe.max_length
        prompts = tok([q["prompt"] for q in self.facts], add_special_tokens=False)["input_ids"]
        answers = tok([q["response"] for q in self.facts], add_special_tokens=False)["input_ids"]
        self.query_batches = [
            query_batch(prompts[i : i + CHUNK], answers[i : i + CHUNK], tok.pad_token_id, width)
            for i in range(0, len(prompts), CHUNK)
        ]
        self.query_texts = [q["prompt"] + q["response"] for q in self.facts]
        seqs, owner = [], []
        for d, ids in enumerate(tok(self.texts, add_special_tokens=False)["input_ids"]):
            for i in range(0, len(ids), width):
                seqs.append(ids[i : i + width])
                owner.append(d)
        self.train_batches = [pad_batch(seqs[i : i + CHUNK], tok.pad_token_id) for i in range(0, len(seqs), CHUNK)]
        self.owner = torch.tensor(owner)

    @property
    def n_train(self) -> int:
        return len(self.texts)

    def key(self) -> str:
        """What the retrained utilities depend on (the number of saved checkpoints does not)."""
        blob = repr((self.fargs, replace(self.recipe, checkpoints=1, save_training_state=False), len(self.facts)))
        return "shapley-facts-" + hashlib.sha256(blob.encode()).hexdigest()[:12]

    def train(self, mask: torch.Tensor, seed: int, out_dir: Path, checkpoints: int, state: bool) -> list[Path]:
        recipe = replace(self.recipe, seed=seed, checkpoints=checkpoints, save_training_state=state)
        subset = [t for t, keep in zip(self.texts, mask.tolist(), strict=True) if keep]
        return train_demo_model(self.texts, out_dir, recipe, train_on=subset)

    def train_model(self, mask: torch.Tensor, seed: int) -> nn.Module:
        """The recipe's final model on ``mask``; the untrained model for the empty coalition."""
        from transformers import GPT2LMHeadModel

        if not mask.any():
            return untrained_model(self.recipe, self.tokenizer, seed)
        with tempfile.TemporaryDirectory() as tmp:
            final = self.train(mask, seed, Path(tmp), 1, False)[-1]
            return GPT2LMHeadModel.from_pretrained(final).eval()

    def measure(self, model: nn.Module) -> torch.Tensor:
        """``(n_query,)``: minus each fact query's summed response loss."""
        return -torch.cat([sequence_losses(model, b)[0] for b in self.query_batches])

    def load(self, path: Path) -> nn.Module:
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel.from_pretrained(path).eval()

    def full_checkpoints(self) -> list[Path]:
        """Seed 0 on every document, three checkpoints with their training state (kept)."""
        out = self.workdir / "full-seed0-hf"
        paths = sorted(out.glob("step-*"))
        if len(paths) != 3 or not all((p / "optimizer.pt").exists() for p in paths):
            paths = self.train(torch.ones(self.n_train, dtype=torch.bool), 0, out, 3, True)
        return paths


def score_methods(suite: FactShapleySuite, t0: float) -> tuple[dict[str, torch.Tensor], list[float]]:
    paths = suite.full_checkpoints()
    steps = [int(p.name.split("-")[1]) for p in paths]
    weights = checkpoint_weights(paths[-1] / "trainer_state.json", steps)
    per_ck: dict[str, list[torch.Tensor]] = {}
    for path in paths:
        for label, s in checkpoint_scores(suite, path, CONFIGS, [], []).items():
            per_ck.setdefault(label, []).append(s)
        print(path.name, f"{time.time() - t0:.0f} s", flush=True)
    methods: dict[str, torch.Tensor] = {}
    for label, scores in per_ck.items():
        methods[f"{label}, final checkpoint"] = scores[-1]
        methods[f"{label}, set normalised"] = combine_score_matrices(scores, normalise=True)
        methods[f"{label}, set normalised, lr-weighted"] = combine_score_matrices(scores, weights, normalise=True)
    methods["TF-IDF, character 3-5-grams"] = tfidf_similarity(suite.query_texts, suite.texts)
    methods["BM25"] = bm25_scores(suite.query_texts, suite.texts)
    return methods, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20, help="of the fact suite's recipe (20)")
    parser.add_argument("--ground-truth-only", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    name = f"facts-{a.entities}" + ("" if a.epochs == 20 else f"-e{a.epochs}")
    suite = FactShapleySuite(
        FactSuiteArguments(entities=a.entities), TrainArguments(epochs=a.epochs), a.out / f"shapley-{name}"
    )
    sizes = torch.bincount(suite.groups, minlength=len(PROVIDERS)).tolist()
    print(f"{suite.n_train} documents, providers {dict(zip(PROVIDERS, sizes, strict=True))}", flush=True)
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        print(f"coalition cells {done[0]} ({time.time() - t0:.0f} s)", flush=True)

    n_p = len(PROVIDERS)
    res = provider_shapley(
        suite.train_model, suite.measure, suite.groups, n_p, range(a.seeds), a.out / "cache", suite.key(), progress
    )
    t_gt = time.time() - t0
    print(f"ground truth {t_gt:.0f} s; mean |φ| per provider {res.values.abs().mean(0).tolist()}", flush=True)
    if a.ground_truth_only:
        return
    saved = suite.workdir / "scores.pt"
    if saved.exists():
        kept = torch.load(saved)
        methods, weights = kept["scores"], kept["weights"]
    else:
        methods, weights = score_methods(suite, time.time())
        torch.save({"scores": methods, "weights": weights}, saved)
    values = res.values
    report: dict = {
        "corpus": name,
        "documents": suite.n_train,
        "providers": dict(zip(PROVIDERS, sizes, strict=True)),
        "seeds": a.seeds,
        "weights": weights,
        "ground_truth_seconds": t_gt,
        "shapley_top1_counts": torch.bincount(values.argmax(1), minlength=n_p).tolist(),
        "planted_is_shapley_top1": float(
            (values.argmax(1) == torch.tensor([PROVIDERS.index(q["planted_by"]) for q in suite.facts])).double().mean()
        ),
        "pro-rata": shapley_agreement(pro_rata_credit(suite.groups, n_p, len(values)), values),
        # the noise floor: one seed's Shapley values against another's (as credit against truth)
        "seed_agreement": shapley_agreement(res.per_seed[0], res.per_seed[1]) if a.seeds > 1 else None,
        # with 4+ seeds: the mean of one half of the seeds against the other's (the ground truth's own noise)
        "split_half_agreement": shapley_agreement(
            res.per_seed[: a.seeds // 2].mean(0), res.per_seed[a.seeds // 2 :].mean(0)
        )
        if a.seeds >= 4
        else None,
        "methods": {},
    }
    for label, s in methods.items():
        report["methods"][label] = {
            policy: shapley_agreement(provider_credit(s, suite.groups, n_p, policy), values) for policy in POLICIES
        }
    for policy in POLICIES:
        base = report["methods"][OLD_DEFAULT][policy]["per_query_l1"]
        new = report["methods"][NEW_DEFAULT][policy]["per_query_l1"]
        previous = report["methods"][PREVIOUS_DEFAULT][policy]["per_query_l1"]
        for entry in report["methods"].values():
            entry[policy]["l1 vs old default"] = paired(entry[policy]["per_query_l1"], base)
            entry[policy]["l1 vs previous default"] = paired(entry[policy]["per_query_l1"], previous)
            entry[policy]["l1 vs new default"] = paired(entry[policy]["per_query_l1"], new)
    report["seconds"] = time.time() - t0
    a.out.mkdir(parents=True, exist_ok=True)
    tag = "" if a.seeds == 1 else f"-s{a.seeds}"
    (a.out / f"shapley-{name}{tag}.json").write_text(json.dumps(report, indent=2))
    if report["seed_agreement"] is not None:
        r = report["seed_agreement"]
        print(f"seed 0 vs seed 1: L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    if report["split_half_agreement"] is not None:
        r = report["split_half_agreement"]
        print(f"split halves of the seeds: L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    r = report["pro-rata"]
    print(f"pro-rata L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    print(
        "| credit | policy | L1 to Shapley shares | top-1 agrees | Spearman | L1 vs old default (paired) "
        "| L1 vs previous default (Adam, lr, T=1) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for label, e in sorted(report["methods"].items(), key=lambda kv: kv[1]["topk_share"]["l1"]["mean"]):
        for policy in POLICIES:
            r = e[policy]
            d, p = r["l1 vs old default"], r["l1 vs previous default"]
            print(
                f"| {label} | `{policy}` | {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} | {r['top1']['mean']:.3f} "
                f"| {r['spearman']['mean']:.3f} | {d['diff']:+.3f} ± {d['se']:.3f} | {p['diff']:+.3f} ± {p['se']:.3f} |"
            )


if __name__ == "__main__":
    main()
