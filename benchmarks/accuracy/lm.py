"""Accuracy suite (b): the demo's tiny GPT-2 and corpus (flows/demo), LDS and planted facts.

    .venv/bin/python -m benchmarks.accuracy.lm [--subsets 50 --seeds 2 --workers 2] [--smoke]

Train examples are the demo corpus's documents (6 providers, 3 facts planted in each provider's
documents). Queries: held-out documents generated with another seed (measurement: minus the
document's summed loss) and the 18 planted-fact queries (minus the summed loss of the response
given the question). Every retraining runs the demo's own recipe (``flows.demo.model``: the same
tokenizer, GPT-2 configuration, optimiser, schedule and number of epochs) on a subset of the
documents. Methods score the model trained on all documents with seed 0; "checkpoint set" sums
the scores of the three checkpoints that recipe saves, each with its own projections and Fisher,
as the platform does. Results go to ``benchmarks/accuracy/out/lm.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # ground truth retrains in forked workers
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
import transformers
from torch import nn

from flows.demo.corpus import PROVIDERS, documents, queries
from flows.demo.model import TrainArguments, train_demo_model, train_tokenizer
from valuation import LoGra, LoGraConfig, ProjectedFisher, influence_scores, pad_batch, query_batch, self_influence
from valuation.baselines import exact_influence, grad_cosine, grad_dot, representation_similarity, tfidf_similarity
from valuation.combine import combine_score_matrices
from valuation.evaluate import (
    EvalTask,
    LDSArguments,
    evaluate_task,
    planted_accuracy,
    provider_credit,
)

transformers.utils.logging.disable_progress_bar()
OUT = Path(__file__).resolve().parent / "out"
CHUNK = 16  # sequences per gradient batch


def platform_lever_config():
    """The platform's default fit and score settings (``flows.config``) as a ``LeverConfig``, so that
    the suites score what ``dataworth value`` would and follow the defaults when they change."""
    from benchmarks.accuracy.levers import LeverConfig
    from flows.config import FitArguments, ScoreArguments

    fit, score = FitArguments(), ScoreArguments()
    if fit.k_in != fit.k_out:
        raise ValueError(f"the suites project with k_in = k_out; the defaults are {fit.k_in}, {fit.k_out}")
    return LeverConfig(
        k=fit.k_in,
        init=fit.init,
        optimizer=fit.optimizer_scaling != "off",
        fisher=fit.fisher,
        temperature=fit.temperature,
        mode=score.mode,
        damping=score.damping_ratio,
    )


# The label of the platform's default recipe over a checkpoint set (levers_lm.platform_default_scores).
PLATFORM_DEFAULTS = f"platform defaults: {platform_lever_config().label()}, checkpoint set, lr-weighted"
# The same with a query panel (setting query_panel; levers_lm.platform_panel_scores): the other
# half of the suite's queries stands for the panel of past queries a lineage registers.
PANEL_ALPHA = 0.5
PLATFORM_PANEL = f"{PLATFORM_DEFAULTS}, query panel α={PANEL_ALPHA:g} (the other half of the queries)"


def untrained_model(recipe, tokenizer, seed: int):
    """The recipe's GPT-2 at its seeded initialisation: the model of the empty subset/coalition."""
    from flows.demo.model import init_model

    torch.manual_seed(seed)
    return init_model(recipe, tokenizer).eval()


@dataclass(frozen=True)
class LMSuiteArguments:
    """The corpus, the held-out queries and the recipe (the demo's unless ``smoke``)."""

    docs_per_provider: int = 60
    fact_repeats: int = 6
    heldout_indices: tuple[int, ...] = (0, 1, 40, 41)  # per provider: two with a planted fact, two without
    recipe: TrainArguments = field(default_factory=TrainArguments)
    ks: tuple[int, ...] = (8, 16, 32, 64)

    @classmethod
    def sized(cls, docs_per_provider: int = 60, fact_repeats: int = 6, epochs: int | None = None) -> LMSuiteArguments:
        """The demo corpus at another size and the recipe with ``epochs`` (the demo's at the
        defaults); held-out documents are two with a planted fact and two without, as in the full one."""
        recipe = TrainArguments() if epochs is None else TrainArguments(epochs=epochs)
        if (docs_per_provider, fact_repeats) == (cls.docs_per_provider, cls.fact_repeats):
            return cls(recipe=recipe)
        without = 3 * fact_repeats + 2
        return cls(docs_per_provider, fact_repeats, (0, 1, without, without + 1), recipe)

    @classmethod
    def smoke(cls) -> LMSuiteArguments:
        recipe = TrainArguments(
            vocab_size=300, n_layer=1, n_embd=32, n_head=2, max_length=384, epochs=3, batch_size=8, checkpoints=2
        )
        return cls(docs_per_provider=6, fact_repeats=1, heldout_indices=(0, 5), recipe=recipe, ks=(4, 8))


