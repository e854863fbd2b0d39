"""``dataworth eval``: counterfactual accuracy (LDS) of valuation methods on a task.

A task is any ``module:function`` returning a :class:`valuation.evaluate.EvalTask` (how to
retrain on a subset, how to measure the queries, the methods' scores). The repository's suites
have short names: ``digits`` (MLP on scikit-learn's digits) and ``demo-lm`` (the demo GPT-2 and
corpus); they live in ``benchmarks/accuracy`` and need a checkout (run from its root).

flows/cli.py registers it as ``app.command("eval")(eval_command)``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

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
        raise ValueError(f"task must be one of {sorted(SUITES)} or 'module:function', got {spec!r}")
    module_name, func_name = target.split(":", 1)
    if os.getcwd() not in sys.path:  # tasks in the current checkout (as `python -m` would see them)
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        hint = " (the named suites need a dataworth checkout: run from its root)" if spec in SUITES else ""
        raise ValueError(f"cannot import task module {module_name!r}: {exc}{hint}") from exc
    func = getattr(module, func_name, None)
    if func is None:
        raise ValueError(f"task module {module_name!r} has no function {func_name!r}")
    task = func()
    if not isinstance(task, EvalTask):
        raise ValueError(f"{target} returned {type(task).__name__}, not valuation.evaluate.EvalTask")
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


def eval_command(
    task: Annotated[str, typer.Argument(help="digits, demo-lm or module:function returning an EvalTask")],
    subsets: Annotated[int, typer.Option(help="random subsets of the training set")] = 100,
    seeds: Annotated[int, typer.Option(help="retrainings per subset (seeds 0..n-1)")] = 3,
    alpha: Annotated[float, typer.Option(help="fraction of the training set in each subset")] = 0.5,
    workers: Annotated[int, typer.Option(help="retraining processes")] = 1,
    cache_dir: Annotated[
        Path | None, typer.Option(help="ground-truth cache (default $DATAWORTH_HOME/eval-cache)")
    ] = None,
    method: Annotated[list[str] | None, typer.Option(help="only these methods (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the JSON report here")] = None,
) -> None:
    """Counterfactual accuracy: LDS (mean ± s.e., split-half ceiling) of each valuation method."""
    run_eval_cli(task, subsets, seeds, alpha, workers, cache_dir, method, out)
