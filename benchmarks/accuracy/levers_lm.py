"""Each fidelity lever on the demo GPT-2: planted facts (final checkpoint, checkpoint set) and, when
the provider Shapley ground truth of the same corpus exists, agreement with it.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.levers_lm [--docs-per-provider 24 --fact-repeats 3]

The demo recipe (``flows.demo.model``) is run once on the whole corpus; its checkpoints carry
what Hugging Face Trainer saves (``optimizer.pt``: AdamW state, parameter names recorded;
``trainer_state.json``: ``log_history`` with the learning rate of every step), so the optimizer
lever and the trajectory weights read what a real training run leaves behind.
Writes ``benchmarks/accuracy/out/levers-lm-<corpus>.json``.

``--lds [--subsets 50 --seeds 2]``: LDS of every lever against the LM suite's ground truth
(``benchmarks.accuracy.lm``'s task, subsets and cache; missing cells are retrained, resumably;
``--partial`` uses only the subsets already retrained), per query group, paired per query against
the old and the new default; writes ``levers-lm-lds-<corpus>[-<subsets>x<seeds>].json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from benchmarks.accuracy.levers import (
    SINGLE_LEVERS,
    LeverConfig,
    LeverGradients,
    checkpoint_set_weights,
    gradient_key,
    lever_gradients,
    paired,
    panel_half_scores,
    scores_from_gradients,
    sub_trajectories,
)
from benchmarks.accuracy.lm import (
    OUT,
    PANEL_ALPHA,
    LMSuite,
    LMSuiteArguments,
    platform_lever_config,
    sequence_losses,
)
from valuation import default_lm_loss
from valuation.combine import combine_score_matrices
from valuation.evaluate import (
    LDSArguments,
    cached_ground_truth,
    ground_truth,
    lds,
    planted_accuracy,
    pro_rata_credit,
    provider_credit,
    sample_subsets,
    shapley_agreement,
    tail_patch_check,
)
from valuation.optimizer import load_hf_optimizer_state

CONFIGS = [
    *SINGLE_LEVERS,
    LeverConfig(fisher="sampled", damping=0.001),  # the sampled Fisher's spectrum needs less relative damping
    LeverConfig(optimizer=True, mode="cosine"),
    LeverConfig(optimizer=True, mix_alpha=0.5, mode="cosine"),
    LeverConfig(mix_alpha=0.5, mode="cosine"),
    LeverConfig(k=32),  # k=64 needs 4096² eigendecompositions per module: too slow on the shared CPU
    LeverConfig(temperature=2.0),
    LeverConfig(optimizer=True, temperature=2.0),  # the platform's defaults since the loss temperature
]


def tail_patch(suite: LMSuite, final: Path, methods: dict[str, torch.Tensor], k: int = 10, lr: float = 1e-4) -> dict:
    """On the final model, per planted-fact query: one SGD step on its top-k documents by each
    method vs k random documents; change of minus the response loss (its log-probability)."""
    from valuation import pad_batch

    model = suite.load(final)
    facts = suite.query_batches[1]
    seqs = [
        b["input_ids"][i][b["attention_mask"][i].bool()].tolist()
        for b in suite.train_batches
        for i in range(len(b["input_ids"]))
    ]
    pad = suite.tokenizer.pad_token_id

    def batch_of(docs: list[int]) -> dict:
        chosen = set(docs)
        return pad_batch([s for s, o in zip(seqs, suite.owner.tolist(), strict=True) if o in chosen], pad)

    chosen = [
        f"{LeverConfig(**kw).label()}, {how}"
        for kw in ({}, {"mode": "cosine"}, {"optimizer": True, "mix_alpha": 0.5, "mode": "cosine"})
        for how in ("set normalised", "final checkpoint")
    ]
    out = {}
    for label in [*chosen, "BM25", "TF-IDF, character 3-5-grams"]:
        s = methods[label]
        res = tail_patch_check(
            model, default_lm_loss, lambda m: -sequence_losses(m, facts)[0], s[suite.fact_queries], batch_of, k, lr
        )
        out[label] = res.summary()
        print("tail-patch", label, out[label], flush=True)
    return out


QUICK = [
    LeverConfig(),
    LeverConfig(optimizer=True),
    LeverConfig(mix_alpha=0.5),
    LeverConfig(mode="cosine"),
    LeverConfig(mix_alpha=0.5, mode="cosine"),
    LeverConfig(optimizer=True, mix_alpha=0.5, mode="cosine"),
]
ANSWER_ONLY = [LeverConfig(), LeverConfig(mode="cosine"), LeverConfig(mix_alpha=0.5, mode="cosine")]


def answer_only_batches(suite: LMSuite) -> list[dict]:
    """The suite's query batches with each planted fact's loss on its answer word only (TrackStar's
    answer-only loss; e.g. " Queltrin."): the rest of the response joins the prompt."""
    from valuation import query_batch

    tok = suite.tokenizer
    prompts, answers = [], []
    for q in suite.facts:
        head, _, last = q["response"].rpartition(" ")
        prompts.append(tok(q["prompt"] + head, add_special_tokens=False)["input_ids"])
        answers.append(tok(" " + last, add_special_tokens=False)["input_ids"])
    return [suite.query_batches[0], query_batch(prompts, answers, tok.pad_token_id, suite.args.recipe.max_length)]


class ScoringSuite(Protocol):
    """What :func:`checkpoint_scores` reads of a suite (``LMSuite``, the fact Shapley suite)."""

    train_batches: list[dict]
    query_batches: list[dict]
    owner: torch.Tensor

    @property
    def n_train(self) -> int: ...

    def load(self, path: Path) -> nn.Module: ...


def suite_gradients(
    suite: ScoringSuite, model: nn.Module, cfg: LeverConfig, moments: dict[str, torch.Tensor]
) -> LeverGradients:
    """:func:`levers.lever_gradients` of ``cfg`` over the suite's documents (rows summed per
    document) and queries, for ``model`` with its checkpoint's Adam second ``moments``."""
    return lever_gradients(
        model, suite.train_batches, suite.query_batches, default_lm_loss, cfg, "lm",
        second_moments=moments, owner=suite.owner, n_train=suite.n_train,
    )  # fmt: skip


