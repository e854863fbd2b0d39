"""Provider Shapley on the second corpora: the fact suite's generator (``--corpus facts``:
``benchmarks.accuracy.facts``, five providers of uneven size, subjects shared across providers,
distractor documents) and the overlapping-providers corpus (``--corpus overlap``:
``benchmarks.accuracy.overlap_corpus``, five providers of uneven size sharing topics and styles).

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.shapley_corpora [--corpus facts --entities 24 --seeds 1]
    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.shapley_corpora --corpus overlap --seeds 6 --workers 2

Retrains the recipe (the demo GPT-2; 20 epochs for the fact suite, the demo's 24 for the overlap
corpus) on every coalition of the 5 providers (32 coalitions × seeds; the empty coalition is the
untrained model of that seed), utility = minus each query's loss (fact queries: the response's,
given the question; held-out documents: the whole document's), exact Shapley value per provider
per query. The model trained on every document (seed 0, three checkpoints carrying
``optimizer.pt`` and ``trainer_state.json``) is scored by the platform's old default (LoGra k=16,
checkpoint set, normalised), its current one (+ Adam scaling, loss temperature 2, learning-rate
weights) and the main levers; each method's provider credit under ``topk_share`` and ``sum`` is
compared with the Shapley values (mean L1 of the share vectors, top-1 agreement, Spearman; per
query group too), beside pro-rata, TF-IDF and BM25. With 4+ seeds the report gives the ground
truth's own noise (one half of the seeds against the other). Cached and resumable
(``benchmarks/accuracy/out/cache``). Writes ``benchmarks/accuracy/out/shapley-<corpus>.json``.
``overlap_task`` is the overlap corpus as a ``dataworth eval`` task (``provider-overlap``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from torch import nn

from benchmarks.accuracy.facts import PROVIDERS, FactSuiteArguments, generate
from benchmarks.accuracy.levers import (
    LeverConfig,
    checkpoint_set_weights,
    paired,
    panel_half_scores,
    scores_from_gradients,
    sub_trajectories,
)
from benchmarks.accuracy.levers_lm import (
    checkpoint_scores,
    platform_default_scores,
    platform_panel_scores,
    suite_gradients,
)
from benchmarks.accuracy.lm import (
    CHUNK,
    OUT,
    PLATFORM_DEFAULTS,
    PLATFORM_PANEL,
    platform_lever_config,
    sequence_losses,
    untrained_model,
)
from benchmarks.accuracy.overlap_corpus import (
    OverlapCorpusArguments,
    documents,
    fact_queries,
    heldout_documents,
    provider_names,
)
from flows.demo.model import TrainArguments, train_demo_model, train_tokenizer
from valuation import pad_batch, query_batch
from valuation.baselines import tfidf_similarity
from valuation.combine import combine_score_matrices
from valuation.evaluate import EvalTask, pro_rata_credit, provider_credit, provider_shapley, shapley_agreement
from valuation.lexical import bm25_scores
from valuation.optimizer import load_hf_optimizer_state

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
    LeverConfig(optimizer=True, k=32, temperature=2.0),
]
OLD_DEFAULT = f"{LeverConfig().label()}, set normalised"
PREVIOUS_DEFAULT = f"{LeverConfig(optimizer=True).label()}, set normalised, lr-weighted"
NEW_DEFAULT = f"{LeverConfig(optimizer=True, temperature=2.0).label()}, set normalised, lr-weighted"


class ProviderCorpusSuite:
    """A provider corpus and its queries, the demo recipe, retrained per coalition of providers.

    ``queries`` are whole documents (``text``: minus the document's summed loss) or question and
    response pairs (``prompt``, ``response``: minus the response's summed loss given the question);
    document queries come first in every per-query tensor. ``corpus`` (a frozen arguments
    dataclass) and ``prefix`` name the ground truth's cache key."""

    def __init__(
        self,
        docs: list[dict],
        providers: list[str],
        queries: list[dict],
        recipe: TrainArguments,
        workdir: Path,
        corpus: object,
        prefix: str,
    ) -> None:
        self.recipe, self.workdir, self.corpus, self.prefix = recipe, Path(workdir), corpus, prefix
        self.texts = [d["text"] for d in docs]
        self.providers = list(providers)
        self.groups = torch.tensor([self.providers.index(d["provider_id"]) for d in docs])
        self.tokenizer = train_tokenizer(self.texts, recipe.vocab_size)  # as every retraining does
        tok, width = self.tokenizer, recipe.max_length
        whole = [q for q in queries if "text" in q]
        self.facts = [q for q in queries if "text" not in q]
        self.queries = whole + self.facts
        self.doc_queries = list(range(len(whole)))
        self.fact_queries = list(range(len(whole), len(self.queries)))
        self.query_batches = []

        def encode(texts: list[str]) -> list[list[int]]:
            return tok(texts, add_special_tokens=False)["input_ids"] if texts else []

        ids = [s[:width] for s in encode([q["text"] for q in whole])]
        self.query_batches += [pad_batch(ids[i : i + CHUNK], tok.pad_token_id) for i in range(0, len(ids), CHUNK)]
        prompts = encode([q["prompt"] for q in self.facts])
        answers = encode([q["response"] for q in self.facts])
        self.query_batches += [
            query_batch(prompts[i : i + CHUNK], answers[i : i + CHUNK], tok.pad_token_id, width)
            for i in range(0, len(prompts), CHUNK)
        ]
        self.query_texts = [q["text"] for q in whole] + [q["prompt"] + q["response"] for q in self.facts]
        seqs, owner = [], []
        for d, ids in enumerate(tok(self.texts, add_special_tokens=False)["input_ids"]):
            for i in range(0, len(ids), width):
                seqs.append(ids[i : i + width])
                owner.append(d)
        self.train_batches = [pad_batch(seqs[i : i + CHUNK], tok.pad_token_id) for i in range(0, len(seqs), CHUNK)]
        self.owner = torch.tensor(owner)

    @classmethod
    def fact_suite(cls, fargs: FactSuiteArguments, recipe: TrainArguments, workdir: Path) -> ProviderCorpusSuite:
        """The fact suite's corpus (:mod:`benchmarks.accuracy.facts`) and its 96 fact queries."""
        docs, facts = generate(fargs)
        return cls(docs, list(PROVIDERS), facts, recipe, workdir, fargs, "shapley-facts-")

    @classmethod
    def overlap(cls, oargs: OverlapCorpusArguments, recipe: TrainArguments, workdir: Path) -> ProviderCorpusSuite:
        """The overlapping-providers corpus (:mod:`benchmarks.accuracy.overlap_corpus`): held-out
        documents of every provider and the planted facts."""
        queries = heldout_documents(oargs) + fact_queries(oargs)
        return cls(documents(oargs), provider_names(), queries, recipe, workdir, oargs, "shapley-overlap-")

    @property
    def n_train(self) -> int:
        return len(self.texts)

    def key(self) -> str:
        """What the retrained utilities depend on (the number of saved checkpoints does not)."""
        blob = repr((self.corpus, replace(self.recipe, checkpoints=1, save_training_state=False), len(self.queries)))
        return self.prefix + hashlib.sha256(blob.encode()).hexdigest()[:12]

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

    def full_checkpoints(self, n: int = 3) -> list[Path]:
        """Seed 0 on every document, ``n`` checkpoints with their training state (kept; the final
        weights do not depend on ``n``)."""
        out = self.workdir / ("full-seed0-hf" if n == 3 else f"full-seed0-hf-ck{n}")
        stamp = out / "made-by.txt"  # the corpus and recipe the kept checkpoints were trained on
        paths = sorted(out.glob("step-*"))
        made_by = stamp.read_text() if stamp.exists() else None
        if len(paths) != n or not all((p / "optimizer.pt").exists() for p in paths) or made_by != self.key():
            for old in paths:
                shutil.rmtree(old)
            paths = self.train(torch.ones(self.n_train, dtype=torch.bool), 0, out, n, True)
            stamp.write_text(self.key())
        return paths

    def score_methods(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The platform's defaults over the full model's checkpoints (without and with a query panel),
        TF-IDF and BM25 (``dataworth eval``)."""
        registry: dict[str, Callable[[], torch.Tensor]] = {
            PLATFORM_DEFAULTS: lambda: platform_default_scores(self, self.full_checkpoints()),
            PLATFORM_PANEL: lambda: platform_panel_scores(self, self.full_checkpoints()),
            "TF-IDF, character 3-5-grams": lambda: tfidf_similarity(self.query_texts, self.texts),
            "BM25": lambda: bm25_scores(self.query_texts, self.texts),
        }
        unknown = sorted(set(names or ()) - set(registry))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {sorted(registry)}")
        return {n: registry[n]() for n in (names or registry)}

    def task(self, name: str) -> EvalTask:
        """The corpus as a ``dataworth eval`` task with providers (``--shapley``)."""
        groups = {"held-out documents": self.doc_queries, "planted-fact queries": self.fact_queries}
        return EvalTask(
            name=f"{name}-{self.key()}",
            n_train=self.n_train,
            train_fn=self.train_model,
            measure_fn=self.measure,
            score_methods=self.score_methods,
            query_groups={g: q for g, q in groups.items() if q},
            providers=self.groups,
        )


SMOKE_RECIPE = TrainArguments(vocab_size=300, n_layer=1, n_embd=32, n_head=2, epochs=3, batch_size=8)


def overlap_task(smoke: bool = False) -> EvalTask:
    """Entry point for ``dataworth eval provider-overlap``: the overlapping-providers corpus (72
    documents, 5 providers, 32 coalitions) with the demo recipe."""
    recipe = SMOKE_RECIPE if smoke else TrainArguments()
    name = "provider-overlap" + ("-smoke" if smoke else "")
    workdir = OUT / ("shapley-overlap-smoke" if smoke else "shapley-overlap-1")
    return ProviderCorpusSuite.overlap(OverlapCorpusArguments(), recipe, workdir).task(name)


def overlap_smoke_task() -> EvalTask:
    """Entry point for ``dataworth eval provider-overlap-smoke``: the same corpus, a tiny recipe (seconds)."""
    return overlap_task(smoke=True)


def score_methods(
    suite: ProviderCorpusSuite, t0: float, n_checkpoints: int = 3
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Every config's scores at each of the full model's checkpoints, combined over the whole set
    (``set normalised``, ``, lr-weighted``) and over its evenly spaced sub-sets of 3, 6, …
    checkpoints (``<m> checkpoints normalised, lr-weighted``); TF-IDF and BM25."""
    paths = suite.full_checkpoints(n_checkpoints)
    weights = checkpoint_set_weights(paths)
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
        for m, idx in sub_trajectories(n_checkpoints, 3).items():
            if m < n_checkpoints:
                chosen = [scores[i] for i in idx]
                methods[f"{label}, {m} checkpoints normalised, lr-weighted"] = combine_score_matrices(
                    chosen, checkpoint_set_weights(paths, idx), normalise=True
                )
    methods["TF-IDF, character 3-5-grams"] = tfidf_similarity(suite.query_texts, suite.texts)
    methods["BM25"] = bm25_scores(suite.query_texts, suite.texts)
    return methods, weights


def planted_is_top1(suite: ProviderCorpusSuite, values: torch.Tensor) -> float:
    """Share of the fact queries whose Shapley top-1 provider states the fact."""
    top = values[suite.fact_queries].argmax(1).tolist()
    hits = []
    for q, t in zip(suite.facts, top, strict=True):
        by = q["planted_by"] if isinstance(q["planted_by"], list) else [q["planted_by"]]
        hits.append(suite.providers[t] in by)
    return sum(hits) / max(len(hits), 1)


def panel_check(
    suite: ProviderCorpusSuite, values: torch.Tensor, n_checkpoints: int, alphas: Sequence[float] = (0.5,)
) -> dict:
    """The mixed train/query second moment with the query side from a *panel* of other queries
    (:func:`levers.panel_half_scores`: each half of the queries scored with the other half's
    projected second moment mixed in, ``(1 − α) H_train + α H_panel``), beside the mix of the valued
    queries' own and no mix; for LoGra k=16 at T = 1 and for the platform's defaults
    (:func:`platform_lever_config`), lr-weighted and normalised over ``n_checkpoints``. A panel
    fixed in advance is what a ledger can use (``query_panel``): a query's credit must not depend
    on which other queries are valued with it."""
    paths = suite.full_checkpoints(n_checkpoints)
    bases = {"T = 1": LeverConfig(), "platform defaults": platform_lever_config()}
    per: dict[str, list[torch.Tensor]] = {}
    for path in paths:
        model = suite.load(path)
        moments = load_hf_optimizer_state(model, path)
        for base_name, base in bases.items():
            g = suite_gradients(suite, model, base, moments)
            per.setdefault(f"{base_name}, no mix", []).append(scores_from_gradients(g, base))
            for alpha in alphas:
                cfg = replace(base, mix_alpha=alpha)
                own = f"{base_name}, mixed α={alpha:g} with the valued queries"
                per.setdefault(own, []).append(scores_from_gradients(g, cfg))
                per.setdefault(f"{base_name}, mixed α={alpha:g} with a panel", []).append(panel_half_scores(g, cfg))
    weights = checkpoint_set_weights(paths)
    n_p = len(suite.providers)
    report = {}
    for label, scores in per.items():
        credit = provider_credit(combine_score_matrices(scores, weights, normalise=True), suite.groups, n_p)
        report[label] = shapley_agreement(credit, values)
        report[label]["facts"] = shapley_agreement(credit, values, suite.fact_queries)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=24)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--corpus", choices=("facts", "overlap"), default="facts")
    parser.add_argument("--scale", type=int, default=1, help="overlap corpus: documents per 72 (1)")
    parser.add_argument("--more-facts", action="store_true", help="overlap corpus: four facts per provider")
    parser.add_argument("--epochs", type=int, help="of the recipe (the fact suite's 20, the demo's 24)")
    parser.add_argument("--checkpoints", type=int, default=3, help="of the scored full model (3: the recipe's)")
    parser.add_argument(
        "--panel-check", action="store_true", help="only: the mixed second moment from a panel of other queries"
    )
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.5], help="with --panel-check: mixing weights")
    parser.add_argument("--workers", type=int, default=1, help="retraining processes")
    parser.add_argument("--ground-truth-only", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    if a.corpus == "facts":
        epochs = a.epochs or 20
        name = f"facts-{a.entities}" + ("" if epochs == 20 else f"-e{epochs}")
        suite = ProviderCorpusSuite.fact_suite(
            FactSuiteArguments(entities=a.entities), TrainArguments(epochs=epochs), a.out / f"shapley-{name}"
        )
    else:
        epochs = a.epochs or TrainArguments.epochs
        name = f"overlap-{a.scale}" + ("-more-facts" if a.more_facts else "")
        name += "" if epochs == TrainArguments.epochs else f"-e{epochs}"
        suite = ProviderCorpusSuite.overlap(
            OverlapCorpusArguments(scale=a.scale, more_facts=a.more_facts),
            TrainArguments(epochs=epochs),
            a.out / f"shapley-{name}",
        )
    providers = suite.providers
    sizes = torch.bincount(suite.groups, minlength=len(providers)).tolist()
    print(f"{suite.n_train} documents, providers {dict(zip(providers, sizes, strict=True))}", flush=True)
    done = [0]

    def progress(n: int) -> None:
        done[0] += n
        print(f"coalition cells {done[0]} ({time.time() - t0:.0f} s)", flush=True)

    n_p = len(providers)
    res = provider_shapley(
        suite.train_model,
        suite.measure,
        suite.groups,
        n_p,
        range(a.seeds),
        a.out / "cache",
        suite.key(),
        progress,
        a.workers,
    )
    t_gt = time.time() - t0
    print(f"ground truth {t_gt:.0f} s; mean |φ| per provider {res.values.abs().mean(0).tolist()}", flush=True)
    if a.ground_truth_only:
        return
    if a.panel_check:
        rows = panel_check(suite, res.values, a.checkpoints, a.alphas)
        (a.out / f"panel-check-{name}-ck{a.checkpoints}.json").write_text(json.dumps(rows, indent=2))
        rata = shapley_agreement(pro_rata_credit(suite.groups, n_p, len(res.values)), res.values)
        print(f"pro-rata L1 {rata['l1']['mean']:.3f}")
        for label, r in rows.items():
            f = r["facts"]
            print(
                f"{label:60s} L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f} "
                f"| facts L1 {f['l1']['mean']:.3f} top1 {f['top1']['mean']:.3f}"
            )
        return
    ck = "" if a.checkpoints == 3 else f"-ck{a.checkpoints}"
    saved = suite.workdir / f"scores{ck}.pt"
    labels = [c.label() for c in CONFIGS]
    kept = torch.load(saved) if saved.exists() else None
    if kept is not None and kept.get("configs") == labels and kept.get("key") == suite.key():
        methods, weights = kept["scores"], kept["weights"]
    else:
        methods, weights = score_methods(suite, time.time(), a.checkpoints)
        torch.save({"scores": methods, "weights": weights, "configs": labels, "key": suite.key()}, saved)
    values = res.values
    report: dict = {
        "corpus": name,
        "checkpoints": a.checkpoints,
        "documents": suite.n_train,
        "providers": dict(zip(providers, sizes, strict=True)),
        "seeds": a.seeds,
        "weights": weights,
        "ground_truth_seconds": t_gt,
        "shapley_top1_counts": torch.bincount(values.argmax(1), minlength=n_p).tolist(),
        "planted_is_shapley_top1": planted_is_top1(suite, values),
        "shapley_top1_counts_documents": torch.bincount(values[suite.doc_queries].argmax(1), minlength=n_p).tolist(),
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
    groups = {"documents": suite.doc_queries, "facts": suite.fact_queries}
    for label, s in methods.items():
        report["methods"][label] = {}
        for policy in POLICIES:
            credit = provider_credit(s, suite.groups, n_p, policy)
            entry = report["methods"][label][policy] = shapley_agreement(credit, values)
            entry["groups"] = {g: shapley_agreement(credit, values, q) for g, q in groups.items() if q}
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
    (a.out / f"shapley-{name}{tag}{ck}.json").write_text(json.dumps(report, indent=2))
    if report["seed_agreement"] is not None:
        r = report["seed_agreement"]
        print(f"seed 0 vs seed 1: L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    if report["split_half_agreement"] is not None:
        r = report["split_half_agreement"]
        print(f"split halves of the seeds: L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    r = report["pro-rata"]
    print(f"pro-rata L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    for g, q in groups.items():
        if q:
            r = shapley_agreement(pro_rata_credit(suite.groups, n_p, len(values)), values, q)
            print(f"pro-rata on {g}: L1 {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} top1 {r['top1']['mean']:.3f}")
    print(
        "| credit | policy | L1 to Shapley shares | top-1 agrees | Spearman | L1 documents / facts "
        "| L1 vs old default (paired) | L1 vs previous default (Adam, lr, T=1) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, e in sorted(report["methods"].items(), key=lambda kv: kv[1]["topk_share"]["l1"]["mean"]):
        for policy in POLICIES:
            r = e[policy]
            d, p = r["l1 vs old default"], r["l1 vs previous default"]
            by_group = " / ".join(f"{x['l1']['mean']:.3f}" for x in r["groups"].values())
            print(
                f"| {label} | `{policy}` | {r['l1']['mean']:.3f} ± {r['l1']['se']:.3f} | {r['top1']['mean']:.3f} "
                f"| {r['spearman']['mean']:.3f} | {by_group} | {d['diff']:+.3f} ± {d['se']:.3f} "
                f"| {p['diff']:+.3f} ± {p['se']:.3f} |"
            )


if __name__ == "__main__":
    main()
