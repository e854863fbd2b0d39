"""Operations: ``serve``, ``deploy`` (Prefect), ``demo``, ``eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.context import get_app, require_home, settings
from flows.cli.output import say


def serve(cron: Annotated[str, typer.Option(help="schedule of valuation_cycle")] = "0 * * * *") -> None:
    """Serve valuation_cycle on a cron schedule and on_new_checkpoint for ad hoc runs."""
    require_home()
    from prefect import serve as prefect_serve

    from flows.flows import on_new_checkpoint, valuation_cycle

    params = {"settings": get_app().settings.to_params()}
    cycle = valuation_cycle.to_deployment(name="dataworth-valuation-cycle", cron=cron, parameters=params)
    adhoc = on_new_checkpoint.to_deployment(name="dataworth-on-new-checkpoint", parameters=params)
    say(f"serving valuation_cycle ({cron}) and on_new_checkpoint; Ctrl-C stops")
    prefect_serve(cycle, adhoc, pause_on_shutdown=False)


def deploy(
    pool: Annotated[str, typer.Option(help="work pool the deployments run on (created if missing)")] = "dataworth",
    pool_type: Annotated[str, typer.Option(help="type of a new pool: process, docker, kubernetes, ...")] = "process",
    cron: Annotated[str, typer.Option(help="schedule of valuation_cycle")] = "0 * * * *",
    gpu_slots: Annotated[int, typer.Option(help="GPU tasks running at once (the gpu tag's limit)")] = 1,
    heartbeat_timeout: Annotated[int, typer.Option(help="seconds without heartbeat before a run is Crashed")] = 90,
    no_event_trigger: Annotated[bool, typer.Option(help="on_new_checkpoint only by direct runs")] = False,
    source: Annotated[Path | None, typer.Option(help="the code's directory as the workers see it")] = None,
) -> None:
    """Register the deployments, work pool, GPU limit and automations on the Prefect server."""
    import os

    from flows.deploy import REPO_ROOT, DeployArguments
    from flows.deploy import deploy as deploy_all
    from flows.errors import ServiceUnavailableError

    if not os.environ.get("PREFECT_API_URL"):
        raise ServiceUnavailableError(
            "PREFECT_API_URL is not set: point it at your Prefect server (http://HOST:4200/api)"
        )
    args = DeployArguments(
        pool, pool_type, cron, gpu_slots, heartbeat_timeout, not no_event_trigger, source or REPO_ROOT
    )
    out = deploy_all(settings(), args)
    say(f"deployed to work pool {out['pool']!r} (gpu slots {out['gpu_slots']}):")
    for name, dep_id in out["deployments"].items():
        say(f"  {name}  {dep_id}")
    say(f"start workers with: prefect worker start --pool {out['pool']}")


def demo(
    home: Annotated[Path, typer.Option(help="where the demo's store, ledger and report go (replaced)")] = Path(
        ".dataworth/demo"
    ),
) -> None:
    """Run the whole cycle on the bundled corpus and a small GPT-2 trained here."""
    from flows.cli.root import app
    from flows.demo.run import run_demo

    run_demo(home, app)


def eval_(
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
    shapley: Annotated[
        bool,
        typer.Option(
            "--shapley",
            help="instead of LDS: exact provider Shapley values (every coalition of the task's providers "
            "retrained, --seeds each) and each method's credit shares against them, beside pro-rata",
        ),
    ] = False,
) -> None:
    """Counterfactual accuracy: LDS (mean ± s.e., split-half ceiling) of each valuation method, or
    with --shapley their provider credit against exact provider Shapley values."""
    from flows.eval_cmd import run_eval_cli

    run_eval_cli(task, subsets, seeds, alpha, workers, cache_dir, method, out, shapley=shapley)


def register(app: typer.Typer) -> None:
    for command in (serve, deploy, demo):
        app.command()(command)
    app.command("eval")(eval_)