def checkpoint_scores(
    suite: ScoringSuite,
    path: Path,
    configs: list[LeverConfig],
    answer_only: list[LeverConfig],
    answer_batches: list[dict],
    segments: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Every config's scores at one checkpoint; configs with the same :func:`gradient_key` share
    one fit and one gradient pass. ``answer_only`` configs score the planted-fact queries with
    ``answer_batches`` (label suffix ", answer-only"). Configs with a ``horizon`` are scored once
    per checkpoint set in ``segments`` (set name → this checkpoint's share of the run's learning-rate
    mass in that set), labelled ``"<label> [<set name>]"``."""
    model = suite.load(path)
    moments = load_hf_optimizer_state(model, path)
    shared: dict[tuple, LeverGradients] = {}

    def grads(cfg: LeverConfig) -> LeverGradients:
        key = gradient_key(cfg)
        if key not in shared:
            shared[key] = suite_gradients(suite, model, cfg, moments)
        return shared[key]

    out = {}
    for cfg in configs:
        if not cfg.horizon:
            out[cfg.label()] = scores_from_gradients(grads(cfg), cfg)
            continue
        for set_name, share in (segments or {}).items():
            out[f"{cfg.label()} [{set_name}]"] = scores_from_gradients(grads(cfg), cfg, segment=share)
    for cfg in answer_only:
        g = grads(cfg)
        q = torch.cat([g.logra.gradients(b, loss_fn=cfg.loss("lm")) for b in answer_batches])
        out[cfg.label() + ", answer-only"] = scores_from_gradients(g, cfg, q)
    return out


def platform_default_scores(suite: ScoringSuite, paths: list[Path]) -> torch.Tensor:
    """``(n_query, n_train)``: the platform's default recipe (:func:`platform_lever_config`: today
    LoGra PCA k=16, gradients Adam-scaled from each checkpoint's ``optimizer.pt``, loss temperature
    2) at every checkpoint of ``paths``, combined normalised with the learning-rate weights of the
    last one's ``trainer_state.json``, as a valuation over the checkpoint set does."""
    cfg = platform_lever_config()
    scores = [checkpoint_scores(suite, p, [cfg], [], [])[cfg.label()] for p in paths]
    return combine_score_matrices(scores, checkpoint_set_weights(paths), normalise=True)


