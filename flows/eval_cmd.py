"""``dataworth eval``: counterfactual accuracy (LDS) of valuation methods on a task, or with
``--shapley`` the agreement of their provider credit with exact provider Shapley values.

A task is any ``module:function`` returning a :class:`valuation.evaluate.EvalTask` (how to
retrain on a subset, how to measure the queries, the methods' scores; ``providers`` for
Shapley). The repository's suites have short names: ``digits`` (MLP on scikit-learn's digits) and
``demo-lm`` (the demo GPT-2 and corpus; it has providers) and ``provider-overlap`` (five providers
of uneven size whose topics and styles overlap; for ``--shapley``); they live in the
``benchmarks.accuracy`` package (installed with dataworth).

flows/cli/commands_ops.py registers it as ``dataworth eval``.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from valuation.errors import ConfigurationError
from valuation.evaluate import EvalTask, LDSArguments, ShapleyArguments, evaluate_provider_shapley, evaluate_task

SUITES = {
    "digits": "benchmarks.accuracy.digits:task",
    "demo-lm": "benchmarks.accuracy.lm:task",
    "demo-lm-smoke": "benchmarks.accuracy.lm:smoke_task",
    "provider-overlap": "benchmarks.accuracy.shapley_corpora:overlap_task",
    "provider-overlap-smoke": "benchmarks.accuracy.shapley_corpora:overlap_smoke_task",
}


def load_task(spec: str) -> EvalTask:
    """``digits``, ``demo-lm`` or ``package.module:function`` → the task it returns."""
    target = SUITES.get(spec, spec)
    if ":" not in target:
        raise ConfigurationError(f"task must be one of {sorted(SUITES)} or 'module:function', got {spec!r}")
    module_name, func_name = target.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"cannot import task module {module_name!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if func is None:
        raise ConfigurationError(f"task module {module_name!r} has no function {func_name!r}")
    task = func()
    if not isinstance(task, EvalTask):
        raise ConfigurationError(f"{target} returned {type(task).__name__}, not valuation.evaluate.EvalTask")
    return task


def _progress(label: str, console: Console) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def shapley_table(name: str, report: dict) -> Table:
    """Per method and policy, over every query: L1 to the Shapley shares, top-1, Spearman; pro-rata first."""
    size = f"{report['providers']} providers × {report['seeds']} seed(s)"
    table = Table(title=f"Provider Shapley agreement of {name}: {size}")
    for col in ("credit", "policy", "L1 to Shapley shares", "top-1 agrees", "Spearman"):
        table.add_column(col, justify="left" if col in ("credit", "policy") else "right")
    rows = [("pro-rata (corpus share)", "", report["pro-rata"]["all"])]
    rows += [(m, policy, g["all"]) for m, by_policy in report["methods"].items() for policy, g in by_policy.items()]
    for method, policy, r in rows:
        l1 = f"{r['l1']['mean']:.3f} ± {r['l1']['se']:.3f}"
        table.add_row(method, policy, l1, f"{r['top1']['mean']:.3f}", f"{r['spearman']['mean']:.3f}")
    return table


def run_eval_cli(
    task: str,
    subsets: int = 100,
    seeds: int = 3,
    alpha: float = 0.5,
    workers: int = 1,
    cache_dir: Path | None = None,
    methods: list[str] | None = None,
    out: Path | None = None,
    console: Console | None = None,
    shapley: bool = False,
) -> dict:
    """Sample the subsets, retrain (cached), score every method; print a table, write JSON.

    With ``shapley``: retrain on every coalition of the task's providers instead (``seeds`` each,
    cached), exact Shapley values per query, and each method's credit under each policy against
    them beside pro-rata (:func:`valuation.evaluate.evaluate_provider_shapley`)."""
    console = console or Console()
    cache = cache_dir or Path(os.environ.get("DATAWORTH_HOME", ".dataworth")) / "eval-cache"
    the_task = load_task(task)
    if shapley:
        if the_task.providers is None:
            raise ConfigurationError(f"task {task!r} has no providers (EvalTask.providers): --shapley needs them")
        n_providers = len(set(map(int, the_task.providers)))
        with _progress("retraining coalitions", console) as bar:
            job = bar.add_task("retrain", total=2**n_providers * seeds)
            args = ShapleyArguments(seeds=seeds, workers=workers, cache_dir=cache)
            report = evaluate_provider_shapley(the_task, args, methods, progress=lambda n: bar.advance(job, n))
        table = shapley_table(task, report)
    else:
        with _progress("retraining", console) as bar:
            job = bar.add_task("retrain", total=subsets * seeds)
            args = LDSArguments(subsets, seeds, alpha, 0, workers, cache)
            report = evaluate_task(the_task, args, methods, progress=lambda n: bar.advance(job, n))
        groups = list(report["ceiling"])
        table = Table(title=f"LDS of {task}: {subsets} subsets × {seeds} seeds, α = {alpha}")
        table.add_column("method")
        for g in groups:
            table.add_column(f"{g} (ceiling {report['ceiling'][g]:.3f})", justify="right")
        for name, row in sorted(report["lds"].items(), key=lambda kv: -kv[1]["all"]["mean"]):
            table.add_row(name, *(f"{row[g]['mean']:.3f} ± {row[g]['se']:.3f}" for g in groups))
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        console.print(f"report: {out}")
    return report
