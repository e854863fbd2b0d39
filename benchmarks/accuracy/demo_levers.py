"""The wired fidelity settings on the demo's own planted-fact queries, over several training seeds.

    PYTHONPATH=. .venv/bin/python -m benchmarks.accuracy.demo_levers [--seeds 0 1 2]

For each seed the demo recipe (``flows.demo.model``, which saves ``optimizer.pt`` and
``trainer_state.json``) trains on the demo corpus; the platform's own stages (register, fit, log,
finalize, value; nothing posted) then value the demo's 18 queries under every combination of
``optimizer_scaling`` (off/on), ``mode`` (cosine/if) and ``checkpoint_weights`` (uniform/lr), and
the final checkpoint alone. A query is right when its top-credited provider (``topk_share``)
planted its fact. Paired differences are over the same (seed, query) pairs. Writes
``benchmarks/accuracy/out/demo-levers/report.json``; trained checkpoints and stores are kept there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.accuracy.levers import paired
from flows.app import App
from flows.checkpoint.context import CheckpointContext
from flows.checkpoint.register import register
from flows.config import load_settings
from flows.demo.corpus import PROVIDERS, documents, panel_queries, queries, write_jsonl
from flows.demo.model import TrainArguments, train_demo_model
from flows.demo.run import DEMO_SETTINGS, top_provider_by_policy
from flows.ingest import ingest
from flows.pipeline import build_checkpoint
from flows.valuate import checkpoint_set, value_lineage

OUT = Path("benchmarks/accuracy/out/demo-levers")
PAIRS = [
    ("off if set lr", "off if set uniform"),
    ("on if set lr", "on if set uniform"),
    ("off cosine set lr", "off cosine set uniform"),
    ("on cosine set lr", "on cosine set uniform"),
    ("on if set uniform", "off if set uniform"),
    ("on if set lr", "off if set lr"),
    ("on cosine set uniform", "off cosine set uniform"),
    ("on cosine set lr", "off cosine set lr"),
    ("on if set lr", "off if set uniform"),
    ("on cosine set lr", "off cosine set uniform"),
    ("on if set lr", "on cosine set lr"),
    ("on if final", "off if final"),
    ("on cosine final", "off cosine final"),
]


def seed_home(seed: int, out: Path, checkpoints: int | None = None) -> Path:
    """The demo world of one training seed: corpus ingested, the recipe's checkpoints registered
    (``checkpoints``: save and register that many instead, evenly spaced; the weights are the same)."""
    n = checkpoints or TrainArguments().checkpoints
    root = out / (f"seed{seed}" if checkpoints is None else f"ck{n}-seed{seed}")
    home = root / "home"
    if (home / "ledger.db").exists():
        return home
    home.mkdir(parents=True, exist_ok=True)
    (home / "dataworth.toml").write_text(DEMO_SETTINGS)
    docs = documents()
    paths = sorted((root / "model").glob("step-*"))
    if len(paths) != n:
        paths = train_demo_model([d["text"] for d in docs], root / "model", TrainArguments(seed=seed, checkpoints=n))
    app = App.of(load_settings(home=str(home)))
    ingest(app, write_jsonl(docs, root / "corpus.jsonl"))
    for step, path in enumerate(paths):
        register(app, path, "demo", step)
    return home


def correct(results, truth: dict[str, str]) -> list[int]:
    return [int(top_provider_by_policy(r, list(PROVIDERS)) == truth[r.query_id]) for r in results]


def trajectory(
    seeds: list[int], n: int, out: Path, qs: list[dict], truth: dict[str, str], overrides: dict | None = None
) -> dict:
    """Under the platform's defaults (``overrides``: settings that differ, e.g. ``{"fisher": "sampled"}``):
    the demo trained with ``n`` checkpoints, valued with all of them, with the recipe's own three
    (every ``n/3``-th, the same weights), and the final one alone."""
    overrides = dict(overrides or {})
    base = TrainArguments().checkpoints
    right: dict[str, list[int]] = {}
    for seed in seeds:
        home = str(seed_home(seed, out, n))
        built = App.of(load_settings(home=home, **overrides))  # the weights setting keys no table
        for c in built.checkpoints():
            build_checkpoint(CheckpointContext(built, c.checkpoint_id))
        for weights in ("uniform", "lr"):
            app = App.of(load_settings(home=home, checkpoint_weights=weights, **overrides))
            line = checkpoint_set(app, "demo", "all")
            sets = {f"set of {n}": line, f"set of {base}": line[n // base - 1 :: n // base], "final": line[-1:]}
            for name, chosen in sets.items():
                if name == "final" and weights == "uniform":  # one checkpoint: weights do not apply
                    continue
                val = value_lineage(app, "demo", chosen, qs, with_confidence=False)
                key = name if name == "final" else f"{name} {weights}"
                right.setdefault(key, []).extend(correct(val.combined(val.weights, normalise=True), truth))
        print("seed", seed, {k: round(sum(v[-len(qs) :]) / len(qs), 3) for k, v in right.items()}, flush=True)
    pairs = [(f"set of {n} {w}", f"set of {base} {w}") for w in ("lr", "uniform")]
    pairs.append((f"set of {n} lr", "final"))
    return {
        "seeds": seeds,
        "checkpoints": n,
        "settings": overrides,
        "accuracy": {k: sum(v) / len(v) for k, v in right.items()},
        "paired": {f"{x} − {y}": paired(right[x], right[y]) for x, y in pairs},
        "per_query": right,
    }


def write_report(report: dict, path: Path) -> None:
    """Save ``report`` as JSON and print its accuracies and paired differences."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    for k, v in report["accuracy"].items():
        print(f"{k:28s} {v:.3f}")
    for k, d in report["paired"].items():
        print(f"{k:55s} {d['diff']:+.3f} ± {d['se']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--checkpoints",
        type=int,
        default=0,
        metavar="N",
        help="train with N checkpoints (a multiple of 3) and compare all N with the recipe's 3, defaults only",
    )
    parser.add_argument("--fisher", default="empirical", help="with --checkpoints: the fisher setting")
    parser.add_argument("--k", type=int, default=0, help="with --checkpoints: k_in = k_out (default: the platform's)")
    parser.add_argument("--temperature", type=float, default=None, help="with --checkpoints: the loss temperature")
    parser.add_argument(
        "--query-panel", action="store_true", help="with --checkpoints: the demo's query panel (panel_queries)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    a = parser.parse_args()
    qs = queries()
    truth = {q["query_id"]: q.pop("planted_by") for q in qs}
    if a.checkpoints:
        overrides = {} if a.fisher == "empirical" else {"fisher": a.fisher}
        if a.k:
            overrides |= {"k_in": a.k, "k_out": a.k}
        if a.temperature is not None:
            overrides["temperature"] = a.temperature
        if a.query_panel:
            overrides["query_panel"] = str(write_jsonl(panel_queries(), a.out / "panel.jsonl").resolve())
        report = trajectory(a.seeds, a.checkpoints, a.out, qs, truth, overrides)
        tag = ("" if a.fisher == "empirical" else f"-{a.fisher}") + (f"-k{a.k}" if a.k else "")
        tag += "" if a.temperature is None else f"-T{a.temperature:g}"
        tag += "-panel" if a.query_panel else ""
        write_report(report, a.out / f"trajectory-{a.checkpoints}{tag}.json")
        return
    right: dict[str, list[int]] = {}
    for seed in a.seeds:
        home = str(seed_home(seed, a.out))
        for scaling in ("off", "on"):
            for mode in ("cosine", "if"):
                app = App.of(load_settings(home=home, optimizer_scaling=scaling, mode=mode))
                for c in app.checkpoints():
                    build_checkpoint(CheckpointContext(app, c.checkpoint_id))
                latest = checkpoint_set(app, "demo", "latest")
                final = value_lineage(app, "demo", latest, qs, with_confidence=False).combined(normalise=True)
                right.setdefault(f"{scaling} {mode} final", []).extend(correct(final, truth))
                for weights in ("uniform", "lr"):
                    s = load_settings(home=home, optimizer_scaling=scaling, mode=mode, checkpoint_weights=weights)
                    app = App.of(s)
                    val = value_lineage(app, "demo", checkpoint_set(app, "demo", "all"), qs, with_confidence=False)
                    res = val.combined(val.weights, normalise=True)
                    right.setdefault(f"{scaling} {mode} set {weights}", []).extend(correct(res, truth))
        print("seed", seed, {k: round(sum(v[-len(qs) :]) / len(qs), 3) for k, v in right.items()}, flush=True)
    report = {
        "seeds": a.seeds,
        "accuracy": {k: sum(v) / len(v) for k, v in right.items()},
        "paired": {f"{x} − {y}": paired(right[x], right[y]) for x, y in PAIRS},
        "per_query": right,
    }
    write_report(report, a.out / "report.json")


if __name__ == "__main__":
    main()