def platform_panel_scores(suite: ScoringSuite, paths: list[Path], alpha: float = PANEL_ALPHA) -> torch.Tensor:
    """``(n_query, n_train)``: :func:`platform_default_scores` with a query panel (setting
    ``query_panel``, weight ``alpha``): each half of the suite's queries is scored with the other
    half as its panel (:func:`levers.panel_half_scores`), since a suite has no past queries."""
    from dataclasses import replace

    cfg = replace(platform_lever_config(), mix_alpha=alpha)
    scores = []
    for path in paths:
        model = suite.load(path)
        g = suite_gradients(suite, model, cfg, load_hf_optimizer_state(model, path))
        scores.append(panel_half_scores(g, cfg))
    return combine_score_matrices(scores, checkpoint_set_weights(paths), normalise=True)


# Trajectory density: the full model saved every 2 epochs; its sub-trajectories of 3 (the recipe's
# own checkpoints, epochs 8/16/24), 6 and 12 checkpoints are scored from the same gradients.
TRAJECTORY = [
    LeverConfig(),
    LeverConfig(optimizer=True),
    LeverConfig(optimizer=True, fisher="sampled"),
    LeverConfig(optimizer=True, k=32),
    LeverConfig(optimizer=True, fisher="sampled", k=32),
    *(LeverConfig(optimizer=True, horizon=c) for c in (3.0, 30.0, 300.0)),
    *(LeverConfig(horizon=c) for c in (3.0, 30.0, 300.0)),
    # Loss temperature (valuation.loss.LMLoss): the memorised late checkpoints' gradients back.
    *(LeverConfig(optimizer=True, temperature=t) for t in (1.5, 2.0, 4.0, 8.0)),
    LeverConfig(temperature=2.0),
    LeverConfig(optimizer=True, k=32, temperature=2.0),
    LeverConfig(optimizer=True, fisher="sampled", k=32, temperature=2.0),
    # Log-odds gradients (valuation.loss.LMLogOddsLoss): memorised tokens back without softening.
    LeverConfig(optimizer=True, output="log_odds"),
]


