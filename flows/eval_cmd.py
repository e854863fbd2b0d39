"""``dataworth eval``: counterfactual accuracy (LDS) of valuation methods on a task.

A task is any ``module:function`` returning a :class:`valuation.evaluate.EvalTask` (how to
retrain on a subset, how to measure the queries, the methods' scores). The repository's suites
have short names: ``digits`` (MLP on scikit-learn's digits) and ``demo-lm`` (the demo GPT-2 and
corpus); they live in the ``benchmarks.accuracy`` package (installed with dataworth).

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
from valuation.evaluate import EvalTask, LDSArguments, evaluate_task

SUITES = {
    "digits": "benchmarks.accuracy.digits:task",
    "demo-lm": "benchmarks.accuracy.lm:task",
    "demo-lm-smoke": "benchmarks.accuracy.lm:smoke_task",
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
) -> dict:
    """Sample the subsets, retrain (cached), score every method; print a table, write JSON."""
    console = console or Console()
    home = Path(os.environ.get("DATAWORTH_HOME", ".dataworth"))
    args = LDSArguments(subsets, seeds, alpha, 0, workers, cache_dir or home / "eval-cache")
    the_task = load_task(task)
    with Progress(
        TextColumn("retraining"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        job = bar.add_task("retrain", total=subsets * seeds)
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