def sequence_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: summed next-token loss over counted labels, and the teacher-forced accuracy."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    counted = labels != -100
    loss = nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp_min(0), reduction="none")
    hits = (logits.argmax(-1) == labels) & counted
    return (loss * counted).sum(1).double(), hits.sum(1).double() / counted.sum(1).clamp_min(1)


class LMSuite:
    """Corpus, queries, retraining and every method's scores for the demo GPT-2."""

    def __init__(self, args: LMSuiteArguments, workdir: Path) -> None:
        self.args = args
        self.workdir = Path(workdir)
        docs = documents(args.docs_per_provider, args.fact_repeats, seed=0)
        self.texts = [d["text"] for d in docs]
        self.providers = list(PROVIDERS)
        self.groups = torch.tensor([self.providers.index(d["provider_id"]) for d in docs])
        # Same tokenizer as every retraining: the recipe trains it on all documents' texts.
        self.tokenizer = train_tokenizer(self.texts, args.recipe.vocab_size)
        pad, width = self.tokenizer.pad_token_id, args.recipe.max_length
        held = {d["doc_id"]: d for d in documents(args.docs_per_provider, args.fact_repeats, seed=1)}
        self.heldout = [held[f"{p}-{i:03d}"]["text"] for p in self.providers for i in args.heldout_indices]
        self.facts = queries()
        self.fact_truth = [self.providers.index(q["planted_by"]) for q in self.facts]
        ids = self.tokenizer(self.heldout, add_special_tokens=False)["input_ids"]
        query_batches = [pad_batch([s[:width] for s in ids], pad)]
        prompts = self.tokenizer([q["prompt"] for q in self.facts], add_special_tokens=False)["input_ids"]
        answers = self.tokenizer([q["response"] for q in self.facts], add_special_tokens=False)["input_ids"]
        query_batches.append(query_batch(prompts, answers, pad, width))
        self.query_batches = query_batches
        self.query_texts = self.heldout + [q["prompt"] + q["response"] for q in self.facts]
        self.heldout_queries = list(range(len(self.heldout)))
        self.fact_queries = list(range(len(self.heldout), len(self.heldout) + len(self.facts)))
        # Train sequences as the recipe cuts them; each belongs to one document.
        seqs, owner = [], []
        for d, doc_ids in enumerate(self.tokenizer(self.texts, add_special_tokens=False)["input_ids"]):
            for i in range(0, len(doc_ids), width):
                seqs.append(doc_ids[i : i + width])
                owner.append(d)
        self.train_batches = [pad_batch(seqs[i : i + CHUNK], pad) for i in range(0, len(seqs), CHUNK)]
        self.owner = torch.tensor(owner)
        self._grads: dict = {}
        self._full: list[Path] | None = None

    @property
    def n_train(self) -> int:
        return len(self.texts)

    # retraining ---------------------------------------------------------------------------
    def train(
        self,
        mask: torch.Tensor,
        seed: int,
        out_dir: Path | None = None,
        training_state: bool = False,
        checkpoints: int | None = None,
    ) -> list[Path]:
        """Run the recipe on the documents where ``mask`` is True; the checkpoint directories (with
        ``optimizer.pt`` and ``trainer_state.json`` only when ``training_state``: retrainings skip them;
        ``checkpoints`` overrides how many are saved, which leaves every weight unchanged)."""
        recipe = replace(
            self.args.recipe,
            seed=seed,
            save_training_state=training_state,
            checkpoints=checkpoints or self.args.recipe.checkpoints,
        )
        subset = [t for t, keep in zip(self.texts, mask.tolist(), strict=True) if keep]
        return train_demo_model(self.texts, out_dir, recipe, train_on=subset)

    def train_model(self, mask: torch.Tensor, seed: int) -> nn.Module:
        """The final model of the recipe on ``mask``; for an empty mask (the empty coalition of
        provider Shapley) the recipe's model before any step."""
        from transformers import GPT2LMHeadModel

        if not mask.any():
            return untrained_model(self.args.recipe, self.tokenizer, seed)
        with tempfile.TemporaryDirectory() as tmp:
            final = self.train(mask, seed, Path(tmp), checkpoints=1)[-1]
            return GPT2LMHeadModel.from_pretrained(final).eval()

    def measure(self, model: nn.Module) -> torch.Tensor:
        """``(n_query,)``: minus each query's summed loss (higher = better)."""
        return -torch.cat([sequence_losses(model, b)[0] for b in self.query_batches])

    def full_checkpoints(self) -> list[Path]:
        """The model trained on every document (seed 0), kept under ``workdir`` and reused."""
        if self._full is None:
            out = self.workdir / "full-seed0"
            paths = sorted(out.glob("step-*"))
            # with their training state: the platform's defaults read Adam's moments and the schedule
            if len(paths) != self.args.recipe.checkpoints or not all((p / "optimizer.pt").exists() for p in paths):
                paths = self.train(torch.ones(self.n_train, dtype=torch.bool), 0, out, training_state=True)
            self._full = paths
        return self._full

    def load(self, path: Path) -> nn.Module:
        from transformers import GPT2LMHeadModel

        return GPT2LMHeadModel.from_pretrained(path).eval()

    # methods ------------------------------------------------------------------------------
    def learned(self) -> list[bool]:
        """Facts whose answer (the response's last word, e.g. " Queltrin.") the final model
        predicts token for token after the question and the rest of the response."""
        model = self.load(self.full_checkpoints()[-1])
        batch = self.query_batches[1]
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels, predicted = batch["labels"][:, 1:], logits.argmax(-1)
        out = []
        for i, fact in enumerate(self.facts):
            answer = self.tokenizer(" " + fact["response"].split()[-1], add_special_tokens=False)["input_ids"]
            where = (labels[i] != -100).nonzero().squeeze(1)[-len(answer) :]
            out.append(bool((predicted[i, where] == labels[i, where]).all()))
        return out

    def _gradients(self, ck: int, k: int, init: str) -> tuple[torch.Tensor, torch.Tensor, LoGra]:
        """Per-document train vectors ``(n_docs, dim)`` and query vectors ``(n_query, dim)``."""
        key = (ck, k, init)
        if key not in self._grads:
            model = self.load(self.full_checkpoints()[ck])
            logra = LoGra(model, LoGraConfig(k_in=max(k, 1), k_out=max(k, 1), init=init, seed=0))
            if init == "pca":
                logra.fit(self.train_batches)
            g_seq = torch.cat([logra.gradients(b) for b in self.train_batches])
            g = torch.zeros(self.n_train, g_seq.shape[1], dtype=g_seq.dtype).index_add_(0, self.owner, g_seq)
            q = torch.cat([logra.gradients(b) for b in self.query_batches])
            if init == "identity":  # ~0.6 GB each: keep only one checkpoint's at a time
                self._grads = {kk: v for kk, v in self._grads.items() if kk[2] != "identity"}
            self._grads[key] = (g, q, logra)
        return self._grads[key]

    def logra(self, k: int, init: str, damping: float = 0.1, mode: str = "if", ck: int = -1) -> torch.Tensor:
        g, q, logra = self._gradients(ck % len(self.full_checkpoints()), k, init)
        fisher = ProjectedFisher(logra.layout)
        fisher.update(g)
        pre = fisher.preconditioner(damping)
        return influence_scores(pre(q), g, mode, self_influence(g, pre), self_influence(q, pre)).double()

    def checkpoint_set(self, fn: Callable[[int], torch.Tensor]) -> torch.Tensor:
        """Raw sum over the checkpoints (the platform's former combination; lm_combine compares)."""
        return combine_score_matrices([fn(ck) for ck in range(len(self.full_checkpoints()))], normalise=False)

    def representations(self, batches: Sequence[dict]) -> torch.Tensor:
        """Mean of the last hidden state over each sequence's counted tokens ``(n, n_embd)``."""
        model = self.load(self.full_checkpoints()[-1])
        rows = []
        with torch.no_grad():
            for b in batches:
                h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
                h = h.hidden_states[-1]
                counted = (b["labels"] != -100).unsqueeze(-1).to(h.dtype)
                rows.append((h * counted).sum(1) / counted.sum(1).clamp_min(1))
        return torch.cat(rows)

    def registry(self) -> dict[str, Callable[[], torch.Tensor]]:
        """Method name → thunk computing ``(n_query, n_train)`` scores (positive = helpful)."""
        ks = self.args.ks
        k_mid = 16 if 16 in ks else ks[0]
        reg: dict[str, Callable[[], torch.Tensor]] = {}
        for init in ("pca", "random"):
            for k in ks:
                reg[f"LoGra {init} k={k}"] = lambda k=k, init=init: self.logra(k, init)
        for damping in (0.01, 1.0):
            reg[f"LoGra pca k={k_mid} damping={damping}"] = lambda d=damping: self.logra(k_mid, "pca", d)
        for mode in ("relatif", "cosine"):
            reg[f"LoGra pca k={k_mid} {mode}"] = lambda m=mode: self.logra(k_mid, "pca", 0.1, m)
        n_ck = self.args.recipe.checkpoints
        for ck in range(n_ck - 1):  # the last one is the plain "LoGra pca k=..." entry
            reg[f"LoGra pca k={k_mid}, checkpoint {ck + 1} of {n_ck}"] = lambda ck=ck: self.logra(k_mid, "pca", ck=ck)
        for mode in ("if", "cosine"):
            reg[f"LoGra pca k={k_mid} {mode}, checkpoint set"] = lambda m=mode: self.checkpoint_set(
                lambda ck: self.logra(k_mid, "pca", 0.1, m, ck)
            )

        def exact(ck: int = -1) -> tuple[torch.Tensor, torch.Tensor, list]:
            g, q, logra = self._gradients(ck % len(self.full_checkpoints()), 0, "identity")
            return g, q, logra.layout

        reg["gradient dot product"] = lambda: grad_dot(*exact()[1::-1])
        reg["gradient dot product, checkpoint set"] = lambda: self.checkpoint_set(
            lambda ck: grad_dot(*exact(ck)[1::-1])
        )
        reg["gradient cosine"] = lambda: grad_cosine(*exact()[1::-1])
        reg["exact influence, layer-wise Fisher, damping 0.1"] = lambda: exact_influence(
            exact()[1], exact()[0], 0.1, exact()[2]
        )
        reg["representation similarity"] = lambda: representation_similarity(
            self.representations(self.query_batches), self._doc_representations()
        )
        reg["TF-IDF, character 3-5-grams"] = lambda: tfidf_similarity(self.query_texts, self.texts)
        reg[PLATFORM_DEFAULTS] = self.platform_defaults
        reg[PLATFORM_PANEL] = self.platform_panel
        return reg

    def platform_panel(self) -> torch.Tensor:
        """:meth:`platform_defaults` with a query panel (:func:`levers_lm.platform_panel_scores`)."""
        from benchmarks.accuracy.levers_lm import platform_panel_scores

        return platform_panel_scores(self, self.full_checkpoints())

    def platform_defaults(self) -> torch.Tensor:
        """``(n_query, n_train)``: the platform's default recipe over the three checkpoints."""
        from benchmarks.accuracy.levers_lm import platform_default_scores

        return platform_default_scores(self, self.full_checkpoints())

    def _doc_representations(self) -> torch.Tensor:
        seq = self.representations(self.train_batches)
        counts = torch.zeros(self.n_train, dtype=seq.dtype).index_add_(0, self.owner, torch.ones(len(self.owner)))
        return torch.zeros(self.n_train, seq.shape[1], dtype=seq.dtype).index_add_(0, self.owner, seq) / counts[:, None]

    def score_methods(self, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        reg = self.registry()
        self._scores: dict[str, torch.Tensor] = getattr(self, "_scores", {})
        unknown = sorted(set(names or ()) - set(reg))
        if unknown:
            raise ValueError(f"unknown methods {unknown}; known: {sorted(reg)}")
        chosen = list(names) if names else list(reg)
        for name in chosen:
            if name not in self._scores:
                self._scores[name] = reg[name]()
        return {name: self._scores[name] for name in chosen}

    def ground_truth_key(self) -> str:
        """What the retrained measurements depend on (not the methods' settings)."""
        a = self.args
        # How many checkpoints a run saves, and whether with its training state, leaves the final
        # model unchanged: suites that score denser trajectories share one ground truth.
        recipe = replace(a.recipe, checkpoints=1, save_training_state=False)
        blob = repr((a.docs_per_provider, a.fact_repeats, a.heldout_indices, recipe, len(self.query_texts)))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def task(self) -> EvalTask:
        return EvalTask(
            name="demo-lm-" + self.ground_truth_key(),
            n_train=self.n_train,
            train_fn=self.train_model,
            measure_fn=self.measure,
            score_methods=self.score_methods,
            query_groups={"held-out documents": self.heldout_queries, "planted-fact queries": self.fact_queries},
            providers=self.groups,
        )


def task(smoke: bool = False, workdir: Path | None = None) -> EvalTask:
    """Entry point for ``dataworth eval benchmarks.accuracy.lm:task``."""
    args = LMSuiteArguments.smoke() if smoke else LMSuiteArguments()
    return LMSuite(args, workdir or OUT / ("lm-smoke" if smoke else "lm")).task()


def smoke_task() -> EvalTask:
    """Entry point for ``dataworth eval demo-lm-smoke``: the suite at a tiny size (seconds)."""
    return task(smoke=True)


def run(args: LMSuiteArguments, lds_args: LDSArguments, workdir: Path, methods: Sequence[str] | None = None) -> dict:
    t0 = time.time()
    suite = LMSuite(args, workdir)
    report = evaluate_task(suite.task(), lds_args, methods)
    scores = suite.score_methods(methods)  # memoised: the same scores the LDS used
    learned = suite.learned()
    report["planted"] = {
        "learned": int(sum(learned)),
        "facts": len(learned),
        "methods": {
            name: {
                policy: planted_accuracy(
                    provider_credit(s[suite.fact_queries], suite.groups, len(suite.providers), policy),
                    suite.fact_truth,
                    learned,
                )
                for policy in ("topk_share", "sum")
            }
            for name, s in scores.items()
        },
    }
    report["seconds"] = time.time() - t0
    workdir.mkdir(parents=True, exist_ok=True)
    saved_path = workdir / "scores.pt"  # every method's scores, for re-analysis without rescoring
    saved = torch.load(saved_path) if saved_path.exists() else {"scores": {}}
    saved["scores"].update(scores)
    torch.save({"scores": saved["scores"], "learned": learned}, saved_path)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--method", action="append", help="only these methods (repeatable)")
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // max(1, a.workers)))
    args = LMSuiteArguments.smoke() if a.smoke else LMSuiteArguments()
    name = "lm-smoke" if a.smoke else "lm"
    lds_args = LDSArguments(a.subsets, a.seeds, 0.5, 0, a.workers, a.out / "cache")
    res = run(args, lds_args, a.out / name, a.method)
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{name}.json"
    if a.method and path.exists():  # a partial rerun updates those methods in the full report
        full = json.loads(path.read_text())
        full["lds"].update(res["lds"])
        full["planted"]["methods"].update(res["planted"]["methods"])
        res = full
    path.write_text(json.dumps(res, indent=2))
    for method, r in sorted(res["lds"].items(), key=lambda kv: -kv[1]["all"]["mean"]):
        cells = "  ".join(f"{g}: {v['mean']:.3f} ± {v['se']:.3f}" for g, v in r.items())
        p = res["planted"]["methods"][method]["topk_share"]
        print(f"{method:55s} {cells}  planted {p['accuracy']:.3f}/{p.get('accuracy_learned', float('nan')):.3f}")
    print("ceiling", res["ceiling"], "learned", res["planted"]["learned"], "seconds", round(res["seconds"]))


if __name__ == "__main__":
    main()