def score_levers(
    suite: LMSuite,
    paths: list[Path],
    t0: float,
    configs: list[LeverConfig] = CONFIGS,
    answer_only: list[LeverConfig] = ANSWER_ONLY,
) -> dict[str, torch.Tensor]:
    """Every lever at every checkpoint (:func:`checkpoint_scores`), combined per checkpoint set (the
    recipe's own checkpoints, and the denser sub-trajectories when ``paths`` holds more); lexical
    baselines beside."""
    answer_batches = answer_only_batches(suite) if answer_only else []
    sets = sub_trajectories(len(paths), suite.args.recipe.checkpoints)
    own = sets[suite.args.recipe.checkpoints]
    set_names = {m: "set" if idx == own else f"set of {m}" for m, idx in sets.items()}
    # Each checkpoint's share of the run's learning-rate mass over the segment it ends, per set.
    shares: list[dict[str, float]] = [{} for _ in paths]
    for m, idx in sets.items():
        for i, wi in zip(idx, checkpoint_set_weights(paths, idx), strict=True):
            shares[i][set_names[m]] = wi
    per_ck: dict[str, list[torch.Tensor]] = {}
    unrolled: dict[str, dict[int, torch.Tensor]] = {}
    for i, path in enumerate(paths):
        for label, scores in checkpoint_scores(suite, path, configs, answer_only, answer_batches, shares[i]).items():
            if label.endswith("]"):
                unrolled.setdefault(label, {})[i] = scores
            else:
                per_ck.setdefault(label, []).append(scores)
        print(path.name, f"{len(configs) + len(answer_only)} configs, {time.time() - t0:.0f} s", flush=True)
    methods: dict[str, torch.Tensor] = {}
    for m, idx in sets.items():  # SOURCE sums its segments; normalised beside it
        for label, by_ck in unrolled.items():
            if label.endswith(f"[{set_names[m]}]"):
                base = label.rsplit(" [", 1)[0]
                chosen = [by_ck[i] for i in idx]
                methods[f"{base}, {set_names[m]} summed"] = torch.stack(chosen).sum(0)
                methods[f"{base}, {set_names[m]} normalised"] = combine_score_matrices(chosen, normalise=True)
    for label, scores in per_ck.items():
        for m, idx in sets.items():
            chosen = [scores[i] for i in idx]
            weights = checkpoint_set_weights(paths, idx)
            name = set_names[m]
            methods[f"{label}, {name} normalised"] = combine_score_matrices(chosen, normalise=True)
            methods[f"{label}, {name} normalised, lr-weighted"] = combine_score_matrices(
                chosen, weights, normalise=True
            )
        methods[f"{label}, final checkpoint"] = scores[-1]
        methods[f"{label}, first checkpoint"] = scores[own[0]]
        if len(paths) > len(own):
            methods[f"{label}, earliest checkpoint"] = scores[0]
    from valuation.baselines import tfidf_similarity
    from valuation.lexical import bm25_scores

    methods["TF-IDF, character 3-5-grams"] = tfidf_similarity(suite.query_texts, suite.texts)
    methods["BM25"] = bm25_scores(suite.query_texts, suite.texts)
    return methods


OLD_DEFAULT = f"{LeverConfig().label()}, set normalised"
NEW_DEFAULT = f"{LeverConfig(optimizer=True).label()}, set normalised, lr-weighted"


def lds_levers(suite: LMSuite, methods: dict[str, torch.Tensor], lds_args: LDSArguments, partial: bool = False) -> dict:
    """LDS of every method against the LM suite's ground truth (``benchmarks.accuracy.lm``: the same
    corpus, queries, recipe, subsets and cache, so the cells it retrained are reused), per query
    group, with the paired difference per query against the platform's old default (LoGra k=16,
    checkpoint set, normalised, uniform) and its new one (+ Adam scaling, learning-rate weights).
    ``partial``: only the subsets already retrained for every seed (:func:`cached_ground_truth`)."""
    task = suite.task()
    masks = sample_subsets(task.n_train, lds_args.subsets, lds_args.alpha, lds_args.subset_seed)
    seeds = range(lds_args.seeds)
    if partial:
        gt = cached_ground_truth(masks, seeds, lds_args.cache_dir, task.name)
    else:
        gt = ground_truth(task.train_fn, task.measure_fn, masks, seeds, lds_args.cache_dir, task.name, None, 1)
    groups = {"all": None, "held-out documents": suite.heldout_queries, "planted-fact queries": suite.fact_queries}
    report: dict = {
        "task": task.name,
        "subsets": int(gt.masks.shape[0]),
        "seeds": lds_args.seeds,
        "ceiling": {g: gt.reliability(q) for g, q in groups.items()},
        "methods": {},
    }
    per_query = {name: lds(s, gt).per_query.tolist() for name, s in methods.items()}
    for name, s in methods.items():
        entry: dict = {}
        for g, q in groups.items():
            r = lds(s, gt, q)
            entry[g] = {"mean": r.mean, "se": r.se}
        entry["vs old default"] = paired(per_query[name], per_query[OLD_DEFAULT])
        entry["vs new default"] = paired(per_query[name], per_query[NEW_DEFAULT])
        entry["per_query"] = per_query[name]
        report["methods"][name] = entry
    return report


