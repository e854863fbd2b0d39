"""A fact-attribution suite that string overlap cannot win: paraphrased facts, unseen query templates.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.facts [--entities 24 --smoke]

Generator: fictional entities with four attributes (hue, town, material, keeper); each fact is
stated by one provider (five providers of uneven size, overlapping subjects) in several documents,
each in a different paraphrase template, and the same entity and value also appear together in
*distractor* documents of other providers that do not state the fact. Queries ask every fact with
a question and an answer template never used in training, so the only words a query shares with
its planted documents are the entity and the value, which the distractors share too.

Metrics per method: recall@k of the planted documents, MRR of the first planted document, top-1
provider of the ``topk_share`` credit. Methods: BM25, character TF-IDF, gradient cosine, LoGra
(default and levers) on a model trained on the corpus with the demo's recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from valuation.baselines import tfidf_similarity
from valuation.evaluate import provider_credit
from valuation.lexical import bm25_scores

OUT = Path(__file__).resolve().parent / "out"

PROVIDERS = ("archive", "guild", "museum", "traveller", "almanac")
PROVIDER_WEIGHTS = (0.40, 0.25, 0.15, 0.12, 0.08)  # uneven sizes
STYLE = {
    "archive": ("Archive note.", "Filed record."),
    "guild": ("Guild ledger entry.", "From the guild book."),
    "museum": ("Museum label.", "Gallery card."),
    "traveller": ("Travel diary.", "On the road today."),
    "almanac": ("Almanac line.", "Yearly almanac."),
}
# attribute: (values, training paraphrases, (unseen question, unseen answer))
ATTRIBUTES = {
    "hue": (
        ("teal", "amber", "crimson", "ivory", "slate", "ochre"),
        ("{e} is painted {v}.", "The paint on {e} is {v}.", "Everyone knows {e} by its {v} coat."),
        ("Which hue does {e} show?", " The hue of {e} is {v}."),
    ),
    "town": (
        ("Varnholt", "Ostrel", "Quimbry", "Dellmoor", "Sarkand", "Pellow"),
        ("{e} was built in {v}.", "The workshop of {e} stands in {v}.", "{e} comes from the town of {v}."),
        ("Where did {e} originate?", " {e} originated in {v}."),
    ),
    "material": (
        ("copper", "walnut", "basalt", "glass", "bone", "tin"),
        ("{e} is made of {v}.", "The body of {e} is carved from {v}.", "Craftsmen shaped {e} out of {v}."),
        ("What substance forms {e}?", " {e} is formed of {v}."),
    ),
    "keeper": (
        ("Maro", "Isolde", "Brann", "Teodor", "Wynne", "Alcott"),
        ("{e} is kept by {v}.", "{v} looks after {e}.", "The keeper of {e} is {v}."),
        ("Who has custody of {e}?", " Custody of {e} lies with {v}."),
    ),
}
DISTRACTORS = (  # the entity and the value together, the fact not stated; the same short shapes
    "The story of {e} is told in {v}.",
    "{e} is listed after {v}.",
    "The song of {e} is about {v}.",
    "{v} is the name of a dog near {e}.",
    "The letter from {e} is signed {v}.",
)
SYLLABLES = ("zor", "vath", "quel", "lin", "mor", "dax", "ib", "ren", "tal", "os", "kir", "un", "bel", "yth")


@dataclass(frozen=True)
class FactSuiteArguments:
    entities: int = 24
    paraphrases: int = 3  # documents stating each fact (each a different template)
    distractors: int = 3  # documents per fact with the same entity and value, not stating it
    seed: int = 0


def entity_names(n: int, rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < n:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize())
    return sorted(names)


def generate(args: FactSuiteArguments) -> tuple[list[dict], list[dict]]:
    """``(documents, queries)``: documents ``{doc_id, provider_id, text, fact}`` (``fact`` = query
    index or -1 for distractors); queries ``{prompt, response, planted_by, docs, entity, value}``."""
    rng = random.Random(args.seed)
    docs: list[dict] = []
    queries: list[dict] = []
    for e in entity_names(args.entities, rng):
        for values, templates, (question, answer) in ATTRIBUTES.values():
            v = rng.choice(values)
            provider = rng.choices(PROVIDERS, PROVIDER_WEIGHTS)[0]
            fact = len(queries)
            planted = []
            for t in rng.sample(templates, min(args.paraphrases, len(templates))):
                planted.append(len(docs))
                style = rng.choice(STYLE[provider])
                docs.append({"provider_id": provider, "text": f"{style} {t.format(e=e, v=v)}", "fact": fact})
            for t in rng.sample(DISTRACTORS, min(args.distractors, len(DISTRACTORS))):
                other = rng.choice([p for p in PROVIDERS if p != provider])
                d = t.format(e=e, v=v)
                docs.append({"provider_id": other, "text": f"{rng.choice(STYLE[other])} {d}", "fact": -1})
            queries.append(
                {
                    "prompt": question.format(e=e),
                    "response": answer.format(e=e, v=v),
                    "planted_by": provider,
                    "docs": planted,
                    "entity": e,
                    "value": v,
                }
            )
    order = list(range(len(docs)))
    rng.shuffle(order)
    new_index = {old: new for new, old in enumerate(order)}
    docs = [docs[i] for i in order]
    for i, d in enumerate(docs):
        d["doc_id"] = f"{d['provider_id']}-{i:04d}"
    for q in queries:
        q["docs"] = sorted(new_index[i] for i in q["docs"])
    return docs, queries


def retrieval_metrics(scores: torch.Tensor, queries: list[dict], ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """Recall@k of each query's planted documents and MRR of the first one (mean ± s.e.)."""
    order = scores.argsort(dim=1, descending=True)
    recall = {k: [] for k in ks}
    rr = []
    for qi, q in enumerate(queries):
        planted = set(q["docs"])
        ranked = order[qi].tolist()
        for k in ks:
            recall[k].append(len(planted & set(ranked[:k])) / len(planted))
        first = next(r for r, d in enumerate(ranked) if d in planted)
        rr.append(1.0 / (first + 1))

    def stat(x: list[float]) -> dict:
        t = torch.tensor(x, dtype=torch.float64)
        return {"mean": float(t.mean()), "se": float(t.std() / len(t) ** 0.5)}

    return {**{f"recall@{k}": stat(v) for k, v in recall.items()}, "mrr": stat(rr)}