def panel_check(
    suite: LMSuite, paths: list[Path], alphas: Sequence[float], lds_args: LDSArguments | None, shapley
) -> dict:
    """The platform's defaults (:func:`platform_lever_config`) over the checkpoint set ``paths``
    (lr-weighted, normalised) with the query side of a mixed second moment from a panel of other
    queries (:func:`levers.panel_half_scores`) and from the valued queries, beside no mix: planted
    facts (``topk_share``, final checkpoint and set), LDS with ``lds_args``, provider Shapley
    agreement with ``shapley`` (values ``(n_query, n_providers)``) when given; paired vs no mix."""
    from dataclasses import replace

    base = platform_lever_config()
    per: dict[str, list[torch.Tensor]] = {}
    for path in paths:
        model = suite.load(path)
        g = suite_gradients(suite, model, base, load_hf_optimizer_state(model, path))
        per.setdefault("no mix", []).append(scores_from_gradients(g, base))
        for alpha in alphas:
            cfg = replace(base, mix_alpha=alpha)
            per.setdefault(f"mixed α={alpha:g} with the valued queries", []).append(scores_from_gradients(g, cfg))
            per.setdefault(f"mixed α={alpha:g} with a panel", []).append(panel_half_scores(g, cfg))
    weights = checkpoint_set_weights(paths)
    n_p = len(suite.providers)
    sets = {name: combine_score_matrices(s, weights, normalise=True) for name, s in per.items()}
    gt = None
    if lds_args is not None:
        task = suite.task()
        masks = sample_subsets(task.n_train, lds_args.subsets, lds_args.alpha, lds_args.subset_seed)
        gt = ground_truth(
            task.train_fn, task.measure_fn, masks, range(lds_args.seeds), lds_args.cache_dir, task.name, None, 2
        )
    report: dict = {"checkpoints": len(paths), "methods": {}}
    for name, s in sets.items():
        entry: dict = {}
        for label, scores in (("final", per[name][-1]), ("set", s)):
            credit = provider_credit(scores[suite.fact_queries], suite.groups, n_p, "topk_share")
            entry[f"planted {label}"] = planted_accuracy(credit, suite.fact_truth)["accuracy"]
        if gt is not None:
            r = lds(s, gt)
            entry["lds"] = {"mean": r.mean, "se": r.se, "per_query": r.per_query.tolist()}
        if shapley is not None:
            entry["shapley"] = shapley_agreement(provider_credit(s, suite.groups, n_p, "topk_share"), shapley)
        report["methods"][name] = entry
    plain = report["methods"]["no mix"]
    for entry in report["methods"].values():
        if gt is not None:
            entry["lds"]["vs no mix"] = paired(entry["lds"]["per_query"], plain["lds"]["per_query"])
        if shapley is not None:
            entry["shapley"]["l1 vs no mix"] = paired(
                entry["shapley"]["per_query_l1"], plain["shapley"]["per_query_l1"]
            )
    if shapley is not None:
        report["pro-rata"] = shapley_agreement(pro_rata_credit(suite.groups, n_p, shapley.shape[0]), shapley)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs-per-provider", type=int, default=60)
    parser.add_argument("--fact-repeats", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=24, help="of the demo recipe (24)")
    parser.add_argument("--quick", action="store_true", help="only the default and the mixed/cosine/Adam levers")
    parser.add_argument(
        "--trajectory",
        type=int,
        default=0,
        metavar="N",
        help="save N checkpoints of the full model (a multiple of the recipe's) and score the TRAJECTORY "
        "levers on every evenly spaced sub-set of them",
    )
    parser.add_argument(
        "--lds", action="store_true", help="LDS against the LM suite's ground truth (retrains missing cells)"
    )
    parser.add_argument("--subsets", type=int, default=50, help="of that ground truth (as benchmarks.accuracy.lm)")
    parser.add_argument("--seeds", type=int, default=2, help="of that ground truth (as benchmarks.accuracy.lm)")
    parser.add_argument("--partial", action="store_true", help="LDS on the subsets already retrained (no retraining)")
    parser.add_argument("--no-tail-patch", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--panel-check", type=float, nargs="+", metavar="ALPHA", help="only: the query-panel mix (with --lds)"
    )
    a = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    args = LMSuiteArguments.sized(a.docs_per_provider, a.fact_repeats, a.epochs)
    name = f"{a.docs_per_provider}x{a.fact_repeats}" + ("" if a.epochs == 24 else f"-e{a.epochs}")
    n_ck = a.trajectory or args.recipe.checkpoints
    if n_ck % args.recipe.checkpoints:
        parser.error(f"--trajectory {n_ck}: not a multiple of the recipe's {args.recipe.checkpoints} checkpoints")
    if a.trajectory:
        name += f"-t{n_ck}"
    suite = LMSuite(args, a.out / f"levers-lm-{name}")
    run_dir = suite.workdir / "full-seed0-hf"
    paths = sorted(run_dir.glob("step-*"))
    if len(paths) != n_ck or not all((p / "optimizer.pt").exists() for p in paths):
        paths = suite.train(torch.ones(suite.n_train, dtype=torch.bool), 0, run_dir, True, n_ck)
    weights = checkpoint_set_weights(paths)
    print("checkpoints", [p.name for p in paths], "learning-rate weights", [round(w, 3) for w in weights], flush=True)
    if a.panel_check:
        shapley_file = a.out / f"shapley-{a.docs_per_provider}x{a.fact_repeats}.pt"
        shapley = torch.load(shapley_file)["values"] if shapley_file.exists() else None
        lds_args = LDSArguments(a.subsets, a.seeds, 0.5, 0, 1, a.out / "cache") if a.lds else None
        report = panel_check(suite, paths, a.panel_check, lds_args, shapley)
        report["seconds"] = time.time() - t0
        (a.out / f"levers-lm-panel-{name}.json").write_text(json.dumps(report, indent=2))
        for label, e in report["methods"].items():
            line = f"{label:45s} planted final {e['planted final']:.3f} set {e['planted set']:.3f}"
            if "lds" in e:
                d = e["lds"]["vs no mix"]
                line += f"  LDS {e['lds']['mean']:.3f} ± {e['lds']['se']:.3f} ({d['diff']:+.3f} ± {d['se']:.3f})"
            if "shapley" in e:
                r, d = e["shapley"], e["shapley"]["l1 vs no mix"]
                line += f"  Shapley L1 {r['l1']['mean']:.3f} ({d['diff']:+.3f} ± {d['se']:.3f})"
                line += f" top1 {r['top1']['mean']:.3f}"
            print(line)
        if shapley is not None:
            print(f"pro-rata L1 {report['pro-rata']['l1']['mean']:.3f}")
        return
    saved = suite.workdir / "lever-scores.pt"
    # Scores are kept: a rerun only re-reads the Shapley values and re-reports.
    configs = TRAJECTORY if a.trajectory else QUICK if a.quick else CONFIGS
    methods = torch.load(saved)["scores"] if saved.exists() else {}
    # Configs added since the scores were saved are scored and merged (the others are not redone).
    missing = [c for c in configs if not {f"{c.label()}, final checkpoint", f"{c.label()}, set summed"} & set(methods)]
    if missing:
        answer_only = [] if a.trajectory or methods else ANSWER_ONLY
        methods |= score_levers(suite, paths, t0, missing, answer_only)
        torch.save({"scores": methods, "weights": weights}, saved)
    print(f"scores {time.time() - t0:.0f} s", flush=True)
    if a.lds:
        t_lds = time.time()
        lds_args = LDSArguments(a.subsets, a.seeds, 0.5, 0, 1, a.out / "cache")
        lds_report = {"weights": weights, **lds_levers(suite, methods, lds_args, a.partial)}
        lds_report["seconds"] = time.time() - t_lds
        tag = f"-{lds_report['subsets']}x{a.seeds}" if a.partial else ""
        (a.out / f"levers-lm-lds-{name}{tag}.json").write_text(json.dumps(lds_report, indent=2))
        print_lds(lds_report)
    shapley_path = a.out / f"shapley-{name}.pt"
    saved_shapley = torch.load(shapley_path) if shapley_path.exists() else None
    shapley = saved_shapley["values"] if saved_shapley is not None else None
    n_p = len(suite.providers)
    report: dict = {"corpus": name, "weights": weights, "methods": {}}
    for label, s in methods.items():
        entry: dict = {}
        for policy in ("topk_share", "sum"):
            credit = provider_credit(s[suite.fact_queries], suite.groups, n_p, policy)
            entry[f"planted {policy}"] = planted_accuracy(credit, suite.fact_truth)["accuracy"]
            if shapley is not None:
                credit = provider_credit(s, suite.groups, n_p, policy)
                entry[f"shapley {policy}"] = shapley_agreement(credit, shapley)
                entry[f"shapley {policy}, planted-fact queries"] = shapley_agreement(
                    credit, shapley, suite.fact_queries
                )
        report["methods"][label] = entry
    if shapley is not None:
        per_seed = saved_shapley["per_seed"]
        report["shapley seeds"] = len(per_seed)
        if len(per_seed) > 1:  # the noise floor: one seed's Shapley values against another's
            report["shapley seed agreement"] = shapley_agreement(per_seed[0], per_seed[1])
        rata = pro_rata_credit(suite.groups, n_p, shapley.shape[0])
        report["pro-rata"] = {
            "all": shapley_agreement(rata, shapley),
            "planted-fact queries": shapley_agreement(rata, shapley, suite.fact_queries),
        }
        base = report["methods"][f"{LeverConfig().label()}, set normalised"]
        for entry in report["methods"].values():
            for policy in ("topk_share", "sum"):
                entry[f"shapley {policy}"]["l1 vs default set"] = paired(
                    entry[f"shapley {policy}"]["per_query_l1"], base[f"shapley {policy}"]["per_query_l1"]
                )
    patch_path = suite.workdir / "tail-patch.json"
    if not patch_path.exists() and not (a.no_tail_patch or a.trajectory):  # tail-patch reads CONFIGS' labels
        patch_path.write_text(json.dumps(tail_patch(suite, paths[-1], methods)))
    report["tail_patch"] = json.loads(patch_path.read_text()) if patch_path.exists() else None
    report["seconds"] = time.time() - t0
    (a.out / f"levers-lm-{name}.json").write_text(json.dumps(report, indent=2))
    for label, e in report["methods"].items():
        line = f"{label:75s} planted {e['planted topk_share']:.3f} / sum {e['planted sum']:.3f}"
        if shapley is not None:
            r = e["shapley topk_share"]
            line += f"  shapley L1 {r['l1']['mean']:.3f} top1 {r['top1']['mean']:.3f}"
        print(line)


def print_lds(report: dict) -> None:
    """Markdown rows: LDS per group and the paired differences, best first."""
    print(f"ceiling {report['ceiling']}")
    print("| method | LDS, all | held-out | planted-fact | vs old default | wins | vs new default |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, e in sorted(report["methods"].items(), key=lambda kv: -kv[1]["all"]["mean"]):
        cells = " | ".join(
            f"{e[g]['mean']:.3f} ± {e[g]['se']:.3f}" for g in ("all", "held-out documents", "planted-fact queries")
        )
        old, new = e["vs old default"], e["vs new default"]
        print(
            f"| {name} | {cells} | {old['diff']:+.3f} ± {old['se']:.3f} | {old['wins']}/{old['n']} "
            f"| {new['diff']:+.3f} ± {new['se']:.3f} |"
        )


if __name__ == "__main__":
    main()