def provider_top1(scores: torch.Tensor, docs: list[dict], queries: list[dict], topk: int = 10) -> float:
    groups = torch.tensor([PROVIDERS.index(d["provider_id"]) for d in docs])
    credit = provider_credit(scores, groups, len(PROVIDERS), "topk_share", topk)
    truth = torch.tensor([PROVIDERS.index(q["planted_by"]) for q in queries])
    return float((credit.argmax(1) == truth).double().mean())


def answer_only(queries: list[dict]) -> list[dict]:
    """The same queries with only the answer's value as the response (TrackStar's answer-only
    loss): the unseen template's words move into the prompt, whose tokens carry no loss."""
    out = []
    for q in queries:
        pre, post = q["response"].split(q["value"], 1)
        out.append({**q, "prompt": q["prompt"] + pre.rstrip(), "response": " " + q["value"] + post})
    return out


def gradient_methods(docs, queries, workdir: Path, smoke: bool, only_answer: bool = False) -> dict[str, torch.Tensor]:
    """Train the demo recipe on the corpus; LoGra (levers) and gradient cosine on the final model
    (``only_answer``: LoGra with answer-only query losses)."""
    from transformers import GPT2LMHeadModel

    from benchmarks.accuracy.levers import LeverConfig, lever_scores
    from flows.demo.model import TrainArguments, train_demo_model
    from valuation import LoGra, LoGraConfig, default_lm_loss, pad_batch, query_batch
    from valuation.baselines import grad_cosine

    recipe = TrainArguments(epochs=20, checkpoints=1)
    if smoke:
        recipe = replace(recipe, vocab_size=300, n_layer=1, n_embd=32, n_head=2, epochs=2)
    texts = [d["text"] for d in docs]
    final = workdir / "model"
    if not (final / "config.json").exists():
        path = train_demo_model(texts, workdir / "ckpt", recipe)[-1]
        GPT2LMHeadModel.from_pretrained(path).save_pretrained(final)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(path).save_pretrained(final)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(final)
    model = GPT2LMHeadModel.from_pretrained(final).eval()
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    train_batches = [pad_batch(ids[i : i + 16], tok.pad_token_id) for i in range(0, len(ids), 16)]

    def batches_of(qs: list[dict]) -> list[dict]:
        prompts = tok([q["prompt"] for q in qs], add_special_tokens=False)["input_ids"]
        answers = tok([q["response"] for q in qs], add_special_tokens=False)["input_ids"]
        return [
            query_batch(prompts[i : i + 16], answers[i : i + 16], tok.pad_token_id, recipe.max_length)
            for i in range(0, len(prompts), 16)
        ]

    query_batches = batches_of(queries)
    out = {}
    configs = [LeverConfig(), LeverConfig(mode="cosine"), LeverConfig(mix_alpha=0.1), LeverConfig(mix_alpha=0.5)]
    configs += [LeverConfig(mix_alpha=0.5, mode="cosine"), LeverConfig(fisher="sampled", damping=0.001)]
    if only_answer:
        query_batches = batches_of(answer_only(queries))
        configs = [LeverConfig(), LeverConfig(mode="cosine"), LeverConfig(mix_alpha=0.5, mode="cosine")]
    for cfg in configs:
        label = cfg.label() + (", answer-only query loss" if only_answer else "")
        out[label] = lever_scores(model, train_batches, query_batches, default_lm_loss, cfg, "lm")
        print(label, flush=True)
    if only_answer:
        return out
    exact = LoGra(model, LoGraConfig(init="identity"))
    g = torch.cat([exact.gradients(b) for b in train_batches])
    q = torch.cat([exact.gradients(b) for b in query_batches])
    out["gradient cosine"] = grad_cosine(q, g)
    return out


def learned_facts(queries: list[dict], workdir: Path) -> list[bool]:
    """Whether the trained model prefers each fact's value over the attribute's other values when
    asked in the unseen template (lowest response loss among the candidate answers)."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from benchmarks.accuracy.lm import sequence_losses
    from valuation import query_batch

    tok = AutoTokenizer.from_pretrained(workdir / "model")
    model = GPT2LMHeadModel.from_pretrained(workdir / "model").eval()
    out = []
    for q in queries:
        values = next(v for v, _, (question, _) in ATTRIBUTES.values() if question.format(e=q["entity"]) == q["prompt"])
        answers = [q["response"].replace(q["value"], v) for v in values]
        prompt = tok(q["prompt"], add_special_tokens=False)["input_ids"]
        batch = query_batch(
            [prompt] * len(answers), tok(answers, add_special_tokens=False)["input_ids"], tok.pad_token_id, 96
        )
        losses = sequence_losses(model, batch)[0]
        out.append(int(losses.argmin()) == values.index(q["value"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=24)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--lexical-only", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    torch.set_num_threads(1)  # more threads spin-wait on a busy machine
    t0 = time.time()
    args = FactSuiteArguments(entities=4 if a.smoke else a.entities)
    docs, queries = generate(args)
    texts = [d["text"] for d in docs]
    q_texts = [q["prompt"] + q["response"] for q in queries]
    methods = {
        "BM25 (prompt + response)": bm25_scores(q_texts, texts),
        "TF-IDF, character 3-5-grams": tfidf_similarity(q_texts, texts),
    }
    learned = None
    if not a.lexical_only:
        workdir = a.out / ("facts-smoke" if a.smoke else f"facts-{args.entities}")
        saved = workdir / "scores.pt"
        kept = torch.load(saved) if saved.exists() else {}  # scores are kept: a rerun re-reports
        if not kept:
            kept.update(gradient_methods(docs, queries, workdir, a.smoke))
        if not any("answer-only" in k for k in kept):
            kept.update(gradient_methods(docs, queries, workdir, a.smoke, only_answer=True))
        torch.save(kept, saved)
        methods.update(kept)
        learned = learned_facts(queries, workdir)
    report = {
        "documents": len(docs),
        "queries": len(queries),
        "providers": {p: sum(d["provider_id"] == p for d in docs) for p in PROVIDERS},
        "learned": None if learned is None else sum(learned),
        "methods": {
            name: {**retrieval_metrics(s, queries), "provider_top1": provider_top1(s, docs, queries)}
            for name, s in methods.items()
        },
        "seconds": time.time() - t0,
    }
    if learned is not None and any(learned):
        keep = [i for i, ok in enumerate(learned) if ok]
        sub = [queries[i] for i in keep]
        for name, s in methods.items():
            report["methods"][name]["learned facts"] = {
                **retrieval_metrics(s[keep], sub),
                "provider_top1": provider_top1(s[keep], docs, sub),
            }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / ("facts-smoke.json" if a.smoke else "facts.json")).write_text(json.dumps(report, indent=2))
    print(
        f"{report['documents']} documents, {report['queries']} queries ({report['learned']} learned), "
        f"providers {report['providers']}"
    )
    for name, r in sorted(report["methods"].items(), key=lambda kv: -kv[1]["mrr"]["mean"]):
        print(
            f"{name:45s} R@1 {r['recall@1']['mean']:.3f}  R@10 {r['recall@10']['mean']:.3f}  "
            f"MRR {r['mrr']['mean']:.3f} ± {r['mrr']['se']:.3f}  provider top-1 {r['provider_top1']:.3f}"
        )


if __name__ == "__main__":
    main()
